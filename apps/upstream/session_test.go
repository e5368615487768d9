package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// The tests in this file use small hand-written servers for what the SDK
// server never does: broken streams, oversized or malformed messages, odd
// status codes.

const fixtureSessionID = "sess-1"

// fixture is the state one hand-written server shares with its test.
type fixture struct {
	mu       sync.Mutex
	requests []recordedRequest
	posts    int
	gets     int
}

func (f *fixture) record(r *http.Request) (posts, gets int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, recordedRequest{Method: r.Method, Header: r.Header.Clone()})
	switch r.Method {
	case http.MethodPost:
		f.posts++
	case http.MethodGet:
		f.gets++
	}
	return f.posts, f.gets
}

func (f *fixture) recorded() []recordedRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recordedRequest(nil), f.requests...)
}

func (f *fixture) count(method string) int {
	n := 0
	for _, r := range f.recorded() {
		if r.Method == method {
			n++
		}
	}
	return n
}

// serve starts a server whose handler also receives the decoded POST body
// (nil for other methods) and the number of requests of its method so far.
func serve(t *testing.T, f *fixture, handler func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int)) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts, gets := f.record(r)
		n := gets
		var m *jsonrpc.Message
		if r.Method == http.MethodPost {
			n = posts
			body, err := io.ReadAll(r.Body)
			if err == nil {
				m, err = jsonrpc.Decode(body)
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
		handler(w, r, m, n)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func startStream(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	flush(w)
}

func event(w http.ResponseWriter, text string) {
	_, _ = io.WriteString(w, text)
	flush(w)
}

func flush(w http.ResponseWriter) { _ = http.NewResponseController(w).Flush() }

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func resultFor(m *jsonrpc.Message, result string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":%s}`, m.ID, result)
}

const progressEvent = `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}`

func TestCall(t *testing.T) {
	type result struct {
		reply    *jsonrpc.Message
		err      error
		messages []*jsonrpc.Message
		elapsed  time.Duration
	}
	tests := []struct {
		name      string
		maxBytes  int64
		sessionID string // default fixtureSessionID; "-" for none
		timeout   time.Duration
		// streaming: the session already had a streamed answer, so its
		// calls run under a detached context.
		streaming bool
		handler   func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int)
		check     func(t *testing.T, f *fixture, got result)
	}{
		{
			name: "json response and request headers",
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				writeJSON(w, http.StatusOK, resultFor(m, `{"ok":true}`))
			},
			check: func(t *testing.T, f *fixture, got result) {
				if got.err != nil || string(got.reply.Result) != `{"ok":true}` {
					t.Fatalf("reply %v, err %v", got.reply, got.err)
				}
				h := f.recorded()[0].Header
				want := map[string]string{
					"Content-Type":        "application/json",
					"Accept":              "application/json, text/event-stream",
					headerSessionID:       fixtureSessionID,
					headerProtocolVersion: testProtocolVersion,
					"Authorization":       "Bearer per-call",
				}
				for k, v := range want {
					if h.Get(k) != v {
						t.Errorf("header %s = %q, want %q", k, h.Get(k), v)
					}
				}
			},
		},
		{
			name: "stream delivers other messages first and skips priming and foreign events",
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				startStream(w)
				event(w, "id: s_0\nretry: 10\ndata:\n\n")
				event(w, ": keep-alive\n\nevent: ping\ndata: {}\n\n")
				event(w, "id: s_1\ndata: "+progressEvent+"\n\n")
				event(w, `data: {"jsonrpc":"2.0","id":"srv-1","method":"elicitation/create","params":{}}`+"\n\n")
				event(w, "id: s_2\nevent: message\ndata: "+resultFor(m, `{}`)+"\n\n")
			},
			check: func(t *testing.T, f *fixture, got result) {
				if got.err != nil {
					t.Fatal(got.err)
				}
				if len(got.messages) != 2 || got.messages[0].Method != "notifications/progress" || got.messages[1].Kind() != jsonrpc.KindRequest {
					t.Errorf("messages = %v", got.messages)
				}
			},
		},
		{
			name: "stream dropped mid-call resumes with Last-Event-ID",
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				if r.Method == http.MethodPost {
					startStream(w)
					event(w, "id: s_0\nretry: 10\ndata:\n\n")
					event(w, "id: s_1\ndata: "+progressEvent+"\n\n")
					event(w, "id: s_2\ndata: "+progressEvent) // cut mid-event
					panic(http.ErrAbortHandler)
				}
				if r.Header.Get(headerLastEventID) != "s_1" {
					http.Error(w, "bad Last-Event-ID", http.StatusBadRequest)
					return
				}
				startStream(w)
				event(w, "id: s_2\ndata: "+progressEvent+"\n\n")
				event(w, "id: s_3\ndata: "+`{"jsonrpc":"2.0","id":1001,"result":{"resumed":true}}`+"\n\n")
			},
			check: func(t *testing.T, f *fixture, got result) {
				if got.err != nil {
					t.Fatal(got.err)
				}
				if string(got.reply.Result) != `{"resumed":true}` || len(got.messages) != 2 {
					t.Errorf("reply %s after %d messages, want resumed after 2", got.reply.Result, len(got.messages))
				}
				get := f.recorded()[1]
				want := map[string]string{
					"Accept":              "text/event-stream",
					headerLastEventID:     "s_1",
					headerSessionID:       fixtureSessionID,
					headerProtocolVersion: testProtocolVersion,
					"Authorization":       "Bearer per-call",
				}
				for k, v := range want {
					if get.Header.Get(k) != v {
						t.Errorf("GET header %s = %q, want %q", k, get.Header.Get(k), v)
					}
				}
			},
		},
		{
			name: "stream without event ids cannot resume",
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				startStream(w)
				event(w, "data: "+progressEvent+"\n\n")
			},
			check: func(t *testing.T, f *fixture, got result) {
				if !errors.Is(got.err, ErrStreamEnded) || f.count(http.MethodGet) != 0 {
					t.Fatalf("err %v after %d GETs, want ErrStreamEnded and none", got.err, f.count(http.MethodGet))
				}
			},
		},
		{
			name: "resumption gives up after five attempts without progress",
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				startStream(w)
				if r.Method == http.MethodPost {
					event(w, "id: s_0\nretry: 1\ndata:\n\n")
				}
			},
			check: func(t *testing.T, f *fixture, got result) {
				if !errors.Is(got.err, ErrStreamEnded) || f.count(http.MethodGet) != maxResumeAttempts {
					t.Fatalf("err %v after %d GETs, want ErrStreamEnded after %d", got.err, f.count(http.MethodGet), maxResumeAttempts)
				}
			},
		},
		{
			name: "progress resets the resumption budget",
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				startStream(w)
				if r.Method == http.MethodPost {
					event(w, "id: 0\nretry: 1\ndata:\n\n")
					return
				}
				// Every other GET brings one new event; eight GETs in all.
				if n%2 == 0 {
					event(w, fmt.Sprintf("id: %d\ndata: %s\n\n", n, progressEvent))
				}
				if n == 8 {
					event(w, "data: "+`{"jsonrpc":"2.0","id":1001,"result":{}}`+"\n\n")
				}
			},
			check: func(t *testing.T, f *fixture, got result) {
				if got.err != nil || f.count(http.MethodGet) != 8 {
					t.Fatalf("err %v after %d GETs, want success after 8", got.err, f.count(http.MethodGet))
				}
			},
		},
		{
			name: "server refuses resumption",
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				if r.Method == http.MethodGet {
					http.Error(w, "no", http.StatusMethodNotAllowed)
					return
				}
				startStream(w)
				event(w, "id: s_0\nretry: 1\ndata:\n\n")
			},
			check: func(t *testing.T, f *fixture, got result) {
				if !errors.Is(got.err, ErrNoStream) {
					t.Fatalf("err %v, want ErrNoStream", got.err)
				}
			},
		},
		{
			name:     "oversized event",
			maxBytes: 64,
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				startStream(w)
				event(w, "id: 1\ndata: "+strings.Repeat("x", 100)+"\n\n")
			},
			check: func(t *testing.T, f *fixture, got result) {
				if !errors.Is(got.err, ErrMessageTooLarge) || f.count(http.MethodGet) != 0 {
					t.Fatalf("err %v after %d GETs, want ErrMessageTooLarge without resuming", got.err, f.count(http.MethodGet))
				}
			},
		},
		{
			name:     "oversized JSON body",
			maxBytes: 64,
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				w.Header().Set("Content-Type", "application/json")
				// Streamed without a length, so only the read can catch it.
				event(w, resultFor(m, `"`+strings.Repeat("x", 100)+`"`))
			},
			check: func(t *testing.T, f *fixture, got result) {
				if !errors.Is(got.err, ErrMessageTooLarge) {
					t.Fatalf("err %v, want ErrMessageTooLarge", got.err)
				}
			},
		},
		{
			name: "server error",
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				http.Error(w, "boom\x1b[31m", http.StatusInternalServerError)
			},
			check: func(t *testing.T, f *fixture, got result) {
				var status *StatusError
				if !errors.As(got.err, &status) || status.StatusCode != 500 || status.Body != "boom [31m" {
					t.Fatalf("err %#v, want a sanitized 500 StatusError", got.err)
				}
				if errors.Is(got.err, ErrSessionNotFound) || status.RPCError != nil {
					t.Errorf("err %v: wrongly classified", got.err)
				}
			},
		},
		{
			name: "upstream challenge kept",
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="files:write"`)
				http.Error(w, "forbidden", http.StatusForbidden)
			},
			check: func(t *testing.T, f *fixture, got result) {
				var status *StatusError
				if !errors.As(got.err, &status) || status.StatusCode != 403 || status.WWWAuthenticate != `Bearer error="insufficient_scope", scope="files:write"` {
					t.Fatalf("err %#v, want a 403 StatusError with the challenge", got.err)
				}
			},
		},
		{
			name: "JSON-RPC error body on 400",
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				writeJSON(w, http.StatusBadRequest, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Bad Request: no session"}}`)
			},
			check: func(t *testing.T, f *fixture, got result) {
				var status *StatusError
				if !errors.As(got.err, &status) || status.StatusCode != 400 || status.RPCError == nil || status.RPCError.Code != jsonrpc.CodeInvalidRequest {
					t.Fatalf("err %v, want a 400 StatusError with the JSON-RPC error", got.err)
				}
				var rpcErr *jsonrpc.Error
				if !errors.As(got.err, &rpcErr) || rpcErr.Message != "Bad Request: no session" {
					t.Errorf("errors.As(*jsonrpc.Error) = %v", rpcErr)
				}
			},
		},
		{
			name: "redirect refused",
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				if r.URL.Path == "/elsewhere" {
					writeJSON(w, http.StatusOK, resultFor(m, `{}`))
					return
				}
				http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
			},
			check: func(t *testing.T, f *fixture, got result) {
				var status *StatusError
				if !errors.As(got.err, &status) || status.StatusCode != http.StatusTemporaryRedirect {
					t.Fatalf("err %v, want a 307 StatusError", got.err)
				}
				if n := len(f.recorded()); n != 1 {
					t.Errorf("%d requests, want the redirect not followed", n)
				}
			},
		},
		{
			name:    "slow server hits the deadline",
			timeout: 100 * time.Millisecond,
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			},
			check: func(t *testing.T, f *fixture, got result) {
				if !errors.Is(got.err, context.DeadlineExceeded) {
					t.Fatalf("err %v, want context.DeadlineExceeded", got.err)
				}
				if got.elapsed > 2*time.Second {
					t.Errorf("returned after %v", got.elapsed)
				}
			},
		},
		{
			name:    "stalled stream hits the deadline",
			timeout: 100 * time.Millisecond,
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				startStream(w)
				event(w, "id: 1\ndata: "+progressEvent+"\n\n")
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			},
			check: func(t *testing.T, f *fixture, got result) {
				if !errors.Is(got.err, context.DeadlineExceeded) || len(got.messages) != 1 {
					t.Fatalf("err %v after %d messages, want context.DeadlineExceeded after 1", got.err, len(got.messages))
				}
				if got.elapsed > 2*time.Second {
					t.Errorf("returned after %v", got.elapsed)
				}
			},
		},
		{
			name:      "stalled stream of a streaming session hits the deadline",
			timeout:   100 * time.Millisecond,
			streaming: true,
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				startStream(w)
				<-r.Context().Done()
			},
			check: func(t *testing.T, f *fixture, got result) {
				if !errors.Is(got.err, context.DeadlineExceeded) {
					t.Fatalf("err %v, want context.DeadlineExceeded", got.err)
				}
				if got.elapsed > 2*time.Second {
					t.Errorf("returned after %v", got.elapsed)
				}
			},
		},
		{
			name:    "stalled JSON body hits the deadline",
			timeout: 100 * time.Millisecond,
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				w.Header().Set("Content-Type", "application/json")
				event(w, `{"jsonrpc":"2.0",`)
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			},
			check: func(t *testing.T, f *fixture, got result) {
				if !errors.Is(got.err, context.DeadlineExceeded) {
					t.Fatalf("err %v, want context.DeadlineExceeded", got.err)
				}
				if got.elapsed > 2*time.Second {
					t.Errorf("returned after %v", got.elapsed)
				}
			},
		},
		{
			name: "404 with a session id",
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				writeJSON(w, http.StatusNotFound, `{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}`)
			},
			check: func(t *testing.T, f *fixture, got result) {
				if !errors.Is(got.err, ErrSessionNotFound) {
					t.Fatalf("err %v, want ErrSessionNotFound", got.err)
				}
			},
		},
		{
			name:      "404 without a session id",
			sessionID: "-",
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				http.NotFound(w, r)
			},
			check: func(t *testing.T, f *fixture, got result) {
				var status *StatusError
				if errors.Is(got.err, ErrSessionNotFound) || !errors.As(got.err, &status) || status.StatusCode != 404 {
					t.Fatalf("err %v, want a plain 404 StatusError", got.err)
				}
				if h := f.recorded()[0].Header; h.Get(headerSessionID) != "" {
					t.Errorf("sessionless call sent %s %q", headerSessionID, h.Get(headerSessionID))
				}
			},
		},
		{
			name: "404 that answers the request",
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				writeJSON(w, http.StatusNotFound, fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"error":{"code":-32601,"message":"no such method"}}`, m.ID))
			},
			check: func(t *testing.T, f *fixture, got result) {
				var status *StatusError
				if errors.Is(got.err, ErrSessionNotFound) || !errors.As(got.err, &status) || status.RPCError.Code != jsonrpc.CodeMethodNotFound {
					t.Fatalf("err %v, want a 404 StatusError with method not found", got.err)
				}
			},
		},
		{
			name: "response to another id",
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				writeJSON(w, http.StatusOK, `{"jsonrpc":"2.0","id":999999,"result":{}}`)
			},
			check: func(t *testing.T, f *fixture, got result) {
				if !errors.Is(got.err, ErrProtocol) {
					t.Fatalf("err %v, want ErrProtocol", got.err)
				}
			},
		},
		{
			name: "unexpected content type",
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				w.Header().Set("Content-Type", "text/html")
				_, _ = io.WriteString(w, "<html>")
			},
			check: func(t *testing.T, f *fixture, got result) {
				if !errors.Is(got.err, ErrProtocol) {
					t.Fatalf("err %v, want ErrProtocol", got.err)
				}
			},
		},
		{
			name: "malformed event",
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				startStream(w)
				event(w, "data: {not json\n\n")
			},
			check: func(t *testing.T, f *fixture, got result) {
				if !errors.Is(got.err, ErrProtocol) {
					t.Fatalf("err %v, want ErrProtocol", got.err)
				}
			},
		},
		{
			name: "error response without an id on the stream",
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				startStream(w)
				event(w, `data: {"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`+"\n\n")
			},
			check: func(t *testing.T, f *fixture, got result) {
				var rpcErr *jsonrpc.Error
				if !errors.Is(got.err, ErrProtocol) || !errors.As(got.err, &rpcErr) || rpcErr.Code != jsonrpc.CodeParseError {
					t.Fatalf("err %v, want ErrProtocol with the parse error", got.err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fixture{}
			ts := serve(t, f, tt.handler)
			s := newTestSession(t, ts.URL, tt.maxBytes)
			switch tt.sessionID {
			case "":
				s.SetID(fixtureSessionID)
			case "-":
			default:
				s.SetID(tt.sessionID)
			}
			s.SetProtocolVersion(testProtocolVersion)
			s.streaming.Store(tt.streaming)
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			msg, err := jsonrpc.NewRequest(jsonrpc.Int64ID(1001), "tools/call", map[string]any{"name": "x"})
			if err != nil {
				t.Fatal(err)
			}
			var got result
			start := time.Now()
			got.reply, got.err = s.Call(ctx, msg, http.Header{"Authorization": {"Bearer per-call"}}, func(m *jsonrpc.Message) {
				got.messages = append(got.messages, m)
			})
			got.elapsed = time.Since(start)
			if got.err != nil && got.reply != nil {
				t.Errorf("both a reply and an error")
			}
			tt.check(t, f, got)
		})
	}
}

