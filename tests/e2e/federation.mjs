// Composes the hub as an Apollo Federation 2 subgraph and runs queries through the Apollo
// gateway's query planner and executor against it.
//
// Usage: node tests/e2e/federation.mjs http://127.0.0.1:8000/graphql <bearer-token>
// Output (stdout): {"compositionErrors": [...], "results": {name: {data, errors}}}
import { composeServices } from '@apollo/composition';
import { ApolloGateway, RemoteGraphQLDataSource } from '@apollo/gateway';
import { parse, getOperationAST } from 'graphql';

const QUERIES = {
  campaigns: '{ campaigns(first: 2) { totalCount edges { node { id name members(first: 2) '
    + '{ edges { node { influencer { handle } } } } } } } }',
  contact: 'query ($id: ID!) { contact(id: $id) { id email influencer { handle } } }',
};

async function main() {
  const [url, token] = process.argv.slice(2);
  const sdlAnswer = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query: '{ _service { sdl } }' }),
  });
  const sdl = (await sdlAnswer.json()).data._service.sdl;
  const composed = composeServices([{ name: 'hub', typeDefs: parse(sdl), url }]);
  if (composed.errors) {
    process.stdout.write(JSON.stringify({ compositionErrors: composed.errors.map(String) }));
    return 0;
  }
  const gateway = new ApolloGateway({
    supergraphSdl: composed.supergraphSdl,
    buildService: ({ url: serviceUrl }) => new RemoteGraphQLDataSource({
      url: serviceUrl,
      willSendRequest({ request }) {
        request.http.headers.set('authorization', `Bearer ${token}`);
      },
    }),
  });
  const { schema, executor } = await gateway.load();
  const results = {};
  const variables = JSON.parse(process.argv[4] || '{}');
  for (const [name, query] of Object.entries(QUERIES)) {
    const document = parse(query);
    const response = await executor({
      request: { query, variables },
      document,
      operation: getOperationAST(document),
      operationName: null,
      schema,
      context: {},
      cache: undefined,
      logger: console,
      metrics: {},
      overallCachePolicy: {},
      queryHash: name,
      source: query,
    });
    results[name] = { data: response.data ?? null, errors: response.errors ?? null };
  }
  await gateway.stop();
  process.stdout.write(JSON.stringify({ compositionErrors: [], results }));
  return 0;
}

main().then((code) => process.exit(code), (error) => {
  process.stderr.write(`${error.stack ?? error}\n`);
  process.exit(2);
});
