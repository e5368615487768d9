package provider

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

func TestInitializeIssuesSessionID(t *testing.T) {
	h := newHarness(t, nil)
	seen := make(map[string]bool)
	for i := 0; i < 20; i++ {
		resp, body := h.doBody(call{subject: "alice", body: initializeBody(i+1, "2025-06-18", "")})
		wantStatus(t, resp, body, http.StatusOK)
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		sid := resp.Header.Get("Mcp-Session-Id")
		if sid == "" {
			t.Fatal("no Mcp-Session-Id")
		}
		for _, c := range []byte(sid) {
			if c < 0x21 || c > 0x7e {
				t.Fatalf("session id %q has byte %#x outside visible ASCII", sid, c)
			}
		}
		if seen[sid] {
			t.Fatalf("session id %q issued twice", sid)
		}
		seen[sid] = true
		m := decodeMessage(t, body)
		if m.Error != nil || m.ID.Raw() != jsonrpc.Int64ID(int64(i+1)).Raw() {
			t.Fatalf("initialize response %s", body)
		}
		var res struct{ ProtocolVersion string }
		_ = json.Unmarshal(m.Result, &res)
		if res.ProtocolVersion != "2025-06-18" {
			t.Errorf("negotiated %q", res.ProtocolVersion)
		}
	}
}

func TestInitializeDoesNotNeedVersionHeader(t *testing.T) {
	h := newHarness(t, nil)
	for _, v := range []string{"-", "2025-06-18", "2025-11-25"} {
		resp, body := h.doBody(call{subject: "a", version: v, body: initializeBody(1, "2025-11-25", "")})
		wantStatus(t, resp, body, http.StatusOK)
	}
}

func TestFailedInitializeOpensNoSession(t *testing.T) {
	h := newHarness(t, nil)
	resp, body := h.doBody(call{subject: "a", body: `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"fail":true}}`})
	wantStatus(t, resp, body, http.StatusOK)
	if sid := resp.Header.Get("Mcp-Session-Id"); sid != "" {
		t.Errorf("failed initialize issued session id %q", sid)
	}
	if m := decodeMessage(t, body); m.Error == nil {
		t.Errorf("want an error response, got %s", body)
	}
	// A notification named initialize is not a request.
	resp, body = h.doBody(call{subject: "a", body: `{"jsonrpc":"2.0","method":"initialize"}`})
	wantStatus(t, resp, body, http.StatusBadRequest)
}