func TestCallInitialize(t *testing.T) {
	tests := []struct {
		name        string
		sessionID   string // issued by the server; "" for none
		wantErr     error
		wantID      string
		wantVersion string
	}{
		{name: "server issues a session", sessionID: "abc-123", wantID: "abc-123", wantVersion: "2025-06-18"},
		{name: "sessionless server", wantID: "", wantVersion: "2025-06-18"},
		{name: "invalid session id", sessionID: "a b", wantErr: ErrProtocol, wantVersion: "stale"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fixture{}
			ts := serve(t, f, func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				if tt.sessionID != "" {
					w.Header().Set(headerSessionID, tt.sessionID)
				}
				startStream(w)
				event(w, "data: "+resultFor(m, `{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"x","version":"1"}}`)+"\n\n")
			})
			s := newTestSession(t, ts.URL, 0)
			// Left over from a session the upstream forgot.
			s.SetID("stale")
			s.SetProtocolVersion("stale")
			_, err := s.Call(t.Context(), request(t, "initialize", map[string]any{}), nil, nil)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if h := f.recorded()[0].Header; h.Get(headerSessionID) != "" || h.Get(headerProtocolVersion) != "" {
				t.Errorf("initialize sent %s %q and %s %q", headerSessionID, h.Get(headerSessionID), headerProtocolVersion, h.Get(headerProtocolVersion))
			}
			if tt.wantErr == nil && s.ID() != tt.wantID {
				t.Errorf("ID() = %q, want %q", s.ID(), tt.wantID)
			}
			if s.ProtocolVersion() != tt.wantVersion {
				t.Errorf("ProtocolVersion() = %q, want %q", s.ProtocolVersion(), tt.wantVersion)
			}
		})
	}
}

