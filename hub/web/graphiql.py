"""The GraphiQL page, built on assets vendored under `static/` so it works offline."""

import json
from html import escape
from pathlib import Path
from string import Template

_STATIC_DIR = Path(__file__).parent / "static"

DEMO_QUERY = """\
# Influencer Hub demo: the Headers tab below holds the demo token, a campaign
# manager of the tenant acme (purpose campaign_management). Press the run button.
# Contacts' emails and phones show only where the person consented to the purpose;
# elsewhere they are masked, and the answer says why.
query DemoCampaigns {
  campaigns(first: 3) {
    totalCount
    edges {
      node {
        name
        brand
        status
        members(first: 3) {
          edges {
            node {
              influencer {
                handle
                country
                contacts { role email }
              }
            }
          }
        }
      }
    }
  }
}
"""
"""The example query the demo's GraphiQL opens with; it answers with the demo token."""

# The only inline script: mount GraphiQL with a fetcher that POSTs JSON to the endpoint.
# It interpolates nothing; the endpoint, and in the demo its token header and example query,
# travel in data attributes, escaped as HTML. A page that holds a token of its own (the
# demo's) does not persist headers, so that the token never outlives the demo in storage.
_PAGE = Template("""\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<link rel="icon" href="data:,">
<title>Influencer Hub · GraphiQL</title>
<link rel="stylesheet" href="$assets/graphiql.min.css">
<style>html, body, #graphiql { height: 100%; margin: 0; }</style>
</head>
<body>
<div id="graphiql" data-endpoint="$endpoint" data-headers="$headers" data-query="$query">\
Loading GraphiQL…</div>
<script src="$assets/react.production.min.js"></script>
<script src="$assets/react-dom.production.min.js"></script>
<script src="$assets/graphiql.min.js"></script>
<script>
(function () {
  "use strict";
  var root = document.getElementById("graphiql");
  var endpoint = root.getAttribute("data-endpoint");
  var givenHeaders = root.getAttribute("data-headers");
  var givenQuery = root.getAttribute("data-query");
  function fetcher(params, options) {
    var headers = Object.assign(
      {
        "Content-Type": "application/json",
        "Accept": "application/graphql-response+json, application/json"
      },
      (options && options.headers) || {}
    );
    return fetch(endpoint, {
      method: "POST",
      headers: headers,
      body: JSON.stringify(params),
      credentials: "same-origin"
    }).then(function (response) {
      return response.text();
    }).then(function (text) {
      try {
        return JSON.parse(text);
      } catch (error) {
        return { errors: [{ message: text }] };
      }
    });
  }
  var defaultQuery = [
    "# Influencer Hub",
    "#",
    "# Without a token only { __typename } is allowed.",
    "# Use the token `hub serve --demo` prints, or make one:",
    "#   python -m hub token --tenant acme --role admin \\\\",
    "#     --scope \\"campaigns:read schema:introspect\\" \\\\",
    "#     --purpose campaign_management",
    "# Paste it in the Headers tab below as",
    "#   {\\"Authorization\\": \\"Bearer <token>\\"}",
    "# then re-fetch the schema (circular arrows, left).",
    "",
    "{",
    "  __typename",
    "}",
    ""
  ].join("\\n");
  ReactDOM.createRoot(root).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: givenQuery || defaultQuery,
      defaultHeaders: givenHeaders || undefined,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: !givenHeaders,
      defaultEditorToolsVisibility: "headers"
    })
  );
})();
</script>
</body>
</html>
""")


def graphiql_assets_dir() -> Path:
    """Return the directory whose files the page loads under `assets_path`."""
    return _STATIC_DIR


def graphiql_page(
    *,
    endpoint: str,
    assets_path: str,
    headers: dict[str, str] | None = None,
    query: str | None = None,
) -> str:
    """Return the GraphiQL HTML that queries `endpoint` and loads assets from `assets_path`;
    `headers` fill its Headers tab and `query` its editor (the demo's token and example)."""
    return _PAGE.substitute(
        assets=escape(assets_path.rstrip("/"), quote=True),
        endpoint=escape(endpoint, quote=True),
        headers=escape(json.dumps(headers, indent=2) if headers else "", quote=True),
        query=escape(query or "", quote=True),
    )