func TestStreamablePost(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxBodyBytes = 4096 })
	fresh := func() string { return h.initialize("alice", "2025-06-18") }
	echo := requestBody(5, "echo", `{"x":1}`)

	tests := []struct {
		name       string
		call       func() call
		wantStatus int
		wantCode   int64 // JSON-RPC error code of the body, 0 to skip
		check      func(t *testing.T, resp *http.Response, body []byte)
	}{
		{
			name:       "request without session id",
			call:       func() call { return call{subject: "alice", body: echo} },
			wantStatus: http.StatusBadRequest, wantCode: jsonrpc.CodeInvalidRequest,
		},
		{
			name: "notification without session id",
			call: func() call {
				return call{subject: "alice", body: `{"jsonrpc":"2.0","method":"notifications/initialized"}`}
			},
			wantStatus: http.StatusBadRequest,
		},
		{
			name:       "garbage session id",
			call:       func() call { return call{subject: "alice", session: "not-a-session", body: echo} },
			wantStatus: http.StatusNotFound,
		},
		{
			name: "well-formed unknown session id",
			call: func() call {
				return call{subject: "alice", session: strings.Repeat("A", 96), body: echo}
			},
			wantStatus: http.StatusNotFound,
		},
		{
			name:       "oversized session id",
			call:       func() call { return call{subject: "alice", session: strings.Repeat("A", 9000), body: echo} },
			wantStatus: http.StatusNotFound,
		},
		{
			name: "tampered session id",
			call: func() call {
				sid := []byte(fresh())
				i := len(sid) / 2
				if sid[i] == 'A' {
					sid[i] = 'B'
				} else {
					sid[i] = 'A'
				}
				return call{subject: "alice", session: string(sid), body: echo}
			},
			wantStatus: http.StatusNotFound,
		},
		{
			name: "notification only",
			call: func() call {
				return call{subject: "alice", session: fresh(), body: `{"jsonrpc":"2.0","method":"notifications/initialized"}`}
			},
			wantStatus: http.StatusAccepted,
			check: func(t *testing.T, resp *http.Response, body []byte) {
				if len(body) != 0 {
					t.Errorf("202 with body %q", body)
				}
			},
		},
		{
			name: "response only",
			call: func() call {
				return call{subject: "alice", session: fresh(), body: `{"jsonrpc":"2.0","id":"srv-1","result":{"roots":[]}}`}
			},
			wantStatus: http.StatusAccepted,
			check: func(t *testing.T, resp *http.Response, body []byte) {
				if len(body) != 0 {
					t.Errorf("202 with body %q", body)
				}
			},
		},
		{
			name: "error response only",
			call: func() call {
				return call{subject: "alice", session: fresh(), body: `{"jsonrpc":"2.0","id":"srv-2","error":{"code":-1,"message":"user declined"}}`}
			},
			wantStatus: http.StatusAccepted,
		},
		{
			name:       "request accepting both gets SSE",
			call:       func() call { return call{subject: "alice", session: fresh(), body: echo} },
			wantStatus: http.StatusOK,
			check: func(t *testing.T, resp *http.Response, body []byte) {
				if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
					t.Fatalf("Content-Type = %q", ct)
				}
				if ce := resp.Header.Get("Content-Encoding"); ce != "" {
					t.Errorf("SSE compressed: %q", ce)
				}
				events := parseSSE(t, body)
				if len(events) != 1 {
					t.Fatalf("events = %+v", events)
				}
				if events[0].id == "" {
					t.Error("SSE event without id: not resumable")
				}
				m := decodeMessage(t, []byte(events[0].data))
				if m.ID.Raw() != "5" || string(m.Result) != `{"x":1}` {
					t.Errorf("response %s", events[0].data)
				}
			},
		},
		{
			name: "request accepting JSON only",
			call: func() call {
				return call{subject: "alice", session: fresh(), accept: "application/json", body: echo}
			},
			wantStatus: http.StatusOK,
			check: func(t *testing.T, resp *http.Response, body []byte) {
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Fatalf("Content-Type = %q", ct)
				}
				m := decodeMessage(t, body)
				if m.ID.Raw() != "5" || string(m.Result) != `{"x":1}` {
					t.Errorf("response %s", body)
				}
			},
		},
		{
			name: "request accepting SSE only",
			call: func() call {
				return call{subject: "alice", session: fresh(), accept: "text/event-stream", body: echo}
			},
			wantStatus: http.StatusOK,
			check: func(t *testing.T, resp *http.Response, body []byte) {
				if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
					t.Fatalf("Content-Type = %q", ct)
				}
			},
		},
		{
			name: "accept neither",
			call: func() call {
				return call{subject: "alice", session: fresh(), accept: "text/html", body: echo}
			},
			wantStatus: http.StatusNotAcceptable,
		},
		{
			name: "wrong content type",
			call: func() call {
				return call{subject: "alice", session: fresh(), contentType: "text/plain", body: echo}
			},
			wantStatus: http.StatusUnsupportedMediaType,
		},
		{
			name: "form content type",
			call: func() call {
				return call{subject: "alice", session: fresh(), contentType: "application/x-www-form-urlencoded", body: echo}
			},
			wantStatus: http.StatusUnsupportedMediaType,
		},
		{
			name:       "missing content type",
			call:       func() call { return call{subject: "alice", session: fresh(), contentType: "-", body: echo} },
			wantStatus: http.StatusUnsupportedMediaType,
		},
		{
			name: "content type with charset",
			call: func() call {
				return call{subject: "alice", session: fresh(), contentType: "application/json; charset=utf-8", body: echo}
			},
			wantStatus: http.StatusOK,
		},
		{
			name: "body over MaxBodyBytes",
			call: func() call {
				return call{subject: "alice", session: fresh(), body: requestBody(1, "echo", `{"pad":"`+strings.Repeat("x", 5000)+`"}`)}
			},
			wantStatus: http.StatusRequestEntityTooLarge,
		},
		{
			name:       "malformed JSON",
			call:       func() call { return call{subject: "alice", session: fresh(), body: `{"jsonrpc":"2.0","id":1,`} },
			wantStatus: http.StatusBadRequest, wantCode: jsonrpc.CodeParseError,
		},
		{
			name:       "malformed JSON without session",
			call:       func() call { return call{subject: "alice", body: `not json`} },
			wantStatus: http.StatusBadRequest, wantCode: jsonrpc.CodeParseError,
		},
		{
			name:       "empty body",
			call:       func() call { return call{subject: "alice", session: fresh(), body: ""} },
			wantStatus: http.StatusBadRequest, wantCode: jsonrpc.CodeParseError,
		},
		{
			name: "invalid JSON-RPC",
			call: func() call {
				return call{subject: "alice", session: fresh(), body: `{"jsonrpc":"1.0","id":1,"method":"x"}`}
			},
			wantStatus: http.StatusBadRequest,
		},
		{
			name: "unsupported protocol version header",
			call: func() call {
				return call{subject: "alice", session: fresh(), version: "1999-01-01", body: echo}
			},
			wantStatus: http.StatusBadRequest,
		},
		{
			name: "a supported protocol version other than the negotiated one is served",
			call: func() call {
				return call{subject: "alice", session: fresh(), version: "2025-03-26", body: echo}
			},
			wantStatus: http.StatusOK,
		},
		{
			name: "malformed protocol version header",
			call: func() call {
				return call{subject: "alice", session: fresh(), version: "2025-06-18; drop", body: echo}
			},
			wantStatus: http.StatusBadRequest,
		},
		{
			name:       "missing protocol version header",
			call:       func() call { return call{subject: "alice", session: fresh(), body: echo} },
			wantStatus: http.StatusOK,
		},
		{
			name: "matching protocol version header",
			call: func() call {
				return call{subject: "alice", session: fresh(), version: "2025-06-18", body: echo}
			},
			wantStatus: http.StatusOK,
		},
		{
			name:       "PUT",
			call:       func() call { return call{method: http.MethodPut, subject: "alice", session: fresh(), body: echo} },
			wantStatus: http.StatusMethodNotAllowed,
			check: func(t *testing.T, resp *http.Response, body []byte) {
				allow := resp.Header.Get("Allow")
				for _, m := range []string{"GET", "POST", "DELETE"} {
					if !strings.Contains(allow, m) {
						t.Errorf("Allow = %q, missing %s", allow, m)
					}
				}
			},
		},
		{
			name: "admission refusal",
			call: func() call {
				return call{subject: "alice", session: fresh(), body: echo, header: http.Header{"X-Test-Deny": {"1"}}}
			},
			wantStatus: http.StatusUnauthorized,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := h.doBody(tt.call())
			wantStatus(t, resp, body, tt.wantStatus)
			if tt.wantCode != 0 {
				wantRPCError(t, body, tt.wantCode)
			}
			if tt.check != nil {
				tt.check(t, resp, body)
			}
		})
	}
}

