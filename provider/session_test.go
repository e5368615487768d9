package provider

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSessionBoundToSubject: a session id is not a credential; another
// subject presenting it gets 404 on every method, and the owner's session
// survives the attempt.
func TestSessionBoundToSubject(t *testing.T) {
	h := newHarness(t, nil)
	sid := h.initialize("alice", "2025-06-18")
	_ = h.d.closedIDs()

	for _, subject := range []string{"mallory", "", "Alice", "alice2"} {
		for _, c := range []call{
			{method: http.MethodPost, body: requestBody(2, "whoami", "")},
			{method: http.MethodPost, body: `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`},
			{method: http.MethodGet},
			{method: http.MethodGet, lastEventID: "0_1"},
			{method: http.MethodDelete},
		} {
			c.subject, c.session = subject, sid
			if subject == "" {
				c.subject = "-"
			}
			resp, body := h.doBody(c)
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("subject %q %s: %d %q, want 404", subject, c.method, resp.StatusCode, body)
			}
		}
	}
	if got := h.d.closedIDs(); len(got) != 0 {
		t.Fatalf("another subject ended the session: Closed %v", got)
	}
	resp, body := h.doBody(call{subject: "alice", session: sid, accept: "application/json", body: requestBody(3, "whoami", "")})
	wantStatus(t, resp, body, http.StatusOK)
	var who whoami
	_ = json.Unmarshal(decodeMessage(t, body).Result, &who)
	if who.Subject != "alice" || who.Identity != "alice" {
		t.Errorf("whoami %s", body)
	}
}

// One user's sessions count against one limit, whichever clients opened
// them: minting client ids (client metadata documents make that cheap)
// must not let one user take every slot.
func TestSessionLimitPerUser(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxSessionsPerSubject = 3 })
	open := func(subject, user string) int {
		resp, _ := h.doBody(call{subject: subject, header: http.Header{userHeader: {user}}, body: initializeBody(1, "2025-11-25", "")})
		return resp.StatusCode
	}
	for i := range 3 {
		if status := open(fmt.Sprintf("alice via client %d", i), "alice"); status != http.StatusOK {
			t.Fatalf("session %d of alice: %d", i, status)
		}
	}
	if status := open("alice via client 4", "alice"); status != http.StatusTooManyRequests {
		t.Errorf("a fourth session of alice through another client: %d, want 429", status)
	}
	if status := open("bob via client 1", "bob"); status != http.StatusOK {
		t.Errorf("bob's first session: %d, want 200", status)
	}
}

func sessionKey(t *testing.T) []byte {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return key
}

func TestSealedSessionRestoredByReplica(t *testing.T) {
	key := sessionKey(t)
	a := newHarness(t, func(o *Options) { o.SessionKey = key })
	b := newHarness(t, func(o *Options) { o.SessionKey = key })
	other := newHarness(t, func(o *Options) { o.SessionKey = sessionKey(t) })

	caps := `{"sampling":{},"roots":{"listChanged":true}}`
	resp, body := a.doBody(call{subject: "alice", body: initializeBody(1, "2025-06-18", caps)})
	wantStatus(t, resp, body, http.StatusOK)
	sid := resp.Header.Get("Mcp-Session-Id")

	resp, body = b.doBody(call{subject: "alice", session: sid, version: "2025-06-18", accept: "application/json", body: requestBody(2, "whoami", "")})
	wantStatus(t, resp, body, http.StatusOK)
	var who whoami
	if err := json.Unmarshal(decodeMessage(t, body).Result, &who); err != nil {
		t.Fatal(err)
	}
	if who.Subject != "alice" || who.ProtocolVersion != "2025-06-18" {
		t.Errorf("restored facts %+v", who)
	}
	if !jsonEqual(who.Capabilities, caps) {
		t.Errorf("restored capabilities %s, want %s", who.Capabilities, caps)
	}
	if !jsonEqual(who.ClientInfo, `{"name":"test","version":"1"}`) {
		t.Errorf("restored client info %s", who.ClientInfo)
	}
	if ref := who.Upstreams["app"]; ref.ID != "up-alice" || ref.ProtocolVersion != "2025-06-18" {
		t.Errorf("restored upstreams %+v", who.Upstreams)
	}
	// The restored session keeps its version rules and its owner.
	resp, body = b.doBody(call{subject: "alice", session: sid, body: `[` + requestBody(3, "echo", "") + `]`})
	wantStatus(t, resp, body, http.StatusBadRequest)
	resp, body = b.doBody(call{subject: "mallory", session: sid, body: requestBody(4, "whoami", "")})
	wantStatus(t, resp, body, http.StatusNotFound)

	resp, body = other.doBody(call{subject: "alice", session: sid, body: requestBody(5, "whoami", "")})
	wantStatus(t, resp, body, http.StatusNotFound)
}

