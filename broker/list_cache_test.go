package broker_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpbroker/mcpbroker/broker/limit/redistest"
)

// sdkUpstream is an upstream made with the official Go SDK whose tools the
// test may change while it runs; it counts what reaches it.
type sdkUpstream struct {
	url    string
	server *mcp.Server

	mu       sync.Mutex
	requests map[string]int // by JSON-RPC method; GET streams as "GET"
}

type noInput struct{}

// newSDKUpstream serves an SDK server with the given tools on a loopback
// port until the test ends.
func newSDKUpstream(t *testing.T, name string, tools ...string) *sdkUpstream {
	t.Helper()
	u := &sdkUpstream{server: mcp.NewServer(&mcp.Implementation{Name: name, Version: "1.0.0"}, nil), requests: map[string]int{}}
	for _, tool := range tools {
		u.addTool(tool)
	}
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return u.server }, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method := r.Method
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var m struct {
				Method string `json:"method"`
			}
			_ = json.Unmarshal(body, &m)
			method = m.Method
		}
		u.mu.Lock()
		u.requests[method]++
		u.mu.Unlock()
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	u.url = srv.URL + "/mcp"
	return u
}

func (u *sdkUpstream) addTool(name string) {
	mcp.AddTool(u.server, &mcp.Tool{Name: name, Description: "tool " + name},
		func(context.Context, *mcp.CallToolRequest, noInput) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name}}}, nil, nil
		})
}

// counts returns how many requests of each method reached the upstream.
func (u *sdkUpstream) counts() map[string]int {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make(map[string]int, len(u.requests))
	for k, v := range u.requests {
		out[k] = v
	}
	return out
}

// total is the number of requests of any kind.
func (u *sdkUpstream) total() int {
	n := 0
	for _, v := range u.counts() {
		n += v
	}
	return n
}

const listCacheBroker = `
version: 1
mcpProvider:
  enabled: true
  authorization: {unauthenticated: {enabled: true}}
  transports:
    stream: {enabled: true, path: /mcp, session: {enabled: true, allowClientTermination: true}}
apps:
  - {name: alpha, type: mcpProxy, upstream: {transport: stream, stream: {url: %q}}}
  - {name: beta, type: mcpProxy, upstream: {transport: stream, stream: {url: %q}}}
`

// listedTools lists the session's tools and returns their names, sorted.
func listedTools(t *testing.T, c *wireClient) []string {
	t.Helper()
	msgs := readMessages(t, c.post(`{"jsonrpc":"2.0","id":7,"method":"tools/list"}`))
	if len(msgs) != 1 || msgs[0]["result"] == nil {
		t.Fatalf("tools/list: %v", msgs)
	}
	var names []string
	for _, tool := range msgs[0]["result"].(map[string]any)["tools"].([]any) {
		names = append(names, tool.(map[string]any)["name"].(string))
	}
	sort.Strings(names)
	return names
}

