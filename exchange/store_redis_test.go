package exchange

import (
	"context"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpbroker/mcpbroker/broker/limit/redistest"
)

// Brokers sharing Redis share one set of signing keys: started together
// they make one set, not one each; a rotation due on both happens once;
// each verifies tokens signed with a key another made after it started.
func TestSharedKeysAcrossBrokers(t *testing.T) {
	server := redistest.Start(t)
	ctx := context.Background()
	sets := make([]*KeySet, 3)
	var wg sync.WaitGroup
	for i := range sets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys, err := NewKeySet(ctx, NewRedisKeyStore(server.Client(), "keys-test:"), KeySetOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			sets[i] = keys
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	kid := func(k *KeySet) string {
		s, _ := k.Active(jose.ES256)
		return s.KeyID()
	}
	for i, k := range sets[1:] {
		if kid(k) != kid(sets[0]) {
			t.Fatalf("broker %d signs with %s, broker 0 with %s: brokers started together made a set each", i+1, kid(k), kid(sets[0]))
		}
	}

	// A rotation due on all three at once (as RotateEvery finds it, the
	// keys an interval old) happens once.
	now, interval := time.Now().Add(2*time.Hour), time.Hour
	for _, k := range sets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := k.update(ctx, now, now.Add(-interval)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	stored, err := NewRedisKeyStore(server.Client(), "keys-test:").Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 4 {
		t.Errorf("after one due rotation on three brokers the store holds %d keys, want 4 (2 active, 2 retired)", len(stored))
	}

	// A key one broker makes verifies at the others, which load it.
	if err := sets[0].Rotate(ctx, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	minter, err := NewMinter(sets[0], MinterOptions{Issuer: testIssuer, Algorithm: jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := minter.Mint(ctx, Grant{Subject: "alice", ClientID: "agent", Audience: "https://ledger.example/", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if kid(sets[1]) == kid(sets[0]) {
		t.Fatal("broker 1 saw the rotation before verifying anything; the test proves nothing")
	}
	// A token refused for another reason than its key is no cause to
	// read the store.
	if _, err := sets[1].Verify(token, VerifyOptions{Issuer: "https://other.example"}); err == nil {
		t.Fatal("a token of another issuer verified")
	}
	if kid(sets[1]) == kid(sets[0]) {
		t.Error("broker 1 reloaded its keys for a token refused for its issuer")
	}
	if _, err := sets[1].Verify(token, VerifyOptions{Issuer: testIssuer}); err != nil {
		t.Errorf("broker 1 refuses a token signed with the key broker 0 just made: %v", err)
	}
	if kid(sets[1]) != kid(sets[0]) {
		t.Errorf("broker 1 signs with %s after reloading, want %s", kid(sets[1]), kid(sets[0]))
	}

	// Broker 2 publishes the new key once it has read the keys again,
	// which serving JWKS does first.
	published := func(k *KeySet) bool {
		for _, key := range k.JWKS().Keys {
			if key.KeyID == kid(sets[0]) {
				return true
			}
		}
		return false
	}
	if published(sets[2]) {
		t.Fatal("broker 2 publishes the new key before reading the keys again; the test proves nothing")
	}
	sets[2].ReloadIfStale(ctx)
	if !published(sets[2]) {
		t.Errorf("broker 2 does not publish the key broker 0 made after reading the keys again")
	}

	// Redis down: a rotation fails clearly; the keys in use go on.
	server.Stop()
	if err := sets[2].Rotate(ctx, time.Now()); err == nil {
		t.Error("a rotation with Redis down reported success")
	}
	if _, err := sets[2].Active(jose.EdDSA); err != nil {
		t.Error(err)
	}
}
