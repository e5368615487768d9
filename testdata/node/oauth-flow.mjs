// An MCP client (the TypeScript SDK) that starts with no token and goes
// through the whole MCP authorization flow against a broker: 401 ->
// protected resource metadata -> authorization server metadata -> dynamic
// client registration -> authorization code with PKCE (the login and
// consent forms are posted as a browser would, with a cookie jar) -> token
// -> tools/list and tools/call. It prints one JSON object on stdout:
//
//   {"requests": [{"method", "url", "status"}...], "tools": [...],
//    "result": <tools/call result>, "registered": <client information>,
//    "tokens": {"token_type", "scope", "expires_in", "has_refresh_token"}}
//
// Usage: node oauth-flow.mjs --url URL --username U --password P
//          [--tool NAME] [--arguments JSON] [--redirect URL] [--consent allow|deny]
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
const output = { requests };
try {
  await connect(provider);
  throw new Error('the broker accepted a client without a token');
} catch (error) {
  if (!(error instanceof UnauthorizedError) || !provider.authorizationUrl) throw error;
}
const back = await signIn(provider.authorizationUrl, options);
output.redirect = {
  error: back.searchParams.get('error'),
  state: back.searchParams.get('state') === provider.sentState,
  iss: back.searchParams.get('iss'),
};
if (output.redirect.error) {
  console.log(JSON.stringify(output));
  process.exit(0);
}
const transport = new StreamableHTTPClientTransport(new URL(options.url), { authProvider: provider, fetch: recordingFetch });
await transport.finishAuth(back.searchParams.get('code'));
const { client } = await connect(provider);
output.registered = provider.information;
const tokens = provider.tokens();
output.tokens = {
  token_type: tokens.token_type,
  scope: tokens.scope,
  expires_in: tokens.expires_in,
  has_refresh_token: Boolean(tokens.refresh_token),
};
output.tools = (await client.listTools()).tools.map((tool) => tool.name);
if (options.tool) {
  output.result = await client.callTool({ name: options.tool, arguments: JSON.parse(options.arguments) });
}
await client.close();
console.log(JSON.stringify(output));