func jsonEqual(raw json.RawMessage, want string) bool {
	var a, b any
	if json.Unmarshal(raw, &a) != nil || json.Unmarshal([]byte(want), &b) != nil {
		return false
	}
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestSessionKeyLength(t *testing.T) {
	for _, n := range []int{1, 16, 31, 33, 64} {
		if _, err := New(Options{SessionKey: make([]byte, n)}, newFakeDispatcher()); err == nil {
			t.Errorf("key of %d bytes accepted", n)
		}
	}
}

// malleate returns another spelling of a base64url id that decodes to the
// same bytes (the unused low bits of its last character flipped), or "".
func malleate(id string) string {
	if len(id)%4 == 0 {
		return ""
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, id[len(id)-1])
	if i < 0 {
		return ""
	}
	variant := id[:len(id)-1] + string(alphabet[i^1])
	a, errA := base64.RawURLEncoding.DecodeString(id)
	b, errB := base64.RawURLEncoding.DecodeString(variant)
	if errA != nil || errB != nil || string(a) != string(b) {
		return ""
	}
	return variant
}

// TestSessionIDHasOneSpelling: sealed ids are decoded with non-strict
// base64, so flipping the unused bits of the last character gives a second
// string that opens to the same facts. The registry keys live and ended
// sessions by the string, so the variant is a fresh session that DELETE
// never ended.
func TestSessionIDHasOneSpelling(t *testing.T) {
	h := newHarness(t, nil)
	var sid, variant, subject string
	for i := 1; i <= 20 && variant == ""; i++ {
		subject = strings.Repeat("a", i) // varies the id's length
		sid = h.initialize(subject, "2025-06-18")
		variant = malleate(sid)
	}
	if variant == "" {
		t.Skip("no id with unused trailing bits in 20 tries")
	}
	who := whoami{Subject: subject}
	resp, body := h.doBody(call{method: http.MethodDelete, subject: who.Subject, session: sid})
	wantStatus(t, resp, body, http.StatusNoContent)

	resp, body = h.doBody(call{subject: who.Subject, session: variant, accept: "application/json", body: requestBody(2, "whoami", "")})
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("deleted session revived through the variant id %q of %q: %d %s", variant, sid, resp.StatusCode, body)
	}
}

// TestTerminatedSessionStaysTerminated: "unknown or terminated → 404". A
// sealed id restores on any replica with the key, so replicas share the
// record of ended sessions.
func TestTerminatedSessionStaysTerminated(t *testing.T) {
	key := sessionKey(t)
	clock := newFakeClock()
	shared := NewMemoryRevocations(100)
	opts := func(o *Options) {
		o.SessionKey = key
		o.Now = clock.Now
		o.SessionTimeout = time.Minute
		o.Revocations = shared
	}
	a := newHarness(t, opts)

	t.Run("deleted, then seen by a replica", func(t *testing.T) {
		b := newHarness(t, opts)
		sid := a.initialize("alice", "2025-06-18")
		resp, body := a.doBody(call{method: http.MethodDelete, subject: "alice", session: sid})
		wantStatus(t, resp, body, http.StatusNoContent)
		resp, body = b.doBody(call{subject: "alice", session: sid, body: requestBody(2, "echo", "")})
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("deleted session accepted by a replica: %d %q", resp.StatusCode, body)
		}
	})
	t.Run("idle-expired, then seen by a replica", func(t *testing.T) {
		b := newHarness(t, opts)
		sid := a.initialize("alice", "2025-06-18")
		clock.Advance(2 * time.Minute)
		resp, body := a.doBody(call{subject: "alice", session: sid, body: requestBody(2, "echo", "")})
		wantStatus(t, resp, body, http.StatusNotFound)
		resp, body = b.doBody(call{subject: "alice", session: sid, body: requestBody(3, "echo", "")})
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("expired session accepted by a replica: %d %q", resp.StatusCode, body)
		}
	})
}

