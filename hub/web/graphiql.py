"""The GraphiQL page, built on assets vendored under `static/` so it works offline."""

from html import escape
from pathlib import Path
from string import Template

_STATIC_DIR = Path(__file__).parent / "static"

# The only inline script: mount GraphiQL with a fetcher that POSTs JSON to the endpoint.
# It interpolates nothing; the endpoint travels in a data attribute, escaped as HTML.
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
<div id="graphiql" data-endpoint="$endpoint">Loading GraphiQL…</div>
<script src="$assets/react.production.min.js"></script>
<script src="$assets/react-dom.production.min.js"></script>
<script src="$assets/graphiql.min.js"></script>
<script>
(function () {
  "use strict";
  var root = document.getElementById("graphiql");
  var endpoint = root.getAttribute("data-endpoint");
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
      defaultQuery: defaultQuery,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: true,
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


def graphiql_page(*, endpoint: str, assets_path: str) -> str:
    """Return the GraphiQL HTML that queries `endpoint` and loads assets from `assets_path`."""
    return _PAGE.substitute(
        assets=escape(assets_path.rstrip("/"), quote=True),
        endpoint=escape(endpoint, quote=True),
    )