// Lists come from the apps' caches: a second session's listing asks no
// upstream anything, and a session that never needed an app opens no
// upstream session with it. A list_changed from one upstream drops that
// app's pages only: the next listing asks that upstream again, not the
// other, and shows the change; clients listening hear of it.
func TestListsCachedAndSessionsLazy(t *testing.T) {
	alpha := newSDKUpstream(t, "alpha", "one", "two")
	beta := newSDKUpstream(t, "beta", "three")
	url := startBroker(t, listCacheBroker, alpha.url, beta.url) + "/mcp"

	// The first session after start meets each app once, to learn what it
	// offers, and lists each once.
	first := newWireClient(t, url)
	first.initialize(`{}`)
	want := []string{"alpha_one", "alpha_two", "beta_three"}
	if got := listedTools(t, first); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("tools: %v, want %v", got, want)
	}
	for _, u := range []*sdkUpstream{alpha, beta} {
		if c := u.counts(); c["initialize"] != 1 || c["tools/list"] != 1 {
			t.Fatalf("after the first session: %v, want one initialize and one tools/list", c)
		}
	}

	// Later sessions cost the upstreams nothing until they need them.
	alphaBefore, betaBefore := alpha.total(), beta.total()
	second := newWireClient(t, url)
	second.initialize(`{}`)
	for range 3 {
		if got := listedTools(t, second); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("tools in the second session: %v, want %v", got, want)
		}
	}
	if alpha.total() != alphaBefore || beta.total() != betaBefore {
		t.Fatalf("a second session's initialize and listings reached the upstreams: alpha %v, beta %v", alpha.counts(), beta.counts())
	}
	// Its first call to alpha opens its upstream session there, and only
	// there.
	msgs := readMessages(t, second.post(`{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"alpha_one","arguments":{}}}`))
	if len(msgs) != 1 || msgs[0]["result"] == nil {
		t.Fatalf("tools/call: %v", msgs)
	}
	if c := alpha.counts(); c["initialize"] != 2 || c["tools/call"] != 1 {
		t.Errorf("alpha after the second session's call: %v, want its second initialize and the call", c)
	}
	if beta.total() != betaBefore {
		t.Errorf("the second session's call to alpha reached beta: %v", beta.counts())
	}

	// The first session listens on its GET stream; the broker relays the
	// upstream sessions it has.
	getsBefore := alpha.counts()["GET"]
	notices := openGETStream(t, first)
	eventually(t, "the broker listens to alpha's stream for the first session", func() bool {
		return alpha.counts()["GET"] > getsBefore
	})

	betaLists := beta.counts()["tools/list"]
	alpha.addTool("four") // the SDK server sends notifications/tools/list_changed
	awaitListChanged(t, notices, "after alpha added a tool")
	want = []string{"alpha_four", "alpha_one", "alpha_two", "beta_three"}
	if got := listedTools(t, second); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("tools after alpha's list changed: %v, want %v", got, want)
	}
	if c := alpha.counts(); c["tools/list"] != 2 {
		t.Errorf("alpha was asked for its tools %d times, want 2 (once more after its list changed)", c["tools/list"])
	}
	if c := beta.counts(); c["tools/list"] != betaLists {
		t.Errorf("beta was asked for its tools again after alpha's list changed: %d, want %d", c["tools/list"], betaLists)
	}
}

// awaitListChanged waits for a notifications/tools/list_changed on a
// channel of openGETStream.
func awaitListChanged(t *testing.T, notices <-chan struct{}, when string) {
	t.Helper()
	select {
	case _, open := <-notices:
		if !open {
			t.Fatalf("the GET stream ended before a notifications/tools/list_changed %s", when)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no notifications/tools/list_changed on the GET stream %s", when)
	}
}

// openGETStream opens the session's GET stream until the test ends; the
// channel receives each notifications/tools/list_changed on it, and is
// closed when the stream ends.
func openGETStream(t *testing.T, c *wireClient) <-chan struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	get, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	get.Header.Set("Accept", "text/event-stream")
	get.Header.Set("Mcp-Session-Id", c.session)
	get.Header.Set("MCP-Protocol-Version", c.version)
	stream, err := http.DefaultClient.Do(get)
	if err != nil || stream.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("GET stream: %v %v", err, stream)
	}
	t.Cleanup(func() {
		cancel()
		stream.Body.Close()
	})
	notices := make(chan struct{}, 1024)
	go func() {
		defer close(notices)
		lines := bufio.NewScanner(stream.Body)
		for lines.Scan() {
			if strings.HasPrefix(lines.Text(), "data:") && strings.Contains(lines.Text(), `"notifications/tools/list_changed"`) {
				select {
				case notices <- struct{}{}:
				default:
				}
			}
		}
	}()
	return notices
}

// floodingUpstream is an SDK server whose standalone stream, once the
// broker opens it, carries n notifications/tools/list_changed at once.
func floodingUpstream(t *testing.T, n int) (url string, gets *atomic.Int32) {
	t.Helper()
	server := mcp.NewServer(&mcp.Implementation{Name: "flood", Version: "1.0.0"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "one"}, func(context.Context, *mcp.CallToolRequest, noInput) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{}, nil, nil
	})
	sdk := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	gets = &atomic.Int32{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			sdk.ServeHTTP(w, r)
			return
		}
		gets.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for range n {
			fmt.Fprint(w, "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n")
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/mcp", gets
}

