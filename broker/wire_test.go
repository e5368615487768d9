package broker_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// wireClient speaks Streamable HTTP by hand, to see exactly what the
// broker puts on the wire.
type wireClient struct {
	t        testing.TB
	url      string
	session  string
	version  string
	header   http.Header
	response *http.Response
}

func newWireClient(t testing.TB, url string) *wireClient {
	return &wireClient{t: t, url: url, header: http.Header{}}
}

// request is a POST of body in c's session, with c's headers.
func (c *wireClient) request(body string) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, c.url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if c.session != "" {
		req.Header.Set("Mcp-Session-Id", c.session)
	}
	if c.version != "" {
		req.Header.Set("MCP-Protocol-Version", c.version)
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	return req, nil
}

// post sends a body and returns the raw HTTP response.
func (c *wireClient) post(body string) *http.Response {
	c.t.Helper()
	req, err := c.request(body)
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp
}

// initialize opens a session.
func (c *wireClient) initialize(capabilities string) {
	c.t.Helper()
	resp := c.post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":` + capabilities + `,"clientInfo":{"name":"wire","version":"1"}}}`)
	msgs := readMessages(c.t, resp)
	if resp.StatusCode != http.StatusOK || len(msgs) != 1 || msgs[0]["error"] != nil {
		c.t.Fatalf("initialize: %d %v", resp.StatusCode, msgs)
	}
	c.session = resp.Header.Get("Mcp-Session-Id")
	c.version = "2025-11-25"
	if r := c.post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`); r.StatusCode != http.StatusAccepted {
		c.t.Fatalf("initialized: %d", r.StatusCode)
	}
}

// readMessages reads every JSON-RPC message of a JSON or SSE response, in
// order.
func readMessages(t testing.TB, resp *http.Response) []map[string]any {
	t.Helper()
	defer resp.Body.Close()
	var out []map[string]any
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		raw, _ := io.ReadAll(resp.Body)
		if len(strings.TrimSpace(string(raw))) == 0 {
			return nil
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("response body %q: %v", raw, err)
		}
		return append(out, m)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || strings.TrimSpace(data) == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(data), &m); err != nil {
			t.Fatalf("event data %q: %v", data, err)
		}
		out = append(out, m)
	}
	return out
}

// processOutput is what a process started by startProcess has printed.
func processOutput(cmd *exec.Cmd) string { return cmd.Stdout.(*lockedWriter).String() }

// sampleBroker starts a sample upstream and a broker in front of it with
// the given extra stream-session settings.
func sampleBroker(t *testing.T, sessionExtra string) (brokerURL string, upstream *exec.Cmd, upstreamAddr string) {
	t.Helper()
	bin := buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	upstreamAddr = freeAddress(t)
	upstream = startProcess(t, upstreamAddr, bin, "upstream", "sample", "--listen", upstreamAddr)
	brokerURL = startBroker(t, scenario(t, "ledger"), sessionExtra, upstreamAddr)
	return brokerURL, upstream, upstreamAddr
}

// A client's cancellation reaches the upstream under the upstream's id, and
// the client's stream ends without a result.
func TestCancellationIsRemapped(t *testing.T) {
	brokerURL, upstream, _ := sampleBroker(t, "")
	c := newWireClient(t, brokerURL+"/mcp")
	c.initialize(`{}`)
	resp := c.post(`{"jsonrpc":"2.0","id":"long","method":"tools/call","params":{"name":"ledger_slow_count","arguments":{"n":200,"delay_ms":50},"_meta":{"progressToken":1}}}`)
	defer resp.Body.Close()
	events := bufio.NewScanner(resp.Body)
	waitFor := func(pred func(map[string]any) bool) (map[string]any, bool) {
		for events.Scan() {
			data, ok := strings.CutPrefix(events.Text(), "data: ")
			if !ok || data == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(data), &m); err != nil {
				t.Fatalf("event %q: %v", data, err)
			}
			if pred(m) {
				return m, true
			}
		}
		return nil, false
	}
	if _, ok := waitFor(func(m map[string]any) bool { return m["method"] == "notifications/progress" }); !ok {
		t.Fatal("no progress before the cancellation")
	}
	cancel := c.post(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"long","reason":"changed my mind"}}`)
	if cancel.StatusCode != http.StatusAccepted {
		t.Fatalf("cancellation: %d", cancel.StatusCode)
	}
	if m, ok := waitFor(func(m map[string]any) bool { return m["id"] != nil }); ok {
		t.Errorf("a cancelled request got a response: %v", m)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(processOutput(upstream), "slow_count stopped") {
		if time.Now().After(deadline) {
			t.Fatal("the upstream never saw the cancellation")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Two brokers holding the same session key serve the same session: the
// second restores the upstream session from the sealed id, without a new
// initialize upstream. A broker with another key does not know the id.
func TestSessionServedByAnotherReplica(t *testing.T) {
	const key = `, key: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="`
	brokerA, upstream, upstreamAddr := sampleBroker(t, key)
	brokerB := startBroker(t, scenario(t, "ledger"), key, upstreamAddr)
	brokerC := startBroker(t, scenario(t, "ledger"), "", upstreamAddr)

	a := newWireClient(t, brokerA+"/mcp")
	a.initialize(`{}`)
	// The upstream's log arrives through a pipe: wait for it to settle.
	var initializations int
	eventually(t, "the upstream to log its session", func() bool {
		initializations = strings.Count(processOutput(upstream), "session initialized")
		return initializations >= 1
	})

	b := newWireClient(t, brokerB+"/mcp")
	b.session, b.version = a.session, a.version
	msgs := readMessages(t, b.post(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"ledger_get_balance","arguments":{"account":"alice"}}}`))
	if len(msgs) != 1 || msgs[0]["result"] == nil {
		t.Fatalf("call through the second replica: %v", msgs)
	}
	time.Sleep(200 * time.Millisecond) // let a stray log line arrive before counting
	if got := strings.Count(processOutput(upstream), "session initialized"); got != initializations {
		t.Errorf("the second replica initialized a new upstream session (%d -> %d)", initializations, got)
	}

	other := newWireClient(t, brokerC+"/mcp")
	other.session, other.version = a.session, a.version
	if r := other.post(`{"jsonrpc":"2.0","id":6,"method":"tools/list"}`); r.StatusCode != http.StatusNotFound {
		t.Errorf("a broker with another key: %d, want 404", r.StatusCode)
	}
}
