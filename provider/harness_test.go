package provider

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// The tests drive a real Provider over httptest with the hand-written
// dispatcher below. Admission takes the subject from subjectHeader, so
// tests can act as different users.

const (
	subjectHeader = "X-Test-Subject"
	userHeader    = "X-Test-User"
	acceptBoth    = "application/json, text/event-stream"
	waitLong      = 5 * time.Second
)

// fakeDispatcher serves:
//   - initialize: negotiates the version, records capabilities and client
//     info and one upstream ref; {"fail":true} makes it fail.
//   - echo: returns its params as the result.
//   - whoami: returns the session's facts.
//   - stream {"n":N,"gate":G,"tag":T}: sends N progress notifications
//     through req.Out, waiting after the first for gate G to be released.
//   - drop: returns nil (a dispatcher bug the provider should survive).
//   - big {"size":N,"abandoned":B,"gate":G,"progress":P}: returns a result
//     holding N bytes; with abandoned it answers only after the client hung
//     up, with gate only after gate G is released; with progress it first
//     sends a progress notification.
type fakeDispatcher struct {
	listens chan listenCall
	closed  chan *Session
	streams chan streamResult // one per finished "stream" request

	mu          sync.Mutex
	gates       map[string]chan struct{}
	received    []*jsonrpc.Message // notifications and responses from clients
	dispatched  int                // "big" requests
	initializes int                // initialize requests
}

type listenCall struct {
	ctx context.Context
	s   *Session
}

type streamResult struct {
	id         string
	sendErrors []error
}

func newFakeDispatcher() *fakeDispatcher {
	return &fakeDispatcher{
		listens: make(chan listenCall, 1000),
		closed:  make(chan *Session, 10000),
		streams: make(chan streamResult, 1000),
		gates:   make(map[string]chan struct{}),
	}
}

func (d *fakeDispatcher) gate(name string) chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	g, ok := d.gates[name]
	if !ok {
		g = make(chan struct{})
		d.gates[name] = g
	}
	return g
}

func (d *fakeDispatcher) release(name string) { close(d.gate(name)) }

// authenticate takes the subject from subjectHeader and the user from
// userHeader; X-Test-Deny refuses the request.
func (d *fakeDispatcher) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Test-Deny") != "" {
			WriteError(w, &HTTPError{Status: http.StatusUnauthorized, Message: "unauthorized"})
			return
		}
		id := Identity{Subject: r.Header.Get(subjectHeader), User: r.Header.Get(userHeader)}
		next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
	})
}

func (d *fakeDispatcher) Dispatch(ctx context.Context, req *Request) Reply {
	return Reply{Message: d.dispatch(ctx, req)}
}

func (d *fakeDispatcher) dispatch(ctx context.Context, req *Request) *jsonrpc.Message {
	m := req.Message
	if m.Kind() != jsonrpc.KindRequest {
		d.mu.Lock()
		d.received = append(d.received, m)
		d.mu.Unlock()
		return nil
	}
	switch m.Method {
	case "initialize":
		d.mu.Lock()
		d.initializes++
		d.mu.Unlock()
		return d.initialize(req)
	case "echo":
		result := m.Params
		if len(result) == 0 {
			result = json.RawMessage(`{}`)
		}
		return &jsonrpc.Message{ID: m.ID, Result: result}
	case "whoami":
		s := req.Session
		res, _ := jsonrpc.NewResult(m.ID, whoami{
			Subject: s.Subject, Identity: req.Identity.Subject, ProtocolVersion: s.ProtocolVersion,
			Capabilities: s.ClientCapabilities, ClientInfo: s.ClientInfo, Upstreams: s.Upstreams,
		})
		return res
	case "stream":
		return d.stream(ctx, req)
	case "drop":
		return nil
	case "big":
		return d.big(ctx, req)
	}
	return jsonrpc.NewErrorResponse(m.ID, jsonrpc.NewError(jsonrpc.CodeMethodNotFound, "method not found"))
}

type whoami struct {
	Subject         string                 `json:"subject"`
	Identity        string                 `json:"identity"`
	ProtocolVersion string                 `json:"protocolVersion"`
	Capabilities    json.RawMessage        `json:"capabilities,omitempty"`
	ClientInfo      json.RawMessage        `json:"clientInfo,omitempty"`
	Upstreams       map[string]UpstreamRef `json:"upstreams,omitempty"`
}

