// Runs the graphql-http server audits against a GraphQL endpoint and prints a JSON summary.
//
// Usage: node tests/e2e/audit.mjs http://127.0.0.1:8000/graphql [bearer-token]
// The token, when given, goes on every request: some audits introspect (`__type`), which
// the hub grants only to callers holding `schema:introspect`.
// Output (stdout): {"ok": N, "notices": N, "warnings": N, "errors": N,
//                   "details": [{"id", "name", "status", "reason", "response"}]}
// Exit code: 0 when the audits ran (whatever they found), 2 on bad usage or a fatal failure.
import { serverAudits } from 'graphql-http';

const BODY_EXCERPT_CHARS = 500;

async function describeResponse(response) {
  if (!response) return null;
  let body = null;
  try {
    body = (await response.clone().text()).slice(0, BODY_EXCERPT_CHARS);
  } catch {
    // The audit already consumed the body; the status and headers still help.
  }
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    body,
  };
}

async function main() {
  const url = process.argv[2];
  if (!url) {
    process.stderr.write('usage: node audit.mjs <graphql-url>\n');
    return 2;
  }
  const token = process.argv[3];
  const fetchFn = token
    ? (input, init = {}) => {
        const headers = new Headers(init.headers);
        headers.set('authorization', `Bearer ${token}`);
        return fetch(input, { ...init, headers });
      }
    : fetch;
  const summary = { ok: 0, notices: 0, warnings: 0, errors: 0, details: [] };
  for (const audit of serverAudits({ url, fetchFn })) {
    const result = await audit.fn();
    if (result.status === 'ok') {
      summary.ok += 1;
    } else if (result.status === 'notice') {
      summary.notices += 1;
    } else if (result.status === 'warn') {
      summary.warnings += 1;
    } else {
      summary.errors += 1;
    }
    summary.details.push({
      id: result.id,
      name: result.name,
      status: result.status,
      reason: result.status === 'ok' ? null : result.reason,
      response: result.status === 'ok' ? null : await describeResponse(result.response),
    });
  }
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    process.stderr.write(`audit failed: ${error && error.stack ? error.stack : error}\n`);
    process.exitCode = 2;
  },
);
