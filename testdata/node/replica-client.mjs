// A client of the TypeScript SDK that makes every kind of call through a
// balancer in front of broker replicas: tools, a prompt, a resource, a
// transfer the user confirms (the broker relays the upstream's
// elicitation; the client's answer is a POST of its own, which may reach
// another replica than the call), a summary (sampling, likewise), a slow
// count with progress, and a call cancelled while it runs (the
// cancellation, too, may reach another replica).
//
// It prints one JSON object with what it saw, for the test to check, and
// exits non-zero when any step fails.
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

const text = (content) => (content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
const outcome = (result) => ({ isError: !!result.isError, text: text(result.content) });

try {
  const transport = new StreamableHTTPClientTransport(new URL(options.url));
  await client.connect(transport);

  const tools = (await client.listTools()).tools.map((t) => t.name);
  const balance = text((await client.callTool({ name: 'ledger_get_balance', arguments: { account: 'alice' } })).content);
  const prompts = (await client.listPrompts()).prompts.map((p) => p.name);
  const prompt = await client.getPrompt({ name: 'ledger_audit_account', arguments: { account: 'alice' } });
  const resources = (await client.listResources()).resources.map((r) => r.uri);
  const resource = await client.readResource({ uri: resources[0] });

  const transfer = await client.callTool({ name: 'ledger_transfer', arguments: { from: 'bob', to: 'carol', amount: 1100 } });
  const summary = await client.callTool({ name: 'ledger_summarize', arguments: { account: 'alice' } });
  const progressValues = [];
  const count = await client.callTool({ name: 'ledger_slow_count', arguments: { n: 3, delay_ms: 20 } }, undefined, {
    onprogress: (p) => { seen.progress++; progressValues.push(p.progress); },
  });

  // Cancelled at its first progress: the SDK sends notifications/cancelled
  // in a POST of its own. Uncancelled, the count would take 30 s.
  const controller = new AbortController();
  const cancelOutcome = await client.callTool({ name: 'ledger_slow_count', arguments: { n: 300, delay_ms: 100 } }, undefined, {
    signal: controller.signal,
    onprogress: () => controller.abort('enough'),
  }).then(() => 'completed', (e) => 'aborted: ' + e);
  const after = text((await client.callTool({ name: 'ledger_get_balance', arguments: { account: 'carol' } })).content);

  console.log(JSON.stringify({
    sessionId: transport.sessionId,
    tools, balance, prompts,
    promptMessages: prompt.messages.length,
    promptText: prompt.messages.map((m) => m.content?.text ?? '').join('\n'),
    resources,
    resourceContents: resource.contents.length,
    transfer: outcome(transfer),
    summary: outcome(summary),
    count: outcome(count),
    progressValues,
    cancelOutcome, after, seen,
  }));
  await client.close();
  process.exit(0);
} catch (e) {
  console.error('replica-client:', e);
  process.exit(1);
}
