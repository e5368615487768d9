package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// The tests in this file talk to the official Go SDK's HTTP+SSE server
// (protocol 2024-11-05) for interoperability, and to small scripted
// servers for what the SDK server never does: streams that end, hostile
// endpoints, oversized events.

const legacyProtocolVersion = "2024-11-05"

// legacyTools is what the SDK server's tools tell their test.
type legacyTools struct {
	// blockStarted receives a value when the block tool starts, and
	// blockEnded the error of its context once it was cancelled.
	blockStarted chan struct{}
	blockEnded   chan error
	// released is closed by release, which ends every block tool: the
	// SDK server does not cancel a tool when its client goes away, and
	// waits for its tools when it shuts down.
	released chan struct{}
	once     sync.Once
	// answered counts the POSTs the server has answered.
	answered atomic.Int32
}

func (l *legacyTools) release() { l.once.Do(func() { close(l.released) }) }

// newLegacySDKServer serves an SDK server over HTTP+SSE with four tools:
// echo, report (progress with the request's token), roots (asks the
// client for its roots during the call) and block (waits until it is
// cancelled). It records the requests it receives.
func newLegacySDKServer(t *testing.T) (*httptest.Server, *legacyTools, *requestLog) {
	t.Helper()
	tools := &legacyTools{blockStarted: make(chan struct{}, 8), blockEnded: make(chan error, 8), released: make(chan struct{})}
	server := mcp.NewServer(&mcp.Implementation{Name: "legacy-fixture", Version: "1.0.0"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "echo", Description: "answers with its text"},
		func(ctx context.Context, req *mcp.CallToolRequest, in struct {
			Text string `json:"text"`
		}) (*mcp.CallToolResult, any, error) {
			return textResult(in.Text), nil, nil
		})
	mcp.AddTool(server, &mcp.Tool{Name: "report", Description: "reports progress, then answers"},
		func(ctx context.Context, req *mcp.CallToolRequest, in reportInput) (*mcp.CallToolResult, any, error) {
			token := req.Params.GetProgressToken()
			if token == nil {
				return nil, nil, errors.New("no progress token")
			}
			for i := range in.Steps {
				if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
					ProgressToken: token, Progress: float64(i + 1), Total: float64(in.Steps),
				}); err != nil {
					return nil, nil, err
				}
			}
			return textResult("reported"), nil, nil
		})
	mcp.AddTool(server, &mcp.Tool{Name: "roots", Description: "asks the client for its roots"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			res, err := req.Session.ListRoots(ctx, nil)
			if err != nil {
				return nil, nil, err
			}
			var uris []string
			for _, r := range res.Roots {
				uris = append(uris, r.URI)
			}
			return textResult(strings.Join(uris, ",")), nil, nil
		})
	mcp.AddTool(server, &mcp.Tool{Name: "block", Description: "waits until cancelled"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			tools.blockStarted <- struct{}{}
			select {
			case <-ctx.Done():
				tools.blockEnded <- ctx.Err()
				return nil, nil, ctx.Err()
			case <-tools.released:
				return textResult("released"), nil, nil
			}
		})
	log := &requestLog{}
	handler := mcp.NewSSEHandler(func(*http.Request) *mcp.Server { return server }, nil)
	ts := httptest.NewServer(log.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler.ServeHTTP(w, r)
		if r.Method == http.MethodPost {
			tools.answered.Add(1)
		}
	})))
	t.Cleanup(ts.Close)
	t.Cleanup(tools.release) // runs first
	return ts, tools, log
}

// newLegacyTestSession returns a session on its own client, closed when
// the test ends.
func newLegacyTestSession(t *testing.T, opts Options) *LegacySession {
	t.Helper()
	if opts.Client == nil {
		opts.Client = NewHTTPClient(HTTPOptions{DialTimeout: time.Second})
	}
	s, err := NewLegacySession(&opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx, nil); err != nil {
			t.Errorf("close: %v", err)
		}
		opts.Client.CloseIdleConnections()
	})
	return s
}

