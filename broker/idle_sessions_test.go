package broker_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
)

const idleSessionsBroker = `
version: 1
mcpProvider:
  enabled: true
  authorization: {unauthenticated: {enabled: true}}
  transports:
    stream: {enabled: true, path: /mcp, session: {enabled: true, maxSessions: 20000, maxPerAddress: 20000}}
apps:
  - {name: alpha, type: mcpProxy, upstream: {transport: stream, stream: {url: %q}}}
  - {name: beta, type: mcpProxy, upstream: {transport: stream, stream: {url: %q}}}
`

// Ten thousand sessions that initialize and then wait cost the broker a
// few KiB each and the upstreams nothing: no upstream session is opened
// for a session that never needs an app, no goroutine waits for one.
func TestIdleSessionsCostLittle(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 10,000 sessions")
	}
	const sessions = 10000
	alpha := newSDKUpstream(t, "alpha", "one")
	beta := newSDKUpstream(t, "beta", "two")
	url := startBroker(t, idleSessionsBroker, alpha.url, beta.url) + "/mcp"
	// The first session meets the apps; from then on the broker knows
	// what they offer.
	newWireClient(t, url).initialize(`{}`)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer client.CloseIdleConnections()
	post := func(session, body string) (string, int) {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
			req.Header.Set("MCP-Protocol-Version", "2025-11-25")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Header.Get("Mcp-Session-Id"), resp.StatusCode
	}
	upstreamBefore := alpha.total() + beta.total()
	goroutinesBefore := runtime.NumGoroutine()
	heapBefore, rssBefore := liveHeap(), residentBytes()
	for i := range sessions {
		id, status := post("", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"idle","version":"1"}}}`)
		if status != http.StatusOK || id == "" {
			t.Fatalf("session %d: initialize answered %d", i, status)
		}
		if _, status := post(id, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); status != http.StatusAccepted {
			t.Fatalf("session %d: initialized answered %d", i, status)
		}
	}
	client.CloseIdleConnections()
	held := liveHeap() - heapBefore
	goroutines := runtime.NumGoroutine() - goroutinesBefore
	rss := residentBytes()
	t.Logf("%d idle sessions: live heap +%.1f MiB (%d bytes a session); resident %.1f → %.1f MiB (test process: broker, upstreams and client); goroutines %+d; upstream requests %d",
		sessions, float64(held)/(1<<20), held/sessions, float64(rssBefore)/(1<<20), float64(rss)/(1<<20), goroutines, alpha.total()+beta.total()-upstreamBefore)
	if held > 30<<20 {
		t.Errorf("%d idle sessions hold %d MiB of live heap, want at most 30", sessions, held>>20)
	}
	if n := alpha.total() + beta.total() - upstreamBefore; n != 0 {
		t.Errorf("idle sessions made %d upstream requests (alpha %v, beta %v), want none", n, alpha.counts(), beta.counts())
	}
	if goroutines > 100 {
		t.Errorf("%d idle sessions left %d goroutines running, want none of their own", sessions, goroutines)
	}
	// They are live sessions still: one of them lists and calls.
	id, _ := post("", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"idle","version":"1"}}}`)
	post(id, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	if _, status := post(id, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"beta_two","arguments":{}}}`); status != http.StatusOK {
		t.Errorf("a call after %s sessions: %d", fmt.Sprint(sessions), status)
	}
}

// residentBytes is the process's resident set (VmRSS), 0 where
// /proc/self/status cannot be read.
func residentBytes() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kib int64
			_, _ = fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), &kib)
			return kib << 10
		}
	}
	return 0
}
