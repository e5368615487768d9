package broker_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// pagingUpstream lists tools and resources page after page, without end:
// each page holds perPage items whose names (URIs) are nameBytes long, and
// a cursor to the next.
func pagingUpstream(t *testing.T, perPage, nameBytes int) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Cursor string `json:"cursor"`
			} `json:"params"`
		}
		if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&m) != nil {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		if m.ID == nil {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		result := `{}`
		page := len(m.Params.Cursor)
		items := make([]string, perPage)
		switch m.Method {
		case "initialize":
			w.Header().Set("Mcp-Session-Id", "paging-1")
			result = `{"protocolVersion":"2025-11-25","capabilities":{"tools":{},"resources":{}},"serverInfo":{"name":"paging","version":"1"}}`
		case "tools/list":
			for i := range items {
				name := fmt.Sprintf("p%d-%d-%s", page, i, strings.Repeat("n", nameBytes))
				items[i] = fmt.Sprintf(`{"name":%q,"inputSchema":{"type":"object"}}`, name)
			}
			result = `{"tools":[` + strings.Join(items, ",") + `],"nextCursor":"` + m.Params.Cursor + `x"}`
		case "resources/list":
			for i := range items {
				uri := fmt.Sprintf("paging://p%d-%d/%s", page, i, strings.Repeat("n", nameBytes))
				items[i] = fmt.Sprintf(`{"uri":%q,"name":"r"}`, uri)
			}
			result = `{"resources":[` + strings.Join(items, ",") + `],"nextCursor":"` + m.Params.Cursor + `x"}`
		case "resources/templates/list":
			result = `{"resourceTemplates":[]}`
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":%s}`, m.ID, result)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/mcp"
}

// What a session remembers of an app's tool names, and of the resource
// URIs it routes by lists, is bounded in bytes, not only in count: an
// upstream that lists huge names page after page, to a client that
// follows every cursor, cannot make one session hold them. Such items are
// left out of lists; ordinary ones are still shown.
func TestHugeListedNamesNotHeld(t *testing.T) {
	const pages, perPage, nameBytes = 30, 10, 100 << 10
	cases := []struct {
		name, namespace, method, field, key, ledgerItem string
	}{
		{"tools, namespaced", "{name: paging_}", "tools/list", "tools", "name", "ledger_get_balance"},
		{"tools, not namespaced", "{disabled: true}", "tools/list", "tools", "name", "ledger_get_balance"},
		// Two apps without declared URI spaces: URIs are routed by lists.
		{"resources", "{name: paging_}", "resources/list", "resources", "uri", "ledger://accounts"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			brokerURL := startBroker(t, scenario(t, "huge-listed-names-not-held"), tc.namespace, pagingUpstream(t, perPage, nameBytes), sampleUpstream(t))
			c := newWireClient(t, brokerURL+"/mcp")
			c.initialize(`{}`)
			base := liveHeap()
			cursor := ""
			shown := map[string]bool{}
			for range pages {
				params := `{}`
				if cursor != "" {
					params = `{"cursor":"` + cursor + `"}`
				}
				msgs := readMessages(t, c.post(`{"jsonrpc":"2.0","id":2,"method":"`+tc.method+`","params":`+params+`}`))
				if len(msgs) != 1 || msgs[0]["result"] == nil {
					t.Fatalf("%s: %.300v", tc.method, msgs)
				}
				result := msgs[0]["result"].(map[string]any)
				for _, item := range result[tc.field].([]any) {
					shown[item.(map[string]any)[tc.key].(string)] = true
				}
				cursor, _ = result["nextCursor"].(string)
				if cursor == "" {
					t.Fatal("the upstream's next page was not offered")
				}
			}
			if held := liveHeap() - base; held > 8<<20 {
				t.Errorf("after %d pages of %d KiB items the session holds %d MiB", pages, nameBytes>>10, held>>20)
			}
			if !shown[tc.ledgerItem] {
				t.Errorf("the ledger's %s is missing: %d shown", tc.ledgerItem, len(shown))
			}
		})
	}
}

// sampleUpstream serves the sample ledger in-process.
func sampleUpstream(t *testing.T) string {
	t.Helper()
	url, _ := countingUpstream(t)
	return url
}