func TestSend(t *testing.T) {
	note, _ := jsonrpc.NewNotification("notifications/cancelled", map[string]any{"requestId": 3})
	answer, _ := jsonrpc.NewResult(jsonrpc.StringID("srv-1"), map[string]any{"action": "decline"})
	tests := []struct {
		name    string
		msg     *jsonrpc.Message
		status  int
		body    string
		wantErr error // nil: success; errAny: some error
	}{
		{name: "notification accepted", msg: note, status: http.StatusAccepted},
		{name: "response accepted", msg: answer, status: http.StatusAccepted},
		{name: "200 with empty body", msg: note, status: http.StatusOK},
		{name: "204", msg: note, status: http.StatusNoContent},
		{name: "200 with a body", msg: note, status: http.StatusOK, body: `{"jsonrpc":"2.0"}`, wantErr: ErrProtocol},
		{name: "session gone", msg: note, status: http.StatusNotFound, wantErr: ErrSessionNotFound},
		{name: "a request is not sent", msg: request(t, "ping", nil), status: http.StatusAccepted, wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fixture{}
			ts := serve(t, f, func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				if string(m.Encode()) != string(tt.msg.Encode()) {
					t.Errorf("server got %s, want %s", m.Encode(), tt.msg.Encode())
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			s := newTestSession(t, ts.URL, 0)
			s.SetID(fixtureSessionID)
			err := s.Send(t.Context(), tt.msg, nil)
			switch {
			case tt.wantErr == errAny:
				if err == nil || len(f.recorded()) != 0 {
					t.Fatalf("err %v after %d requests, want an error and none", err, len(f.recorded()))
				}
			case !errors.Is(err, tt.wantErr):
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestListen(t *testing.T) {
	notification := func(i int) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///%d"}}`, i)
	}
	tests := []struct {
		name         string
		wantMessages int // Listen is stopped once this many arrived
		handler      func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int)
		wantErr      error
		wantStatus   int
		check        func(t *testing.T, f *fixture)
	}{
		{
			name: "no GET stream",
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				http.Error(w, "", http.StatusMethodNotAllowed)
			},
			wantErr: ErrNoStream,
			check: func(t *testing.T, f *fixture) {
				if n := f.count(http.MethodGet); n != 1 {
					t.Errorf("%d GETs, want 1", n)
				}
			},
		},
		{
			name: "session gone",
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				http.NotFound(w, r)
			},
			wantErr: ErrSessionNotFound,
		},
		{
			name: "client error is final",
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				http.Error(w, "", http.StatusForbidden)
			},
			wantStatus: http.StatusForbidden,
		},
		{
			name:         "reconnects after a drop with Last-Event-ID",
			wantMessages: 3,
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				switch n {
				case 1:
					startStream(w)
					event(w, "retry: 10\nid: 7\ndata: "+notification(1)+"\n\n")
				case 2:
					http.Error(w, "restarting", http.StatusServiceUnavailable)
				case 3:
					startStream(w)
					event(w, "data: "+notification(2)+"\n\n")
					panic(http.ErrAbortHandler)
				default:
					startStream(w)
					event(w, "id: 8\ndata: "+notification(3)+"\n\n")
					<-r.Context().Done()
				}
			},
			wantErr: context.Canceled,
			check: func(t *testing.T, f *fixture) {
				for i, r := range f.recorded() {
					if r.Header.Get("Accept") != "text/event-stream" || r.Header.Get(headerSessionID) != fixtureSessionID {
						t.Errorf("GET %d headers %v", i+1, r.Header)
					}
					want := "7"
					if i == 0 {
						want = ""
					}
					if got := r.Header.Get(headerLastEventID); got != want {
						t.Errorf("GET %d Last-Event-ID = %q, want %q", i+1, got, want)
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fixture{}
			ts := serve(t, f, tt.handler)
			s := newTestSession(t, ts.URL, 0)
			s.SetID(fixtureSessionID)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			timer := time.AfterFunc(10*time.Second, cancel)
			defer timer.Stop()
			var got []string
			err := s.Listen(ctx, nil, func(m *jsonrpc.Message) {
				got = append(got, string(m.Params))
				if len(got) == tt.wantMessages {
					cancel()
				}
			})
			if !checkErr(err, tt.wantErr, tt.wantStatus) {
				t.Fatalf("Listen: %v, want %v or HTTP %d", err, tt.wantErr, tt.wantStatus)
			}
			if len(got) != tt.wantMessages {
				t.Errorf("got %d messages, want %d", len(got), tt.wantMessages)
			}
			if tt.check != nil {
				tt.check(t, f)
			}
		})
	}
}

// checkErr reports whether err is want, or, when want is zero and code is
// not, a *StatusError with that code.
func checkErr(err, want error, code int) bool {
	if code != 0 {
		var status *StatusError
		return errors.As(err, &status) && status.StatusCode == code
	}
	return errors.Is(err, want)
}

func TestClose(t *testing.T) {
	tests := []struct {
		name       string
		sessionID  string
		status     int
		wantErr    error
		wantStatus int
		wantReqs   int
	}{
		{name: "deleted", sessionID: fixtureSessionID, status: http.StatusNoContent, wantReqs: 1},
		{name: "server does not delete sessions", sessionID: fixtureSessionID, status: http.StatusMethodNotAllowed, wantReqs: 1},
		{name: "already gone", sessionID: fixtureSessionID, status: http.StatusNotFound, wantReqs: 1},
		{name: "server error", sessionID: fixtureSessionID, status: http.StatusBadGateway, wantStatus: http.StatusBadGateway, wantReqs: 1},
		{name: "sessionless", status: http.StatusNoContent, wantReqs: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fixture{}
			ts := serve(t, f, func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				w.WriteHeader(tt.status)
			})
			s := newTestSession(t, ts.URL, 0)
			s.SetID(tt.sessionID)
			err := s.Close(t.Context(), http.Header{"Authorization": {"Bearer x"}})
			if !checkErr(err, tt.wantErr, tt.wantStatus) {
				t.Fatalf("Close: %v, want %v or HTTP %d", err, tt.wantErr, tt.wantStatus)
			}
			reqs := f.recorded()
			if len(reqs) != tt.wantReqs {
				t.Fatalf("%d requests, want %d", len(reqs), tt.wantReqs)
			}
			for _, r := range reqs {
				if r.Method != http.MethodDelete || r.Header.Get(headerSessionID) != tt.sessionID || r.Header.Get("Authorization") != "Bearer x" {
					t.Errorf("request %s with %v", r.Method, r.Header)
				}
			}
		})
	}
}

