package broker_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A client cannot declare itself into a multi-megabyte session id.
func TestOversizedClientFactsRefused(t *testing.T) {
	srv := httptest.NewServer(&goStdUpstream{})
	defer srv.Close()
	base := startBroker(t, scenario(t, "oversized-client-facts-refused"), srv.URL)
	big := strings.Repeat("x", 3<<20)
	body := `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"pad":"` + big + `"},"clientInfo":{"name":"w","version":"1"}}}`
	req, _ := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	msgs := readMessages(t, resp)
	if sid := resp.Header.Get("Mcp-Session-Id"); sid != "" {
		t.Errorf("a session was opened, id of %d bytes", len(sid))
	}
	if len(msgs) != 1 || msgs[0]["error"] == nil || msgs[0]["error"].(map[string]any)["code"] != float64(-32602) {
		t.Errorf("oversized capabilities: want -32602, got %v", msgs)
	}
}