func TestNotificationsReachDispatcher(t *testing.T) {
	h := newHarness(t, nil)
	sid := h.initialize("alice", "2025-06-18")
	resp, _ := h.doBody(call{subject: "alice", session: sid, body: `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}`})
	wantStatus(t, resp, nil, http.StatusAccepted)
	h.d.mu.Lock()
	defer h.d.mu.Unlock()
	if len(h.d.received) != 1 || h.d.received[0].Method != "notifications/cancelled" {
		t.Errorf("dispatcher received %v", h.d.received)
	}
}

func TestDelete(t *testing.T) {
	h := newHarness(t, nil)
	sid := h.initialize("alice", "2025-06-18")
	_ = h.d.closedIDs()

	resp, body := h.doBody(call{method: http.MethodDelete, subject: "alice", session: sid})
	wantStatus(t, resp, body, http.StatusNoContent)
	if got := h.d.closedIDs(); got[sid] != 1 {
		t.Errorf("Closed calls = %v, want one for the session", got)
	}
	for _, c := range []call{
		{method: http.MethodPost, subject: "alice", session: sid, body: requestBody(2, "echo", "")},
		{method: http.MethodPost, subject: "alice", session: sid, body: `{"jsonrpc":"2.0","method":"notifications/x"}`},
		{method: http.MethodGet, subject: "alice", session: sid},
		{method: http.MethodDelete, subject: "alice", session: sid},
	} {
		resp, body := h.doBody(c)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s after DELETE: %d %q, want 404", c.method, resp.StatusCode, body)
		}
	}
	if got := h.d.closedIDs(); len(got) != 0 {
		t.Errorf("Closed called again: %v", got)
	}

	resp, body = h.doBody(call{method: http.MethodDelete, subject: "alice"})
	wantStatus(t, resp, body, http.StatusBadRequest)
}

