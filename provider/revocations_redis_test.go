package provider

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/broker/limit/redistest"
)

// Ended ids in Redis: seen by every client (replica), expiring with the id,
// never stored in clear, and a Redis outage is an error, not a verdict.
func TestRedisRevocations(t *testing.T) {
	server := redistest.Start(t)
	a := NewRedisRevocations(server.Client(), "test:")
	b := NewRedisRevocations(server.Client(), "test:") // another replica
	if err := a.Revoke("session-1", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if revoked, err := b.Revoked("session-1"); err != nil || !revoked {
		t.Errorf("the other replica: revoked %v, %v", revoked, err)
	}
	if revoked, err := b.Revoked("session-2"); err != nil || revoked {
		t.Errorf("a live session: revoked %v, %v", revoked, err)
	}
	client := server.Client()
	keys, err := client.Keys(t.Context(), "*").Result()
	if err != nil || len(keys) != 1 || strings.Contains(keys[0], "session-1") || !strings.HasPrefix(keys[0], "test:ended:") {
		t.Errorf("keys %v (%v): want one, named by a digest", keys, err)
	}
	if ttl, err := client.PTTL(t.Context(), keys[0]).Result(); err != nil || ttl <= 0 || ttl > time.Hour {
		t.Errorf("the key's TTL is %v (%v), want at most an hour", ttl, err)
	}
	server.Stop()
	if _, err := b.Revoked("session-1"); err == nil {
		t.Error("with Redis down, Revoked answered without an error")
	}
	if err := a.Revoke("session-3", time.Now().Add(time.Hour)); err == nil {
		t.Error("with Redis down, Revoke answered without an error")
	}
	server.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		revoked, err := b.Revoked("session-2")
		if err == nil && !revoked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis back, but: %v %v", revoked, errors.Unwrap(err))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