func (d *fakeDispatcher) initialize(req *Request) *jsonrpc.Message {
	m, s := req.Message, req.Session
	var p struct {
		ProtocolVersion string          `json:"protocolVersion"`
		Capabilities    json.RawMessage `json:"capabilities"`
		ClientInfo      json.RawMessage `json:"clientInfo"`
		Fail            bool            `json:"fail"`
	}
	_ = json.Unmarshal(m.Params, &p)
	if p.Fail {
		return jsonrpc.NewErrorResponse(m.ID, jsonrpc.NewError(jsonrpc.CodeInvalidParams, "initialize refused"))
	}
	v := p.ProtocolVersion
	if !IsSupportedVersion(v) {
		v = LatestVersion
	}
	s.ProtocolVersion = v
	s.ClientCapabilities = p.Capabilities
	s.ClientInfo = p.ClientInfo
	s.Upstreams = map[string]UpstreamRef{"app": {ID: "up-" + s.Subject, ProtocolVersion: v}}
	res, _ := jsonrpc.NewResult(m.ID, map[string]any{
		"protocolVersion": v,
		"capabilities":    map[string]any{},
		"serverInfo":      map[string]string{"name": "fake", "version": "1"},
	})
	return res
}

func (d *fakeDispatcher) stream(ctx context.Context, req *Request) *jsonrpc.Message {
	m := req.Message
	var p struct {
		N    int    `json:"n"`
		Gate string `json:"gate"`
		Tag  string `json:"tag"`
	}
	_ = json.Unmarshal(m.Params, &p)
	var sendErrors []error
	for i := 1; i <= p.N; i++ {
		n, _ := jsonrpc.NewNotification("notifications/progress", map[string]any{"tag": p.Tag, "progress": i})
		if err := req.Out.Send(n); err != nil {
			sendErrors = append(sendErrors, err)
		}
		if i == 1 && p.Gate != "" {
			select {
			case <-d.gate(p.Gate):
			case <-ctx.Done():
			case <-time.After(20 * time.Second):
			}
		}
	}
	res, _ := jsonrpc.NewResult(m.ID, map[string]any{"tag": p.Tag, "done": true})
	d.streams <- streamResult{id: m.ID.Raw(), sendErrors: sendErrors}
	return res
}

func (d *fakeDispatcher) big(ctx context.Context, req *Request) *jsonrpc.Message {
	var p struct {
		Size      int    `json:"size"`
		Abandoned bool   `json:"abandoned"`
		Gate      string `json:"gate"`
		Progress  bool   `json:"progress"`
	}
	_ = json.Unmarshal(req.Message.Params, &p)
	if p.Progress {
		n, _ := jsonrpc.NewNotification("notifications/progress", map[string]any{"progress": 1})
		_ = req.Out.Send(n)
	}
	d.mu.Lock()
	d.dispatched++
	d.mu.Unlock()
	var wait <-chan struct{}
	switch {
	case p.Abandoned:
		wait = req.HTTP.Context().Done()
	case p.Gate != "":
		wait = d.gate(p.Gate)
	}
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
		case <-time.After(20 * time.Second):
		}
	}
	res, _ := jsonrpc.NewResult(req.Message.ID, map[string]string{"data": strings.Repeat("x", p.Size)})
	return res
}

// dispatchedBig counts the "big" requests dispatched so far.
func (d *fakeDispatcher) dispatchedBig() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dispatched
}

func (d *fakeDispatcher) Listen(ctx context.Context, s *Session) {
	d.listens <- listenCall{ctx: ctx, s: s}
}

func (d *fakeDispatcher) Closed(s *Session) { d.closed <- s }

func (d *fakeDispatcher) waitListen(t *testing.T) listenCall {
	t.Helper()
	select {
	case l := <-d.listens:
		return l
	case <-time.After(waitLong):
		t.Fatal("Listen was not called")
	}
	return listenCall{}
}

// closedIDs drains the Closed notifications received so far.
func (d *fakeDispatcher) closedIDs() map[string]int {
	out := make(map[string]int)
	for {
		select {
		case s := <-d.closed:
			out[s.ID]++
		default:
			return out
		}
	}
}

// fakeClock is a settable Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type harness struct {
	t      *testing.T
	d      *fakeDispatcher
	p      *Provider
	srv    *httptest.Server
	opts   Options
	client *http.Client
	// served counts the HTTP requests whose handler has returned.
	served atomic.Int64
}