func TestDeleteEndsOpenStreams(t *testing.T) {
	h := newHarness(t, nil)
	sid := h.initialize("alice", "2025-06-18")
	resp := h.do(call{method: http.MethodGet, subject: "alice", session: sid})
	defer resp.Body.Close()
	wantStatus(t, resp, nil, http.StatusOK)
	l := h.d.waitListen(t)
	sr := newSSEReader(resp.Body)

	r2, body := h.doBody(call{method: http.MethodDelete, subject: "alice", session: sid})
	wantStatus(t, r2, body, http.StatusNoContent)
	select {
	case <-l.ctx.Done():
	case <-time.After(waitLong):
		t.Fatal("Listen context not cancelled by DELETE")
	}
	if rest := sr.rest(t); len(rest) != 0 {
		t.Errorf("events after DELETE: %+v", rest)
	}
}

func TestDeleteDisabled(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.AllowClientTermination = false })
	sid := h.initialize("alice", "2025-06-18")
	resp, body := h.doBody(call{method: http.MethodDelete, subject: "alice", session: sid})
	wantStatus(t, resp, body, http.StatusMethodNotAllowed)
	if allow := resp.Header.Get("Allow"); strings.Contains(allow, "DELETE") || !strings.Contains(allow, "POST") {
		t.Errorf("Allow = %q", allow)
	}
	resp, body = h.doBody(call{subject: "alice", session: sid, body: requestBody(2, "echo", "")})
	wantStatus(t, resp, body, http.StatusOK)

	// Other methods must not advertise DELETE either.
	resp, body = h.doBody(call{method: http.MethodPut, subject: "alice", session: sid, body: "{}"})
	wantStatus(t, resp, body, http.StatusMethodNotAllowed)
	if allow := resp.Header.Get("Allow"); strings.Contains(allow, "DELETE") {
		t.Errorf("PUT: Allow = %q advertises DELETE, which answers 405", allow)
	}
}

