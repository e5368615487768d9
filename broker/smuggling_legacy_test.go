package broker_test

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Concurrent initialize requests in one legacy HTTP+SSE session write
// Session.Upstreams without a lock.
// Concurrent initialize requests on one legacy session: one wins, the
// others are refused, nothing races (run with -race to see it).
func TestLegacyConcurrentInitialize(t *testing.T) {
	var apps strings.Builder
	for i := 0; i < 8; i++ {
		srv := httptest.NewServer(&goStdUpstream{})
		defer srv.Close()
		fmt.Fprintf(&apps, "  - name: a%d\n    type: mcpProxy\n    upstream: {transport: stream, stream: {url: %q}}\n", i, srv.URL)
	}
	base := startBroker(t, scenario(t, "legacy-concurrent-initialize"), apps.String())
	for round := 0; round < 20; round++ {
		resp, err := http.Get(base + "/mcp/sse")
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		var endpoint string
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				endpoint = d
				break
			}
		}
		var batch []string
		for i := 0; i < 64; i++ {
			batch = append(batch, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`, i))
			batch = append(batch, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"a%d_x"}}`, 1000+i, i%8))
		}
		r, err := http.Post(base+endpoint, "application/json", strings.NewReader("["+strings.Join(batch, ",")+"]"))
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		time.Sleep(20 * time.Millisecond)
		resp.Body.Close()
	}

}