// newHarness serves a provider with both transports and client termination
// on, listening on loopback; change modifies the options first.
func newHarness(t *testing.T, change func(*Options)) *harness {
	return newHarnessWith(t, newFakeDispatcher(), change)
}

func newHarnessWith(t *testing.T, d *fakeDispatcher, change func(*Options)) *harness {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	opts := Options{
		ListenAddress:          srv.Listener.Addr().String(),
		StreamEnabled:          true,
		SSEEnabled:             true,
		AllowClientTermination: true,
		Authenticate:           d.authenticate,
	}
	if change != nil {
		change(&opts)
	}
	p, err := New(opts, d)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	mux := http.NewServeMux()
	p.Register(mux)
	h := &harness{t: t, d: d, p: p, srv: srv, opts: p.opts, client: &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64}}}
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer h.served.Add(1)
		mux.ServeHTTP(w, r)
	})
	srv.Start()
	t.Cleanup(func() {
		p.Close() // ends sessions, so held streams return
		srv.CloseClientConnections()
		srv.Close()
		h.client.CloseIdleConnections()
	})
	return h
}

// call is one HTTP request to the provider. Empty fields take defaults:
// POST to the stream path with both Accept types and application/json.
// "-" removes a default header.
type call struct {
	method      string
	path        string
	subject     string
	session     string
	body        string
	accept      string
	contentType string
	version     string
	lastEventID string
	host        string
	origin      string
	header      http.Header
	ctx         context.Context
}