func TestBatches(t *testing.T) {
	h := newHarness(t, nil)
	batch := `[
		{"jsonrpc":"2.0","id":1,"method":"echo","params":{"n":1}},
		{"jsonrpc":"2.0","method":"notifications/progress","params":{}},
		{"jsonrpc":"2.0","id":"two","method":"echo","params":{"n":2}},
		{"jsonrpc":"2.0","id":"r","result":{}}
	]`
	wantIDs := func(t *testing.T, msgs []*jsonrpc.Message, ids ...string) {
		t.Helper()
		if len(msgs) != len(ids) {
			t.Fatalf("got %d responses, want %d", len(msgs), len(ids))
		}
		got := make(map[string]bool)
		for _, m := range msgs {
			if m.Kind() != jsonrpc.KindResponse {
				t.Errorf("non-response %s", m.Encode())
			}
			got[m.ID.Raw()] = true
		}
		for _, id := range ids {
			if !got[id] {
				t.Errorf("no response for id %s", id)
			}
		}
	}

	t.Run("2025-03-26 JSON", func(t *testing.T) {
		sid := h.initialize("alice", "2025-03-26")
		resp, body := h.doBody(call{subject: "alice", session: sid, accept: "application/json", body: batch})
		wantStatus(t, resp, body, http.StatusOK)
		if !strings.HasPrefix(strings.TrimSpace(string(body)), "[") {
			t.Errorf("batch answered without an array: %s", body)
		}
		wantIDs(t, responseMessages(t, resp, body), "1", `"two"`)
	})
	t.Run("2025-03-26 SSE", func(t *testing.T) {
		sid := h.initialize("alice", "2025-03-26")
		resp, body := h.doBody(call{subject: "alice", session: sid, body: batch})
		wantStatus(t, resp, body, http.StatusOK)
		wantIDs(t, responseMessages(t, resp, body), "1", `"two"`)
	})
	t.Run("2025-03-26 single-request batch stays an array", func(t *testing.T) {
		sid := h.initialize("alice", "2025-03-26")
		resp, body := h.doBody(call{subject: "alice", session: sid, accept: "application/json", body: `[` + requestBody(9, "echo", "") + `]`})
		wantStatus(t, resp, body, http.StatusOK)
		if !strings.HasPrefix(string(body), "[") {
			t.Errorf("body %s", body)
		}
	})
	t.Run("2025-03-26 notifications only", func(t *testing.T) {
		sid := h.initialize("alice", "2025-03-26")
		resp, body := h.doBody(call{subject: "alice", session: sid, body: `[{"jsonrpc":"2.0","method":"a"},{"jsonrpc":"2.0","id":3,"result":{}}]`})
		wantStatus(t, resp, body, http.StatusAccepted)
		if len(body) != 0 {
			t.Errorf("202 with body %q", body)
		}
	})
	t.Run("2025-03-26 invalid entries", func(t *testing.T) {
		sid := h.initialize("alice", "2025-03-26")
		body := `[{"jsonrpc":"2.0","id":1,"method":"echo"}, 42, {"jsonrpc":"1.0","id":"bad","method":"x"}, {"jsonrpc":"2.0","id":2,"method":"initialize","params":{}}]`
		resp, out := h.doBody(call{subject: "alice", session: sid, accept: "application/json", body: body})
		wantStatus(t, resp, out, http.StatusOK)
		msgs := responseMessages(t, resp, out)
		if len(msgs) != 4 {
			t.Fatalf("want 4 responses, got %s", out)
		}
		var errs, ok int
		for _, m := range msgs {
			if m.Error != nil {
				errs++
			} else {
				ok++
			}
		}
		if ok != 1 || errs != 3 {
			t.Errorf("want 1 result and 3 errors, got %s", out)
		}
	})
	t.Run("empty batch", func(t *testing.T) {
		sid := h.initialize("alice", "2025-03-26")
		resp, body := h.doBody(call{subject: "alice", session: sid, body: `[]`})
		wantStatus(t, resp, body, http.StatusBadRequest)
		wantRPCError(t, body, jsonrpc.CodeInvalidRequest)
	})
	for _, v := range []string{"2025-06-18", "2025-11-25"} {
		t.Run(v+" rejects batches", func(t *testing.T) {
			sid := h.initialize("alice", v)
			resp, body := h.doBody(call{subject: "alice", session: sid, body: batch})
			wantStatus(t, resp, body, http.StatusBadRequest)
		})
	}
	t.Run("initialize in a batch opens no session", func(t *testing.T) {
		resp, body := h.doBody(call{subject: "alice", body: `[` + initializeBody(1, "2025-03-26", "") + `]`})
		if resp.StatusCode == http.StatusOK || resp.Header.Get("Mcp-Session-Id") != "" {
			t.Errorf("batched initialize: %d %q session %q", resp.StatusCode, body, resp.Header.Get("Mcp-Session-Id"))
		}
	})
}