// legacyInitialize opens the MCP session: initialize, then
// notifications/initialized. The client offers roots, as a 2024-11-05
// client may.
func legacyInitialize(t *testing.T, ctx context.Context, s *LegacySession) {
	t.Helper()
	msg := request(t, "initialize", map[string]any{
		"protocolVersion": legacyProtocolVersion,
		"capabilities":    map[string]any{"roots": map[string]any{}},
		"clientInfo":      map[string]any{"name": "mcpbroker-test", "version": "0"},
	})
	reply, err := s.Call(ctx, msg, nil, nil)
	if err != nil {
		t.Fatalf("initialize: %v", err)
	}
	if reply.Error != nil {
		t.Fatalf("initialize: %v", reply.Error)
	}
	if got := s.ProtocolVersion(); got != legacyProtocolVersion {
		t.Fatalf("protocol version after initialize = %q, want %q", got, legacyProtocolVersion)
	}
	note, err := jsonrpc.NewNotification("notifications/initialized", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(ctx, note, nil); err != nil {
		t.Fatalf("notifications/initialized: %v", err)
	}
}

func countMethod(log *requestLog, method string) int {
	n := 0
	for _, r := range log.all() {
		if r.Method == method {
			n++
		}
	}
	return n
}

func callTool(t *testing.T, name string, args any) *jsonrpc.Message {
	t.Helper()
	return request(t, "tools/call", map[string]any{"name": name, "arguments": args})
}

func TestNewLegacySessionURL(t *testing.T) {
	for _, u := range []string{"", "/sse", "ftp://example.com/sse", "http:///sse"} {
		if _, err := NewLegacySession(&Options{URL: u}); err == nil {
			t.Errorf("NewLegacySession(%q) accepted the url", u)
		}
	}
	if _, err := NewLegacySession(nil); err == nil {
		t.Error("NewLegacySession(nil) succeeded")
	}
	s, err := NewLegacySession(&Options{URL: "https://example.com/sse"})
	if err != nil {
		t.Fatal(err)
	}
	s.SetID("ignored")
	if s.ID() != "" {
		t.Errorf("ID = %q, want none: a legacy session cannot be restored", s.ID())
	}
	s.SetProtocolVersion("2024-11-05")
	if got := s.ProtocolVersion(); got != "2024-11-05" {
		t.Errorf("ProtocolVersion = %q", got)
	}
	// Closing a session that never opened its stream is fine, twice.
	for range 2 {
		if err := s.Close(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Call(context.Background(), request(t, "tools/list", nil), nil, nil); !errors.Is(err, ErrSessionNotFound) {
		t.Errorf("call after close: %v, want ErrSessionNotFound", err)
	}
}

func TestLegacySDKServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ts, _, log := newLegacySDKServer(t)
	s := newLegacyTestSession(t, Options{URL: ts.URL + "/mcp/sse", Token: func(context.Context) (string, error) {
		return "session-token", nil
	}})
	legacyInitialize(t, ctx, s)

	reply, err := s.Call(ctx, request(t, "tools/list", nil), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Tools []struct {
			Name string `json:"name"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(reply.Result, &list); err != nil {
		t.Fatalf("decode tools/list %s: %v", reply.Result, err)
	}
	var names []string
	for _, tool := range list.Tools {
		names = append(names, tool.Name)
	}
	if got := strings.Join(names, ","); got != "block,echo,report,roots" {
		t.Errorf("tools = %s", got)
	}

	// A call's own token goes with its POST only.
	header := http.Header{"Authorization": {"Bearer call-token"}}
	reply, err = s.Call(ctx, callTool(t, "echo", map[string]any{"text": "hello"}), header, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := toolText(t, reply); got != "hello" {
		t.Errorf("echo = %q", got)
	}

	// A request the server refuses comes back on the stream as a
	// JSON-RPC error; one it refuses to take at all as a StatusError.
	reply, err = s.Call(ctx, callTool(t, "missing", struct{}{}), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if reply.Error == nil {
		t.Errorf("unknown tool answered %s", reply.Result)
	}
	_, err = s.Call(ctx, request(t, "no/such/method", nil), nil, nil)
	var statusErr *StatusError
	if !errors.As(err, &statusErr) || statusErr.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown method: %v, want a 400 StatusError", err)
	}
	// The session goes on.
	if _, err := s.Call(ctx, request(t, "ping", nil), nil, nil); err != nil {
		t.Fatal(err)
	}

	requests := log.all()
	if len(requests) != 8 {
		t.Fatalf("server saw %d requests, want the GET and seven POSTs", len(requests))
	}
	for i, r := range requests {
		wantMethod, wantAuth := http.MethodPost, "Bearer session-token"
		switch i {
		case 0:
			wantMethod = http.MethodGet
			if got := r.Header.Get("Accept"); got != mediaStream {
				t.Errorf("GET Accept = %q", got)
			}
		case 4:
			wantAuth = "Bearer call-token"
		}
		if r.Method != wantMethod {
			t.Errorf("request %d is a %s, want %s", i, r.Method, wantMethod)
		}
		if got := r.Header.Get("Authorization"); got != wantAuth {
			t.Errorf("request %d Authorization = %q, want %q", i, got, wantAuth)
		}
		if got := r.Header.Get(headerProtocolVersion); got != "" {
			t.Errorf("request %d carries %s %q; 2024-11-05 has no such header", i, headerProtocolVersion, got)
		}
	}
}

func TestLegacySDKServerProgress(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ts, tools, _ := newLegacySDKServer(t)
	s := newLegacyTestSession(t, Options{URL: ts.URL})
	legacyInitialize(t, ctx, s)

	// A blocked call waits meanwhile: progress finds its call by token,
	// not by being the only call.
	blockCtx, stopBlock := context.WithCancel(ctx)
	defer stopBlock()
	var blockMessages atomic.Int32
	blockDone := make(chan error, 1)
	go func() {
		_, err := s.Call(blockCtx, callTool(t, "block", struct{}{}), nil, func(*jsonrpc.Message) { blockMessages.Add(1) })
		blockDone <- err
	}()
	select {
	case <-tools.blockStarted:
	case <-ctx.Done():
		t.Fatal("the block tool never started")
	}

	id := nextTestID.Add(1)
	msg, err := jsonrpc.NewRequest(jsonrpc.Int64ID(id), "tools/call", map[string]any{
		"name":      "report",
		"arguments": map[string]any{"steps": 3},
		"_meta":     map[string]any{"progressToken": id},
	})
	if err != nil {
		t.Fatal(err)
	}
	var progress []float64
	reply, err := s.Call(ctx, msg, nil, func(m *jsonrpc.Message) {
		if m.Method != "notifications/progress" {
			t.Errorf("unexpected %s %s", m.Kind(), m.Method)
			return
		}
		var p struct {
			ProgressToken json.RawMessage `json:"progressToken"`
			Progress      float64         `json:"progress"`
		}
		if err := json.Unmarshal(m.Params, &p); err != nil {
			t.Error(err)
		}
		if string(p.ProgressToken) != fmt.Sprint(id) {
			t.Errorf("progress token = %s, want %d", p.ProgressToken, id)
		}
		progress = append(progress, p.Progress)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := toolText(t, reply); got != "reported" {
		t.Errorf("report = %q", got)
	}
	if fmt.Sprint(progress) != "[1 2 3]" {
		t.Errorf("progress before the response = %v, want [1 2 3]", progress)
	}
	if n := blockMessages.Load(); n != 0 {
		t.Errorf("the blocked call received %d messages of the other", n)
	}
	stopBlock()
	if err := <-blockDone; !errors.Is(err, context.Canceled) {
		t.Errorf("blocked call: %v, want context.Canceled", err)
	}
}

func TestLegacySDKServerRequestDuringCall(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ts, _, _ := newLegacySDKServer(t)
	s := newLegacyTestSession(t, Options{URL: ts.URL})
	legacyInitialize(t, ctx, s)

	var asked int
	var answerErr error
	reply, err := s.Call(ctx, callTool(t, "roots", struct{}{}), nil, func(m *jsonrpc.Message) {
		if m.Kind() != jsonrpc.KindRequest || m.Method != "roots/list" {
			t.Errorf("unexpected %s %s", m.Kind(), m.Method)
			return
		}
		asked++
		// Answered from inside the callback, on the stream's goroutine;
		// the tool result can only come after the answer.
		answer, err := jsonrpc.NewResult(m.ID, map[string]any{"roots": []any{
			map[string]any{"uri": "file:///work", "name": "work"},
		}})
		if err != nil {
			answerErr = err
			return
		}
		answerErr = s.Send(ctx, answer, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	if answerErr != nil {
		t.Fatalf("answering roots/list: %v", answerErr)
	}
	if asked != 1 {
		t.Errorf("roots/list asked %d times", asked)
	}
	if got := toolText(t, reply); got != "file:///work" {
		t.Errorf("roots tool = %q", got)
	}
}

func TestLegacySDKServerCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ts, tools, _ := newLegacySDKServer(t)
	s := newLegacyTestSession(t, Options{URL: ts.URL})
	legacyInitialize(t, ctx, s)

	msg := callTool(t, "block", struct{}{})
	callCtx, stop := context.WithCancel(ctx)
	go func() {
		select {
		case <-tools.blockStarted:
			stop()
		case <-ctx.Done():
		}
	}()
	start := time.Now()
	if _, err := s.Call(callCtx, msg, nil, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the cancelled call took %v", d)
	}

	// The broker tells the server; the tool sees its context end.
	note, err := jsonrpc.NewNotification("notifications/cancelled", map[string]any{
		"requestId": json.RawMessage(msg.ID.Raw()), "reason": "client cancelled",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(ctx, note, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-tools.blockEnded:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the tool's context ended with %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the tool never saw the cancellation")
	}

	// The session goes on.
	reply, err := s.Call(ctx, callTool(t, "echo", map[string]any{"text": "still here"}), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := toolText(t, reply); got != "still here" {
		t.Errorf("echo = %q", got)
	}
}

func TestLegacySDKServerStreamDrops(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ts, tools, log := newLegacySDKServer(t)
	s := newLegacyTestSession(t, Options{URL: ts.URL})
	legacyInitialize(t, ctx, s)

	listenDone := make(chan error, 1)
	go func() { listenDone <- s.Listen(ctx, nil, func(*jsonrpc.Message) {}) }()
	go func() {
		select {
		case <-tools.blockStarted:
		case <-ctx.Done():
			return
		}
		// The tool may start before its POST is answered: drop the
		// connections once the call waits on the stream alone.
		for ctx.Err() == nil && int(tools.answered.Load()) < countMethod(log, http.MethodPost) {
			time.Sleep(time.Millisecond)
		}
		ts.CloseClientConnections()
	}()
	_, err := s.Call(ctx, callTool(t, "block", struct{}{}), nil, nil)
	if !errors.Is(err, ErrStreamEnded) {
		t.Fatalf("call whose stream dropped: %v, want ErrStreamEnded", err)
	}
	if errors.Is(err, ErrSessionNotFound) {
		t.Errorf("the pending call's error %v says session not found: it may have been served and must not be retried", err)
	}
	select {
	case err := <-listenDone:
		if !errors.Is(err, ErrStreamEnded) {
			t.Errorf("listen: %v, want ErrStreamEnded", err)
		}
	case <-ctx.Done():
		t.Fatal("listen did not end with the stream")
	}
	if _, err := s.Call(ctx, request(t, "tools/list", nil), nil, nil); !errors.Is(err, ErrSessionNotFound) {
		t.Errorf("call after the stream dropped: %v, want ErrSessionNotFound", err)
	}
}

// sseScript is a hand-written HTTP+SSE server: its GET stream names an
// endpoint, then writes whatever the test puts in events, until end is
// closed. POSTed messages go to posts.
type sseScript struct {
	ts     *httptest.Server
	events chan string
	end    chan struct{}
	posts  chan *jsonrpc.Message
}

func newSSEScript(t *testing.T, endpoint string) *sseScript {
	t.Helper()
	sc := &sseScript{
		events: make(chan string, 16),
		end:    make(chan struct{}),
		posts:  make(chan *jsonrpc.Message, 64),
	}
	sc.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			body, err := io.ReadAll(r.Body)
			m, derr := jsonrpc.Decode(body)
			if err != nil || derr != nil {
				http.Error(w, "bad message", http.StatusBadRequest)
				return
			}
			sc.posts <- m
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		fmt.Fprintf(w, "event: endpoint\ndata: %s\n\n", endpoint)
		w.(http.Flusher).Flush()
		for {
			select {
			case ev := <-sc.events:
				io.WriteString(w, ev)
				w.(http.Flusher).Flush()
			case <-sc.end:
				return
			case <-r.Context().Done():
				return
			}
		}
	}))
	t.Cleanup(sc.ts.Close)
	return sc
}

// send writes one message event.
func (sc *sseScript) send(m *jsonrpc.Message) {
	sc.events <- "event: message\ndata: " + string(m.Encode()) + "\n\n"
}

// post waits for the next POSTed message.
func (sc *sseScript) post(t *testing.T, ctx context.Context) *jsonrpc.Message {
	t.Helper()
	select {
	case m := <-sc.posts:
		return m
	case <-ctx.Done():
		t.Fatal("no POST arrived")
		return nil
	}
}

func mustNotification(t *testing.T, method string, params any) *jsonrpc.Message {
	t.Helper()
	m, err := jsonrpc.NewNotification(method, params)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustResult(t *testing.T, id jsonrpc.ID, result any) *jsonrpc.Message {
	t.Helper()
	m, err := jsonrpc.NewResult(id, result)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type callResult struct {
	reply *jsonrpc.Message
	err   error
}

func goCall(ctx context.Context, s *LegacySession, msg *jsonrpc.Message, onMessage func(*jsonrpc.Message)) <-chan callResult {
	done := make(chan callResult, 1)
	go func() {
		reply, err := s.Call(ctx, msg, nil, onMessage)
		done <- callResult{reply, err}
	}()
	return done
}

func waitCall(t *testing.T, ctx context.Context, done <-chan callResult) callResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-ctx.Done():
		t.Fatal("the call did not return")
		return callResult{}
	}
}

// recorder collects the methods of the messages a callback receives.
type recorder struct {
	mu      sync.Mutex
	methods []string
}

func (r *recorder) add(m *jsonrpc.Message) {
	r.mu.Lock()
	r.methods = append(r.methods, m.Method)
	r.mu.Unlock()
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.methods, ",")
}

func TestLegacyRouting(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	sc := newSSEScript(t, "/messages?session=1#ignored")
	s := newLegacyTestSession(t, Options{URL: sc.ts.URL + "/sse"})

	// A string id the server writes differently still finds its call.
	msg, err := jsonrpc.NewRequest(jsonrpc.StringID("a<b"), "ping", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := goCall(ctx, s, msg, nil)
	if got := sc.post(t, ctx); got.ID != msg.ID {
		t.Fatalf("POSTed id %s, want %s", got.ID, msg.ID)
	}
	sc.events <- "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"a<b\",\"result\":{}}\n\n"
	if r := waitCall(t, ctx, done); r.err != nil || string(r.reply.Result) != "{}" {
		t.Fatalf("ping: %v, %v", r.reply, r.err)
	}

	var listened, first, second recorder
	listenCtx, stopListen := context.WithCancel(ctx)
	listenDone := make(chan error, 1)
	go func() { listenDone <- s.Listen(listenCtx, nil, listened.add) }()

	call1 := request(t, "tools/call", nil)
	done1 := goCall(ctx, s, call1, first.add)
	sc.post(t, ctx)
	call2 := request(t, "tools/call", nil)
	done2 := goCall(ctx, s, call2, second.add)
	sc.post(t, ctx)

	// Two calls wait: a notification belongs to neither, progress to the
	// call its token names.
	sc.send(mustNotification(t, "notifications/message", map[string]any{"level": "info", "data": "x"}))
	sc.send(mustNotification(t, "notifications/progress", map[string]any{"progressToken": json.RawMessage(call2.ID.Raw()), "progress": 1}))
	// A response nobody waits for is dropped.
	sc.send(mustResult(t, jsonrpc.Int64ID(999999999), map[string]any{}))
	sc.send(mustResult(t, call2.ID, map[string]any{"n": 2}))
	if r := waitCall(t, ctx, done2); r.err != nil || string(r.reply.Result) != `{"n":2}` {
		t.Fatalf("second call: %v, %v", r.reply, r.err)
	}
	// One call waits: what the server sends is about it.
	sc.send(mustNotification(t, "notifications/message", map[string]any{"level": "info", "data": "y"}))
	serverRequest, err := jsonrpc.NewRequest(jsonrpc.StringID("s1"), "roots/list", nil)
	if err != nil {
		t.Fatal(err)
	}
	sc.send(serverRequest)
	sc.send(mustResult(t, call1.ID, map[string]any{"n": 1}))
	if r := waitCall(t, ctx, done1); r.err != nil || string(r.reply.Result) != `{"n":1}` {
		t.Fatalf("first call: %v, %v", r.reply, r.err)
	}
	if got := listened.String(); got != "notifications/message" {
		t.Errorf("listener received %q", got)
	}
	if got := second.String(); got != "notifications/progress" {
		t.Errorf("second call received %q", got)
	}
	if got := first.String(); got != "notifications/message,roots/list" {
		t.Errorf("first call received %q", got)
	}

	// With no call and no listener, a server request is refused.
	stopListen()
	if err := <-listenDone; !errors.Is(err, context.Canceled) {
		t.Errorf("listen: %v, want context.Canceled", err)
	}
	sc.send(mustNotification(t, "notifications/message", map[string]any{"level": "info", "data": "dropped"}))
	refused, err := jsonrpc.NewRequest(jsonrpc.StringID("s2"), "sampling/createMessage", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	sc.send(refused)
	answer := sc.post(t, ctx)
	if answer.ID != refused.ID || answer.Error == nil || answer.Error.Code != -32601 {
		t.Errorf("answer to an unanswerable request = %s", answer.Encode())
	}
}

func TestLegacyListenReplaced(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	sc := newSSEScript(t, "/messages")
	s := newLegacyTestSession(t, Options{URL: sc.ts.URL + "/sse"})
	if err := s.Send(ctx, mustNotification(t, "notifications/initialized", nil), nil); err != nil {
		t.Fatal(err)
	}
	sc.post(t, ctx)
	var firstGot, secondGot recorder
	firstDone := make(chan error, 1)
	go func() { firstDone <- s.Listen(ctx, nil, firstGot.add) }()
	// Wait until the first listener is registered.
	for {
		s.mu.Lock()
		registered := s.listener != nil
		s.mu.Unlock()
		if registered {
			break
		}
		time.Sleep(time.Millisecond)
	}
	received := make(chan struct{}, 1)
	secondDone := make(chan error, 1)
	go func() {
		secondDone <- s.Listen(ctx, nil, func(m *jsonrpc.Message) { secondGot.add(m); received <- struct{}{} })
	}()
	select {
	case err := <-firstDone:
		if err == nil || ctx.Err() != nil {
			t.Fatalf("replaced listener returned %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the replaced listener did not return")
	}
	sc.send(mustNotification(t, "notifications/tools/list_changed", nil))
	select {
	case <-received:
	case <-ctx.Done():
		t.Fatal("the second listener received nothing")
	}
	if firstGot.String() != "" || secondGot.String() != "notifications/tools/list_changed" {
		t.Errorf("first listener got %q, second %q", firstGot.String(), secondGot.String())
	}
	if err := s.Close(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := <-secondDone; !errors.Is(err, ErrStreamEnded) {
		t.Errorf("listen after close: %v, want ErrStreamEnded", err)
	}
}

func TestLegacyStreamEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	sc := newSSEScript(t, "/messages")
	s := newLegacyTestSession(t, Options{URL: sc.ts.URL + "/sse"})
	done := goCall(ctx, s, request(t, "tools/call", nil), nil)
	sc.post(t, ctx)
	close(sc.end)
	r := waitCall(t, ctx, done)
	if !errors.Is(r.err, ErrStreamEnded) {
		t.Fatalf("call whose stream ended: %v, want ErrStreamEnded", r.err)
	}
	if _, err := s.Call(ctx, request(t, "tools/list", nil), nil, nil); !errors.Is(err, ErrSessionNotFound) {
		t.Errorf("next call: %v, want ErrSessionNotFound", err)
	}
	if err := s.Send(ctx, mustNotification(t, "notifications/initialized", nil), nil); !errors.Is(err, ErrSessionNotFound) {
		t.Errorf("send: %v, want ErrSessionNotFound", err)
	}
	if err := s.Listen(ctx, nil, nil); !errors.Is(err, ErrSessionNotFound) {
		t.Errorf("listen: %v, want ErrSessionNotFound", err)
	}
	select {
	case m := <-sc.posts:
		t.Errorf("a dead session POSTed %s", m.Encode())
	default:
	}
}

func TestLegacyCloseFailsPendingCalls(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	sc := newSSEScript(t, "/messages")
	s := newLegacyTestSession(t, Options{URL: sc.ts.URL + "/sse"})
	done := goCall(ctx, s, request(t, "tools/call", nil), nil)
	sc.post(t, ctx)
	if err := s.Close(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if r := waitCall(t, ctx, done); !errors.Is(r.err, ErrStreamEnded) {
		t.Errorf("call pending at close: %v, want ErrStreamEnded", r.err)
	}
	if err := s.Close(ctx, nil); err != nil {
		t.Errorf("second close: %v", err)
	}
	if _, err := s.Call(ctx, request(t, "tools/list", nil), nil, nil); !errors.Is(err, ErrSessionNotFound) {
		t.Errorf("call after close: %v, want ErrSessionNotFound", err)
	}
}

func TestLegacyMessageTooLarge(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	sc := newSSEScript(t, "/messages")
	s := newLegacyTestSession(t, Options{URL: sc.ts.URL + "/sse", MaxMessageBytes: 1024})
	done := goCall(ctx, s, request(t, "tools/call", nil), nil)
	sc.post(t, ctx)
	sc.events <- "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"data\":\"" +
		strings.Repeat("x", 4096) + "\"}}\n\n"
	r := waitCall(t, ctx, done)
	if !errors.Is(r.err, ErrMessageTooLarge) || !errors.Is(r.err, ErrStreamEnded) {
		t.Fatalf("call: %v, want ErrMessageTooLarge and ErrStreamEnded", r.err)
	}
	if _, err := s.Call(ctx, request(t, "tools/list", nil), nil, nil); !errors.Is(err, ErrSessionNotFound) {
		t.Errorf("next call: %v, want ErrSessionNotFound", err)
	}
}

func TestLegacyPostRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var status atomic.Int32
	status.Store(http.StatusInternalServerError)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			http.Error(w, "refused", int(status.Load()))
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: endpoint\ndata: /messages\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(ts.Close)
	s := newLegacyTestSession(t, Options{URL: ts.URL})
	_, err := s.Call(ctx, request(t, "tools/list", nil), nil, nil)
	var statusErr *StatusError
	if !errors.As(err, &statusErr) || statusErr.StatusCode != http.StatusInternalServerError {
		t.Fatalf("call refused with 500: %v", err)
	}
	// A 404 means the server forgot the session, which is then gone.
	status.Store(http.StatusNotFound)
	if err := s.Send(ctx, mustNotification(t, "notifications/initialized", nil), nil); !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("send refused with 404: %v, want ErrSessionNotFound", err)
	}
	status.Store(http.StatusAccepted)
	if _, err := s.Call(ctx, request(t, "tools/list", nil), nil, nil); !errors.Is(err, ErrSessionNotFound) {
		t.Errorf("call after a 404: %v, want ErrSessionNotFound", err)
	}
}

func TestLegacyHostileStreams(t *testing.T) {
	stream := func(prelude string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				w.WriteHeader(http.StatusAccepted)
				return
			}
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, prelude)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}
	}
	tests := []struct {
		name    string
		handler http.HandlerFunc
		max     int64
		want    error
	}{
		{name: "endpoint on another host", handler: stream("event: endpoint\ndata: http://example.com/messages\n\n"), want: ErrProtocol},
		{name: "endpoint on another port", handler: stream("event: endpoint\ndata: http://127.0.0.1:1/messages\n\n"), want: ErrProtocol},
		{name: "endpoint on another scheme", handler: stream("event: endpoint\ndata: https://127.0.0.1/messages\n\n"), want: ErrProtocol},
		{name: "protocol-relative endpoint", handler: stream("event: endpoint\ndata: //example.com/messages\n\n"), want: ErrProtocol},
		{name: "empty endpoint", handler: stream("event: endpoint\ndata:\n\n"), want: ErrProtocol},
		{name: "message before the endpoint", handler: stream("event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"x\"}\n\n"), want: ErrProtocol},
		{name: "oversized endpoint", handler: stream("event: endpoint\ndata: /" + strings.Repeat("m", 2048) + "\n\n"), max: 1024, want: ErrMessageTooLarge},
		{name: "stream ends before the endpoint", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, ": hello\n\n")
		}, want: ErrProtocol},
		{name: "not an event stream", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
		}, want: ErrProtocol},
		{name: "not 200", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusAccepted)
		}, want: ErrProtocol},
		{name: "no stream", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}, want: ErrNoStream},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			var posts atomic.Int32
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost {
					posts.Add(1)
				}
				tt.handler(w, r)
			}))
			defer ts.Close()
			s := newLegacyTestSession(t, Options{URL: ts.URL + "/sse", MaxMessageBytes: tt.max})
			_, err := s.Call(ctx, request(t, "initialize", map[string]any{}), nil, nil)
			if !errors.Is(err, tt.want) {
				t.Fatalf("call: %v, want %v", err, tt.want)
			}
			if n := posts.Load(); n != 0 {
				t.Errorf("%d POSTs sent", n)
			}
			if _, err := s.Call(ctx, request(t, "initialize", map[string]any{}), nil, nil); !errors.Is(err, ErrSessionNotFound) {
				t.Errorf("next call: %v, want ErrSessionNotFound", err)
			}
		})
	}

	t.Run("server error", func(t *testing.T) {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "broken", http.StatusBadGateway)
		}))
		defer ts.Close()
		s := newLegacyTestSession(t, Options{URL: ts.URL})
		_, err := s.Call(t.Context(), request(t, "initialize", map[string]any{}), nil, nil)
		var statusErr *StatusError
		if !errors.As(err, &statusErr) || statusErr.StatusCode != http.StatusBadGateway {
			t.Fatalf("call: %v, want a 502 StatusError", err)
		}
	})
}

func TestLegacyNoEndpoint(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, ": waiting\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer ts.Close()
	s := newLegacyTestSession(t, Options{URL: ts.URL})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Call(ctx, request(t, "initialize", map[string]any{}), nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call: %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the call returned after %v", d)
	}
	if _, err := s.Call(t.Context(), request(t, "initialize", map[string]any{}), nil, nil); !errors.Is(err, ErrSessionNotFound) {
		t.Errorf("next call: %v, want ErrSessionNotFound", err)
	}
}

func TestLegacyConcurrentFirstCalls(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ts, _, log := newLegacySDKServer(t)
	s := newLegacyTestSession(t, Options{URL: ts.URL})
	// Several first uses at once open one stream between them.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reply, err := s.Call(ctx, request(t, "ping", nil), nil, nil)
			if err != nil {
				t.Error(err)
				return
			}
			if reply.Error != nil {
				// The SDK may refuse requests before initialize; the
				// answer still came back on the one stream.
				return
			}
		}()
	}
	wg.Wait()
	if gets := countMethod(log, http.MethodGet); gets != 1 {
		t.Errorf("%d GET streams opened, want 1", gets)
	}
}

func TestLegacyNoGoroutineLeak(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ts, tools, _ := newLegacySDKServer(t)
	client := NewHTTPClient(HTTPOptions{DialTimeout: time.Second})
	waitGoroutines := func(want int) int {
		var n int
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			client.CloseIdleConnections()
			if n = runtime.NumGoroutine(); n <= want {
				return n
			}
		}
		return n
	}
	before := waitGoroutines(runtime.NumGoroutine())

	var sessions []*LegacySession
	var calls []<-chan callResult
	for i := range 5 {
		s, err := NewLegacySession(&Options{URL: ts.URL, Client: client})
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s)
		legacyInitialize(t, ctx, s)
		if _, err := s.Call(ctx, request(t, "tools/list", nil), nil, nil); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			// Some sessions close with a call still waiting.
			calls = append(calls, goCall(ctx, s, callTool(t, "block", struct{}{}), nil))
			<-tools.blockStarted
		}
	}
	for _, s := range sessions {
		if err := s.Close(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The server's side of the blocked calls ends only now.
	tools.release()
	for _, c := range calls {
		if r := waitCall(t, ctx, c); !errors.Is(r.err, ErrStreamEnded) {
			t.Errorf("call pending at close: %v", r.err)
		}
	}
	if after := waitGoroutines(before); after > before {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("%d goroutines before the sessions, %d after closing them:\n%s", before, after, buf)
	}
}