// An upstream that floods its stream with list_changed reaches the
// clients as a trickle: every notice drops its kept lists, but the
// listening sessions hear of it at most about once a second.
func TestListChangedFloodIsThrottled(t *testing.T) {
	const flood = 500
	upstream, gets := floodingUpstream(t, flood)
	admin := freeAddress(t)
	url := startBroker(t, "%s", fmt.Sprintf(`
admin: {address: %q}
mcpProvider:
  enabled: true
  authorization: {unauthenticated: {enabled: true}}
  transports:
    stream: {enabled: true, path: /mcp, session: {enabled: true}}
apps:
  - {name: flood, type: mcpProxy, upstream: {transport: stream, stream: {url: %q}}}
`, admin, upstream)) + "/mcp"
	listener := newWireClient(t, url)
	listener.initialize(`{}`)
	other := newWireClient(t, url)
	other.initialize(`{}`)
	// The other session listens too, though it never opened the app.
	otherNotices := countListChanged(t, other)
	notices := countListChanged(t, listener)
	eventually(t, "the broker opens the upstream's stream", func() bool { return gets.Load() > 0 })
	eventually(t, "every notice is counted", func() bool {
		return metricSum(t, "http://"+admin, "mcpbroker_list_changes_total", map[string]string{"app": "flood", "list": "tools"}) == flood
	})
	time.Sleep(1500 * time.Millisecond) // a trailing notice, if any, is sent by then
	for name, n := range map[string]*atomic.Int32{"the session whose upstream sent them": notices, "another session": otherNotices} {
		if got := n.Load(); got < 1 || got > 3 {
			t.Errorf("%s heard %d list_changed of %d sent, want 1 to 3", name, got, flood)
		}
	}
}

// countListChanged opens the session's GET stream and counts the
// notifications/tools/list_changed it carries.
func countListChanged(t *testing.T, c *wireClient) *atomic.Int32 {
	t.Helper()
	ch := openGETStream(t, c)
	var n atomic.Int32
	go func() {
		for range ch {
			n.Add(1)
		}
	}()
	return &n
}

const listReplicaBroker = `
version: 1
storage:
  redis: {addresses: ["%s"], keyPrefix: "lists:"}
mcpProvider:
  enabled: true
  authorization: {unauthenticated: {enabled: true}}
  transports:
    stream: {enabled: true, path: /mcp, session: {enabled: true, key: "%s"}}
apps:
  - {name: alpha, type: mcpProxy, upstream: {transport: stream, stream: {url: %q}}}
`

// Replicas sharing Redis: an upstream's list_changed that reaches one
// drops the other's kept lists too; an upstream session one replica
// opened after initialize is the one the other goes on with.
func TestListsAndUpstreamSessionsAcrossReplicas(t *testing.T) {
	server := redistest.Start(t)
	alpha := newSDKUpstream(t, "alpha", "one")
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	sessionKey := base64.StdEncoding.EncodeToString(key)
	first := startBroker(t, listReplicaBroker, server.Addr(), sessionKey, alpha.url) + "/mcp"
	second := startBroker(t, listReplicaBroker, server.Addr(), sessionKey, alpha.url) + "/mcp"

	// A session on the first replica meets alpha at initialize (sealed into
	// its id) and listens there.
	listener := newWireClient(t, first)
	listener.initialize(`{}`)
	gets := alpha.counts()["GET"]
	notices := openGETStream(t, listener)
	eventually(t, "the first replica listens to alpha", func() bool { return alpha.counts()["GET"] > gets })

	// The second replica meets alpha; a session that starts there later
	// opens no upstream session at initialize. It lists and calls there,
	// then calls through the first.
	newWireClient(t, second).initialize(`{}`)
	s := newWireClient(t, second)
	s.initialize(`{}`)
	if got := listedTools(t, s); fmt.Sprint(got) != "[alpha_one]" {
		t.Fatalf("tools on the second replica: %v", got)
	}
	inits := alpha.counts()["initialize"] // the listing opened its upstream session
	call := func(c *wireClient) {
		t.Helper()
		msgs := readMessages(t, c.post(`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"alpha_one","arguments":{}}}`))
		if len(msgs) != 1 || msgs[0]["result"] == nil {
			t.Fatalf("tools/call: %v", msgs)
		}
	}
	call(s)
	elsewhere := *s
	elsewhere.url = first
	call(&elsewhere) // the first replica goes on with it
	if n := alpha.counts()["initialize"] - inits; n != 0 {
		t.Errorf("the session's call through the other replica opened %d more upstream sessions with alpha, want none", n)
	}

	// alpha's list changes; only the first replica hears it from alpha.
	alpha.addTool("two")
	awaitListChanged(t, notices, "after alpha added a tool, through the replica that listens to it")
	eventually(t, "the second replica's kept list is dropped", func() bool {
		return fmt.Sprint(listedTools(t, s)) == "[alpha_one alpha_two]"
	})
}