func TestGetStream(t *testing.T) {
	h := newHarness(t, nil)
	sid := h.initialize("alice", "2025-06-18")

	for _, accept := range []string{"-", "application/json", "text/html"} {
		resp, body := h.doBody(call{method: http.MethodGet, subject: "alice", session: sid, accept: accept})
		if resp.StatusCode != http.StatusNotAcceptable {
			t.Errorf("GET Accept %q: %d %q, want 406", accept, resp.StatusCode, body)
		}
	}
	resp, body := h.doBody(call{method: http.MethodGet, subject: "alice"})
	wantStatus(t, resp, body, http.StatusBadRequest)
	resp, body = h.doBody(call{method: http.MethodGet, subject: "alice", session: sid, version: "1999-01-01"})
	wantStatus(t, resp, body, http.StatusBadRequest)

	resp = h.do(call{method: http.MethodGet, subject: "alice", session: sid, version: "2025-06-18"})
	wantStatus(t, resp, nil, http.StatusOK)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	sr := newSSEReader(resp.Body)
	l := h.d.waitListen(t)
	if l.s.ID != sid {
		t.Fatalf("Listen for session %q, want %q", l.s.ID, sid)
	}
	n, _ := jsonrpc.NewNotification("notifications/tools/list_changed", nil)
	if !l.s.Notify(n) {
		t.Fatal("Notify reports no listener")
	}
	ev, ok := sr.next(t)
	if !ok {
		t.Fatal("stream ended")
	}
	if m := decodeMessage(t, []byte(ev.data)); m.Method != "notifications/tools/list_changed" {
		t.Errorf("event %+v", ev)
	}
	if ev.id == "" {
		t.Error("GET stream event without id")
	}

	// A second concurrent GET is refused.
	resp2, body := h.doBody(call{method: http.MethodGet, subject: "alice", session: sid})
	wantStatus(t, resp2, body, http.StatusConflict)

	// Leaving ends Listen's context; the session then accepts a new GET.
	resp.Body.Close()
	select {
	case <-l.ctx.Done():
	case <-time.After(waitLong):
		t.Fatal("Listen context outlived the GET stream")
	}
	var resp3 *http.Response
	deadline := time.Now().Add(waitLong)
	for {
		resp3 = h.do(call{method: http.MethodGet, subject: "alice", session: sid})
		if resp3.StatusCode != http.StatusConflict || time.Now().After(deadline) {
			break
		}
		resp3.Body.Close()
		time.Sleep(10 * time.Millisecond)
	}
	defer resp3.Body.Close()
	wantStatus(t, resp3, nil, http.StatusOK)
	h.d.waitListen(t)
}

// TestCancelledRequest: a dispatcher returns nil for a request the client
// cancelled; the client expects no answer to it.
func TestCancelledRequest(t *testing.T) {
	h := newHarness(t, nil)
	sid := h.initialize("alice", "2025-03-26")
	for _, accept := range []string{"application/json", acceptBoth} {
		t.Run("single "+accept, func(t *testing.T) {
			resp, body := h.doBody(call{subject: "alice", session: sid, accept: accept, body: requestBody(3, "drop", "")})
			wantStatus(t, resp, body, http.StatusAccepted)
			if len(body) != 0 {
				t.Errorf("body %q", body)
			}
		})
		t.Run("batch "+accept, func(t *testing.T) {
			resp, body := h.doBody(call{subject: "alice", session: sid, accept: accept,
				body: "[" + requestBody(4, "drop", "") + "," + requestBody(5, "echo", "") + "]"})
			wantStatus(t, resp, body, http.StatusOK)
			msgs := responseMessages(t, resp, body)
			if len(msgs) != 1 || msgs[0].ID.Raw() != "5" {
				t.Errorf("want only the answer to 5, got %q", body)
			}
		})
	}
}

// TestSSEMultilineData: the dispatcher forwards raw JSON as it came (here a
// pretty-printed params object echoed back, as an upstream's pretty-printed
// result would be). SSE data must be framed line by line, or the client
// receives only the first line.
func TestSSEMultilineData(t *testing.T) {
	h := newHarness(t, nil)
	sid := h.initialize("alice", "2025-06-18")
	params := "{\n  \"text\": \"a\",\r\n  \"n\": 1\r}"
	body := `{"jsonrpc":"2.0","id":1,"method":"echo","params":` + params + `}`

	resp, out := h.doBody(call{subject: "alice", session: sid, accept: "application/json", body: body})
	wantStatus(t, resp, out, http.StatusOK)
	decodeMessage(t, out)

	resp, out = h.doBody(call{subject: "alice", session: sid, body: body})
	wantStatus(t, resp, out, http.StatusOK)
	events := parseSSE(t, out)
	if len(events) != 1 {
		t.Fatalf("events %+v from %q", events, out)
	}
	m, err := jsonrpc.Decode([]byte(events[0].data))
	if err != nil {
		t.Fatalf("SSE event is not a JSON-RPC message: %v\nraw stream: %q", err, out)
	}
	var got struct {
		Text string
		N    int
	}
	if err := json.Unmarshal(m.Result, &got); err != nil || got.Text != "a" || got.N != 1 {
		t.Errorf("result %s", m.Result)
	}
}

