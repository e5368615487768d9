package provider

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// progressTag returns the tag of a progress notification from the fake
// dispatcher's "stream" method, or of its final result.
func progressTag(t *testing.T, data string) (tag string, final bool) {
	t.Helper()
	m := decodeMessage(t, []byte(data))
	var v struct{ Tag string }
	switch {
	case m.Method == "notifications/progress":
		_ = json.Unmarshal(m.Params, &v)
	case m.Kind() == jsonrpc.KindResponse:
		_ = json.Unmarshal(m.Result, &v)
		final = true
	default:
		t.Fatalf("unexpected message %s", data)
	}
	return v.Tag, final
}

// TestSSEFlushesEachEvent: a related message reaches the client while the
// dispatcher is still working, not when the response is complete. The
// dispatcher blocks after its first message until the test has read it.
func TestSSEFlushesEachEvent(t *testing.T) {
	h := newHarness(t, nil)
	sid := h.initialize("alice", "2025-06-18")
	resp := h.do(call{subject: "alice", session: sid, header: http.Header{"Accept-Encoding": {"gzip"}},
		body: requestBody(7, "stream", `{"n":3,"gate":"flush","tag":"f"}`)})
	defer resp.Body.Close()
	wantStatus(t, resp, nil, http.StatusOK)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" {
		t.Errorf("SSE sent with Content-Encoding %q", ce)
	}
	sr := newSSEReader(resp.Body)
	first, ok := sr.next(t) // fails after waitLong if buffered
	if !ok {
		t.Fatal("stream ended before the first event")
	}
	if tag, final := progressTag(t, first.data); tag != "f" || final {
		t.Fatalf("first event %+v", first)
	}
	h.d.release("flush")
	rest := sr.rest(t)
	if len(rest) != 3 {
		t.Fatalf("after release got %+v, want 2 progress and the response", rest)
	}
	if _, final := progressTag(t, rest[2].data); !final {
		t.Errorf("last event is not the response: %+v", rest[2])
	}
}

// startStream posts a "stream" request and returns its reader and first
// event; cancel disconnects the client.
func startStream(t *testing.T, h *harness, sid string, id, n int, gate, tag string) (sr *sseReader, first sseEvent, cancel func()) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	params, _ := json.Marshal(map[string]any{"n": n, "gate": gate, "tag": tag})
	resp := h.do(call{ctx: ctx, subject: "alice", session: sid, body: requestBody(id, "stream", string(params))})
	if resp.StatusCode != http.StatusOK {
		stop()
		t.Fatalf("stream request: %d", resp.StatusCode)
	}
	sr = newSSEReader(resp.Body)
	first, ok := sr.next(t)
	if !ok {
		stop()
		t.Fatal("stream ended before its first event")
	}
	return sr, first, func() { stop(); resp.Body.Close() }
}

// resumeWhenFree GETs with Last-Event-ID, retrying while the stream is
// still attached to the connection the client abandoned.
func resumeWhenFree(t *testing.T, h *harness, sid, last string) *http.Response {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		resp := h.do(call{method: http.MethodGet, subject: "alice", session: sid, lastEventID: last})
		if resp.StatusCode != http.StatusConflict || time.Now().After(deadline) {
			return resp
		}
		resp.Body.Close()
		time.Sleep(20 * time.Millisecond)
	}
}

