package provider

import (
	"net/http"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTestDB(t *testing.T, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// A session ended before a restart stays ended after it: with a
// configured key its sealed id is still valid, so only the stored record
// of ended ids refuses it.
func TestEndedSessionStaysEndedAcrossRestart(t *testing.T) {
	key := sessionKey(t)
	path := filepath.Join(t.TempDir(), "store.db")

	db := openTestDB(t, path)
	ended, err := NewBoltRevocations(db, 1000)
	if err != nil {
		t.Fatal(err)
	}
	before := newHarness(t, func(o *Options) { o.SessionKey = key; o.Revocations = ended })
	sid := before.initialize("alice", "2025-11-25")
	kept := before.initialize("alice", "2025-11-25")
	resp, body := before.doBody(call{method: http.MethodDelete, subject: "alice", session: sid})
	wantStatus(t, resp, body, http.StatusNoContent)
	before.p.Close()
	db.Close()

	db = openTestDB(t, path)
	t.Cleanup(func() { db.Close() })
	ended, err = NewBoltRevocations(db, 1000)
	if err != nil {
		t.Fatal(err)
	}
	after := newHarness(t, func(o *Options) { o.SessionKey = key; o.Revocations = ended })
	resp, body = after.doBody(call{subject: "alice", session: sid, accept: "application/json", body: requestBody(2, "whoami", "")})
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("a session deleted before the restart answered %d %s, want 404", resp.StatusCode, body)
	}
	resp, body = after.doBody(call{subject: "alice", session: kept, accept: "application/json", body: requestBody(3, "whoami", "")})
	wantStatus(t, resp, body, http.StatusOK)
}

func TestBoltRevocations(t *testing.T) {
	db := openTestDB(t, filepath.Join(t.TempDir(), "store.db"))
	defer db.Close()
	r, err := NewBoltRevocations(db, 3)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	mustRevoke(t, r, "a", now.Add(time.Hour))
	mustRevoke(t, r, "b", now.Add(time.Minute))
	mustRevoke(t, r, "c", now.Add(2*time.Hour))
	mustRevoke(t, r, "a", now.Add(3*time.Hour)) // again: still one entry
	for _, id := range []string{"a", "b", "c"} {
		if !isRevoked(t, r, id) {
			t.Errorf("%s not revoked", id)
		}
	}
	if isRevoked(t, r, "d") {
		t.Error("d revoked")
	}
	mustRevoke(t, r, "d", now.Add(4*time.Hour)) // full: b, closest to expiring, goes
	if isRevoked(t, r, "b") || !isRevoked(t, r, "a") || !isRevoked(t, r, "c") || !isRevoked(t, r, "d") {
		t.Errorf("after eviction: a=%v b=%v c=%v d=%v, want b alone forgotten", isRevoked(t, r, "a"), isRevoked(t, r, "b"), isRevoked(t, r, "c"), isRevoked(t, r, "d"))
	}
	r.Forget(now.Add(150 * time.Minute)) // c expired
	if isRevoked(t, r, "c") || !isRevoked(t, r, "a") || !isRevoked(t, r, "d") {
		t.Errorf("after Forget: a=%v c=%v d=%v, want c alone forgotten", isRevoked(t, r, "a"), isRevoked(t, r, "c"), isRevoked(t, r, "d"))
	}
	// The count survives a reopen: two entries, room for one more.
	r, err = NewBoltRevocations(db, 3)
	if err != nil {
		t.Fatal(err)
	}
	mustRevoke(t, r, "e", now.Add(5*time.Hour))
	if !isRevoked(t, r, "a") || !isRevoked(t, r, "d") || !isRevoked(t, r, "e") {
		t.Errorf("after reopen: a=%v d=%v e=%v, want all three", isRevoked(t, r, "a"), isRevoked(t, r, "d"), isRevoked(t, r, "e"))
	}
}

func isRevoked(t *testing.T, r Revocations, id string) bool {
	t.Helper()
	revoked, err := r.Revoked(id)
	if err != nil {
		t.Fatal(err)
	}
	return revoked
}

func mustRevoke(t *testing.T, r Revocations, id string, until time.Time) {
	t.Helper()
	if err := r.Revoke(id, until); err != nil {
		t.Fatal(err)
	}
}