func (h *harness) request(c call) *http.Request {
	h.t.Helper()
	if c.method == "" {
		c.method = http.MethodPost
	}
	if c.path == "" {
		c.path = h.opts.StreamPath
	}
	if c.ctx == nil {
		c.ctx = context.Background()
	}
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(c.ctx, c.method, h.srv.URL+c.path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	set := func(name, value, def string) {
		switch {
		case value == "-":
		case value != "":
			req.Header.Set(name, value)
		case def != "":
			req.Header.Set(name, def)
		}
	}
	defAccept, defType := acceptBoth, "application/json"
	if c.method == http.MethodGet {
		defAccept = "text/event-stream"
	}
	if c.method != http.MethodPost {
		defType = ""
	}
	set("Accept", c.accept, defAccept)
	set("Content-Type", c.contentType, defType)
	set(subjectHeader, c.subject, "")
	set(h.opts.SessionHeader, c.session, "")
	set("MCP-Protocol-Version", c.version, "")
	set("Last-Event-ID", c.lastEventID, "")
	set("Origin", c.origin, "")
	for k, vs := range c.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if c.host != "" {
		req.Host = c.host
	}
	return req
}

func (h *harness) do(c call) *http.Response {
	h.t.Helper()
	resp, err := h.client.Do(h.request(c))
	if err != nil {
		h.t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	return resp
}

// doBody does a request and reads the whole response.
func (h *harness) doBody(c call) (*http.Response, []byte) {
	h.t.Helper()
	resp := h.do(c)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("reading response: %v", err)
	}
	return resp, body
}

func initializeBody(id int, version string, capabilities string) string {
	if capabilities == "" {
		capabilities = "{}"
	}
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"initialize","params":{"protocolVersion":%q,"capabilities":%s,"clientInfo":{"name":"test","version":"1"}}}`, id, version, capabilities)
}

// initialize opens a Streamable HTTP session for subject and returns its id.
func (h *harness) initialize(subject, version string) string {
	h.t.Helper()
	resp, body := h.doBody(call{subject: subject, body: initializeBody(1, version, "")})
	if resp.StatusCode != http.StatusOK {
		h.t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	sid := resp.Header.Get("Mcp-Session-Id")
	if sid == "" {
		h.t.Fatalf("initialize: no session id (%s)", body)
	}
	return sid
}

func requestBody(id int, method string, params string) string {
	if params == "" {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q}`, id, method)
	}
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q,"params":%s}`, id, method, params)
}

// decodeMessage decodes one JSON-RPC message or fails the test.
func decodeMessage(t *testing.T, data []byte) *jsonrpc.Message {
	t.Helper()
	m, err := jsonrpc.Decode(data)
	if err != nil {
		t.Fatalf("decoding %q: %v", data, err)
	}
	return m
}

// responseMessages reads the JSON-RPC messages of a POST response, whether
// JSON (one message or an array) or SSE (one per event).
func responseMessages(t *testing.T, resp *http.Response, body []byte) []*jsonrpc.Message {
	t.Helper()
	ct := resp.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "application/json"):
		msgs, errs, _, err := jsonrpc.DecodeBatch(body, 0)
		if err != nil {
			t.Fatalf("decoding %q: %v", body, err)
		}
		for i, e := range errs {
			if e != nil {
				t.Fatalf("entry %d of %q: %v", i, body, e)
			}
		}
		return msgs
	case strings.HasPrefix(ct, "text/event-stream"):
		var out []*jsonrpc.Message
		for _, ev := range parseSSE(t, body) {
			out = append(out, decodeMessage(t, []byte(ev.data)))
		}
		return out
	}
	t.Fatalf("unexpected Content-Type %q (body %q)", ct, body)
	return nil
}

type sseEvent struct {
	name, id, data string
}

// splitSSELines splits on CRLF, LF or CR, as the SSE grammar does.
func splitSSELines(data []byte, atEOF bool) (advance int, token []byte, err error) {
	for i, c := range data {
		switch c {
		case '\n':
			return i + 1, data[:i], nil
		case '\r':
			if i+1 < len(data) {
				if data[i+1] == '\n' {
					return i + 2, data[:i], nil
				}
				return i + 1, data[:i], nil
			}
			if atEOF {
				return i + 1, data[:i], nil
			}
			return 0, nil, nil // need to see whether LF follows
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// sseReader parses events from a live stream on its own goroutine.
type sseReader struct {
	events chan sseEvent
	done   chan struct{}
	err    error
}

func newSSEReader(r io.Reader) *sseReader {
	sr := &sseReader{events: make(chan sseEvent, 1000), done: make(chan struct{})}
	go func() {
		defer close(sr.done)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
		sc.Split(splitSSELines)
		var ev sseEvent
		var data []string
		hasData := false
		for sc.Scan() {
			line := sc.Text()
			if line == "" {
				if hasData {
					ev.data = strings.Join(data, "\n")
					sr.events <- ev
				}
				ev, data, hasData = sseEvent{}, nil, false
				continue
			}
			if strings.HasPrefix(line, ":") {
				continue
			}
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				ev.name = value
			case "id":
				ev.id = value
			case "data":
				data = append(data, value)
				hasData = true
			}
		}
		sr.err = sc.Err()
	}()
	return sr
}

// next returns the next event, or false when the stream ended.
func (sr *sseReader) next(t *testing.T) (sseEvent, bool) {
	t.Helper()
	select {
	case ev := <-sr.events:
		return ev, true
	case <-sr.done:
		select {
		case ev := <-sr.events:
			return ev, true
		default:
			return sseEvent{}, false
		}
	case <-time.After(waitLong):
		t.Fatal("timed out waiting for an SSE event")
	}
	return sseEvent{}, false
}

// rest returns the remaining events until the stream ends.
func (sr *sseReader) rest(t *testing.T) []sseEvent {
	t.Helper()
	var out []sseEvent
	for {
		ev, ok := sr.next(t)
		if !ok {
			return out
		}
		out = append(out, ev)
	}
}

// noEvent asserts that nothing arrives for a short while.
func (sr *sseReader) noEvent(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case ev := <-sr.events:
		t.Fatalf("unexpected event %+v", ev)
	case <-time.After(within):
	}
}

func parseSSE(t *testing.T, body []byte) []sseEvent {
	t.Helper()
	return newSSEReader(bytes.NewReader(body)).rest(t)
}

func wantStatus(t *testing.T, resp *http.Response, body []byte, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("status = %d, want %d (body %q)", resp.StatusCode, want, body)
	}
}

// wantRPCError checks a JSON-RPC error body: its code and a null id.
func wantRPCError(t *testing.T, body []byte, code int64) {
	t.Helper()
	m := decodeMessage(t, body)
	if m.Error == nil {
		t.Fatalf("body %q is not an error response", body)
	}
	if m.Error.Code != code {
		t.Errorf("error code = %d, want %d (%s)", m.Error.Code, code, m.Error.Message)
	}
	if m.ID.IsValid() {
		t.Errorf("error id = %s, want null", m.ID.Raw())
	}
	if !bytes.Contains(body, []byte(`"id":null`)) {
		t.Errorf("body %q lacks \"id\":null", body)
	}
}
