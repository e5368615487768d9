// An MCP client (the TypeScript SDK) that signs in through the MCP
// authorization flow as oauth-flow.mjs does, calls a read tool, then a
// tool that needs a scope its token lacks: the broker answers 403
// insufficient_scope naming the scopes the session needs, the SDK asks
// the user for them (its refresh, which cannot widen the grant, is
// refused), the user signs in and consents again, and the client calls
// the write tool and the read tool once more in the same session. It
// prints one JSON object on stdout:
//
//   {"scopes": [<token scope after sign-in>, <after the step-up>],
//    "stepUpScope": <scope the SDK asked for>, "refused": <the step-up error>,
//    "read", "write", "readAgain": <results>, "session": [<id before>, <id after>]}
//
// Usage: node step-up.mjs --url URL --username U --password P
//          --tool READ --write-tool WRITE [--arguments JSON] [--write-arguments JSON]
//          [--client-id ID]   (a pre-registered public client; default: dynamic registration)
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { parseArgs } from 'node:util';
import { MemoryProvider, authorize as signIn, recordingFetch, requests } from './oauth-client.mjs';

const { values: options } = parseArgs({
  options: {
    url: { type: 'string' },
    username: { type: 'string' },
    password: { type: 'string' },
    tool: { type: 'string' },
    arguments: { type: 'string', default: '{}' },
    'write-tool': { type: 'string' },
    'write-arguments': { type: 'string', default: '{}' },
    'client-id': { type: 'string' },
    redirect: { type: 'string', default: 'http://127.0.0.1:53682/callback' },
    consent: { type: 'string', default: 'allow' },
  },
});
if (!options.url || !options.username || !options.password) {
  console.error('usage: oauth-flow.mjs --url URL --username U --password P [--tool NAME]');
  process.exit(2);
}

async function connect(provider) {
  const transport = new StreamableHTTPClientTransport(new URL(options.url), { authProvider: provider, fetch: recordingFetch });
  const client = new Client({ name: 'oauth-flow', version: '1.0.0' });
  await client.connect(transport);
  return { client, transport };
}

const provider = new MemoryProvider(options.redirect);
if (options['client-id']) provider.information = { client_id: options['client-id'] }; // pre-registered
const output = { requests, scopes: [] };
try {
  await connect(provider);
  throw new Error('the broker accepted a client without a token');
} catch (error) {
  if (!(error instanceof UnauthorizedError) || !provider.authorizationUrl) throw error;
}
let back = await signIn(provider.authorizationUrl, options);
const transport = new StreamableHTTPClientTransport(new URL(options.url), { authProvider: provider, fetch: recordingFetch });
await transport.finishAuth(back.searchParams.get('code'));
output.scopes.push(provider.tokens().scope);

const client = new Client({ name: 'step-up', version: '1.0.0' });
await client.connect(transport);
const sessionBefore = transport.sessionId;
output.read = await client.callTool({ name: options.tool, arguments: JSON.parse(options.arguments) });

provider.authorizationUrl = undefined;
const write = { name: options['write-tool'], arguments: JSON.parse(options['write-arguments']) };
try {
  output.write = await client.callTool(write);
} catch (error) {
  output.refused = { name: error.constructor.name, message: String(error.message) };
  if (!provider.authorizationUrl) throw error;
  output.stepUpScope = new URL(provider.authorizationUrl).searchParams.get('scope');
  back = await signIn(provider.authorizationUrl, options);
  await transport.finishAuth(back.searchParams.get('code'));
  output.scopes.push(provider.tokens().scope);
  output.write = await client.callTool(write);
}
output.readAgain = await client.callTool({ name: options.tool, arguments: JSON.parse(options.arguments) });
output.session = [sessionBefore, transport.sessionId];
await client.close();
console.log(JSON.stringify(output));