func TestRelatedMessagesWithoutSSE(t *testing.T) {
	h := newHarness(t, nil)
	sid := h.initialize("alice", "2025-06-18")
	resp, body := h.doBody(call{subject: "alice", session: sid, accept: "application/json", body: requestBody(4, "stream", `{"n":3}`)})
	wantStatus(t, resp, body, http.StatusOK)
	if m := decodeMessage(t, body); m.ID.Raw() != "4" || m.Error != nil {
		t.Errorf("response %s", body)
	}
	select {
	case r := <-h.d.streams:
		if len(r.sendErrors) != 3 {
			t.Errorf("Send errors = %v, want 3 × ErrNoStream", r.sendErrors)
		}
		for _, err := range r.sendErrors {
			if err != ErrNoStream {
				t.Errorf("Send error %v, want ErrNoStream", err)
			}
		}
	case <-time.After(waitLong):
		t.Fatal("stream request not served")
	}
}

func TestMaxSessions(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxSessions = 2 })
	h.initialize("a", "2025-06-18")
	h.initialize("b", "2025-06-18")
	_ = h.d.closedIDs()
	resp, body := h.doBody(call{subject: "c", body: initializeBody(1, "2025-06-18", "")})
	wantStatus(t, resp, body, http.StatusServiceUnavailable)
	if resp.Header.Get("Mcp-Session-Id") != "" {
		t.Error("refused initialize issued a session id")
	}
	if got := h.d.closedIDs(); len(got) != 0 {
		t.Errorf("Closed calls %v, want none: the refused session was never dispatched", got)
	}
}

// One client address may hold so many sessions, whoever it says it is;
// a refused initialize is never dispatched, so it costs no upstream work;
// sessions ended give their places back.
func TestMaxSessionsPerAddress(t *testing.T) {
	var refused []string
	h := newHarness(t, func(o *Options) {
		o.MaxSessionsPerAddress = 2
		o.OnSessionRefused = func(cap string) { refused = append(refused, cap) }
	})
	first := h.initialize("a", "2025-06-18")
	h.initialize("b", "2025-06-18")
	h.d.mu.Lock()
	dispatched := h.d.initializes
	h.d.mu.Unlock()
	resp, body := h.doBody(call{subject: "c", body: initializeBody(1, "2025-06-18", "")})
	wantStatus(t, resp, body, http.StatusTooManyRequests)
	if !strings.Contains(string(body), "too many sessions from this address") {
		t.Errorf("refusal: %s", body)
	}
	h.d.mu.Lock()
	if h.d.initializes != dispatched {
		t.Error("a refused initialize reached the dispatcher")
	}
	h.d.mu.Unlock()
	if len(refused) != 1 || refused[0] != "address" {
		t.Errorf("refusals told: %v, want [address]", refused)
	}
	if resp := h.do(call{method: http.MethodDelete, subject: "a", session: first}); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	h.initialize("c", "2025-06-18")
}

// writeData splits data at every CR, LF and CRLF into data lines, as a
// client joins them again.
func TestWriteDataLines(t *testing.T) {
	tests := []struct{ data, want string }{
		{`{"a":1}`, "data: {\"a\":1}\n"},
		{"{\n\"a\": 1\n}", "data: {\ndata: \"a\": 1\ndata: }\n"},
		{"{\r\n\"a\": 1\r}", "data: {\ndata: \"a\": 1\ndata: }\n"},
		{"{\r\r\n}", "data: {\ndata: \ndata: }\n"},
		{"{\n\r}", "data: {\ndata: \ndata: }\n"},
		{"x\n", "data: x\ndata: \n"},
	}
	for _, tt := range tests {
		var out strings.Builder
		writeData(&out, []byte(tt.data))
		if out.String() != tt.want {
			t.Errorf("writeData(%q) = %q, want %q", tt.data, out.String(), tt.want)
		}
	}
}
