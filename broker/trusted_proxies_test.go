package broker_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpbroker/mcpbroker/broker/audit"
)

// X-Forwarded-For from a trusted proxy reaches the policy's source address
// and the audit record; from anyone else it is ignored, and a client
// cannot claim to be on the partner network.
func TestForwardedForReachesPolicyAndAuditOnlyFromTrustedProxies(t *testing.T) {
	upstream, _ := countingUpstream(t)
	for _, test := range []struct {
		name, trusted, wantSource string
		wantCode                  int64
	}{
		{name: "trusted", trusted: "[127.0.0.1/32]", wantSource: "203.0.113.7:0", wantCode: 0},
		{name: "untrusted", trusted: "[]", wantSource: "127.0.0.1:", wantCode: -32010},
	} {
		t.Run(test.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "audit")
			brokerURL := startBroker(t, scenario(t, "behind-proxy"), test.trusted, dir, upstream)
			c := newWireClient(t, brokerURL+"/mcp")
			c.header.Set("Accept", "application/json")
			c.header.Set("X-Forwarded-For", "203.0.113.7")
			c.initialize(`{}`)
			a := c.send("call", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ledger_get_balance","arguments":{"account":"alice"}}}`)
			if a.rpcCode() != test.wantCode {
				t.Fatalf("answer %s, want code %d", a.body, test.wantCode)
			}
			var sources []string
			if err := audit.Query(dir, audit.Filter{}, func(r *audit.Record) bool {
				if r.Event == "tools/call" {
					sources = append(sources, r.Source)
				}
				return true
			}); err != nil {
				t.Fatal(err)
			}
			if len(sources) != 1 || !strings.HasPrefix(sources[0], test.wantSource) {
				t.Errorf("the record's source is %q, want %s…", sources, test.wantSource)
			}
		})
	}
}