// TestResumeAfterDisconnect: the client loses its POST stream after the
// first event; everything after it — further notifications and the
// response — is replayed to a GET with that event's id, and nothing from
// the session's other streams.
func TestResumeAfterDisconnect(t *testing.T) {
	for _, tt := range []struct {
		name string
		n    int // notifications; all but the first are sent after the disconnect
	}{
		{"notifications and response after the disconnect", 4},
		{"only the response after the disconnect", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			sid := h.initialize("alice", "2025-06-18")

			// Another stream of the same session, and a standalone
			// notification, must not leak into the replay.
			other, _, cancelOther := startStream(t, h, sid, 90, 2, "", "other")
			other.rest(t)
			cancelOther()
			get := h.do(call{method: http.MethodGet, subject: "alice", session: sid})
			defer get.Body.Close()
			l := h.d.waitListen(t)
			n, _ := jsonrpc.NewNotification("notifications/resources/list_changed", nil)
			l.s.Notify(n)

			_, first, disconnect := startStream(t, h, sid, 7, tt.n, "g", "mine")
			if first.id == "" {
				t.Fatal("first event has no id")
			}
			disconnect()
			time.Sleep(50 * time.Millisecond) // let the server see the connection go
			h.d.release("g")
			<-h.d.streams // the other stream
			select {
			case <-h.d.streams:
			case <-time.After(waitLong):
				t.Fatal("dispatcher did not finish")
			}

			resp := resumeWhenFree(t, h, sid, first.id)
			defer resp.Body.Close()
			wantStatus(t, resp, nil, http.StatusOK)
			replay := newSSEReader(resp.Body).rest(t)
			progress, final := tallyReplay(t, replay, first.id, "mine")
			if progress != tt.n-1 || !final {
				t.Errorf("replay after %s: %d notifications (want %d), response %v; events %+v", first.id, progress, tt.n-1, final, replay)
			}
		})
	}
}

// tallyReplay counts the progress notifications of a resumed stream and
// whether its response came, failing on an event delivered twice (or
// again after last, the client's Last-Event-ID) or of another tag.
func tallyReplay(t *testing.T, events []sseEvent, last, tag string) (progress int, final bool) {
	t.Helper()
	seen := map[string]bool{last: true}
	for _, ev := range events {
		if seen[ev.id] {
			t.Errorf("event id %q delivered twice", ev.id)
		}
		seen[ev.id] = true
		got, isFinal := progressTag(t, ev.data)
		if got != tag {
			t.Errorf("replay carries another stream's event %+v", ev)
		}
		if isFinal {
			final = true
		} else {
			progress++
		}
	}
	return progress, final
}

// TestResumeWhileRequestInFlight: a client whose connection dropped during a
// long call reconnects before the call ends. Its abandoned POST connection
// must not keep the stream: the GET resumes it (not 409), and the rest of
// the call arrives there.
func TestResumeWhileRequestInFlight(t *testing.T) {
	h := newHarness(t, nil)
	sid := h.initialize("alice", "2025-06-18")
	_, first, disconnect := startStream(t, h, sid, 7, 3, "inflight", "mine")
	disconnect()

	var resp *http.Response
	deadline := time.Now().Add(2 * time.Second)
	for {
		resp = h.do(call{method: http.MethodGet, subject: "alice", session: sid, lastEventID: first.id})
		if resp.StatusCode != http.StatusConflict || time.Now().After(deadline) {
			break
		}
		resp.Body.Close()
		time.Sleep(50 * time.Millisecond)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		h.d.release("inflight")
		t.Fatalf("resume during the call: %d, want 200 (the abandoned POST still holds the stream)", resp.StatusCode)
	}
	h.d.release("inflight")
	events := newSSEReader(resp.Body).rest(t)
	if len(events) != 3 {
		t.Fatalf("resumed stream got %+v, want 2 notifications and the response", events)
	}
	if _, final := progressTag(t, events[2].data); !final {
		t.Errorf("last event is not the response: %+v", events[2])
	}
}

