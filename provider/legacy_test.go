package provider

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// legacyStream is an open GET on the legacy SSE endpoint.
type legacyStream struct {
	sr       *sseReader
	endpoint string // as sent in the endpoint event
	id       string // its sessionId
	close    func()
}

func (h *harness) openLegacy(subject string) *legacyStream {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	resp := h.do(call{ctx: ctx, method: http.MethodGet, path: h.opts.SSEPath, subject: subject})
	if resp.StatusCode != http.StatusOK {
		cancel()
		h.t.Fatalf("legacy GET: %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		h.t.Errorf("legacy GET Content-Type %q", ct)
	}
	sr := newSSEReader(resp.Body)
	ev, ok := sr.next(h.t)
	if !ok {
		cancel()
		h.t.Fatal("legacy stream ended before the endpoint event")
	}
	if ev.name != "endpoint" {
		h.t.Fatalf("first legacy event %+v, want event: endpoint", ev)
	}
	u, err := url.Parse(ev.data)
	if err != nil || u.Path != h.opts.MessagePath || u.Query().Get("sessionId") == "" {
		h.t.Fatalf("endpoint %q, want %s?sessionId=…", ev.data, h.opts.MessagePath)
	}
	return &legacyStream{sr: sr, endpoint: ev.data, id: u.Query().Get("sessionId"), close: func() { cancel(); resp.Body.Close() }}
}

// nextMessage returns the next message event's JSON-RPC message.
func (l *legacyStream) nextMessage(t *testing.T) *jsonrpc.Message {
	t.Helper()
	ev, ok := l.sr.next(t)
	if !ok {
		t.Fatal("legacy stream ended")
	}
	if ev.name != "message" {
		t.Fatalf("legacy event %+v, want event: message", ev)
	}
	return decodeMessage(t, []byte(ev.data))
}

func TestLegacyTransport(t *testing.T) {
	h := newHarness(t, nil)
	l := h.openLegacy("alice")
	defer l.close()
	_ = h.d.closedIDs()

	post := func(subject, endpoint, body string) (*http.Response, []byte) {
		return h.doBody(call{path: endpoint, subject: subject, accept: "-", body: body})
	}

	resp, body := post("alice", l.endpoint, initializeBody(1, "2024-11-05", ""))
	wantStatus(t, resp, body, http.StatusAccepted)
	m := l.nextMessage(t)
	if m.ID.Raw() != "1" || m.Error != nil {
		t.Fatalf("initialize answer %s", m.Encode())
	}
	var res struct{ ProtocolVersion string }
	_ = json.Unmarshal(m.Result, &res)
	if res.ProtocolVersion != "2024-11-05" {
		t.Errorf("negotiated %q", res.ProtocolVersion)
	}
	h.d.waitListen(t)

	resp, body = post("alice", l.endpoint, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	wantStatus(t, resp, body, http.StatusAccepted)

	resp, body = post("alice", l.endpoint, requestBody(2, "stream", `{"n":2,"tag":"legacy"}`))
	wantStatus(t, resp, body, http.StatusAccepted)
	for i := 0; i < 2; i++ {
		if m := l.nextMessage(t); m.Method != "notifications/progress" {
			t.Errorf("event %d: %s", i, m.Encode())
		}
	}
	if m := l.nextMessage(t); m.ID.Raw() != "2" || m.Error != nil {
		t.Errorf("stream answer %s", m.Encode())
	}

	// An invalid message is answered on the stream.
	resp, body = post("alice", l.endpoint, `[{"jsonrpc":"1.0","id":5,"method":"x"}]`)
	wantStatus(t, resp, body, http.StatusAccepted)
	if m := l.nextMessage(t); m.Error == nil {
		t.Errorf("invalid message answered with %s", m.Encode())
	}

	for _, c := range []struct {
		name, subject, endpoint string
		want                    int
	}{
		{"unknown sessionId", "alice", h.opts.MessagePath + "?sessionId=nope", http.StatusNotFound},
		{"missing sessionId", "alice", h.opts.MessagePath, http.StatusBadRequest},
		{"another subject", "mallory", l.endpoint, http.StatusNotFound},
		{"no subject", "-", l.endpoint, http.StatusNotFound},
	} {
		resp, body := post(c.subject, c.endpoint, requestBody(3, "whoami", ""))
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d %q, want %d", c.name, resp.StatusCode, body, c.want)
		}
	}
	resp, body = h.doBody(call{path: l.endpoint, subject: "alice", contentType: "text/plain", body: requestBody(4, "echo", "")})
	wantStatus(t, resp, body, http.StatusUnsupportedMediaType)
	resp, body = h.doBody(call{method: http.MethodGet, path: l.endpoint, subject: "alice"})
	wantStatus(t, resp, body, http.StatusMethodNotAllowed)
	resp, body = h.doBody(call{method: http.MethodPost, path: h.opts.SSEPath, subject: "alice", body: "{}"})
	wantStatus(t, resp, body, http.StatusMethodNotAllowed)

	// The legacy id is not a Streamable HTTP session.
	resp, body = h.doBody(call{subject: "alice", session: l.id, body: requestBody(6, "whoami", "")})
	wantStatus(t, resp, body, http.StatusNotFound)

	// No message from mallory's attempts reached alice's stream.
	l.sr.noEvent(t, 50*time.Millisecond)
	if got := h.d.closedIDs(); len(got) != 0 {
		t.Fatalf("session closed early: %v", got)
	}

	// Leaving ends the session.
	l.close()
	deadline := time.After(waitLong)
	for closed := false; !closed; {
		select {
		case s := <-h.d.closed:
			closed = s.ID == l.id
		case <-deadline:
			t.Fatal("Closed not called after the legacy stream ended")
		}
	}
	resp, body = post("alice", l.endpoint, requestBody(7, "echo", ""))
	wantStatus(t, resp, body, http.StatusNotFound)
}

func TestLegacyOtherSubjectCannotPost(t *testing.T) {
	h := newHarness(t, nil)
	l := h.openLegacy("alice")
	defer l.close()
	resp, body := h.doBody(call{path: l.endpoint, subject: "mallory", accept: "-", body: initializeBody(1, "2024-11-05", "")})
	wantStatus(t, resp, body, http.StatusNotFound)
	l.sr.noEvent(t, 100*time.Millisecond)
}

func TestLegacyInFlightBound(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxInFlight = 1 })
	l := h.openLegacy("alice")
	defer l.close()
	resp, body := h.doBody(call{path: l.endpoint, subject: "alice", body: requestBody(1, "stream", `{"n":1,"gate":"busy"}`)})
	wantStatus(t, resp, body, http.StatusAccepted)
	if m := l.nextMessage(t); m.Method != "notifications/progress" {
		t.Fatalf("first event %s", m.Encode())
	}
	resp, body = h.doBody(call{path: l.endpoint, subject: "alice", body: requestBody(2, "echo", "")})
	wantStatus(t, resp, body, http.StatusAccepted)
	if m := l.nextMessage(t); m.ID.Raw() != "2" || m.Error == nil {
		t.Errorf("request over the in-flight bound answered %s", m.Encode())
	}
	h.d.release("busy")
	if m := l.nextMessage(t); m.ID.Raw() != "1" {
		t.Errorf("answer %s", m.Encode())
	}
}

