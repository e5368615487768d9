package broker_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// balancer is a reverse proxy in front of broker replicas that sends every
// request to another replica than the request before it in the same
// session (round-robin per session; requests without a session, such as
// initialize, take turns over all), so that each step of a conversation
// crosses replicas, as behind a load balancer with no affinity at its
// worst. It records where each request went, and can cut an event stream
// mid-way as a client's network would.
type balancer struct {
	URL       string
	backends  []string // host:port of each replica
	server    *httptest.Server
	transport *http.Transport

	mu       sync.Mutex
	turn     int            // the next replica for a request without a session
	last     map[string]int // session id → the replica of its latest request
	passages []*passage
	cutAfter int // events with an id after which the next event stream answering a POST is cut; 0: none
}

// passage is one request through the balancer.
type passage struct {
	Session     string
	Replica     int
	HTTPMethod  string
	LastEventID string
	// Of a POST with one JSON-RPC message: its method ("response" for a
	// client's answer), its id, the tool a tools/call names, and the
	// request a notifications/cancelled cancels.
	RPC, ID, Tool, Cancels string
	Cut                    bool // the balancer cut the answer short
}

// errStreamCut is what the proxy reads from a stream it cuts: it then
// aborts the client's connection.
var errStreamCut = errors.New("balancer: stream cut")

func startBalancer(t *testing.T, backends []string) *balancer {
	t.Helper()
	b := &balancer{backends: backends, last: map[string]int{}}
	b.transport = http.DefaultTransport.(*http.Transport).Clone()
	proxy := &httputil.ReverseProxy{
		Transport:     b.transport,
		FlushInterval: -1, // events flow as they come
		Rewrite: func(r *httputil.ProxyRequest) {
			p := r.In.Context().Value(passageKey{}).(*passage)
			r.SetURL(&url.URL{Scheme: "http", Host: b.backends[p.Replica]})
		},
		ModifyResponse: b.modifyResponse,
		ErrorLog:       log.New(io.Discard, "", 0),
	}
	b.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := b.route(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), passageKey{}, p)))
	}))
	b.URL = b.server.URL
	t.Cleanup(func() {
		b.server.CloseClientConnections()
		b.server.Close()
		b.transport.CloseIdleConnections()
	})
	return b
}

type passageKey struct{}

// route chooses the replica for a request and records its passage.
func (b *balancer) route(r *http.Request) (*passage, error) {
	p := &passage{Session: r.Header.Get("Mcp-Session-Id"), HTTPMethod: r.Method, LastEventID: r.Header.Get("Last-Event-ID")}
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		p.describe(body)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if last, ok := b.last[p.Session]; ok && p.Session != "" {
		p.Replica = (last + 1) % len(b.backends)
	} else {
		p.Replica = b.turn % len(b.backends)
		b.turn++
	}
	if p.Session != "" {
		b.last[p.Session] = p.Replica
	}
	b.passages = append(b.passages, p)
	return p, nil
}

// describe notes what JSON-RPC message a POST carries.
func (p *passage) describe(body []byte) {
	var m struct {
		Method string          `json:"method"`
		ID     json.RawMessage `json:"id"`
		Params struct {
			Name      string          `json:"name"`
			RequestID json.RawMessage `json:"requestId"`
		} `json:"params"`
	}
	if json.Unmarshal(body, &m) != nil {
		return // a batch, or not JSON: nothing to say about it
	}
	p.RPC, p.ID, p.Cancels = m.Method, string(m.ID), string(m.Params.RequestID)
	if m.Method == "" {
		p.RPC = "response"
	}
	if m.Method == "tools/call" {
		p.Tool = m.Params.Name
	}
}

func (b *balancer) modifyResponse(resp *http.Response) error {
	p := resp.Request.Context().Value(passageKey{}).(*passage)
	b.mu.Lock()
	defer b.mu.Unlock()
	if session := resp.Header.Get("Mcp-Session-Id"); session != "" && p.Session == "" {
		// A new session's next request goes to the replica after this one.
		b.last[session] = p.Replica
	}
	stream := p.HTTPMethod == http.MethodPost && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	if stream && b.cutAfter > 0 {
		p.Cut = true
		resp.Body = &cuttingBody{ReadCloser: resp.Body, events: bufio.NewReader(resp.Body), left: b.cutAfter}
		b.cutAfter = 0
	}
	return nil
}

// cutAfterEvents makes the next event stream that answers a POST end
// after n events with an id: the client's connection is then aborted, as
// if the network had failed.
func (b *balancer) cutAfterEvents(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cutAfter = n
}

// of returns the passages of a session's requests, in the order they came.
func (b *balancer) of(session string) []passage {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []passage
	for _, p := range b.passages {
		if p.Session == session {
			out = append(out, *p)
		}
	}
	return out
}

// servedBy counts a session's requests each replica served.
func (b *balancer) servedBy(session string) []int {
	counts := make([]int, len(b.backends))
	for _, p := range b.of(session) {
		counts[p.Replica]++
	}
	return counts
}

// cuttingBody passes whole events of a stream until left events with an
// id have passed, then fails, which makes the proxy abort the client's
// connection.
type cuttingBody struct {
	io.ReadCloser
	events  *bufio.Reader
	left    int
	pending []byte
	err     error
}

func (c *cuttingBody) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		if c.left == 0 {
			return 0, errStreamCut
		}
		event, err := readEvent(c.events)
		c.pending, c.err = event, err
		if bytes.HasPrefix(event, []byte("id:")) || bytes.Contains(event, []byte("\nid:")) {
			c.left--
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// readEvent reads the raw lines of one event of a stream, up to and with
// the empty line that ends it.
func readEvent(r *bufio.Reader) ([]byte, error) {
	var event []byte
	for {
		line, err := r.ReadBytes('\n')
		event = append(event, line...)
		if err != nil {
			return event, err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return event, nil
		}
	}
}

// sseEvent is one event of a stream as a client reads it.
type sseEvent struct {
	ID, Data string
}

// readEvents reads the events of a stream until it ends; it returns what
// it read, and the error that cut the stream short (nil for a clean end).
func readEvents(body io.Reader) ([]sseEvent, error) {
	r := bufio.NewReader(body)
	var events []sseEvent
	for {
		raw, err := readEvent(r)
		switch {
		case err == io.EOF && len(raw) == 0:
			return events, nil
		case err == io.EOF:
			return events, io.ErrUnexpectedEOF // an event begun and never ended
		case err != nil:
			return events, err
		}
		var e sseEvent
		var data []string
		for _, line := range strings.Split(strings.TrimRight(string(raw), "\r\n"), "\n") {
			line = strings.TrimSuffix(line, "\r")
			if id, ok := strings.CutPrefix(line, "id:"); ok {
				e.ID = strings.TrimSpace(id)
			}
			if d, ok := strings.CutPrefix(line, "data:"); ok {
				data = append(data, strings.TrimPrefix(d, " "))
			}
		}
		e.Data = strings.Join(data, "\n")
		if e.ID == "" && e.Data == "" {
			continue // a comment, kept alive
		}
		events = append(events, e)
	}
}
