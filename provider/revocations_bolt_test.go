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
	r.Revoke("a", now.Add(time.Hour))
	r.Revoke("b", now.Add(time.Minute))
	r.Revoke("c", now.Add(2*time.Hour))
	r.Revoke("a", now.Add(3*time.Hour)) // again: still one entry
	for _, id := range []string{"a", "b", "c"} {
		if !r.Revoked(id) {
			t.Errorf("%s not revoked", id)
		}
	}
	if r.Revoked("d") {
		t.Error("d revoked")
	}
	r.Revoke("d", now.Add(4*time.Hour)) // full: b, closest to expiring, goes
	if r.Revoked("b") || !r.Revoked("a") || !r.Revoked("c") || !r.Revoked("d") {
		t.Errorf("after eviction: a=%v b=%v c=%v d=%v, want b alone forgotten", r.Revoked("a"), r.Revoked("b"), r.Revoked("c"), r.Revoked("d"))
	}
	r.Forget(now.Add(150 * time.Minute)) // c expired
	if r.Revoked("c") || !r.Revoked("a") || !r.Revoked("d") {
		t.Errorf("after Forget: a=%v c=%v d=%v, want c alone forgotten", r.Revoked("a"), r.Revoked("c"), r.Revoked("d"))
	}
	// The count survives a reopen: two entries, room for one more.
	r, err = NewBoltRevocations(db, 3)
	if err != nil {
		t.Fatal(err)
	}
	r.Revoke("e", now.Add(5*time.Hour))
	if !r.Revoked("a") || !r.Revoked("d") || !r.Revoked("e") {
		t.Errorf("after reopen: a=%v d=%v e=%v, want all three", r.Revoked("a"), r.Revoked("d"), r.Revoked("e"))
	}
}