// TestLegacySessionIDRejectedByReplica: a legacy session id is sealed like
// a Streamable one but carries no legacy flag, so another replica with the
// same key restores it as a Streamable HTTP session — one that never went
// through initialize — usable with Mcp-Session-Id.
func TestLegacySessionIDRejectedByReplica(t *testing.T) {
	key := sessionKey(t)
	a := newHarness(t, func(o *Options) { o.SessionKey = key })
	b := newHarness(t, func(o *Options) { o.SessionKey = key })
	l := a.openLegacy("alice")
	defer l.close()
	resp, body := b.doBody(call{subject: "alice", session: l.id, accept: "application/json", body: requestBody(1, "whoami", "")})
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("legacy id accepted as a Streamable session by a replica: %d %s", resp.StatusCode, body)
	}
}

// TestLegacySweepKeepsOpenStream: a legacy session lives as long as its
// stream. A client that keeps the stream open but sends nothing for a
// while (waiting for notifications) must not lose its session to the idle
// sweep.
func TestLegacySweepKeepsOpenStream(t *testing.T) {
	clock := newFakeClock()
	h := newHarness(t, func(o *Options) {
		o.Now = clock.Now
		o.SessionTimeout = time.Minute
	})
	l := h.openLegacy("alice")
	defer l.close()
	resp, body := h.doBody(call{path: l.endpoint, subject: "alice", body: initializeBody(1, "2024-11-05", "")})
	wantStatus(t, resp, body, http.StatusAccepted)
	l.nextMessage(t)

	clock.Advance(2 * time.Minute)
	h.p.sessions.sweep(clock.Now())
	select {
	case s := <-h.d.closed:
		t.Errorf("sweep ended legacy session %q while its stream is open", s.ID)
	case <-time.After(50 * time.Millisecond):
	}
	resp, body = h.doBody(call{path: l.endpoint, subject: "alice", body: requestBody(2, "echo", "")})
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("POST after the idle period: %d %q", resp.StatusCode, body)
	}
}

func TestLegacyDisabled(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.SSEEnabled = false })
	resp, body := h.doBody(call{method: http.MethodGet, path: "/mcp/sse", subject: "alice"})
	if resp.StatusCode != http.StatusNotFound || strings.Contains(resp.Header.Get("Content-Type"), "event-stream") {
		t.Errorf("disabled legacy endpoint: %d %q", resp.StatusCode, body)
	}
}
