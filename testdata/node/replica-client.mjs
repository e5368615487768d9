// An MCP client (the TypeScript SDK) that makes every kind of call through
// a load balancer in front of several broker replicas: tools, prompts,
// resources, a confirmed transfer (the broker relays the upstream's
// elicitation; the client's answer may reach another replica), a summary
// (sampling, likewise), a slow count with progress, and a cancelled call.
// It prints one JSON object on stdout with what it saw, and exits non-zero
// on any failure.
//
// Usage: node replica-client.mjs --url URL
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { parseArgs } from 'node:util';

const { values: options } = parseArgs({ options: { url: { type: 'string' } } });
if (!options.url) {
  console.error('usage: replica-client.mjs --url URL');
  process.exit(2);
}

const seen = { elicitations: 0, samplings: 0, progress: 0 };
const client = new Client({ name: 'replica-client', version: '1.0.0' }, {
  capabilities: { elicitation: { form: {} }, sampling: {} },
});
client.setRequestHandler(ElicitRequestSchema, async () => {
  seen.elicitations++;
  return { action: 'accept', content: { confirm: true } };
});
client.setRequestHandler(CreateMessageRequestSchema, async () => {
  seen.samplings++;
  return { model: 'test-model', role: 'assistant', content: { type: 'text', text: 'a tidy account' } };
});

const text = (result) => (result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');

try {
  await client.connect(new StreamableHTTPClientTransport(new URL(options.url)));
  const tools = (await client.listTools()).tools.map((t) => t.name);
  const balance = text(await client.callTool({ name: 'ledger_get_balance', arguments: { account: 'alice' } }));
  const prompts = (await client.listPrompts()).prompts.map((p) => p.name);
  const prompt = await client.getPrompt({ name: prompts[0], arguments: { account: 'alice' } });
  const resources = (await client.listResources()).resources.map((r) => r.uri);
  const resource = await client.readResource({ uri: resources[0] });
  const transfer = await client.callTool({ name: 'ledger_transfer', arguments: { from: 'bob', to: 'carol', amount: 1100 } });
  const summary = await client.callTool({ name: 'ledger_summarize', arguments: { account: 'alice' } });
  const count = await client.callTool({ name: 'ledger_slow_count', arguments: { n: 3, delay_ms: 20 } }, undefined, {
    onprogress: () => { seen.progress++; },
  });

  // A call cancelled while it runs: the SDK sends notifications/cancelled.
  const controller = new AbortController();
  const cancelled = client.callTool({ name: 'ledger_slow_count', arguments: { n: 100, delay_ms: 100 } }, undefined, {
    signal: controller.signal,
    onprogress: () => controller.abort('enough'),
  }).then(() => 'completed', (e) => 'aborted: ' + e);
  const cancelOutcome = await cancelled;
  const after = text(await client.callTool({ name: 'ledger_get_balance', arguments: { account: 'carol' } }));

  console.log(JSON.stringify({
    tools, balance, prompts, promptMessages: prompt.messages.length, resources,
    resourceContents: resource.contents.length,
    transfer: { isError: !!transfer.isError, text: text(transfer) },
    summary: { isError: !!summary.isError, text: text(summary) },
    count: { isError: !!count.isError, text: text(count) },
    cancelOutcome, after, seen,
  }));
  await client.close();
  process.exit(0);
} catch (e) {
  console.error('replica-client:', e);
  process.exit(1);
}