func TestResumeRejects(t *testing.T) {
	h := newHarness(t, nil)
	sid := h.initialize("alice", "2025-06-18")
	sr, first, done := startStream(t, h, sid, 7, 2, "", "a")
	sr.rest(t)
	done()

	for _, last := range []string{"garbage", "_1", "1_", "1_x", "1_-1", "1_99999999999999999999999", "_"} {
		resp, body := h.doBody(call{method: http.MethodGet, subject: "alice", session: sid, lastEventID: last})
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("Last-Event-ID %q: %d %q, want 400", last, resp.StatusCode, body)
		}
	}
	for _, last := range []string{"999_1", "abc_1", "0_1"} {
		resp, body := h.doBody(call{method: http.MethodGet, subject: "alice", session: sid, lastEventID: last})
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("Last-Event-ID %q: %d %q, want 404", last, resp.StatusCode, body)
		}
	}

	t.Run("another session's event id, fresh session", func(t *testing.T) {
		other := h.initialize("alice", "2025-06-18")
		resp, body := h.doBody(call{method: http.MethodGet, subject: "alice", session: other, lastEventID: first.id})
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%d %q, want 404", resp.StatusCode, body)
		}
	})
	t.Run("another session's event id, session with its own streams", func(t *testing.T) {
		other := h.initialize("alice", "2025-06-18")
		resp, body := h.doBody(call{subject: "alice", session: other, body: requestBody(1, "echo", `{"secret":"other"}`)})
		wantStatus(t, resp, body, http.StatusOK)
		resp, body = h.doBody(call{method: http.MethodGet, subject: "alice", session: other, lastEventID: first.id})
		for _, ev := range parseSSE(t, body) {
			if tag, _ := progressTag(t, ev.data); tag == "a" {
				t.Fatalf("replayed another session's event %+v", ev)
			}
		}
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("event id %q of another session resolved in this one: %d %q, want 404", first.id, resp.StatusCode, body)
		}
	})
}

func TestEventIDsUniquePerSession(t *testing.T) {
	h := newHarness(t, nil)
	sid := h.initialize("alice", "2025-06-18")
	get := h.do(call{method: http.MethodGet, subject: "alice", session: sid})
	defer get.Body.Close()
	l := h.d.waitListen(t)
	standalone := newSSEReader(get.Body)

	ids := make(map[string]string)
	record := func(ev sseEvent, where string) {
		if ev.id == "" {
			t.Errorf("%s: event without id", where)
			return
		}
		if prev, dup := ids[ev.id]; dup {
			t.Errorf("event id %q used by %s and %s", ev.id, prev, where)
		}
		ids[ev.id] = where
	}
	for i := 0; i < 5; i++ {
		n, _ := jsonrpc.NewNotification("notifications/tools/list_changed", nil)
		if !l.s.Notify(n) {
			t.Fatal("Notify: no listener")
		}
		ev, _ := standalone.next(t)
		record(ev, "GET stream")

		resp, body := h.doBody(call{subject: "alice", session: sid, body: requestBody(10+i, "stream", `{"n":3}`)})
		wantStatus(t, resp, body, http.StatusOK)
		for _, ev := range parseSSE(t, body) {
			record(ev, "POST stream")
		}
	}
	if len(ids) != 5+5*4 {
		t.Errorf("%d distinct ids, want %d", len(ids), 25)
	}
}

// TestResumeStandaloneStreamCallsListen: SDK clients reconnect their GET
// stream with Last-Event-ID. The resumed standalone stream must be a
// listening stream again: Listen is called, as for a fresh GET.
func TestResumeStandaloneStreamCallsListen(t *testing.T) {
	h := newHarness(t, nil)
	sid := h.initialize("alice", "2025-06-18")
	resp := h.do(call{method: http.MethodGet, subject: "alice", session: sid})
	l := h.d.waitListen(t)
	n, _ := jsonrpc.NewNotification("notifications/tools/list_changed", nil)
	l.s.Notify(n)
	ev, _ := newSSEReader(resp.Body).next(t)
	resp.Body.Close()
	select {
	case <-l.ctx.Done():
	case <-time.After(waitLong):
		t.Fatal("Listen context outlived the GET")
	}

	resp2 := resumeWhenFree(t, h, sid, ev.id)
	defer resp2.Body.Close()
	wantStatus(t, resp2, nil, http.StatusOK)
	select {
	case <-h.d.listens:
	case <-time.After(2 * time.Second):
		t.Error("resumed GET stream: Listen not called, so the dispatcher has no listener for the session")
	}
	if !l.s.hasListener() {
		t.Error("resumed GET stream does not count as a listener (the sweep may end the session)")
	}
}
