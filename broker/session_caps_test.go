package broker_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// One client address may open so many sessions; the next is refused with
// 429, said and counted, and never reaches the upstream.
func TestSessionCapPerAddress(t *testing.T) {
	upstream, hits := countingUpstream(t)
	admin := freeAddress(t)
	broker := startBroker(t, "%s", fmt.Sprintf(`
admin: {address: %q}
mcpProvider:
  enabled: true
  authorization: {unauthenticated: {enabled: true}}
  transports:
    stream: {enabled: true, path: /mcp, session: {enabled: true, maxPerAddress: 2}}
apps:
  - name: ledger
    type: mcpProxy
    upstream: {transport: stream, stream: {url: %q}}
`, admin, upstream))
	for range 2 {
		newWireClient(t, broker+"/mcp").initialize(`{}`)
	}
	before := hits.Load()
	refused := newWireClient(t, broker+"/mcp")
	resp := refused.post(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	var body strings.Builder
	_, _ = fmt.Fprint(&body, resp.Header.Get("Mcp-Session-Id"))
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || body.Len() != 0 {
		t.Errorf("a third session from one address: %d, session %q; want 429 and none", resp.StatusCode, body.String())
	}
	if hits.Load() != before {
		t.Error("a refused session reached the upstream")
	}
	if n := metricSum(t, "http://"+admin, "mcpbroker_sessions_refused_total", map[string]string{"cap": "address"}); n != 1 {
		t.Errorf("mcpbroker_sessions_refused_total{cap=address} = %v, want 1", n)
	}
}