// TestConnectionReuse checks that every kind of answer leaves its
// connection reusable: the client never closes one, so the server never
// sees a connection end while the test runs.
func TestConnectionReuse(t *testing.T) {
	var (
		mu                 sync.Mutex
		opened, closedConn int
	)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		m, err := jsonrpc.Decode(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		switch m.Method {
		case "json":
			writeJSON(w, http.StatusOK, resultFor(m, `{}`))
		case "stream":
			startStream(w)
			event(w, "id: 1\ndata: "+progressEvent+"\n\n")
			event(w, "id: 2\ndata: "+resultFor(m, `{}`)+"\n\n")
			// The stream ends a little after the response, as a server's
			// handler returns: Call must not wait, nor lose the connection.
			time.Sleep(20 * time.Millisecond)
		case "fail":
			// Longer than the part of an error body that is read.
			http.Error(w, strings.Repeat("x", 40<<10), http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusAccepted)
			_, _ = io.WriteString(w, "accepted\n")
		}
	}))
	ts.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch state {
		case http.StateNew:
			opened++
		case http.StateClosed:
			closedConn++
		}
	}
	ts.Start()
	t.Cleanup(ts.Close)
	s := newTestSession(t, ts.URL, 0)
	// The session learns from its first streamed answer (initialize, for
	// the broker) that this upstream streams; that call has time to read
	// the end of its stream.
	if _, err := s.Call(t.Context(), request(t, "stream", nil), nil, nil); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		method string
		wantOK bool
	}{{"json", true}, {"stream", true}, {"fail", false}, {"notifications/x", true}, {"stream", true}, {"json", true}, {"stream", true}}
	for _, step := range steps {
		// Each exchange has its own context, ended as soon as it returns,
		// as the broker's calls do.
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		var err error
		if strings.HasPrefix(step.method, "notifications/") {
			note, _ := jsonrpc.NewNotification(step.method, nil)
			err = s.Send(ctx, note, nil)
		} else {
			_, err = s.Call(ctx, request(t, step.method, nil), nil, nil)
		}
		cancel()
		if (err == nil) != step.wantOK {
			t.Fatalf("%s: %v", step.method, err)
		}
	}
	// A stream's connection returns to the pool after Call, once the
	// server's end of stream is read; give a dropped one time to show.
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if closedConn != 0 {
		t.Errorf("%d of %d connections closed during %d exchanges, want none", closedConn, opened, len(steps))
	}
}

func TestNewSessionRejectsBadURL(t *testing.T) {
	for _, raw := range []string{"", "localhost:8080/mcp", "ftp://example.com/mcp", "http:///mcp", "http://%zz"} {
		if _, err := NewSession(&Options{URL: raw}); err == nil {
			t.Errorf("NewSession(%q) succeeded", raw)
		}
	}
}