func TestSessionIdleTimeout(t *testing.T) {
	clock := newFakeClock()
	h := newHarness(t, func(o *Options) {
		o.Now = clock.Now
		o.SessionTimeout = time.Minute
	})
	echo := func(sid string) int {
		resp, _ := h.doBody(call{subject: "alice", session: sid, accept: "application/json", body: requestBody(2, "echo", "")})
		return resp.StatusCode
	}

	t.Run("activity keeps it alive", func(t *testing.T) {
		sid := h.initialize("alice", "2025-06-18")
		for i := 0; i < 5; i++ {
			clock.Advance(50 * time.Second)
			if got := echo(sid); got != http.StatusOK {
				t.Fatalf("request %d after 50s idle: %d", i, got)
			}
		}
	})
	t.Run("request after expiry", func(t *testing.T) {
		sid := h.initialize("alice", "2025-06-18")
		_ = h.d.closedIDs()
		clock.Advance(61 * time.Second)
		if got := echo(sid); got != http.StatusNotFound {
			t.Fatalf("after expiry: %d, want 404", got)
		}
		if got := h.d.closedIDs(); got[sid] != 1 {
			t.Errorf("Closed %v, want the expired session", got)
		}
		clock.Advance(-30 * time.Second) // an expired id stays dead
		if got := echo(sid); got != http.StatusNotFound {
			t.Errorf("expired session revived: %d", got)
		}
	})
	t.Run("sweep", func(t *testing.T) {
		sid := h.initialize("alice", "2025-06-18")
		_ = h.d.closedIDs()
		clock.Advance(2 * time.Minute)
		h.p.sessions.sweep(clock.Now())
		if got := h.d.closedIDs(); got[sid] != 1 {
			t.Errorf("sweep Closed %v, want the idle session", got)
		}
		if got := echo(sid); got != http.StatusNotFound {
			t.Errorf("after sweep: %d, want 404", got)
		}
	})
	t.Run("sealed id past its lifetime", func(t *testing.T) {
		sid := h.initialize("alice", "2025-06-18")
		h.p.sessions.mu.Lock()
		delete(h.p.sessions.live, sid) // as on a replica that never saw it
		h.p.sessions.mu.Unlock()
		if got := echo(sid); got != http.StatusOK {
			t.Fatalf("restoring a fresh sealed id: %d", got)
		}
		h.p.sessions.mu.Lock()
		delete(h.p.sessions.live, sid)
		h.p.sessions.mu.Unlock()
		clock.Advance(25 * time.Hour)
		if got := echo(sid); got != http.StatusNotFound {
			t.Errorf("sealed id older than its lifetime restored: %d", got)
		}
	})
}

// TestIdleTimeoutSparesListeningSession: the sweep never ends a session
// whose client holds the GET stream open, but a request arriving after the
// idle timeout does — killing the stream of a client that was only
// listening.
func TestIdleTimeoutSparesListeningSession(t *testing.T) {
	clock := newFakeClock()
	h := newHarness(t, func(o *Options) {
		o.Now = clock.Now
		o.SessionTimeout = time.Minute
	})
	sid := h.initialize("alice", "2025-06-18")
	resp := h.do(call{method: http.MethodGet, subject: "alice", session: sid})
	defer resp.Body.Close()
	wantStatus(t, resp, nil, http.StatusOK)
	h.d.waitListen(t)

	clock.Advance(2 * time.Minute)
	h.p.sessions.sweep(clock.Now())
	if got := h.d.closedIDs(); len(got) != 0 {
		t.Fatalf("sweep ended a listening session: %v", got)
	}
	r2, body := h.doBody(call{subject: "alice", session: sid, accept: "application/json", body: requestBody(2, "echo", "")})
	if r2.StatusCode != http.StatusOK {
		t.Errorf("request from a listening client after the idle timeout: %d %q", r2.StatusCode, body)
	}
}

// TestLargeSessionIDRestorable: the provider seals whatever capabilities
// the client declared into the id, but refuses to open ids over 8 KiB, so
// a session with large capabilities works only on the replica that made it.
func TestLargeSessionIDRestorable(t *testing.T) {
	key := sessionKey(t)
	a := newHarness(t, func(o *Options) { o.SessionKey = key })
	b := newHarness(t, func(o *Options) { o.SessionKey = key })
	caps := `{"experimental":{"x":{"blob":"` + strings.Repeat("z", 9000) + `"}}}`
	resp, body := a.doBody(call{subject: "alice", body: initializeBody(1, "2025-06-18", caps)})
	wantStatus(t, resp, body, http.StatusOK)
	sid := resp.Header.Get("Mcp-Session-Id")
	resp, body = a.doBody(call{subject: "alice", session: sid, body: requestBody(2, "echo", "")})
	wantStatus(t, resp, body, http.StatusOK)
	resp, body = b.doBody(call{subject: "alice", session: sid, body: requestBody(3, "echo", "")})
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a %d-byte session id issued by one replica is refused by another: %d %q", len(sid), resp.StatusCode, body)
	}
}

func TestCloseEndsSessions(t *testing.T) {
	h := newHarness(t, nil)
	sid := h.initialize("alice", "2025-06-18")
	_ = h.d.closedIDs()
	h.p.Close()
	h.p.Close() // idempotent
	if got := h.d.closedIDs(); got[sid] != 1 {
		t.Errorf("Close: Closed %v", got)
	}
}
