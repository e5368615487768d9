package oauth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestKeyRotationAcceptedAfterRefresh(t *testing.T) {
	f := newFixture(t, nil)
	if _, err := f.verify(f.token(ecKey, nil)); err != nil {
		t.Fatal(err)
	}
	if n := f.as.jwksHits.Load(); n != 1 {
		t.Fatalf("jwks fetched %d times, want 1", n)
	}
	f.as.publish(ecKey, rotatedEC)
	f.clock.Advance(31 * time.Second)
	if _, err := f.verify(f.token(rotatedEC, nil)); err != nil {
		t.Fatalf("token with the rotated key: %v", err)
	}
	if n := f.as.jwksHits.Load(); n != 2 {
		t.Fatalf("jwks fetched %d times, want 2", n)
	}
	// The new key is cached now: no further fetch.
	if _, err := f.verify(f.token(rotatedEC, func(h, c map[string]any) { c["jti"] = "other" })); err != nil {
		t.Fatal(err)
	}
	if n := f.as.jwksHits.Load(); n != 2 {
		t.Fatalf("jwks fetched %d times, want 2", n)
	}
}

func TestUnknownKidRefreshIsRateLimited(t *testing.T) {
	f := newFixture(t, nil)
	if _, err := f.verify(f.token(ecKey, nil)); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)

	unknown := f.token(attackerEC, func(h, c map[string]any) { h["kid"] = "nope-1" })
	_, err := f.verify(unknown)
	assertReason(t, unknown, err, ReasonKeyID)
	if n := f.as.jwksHits.Load(); n != 2 {
		t.Fatalf("first unknown kid: jwks fetched %d times, want 2", n)
	}

	// A second unknown kid inside the window does not refetch, even if
	// the key has appeared meanwhile.
	f.as.publish(ecKey, rotatedEC)
	f.clock.Advance(10 * time.Second)
	rotated := f.token(rotatedEC, nil)
	_, err = f.verify(rotated)
	assertReason(t, rotated, err, ReasonKeyID)
	if n := f.as.jwksHits.Load(); n != 2 {
		t.Fatalf("second unknown kid within 30s: jwks fetched %d times, want 2", n)
	}

	// After the window, it does.
	f.clock.Advance(21 * time.Second)
	if _, err := f.verify(rotated); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	if n := f.as.jwksHits.Load(); n != 3 {
		t.Fatalf("after the window: jwks fetched %d times, want 3", n)
	}
}

func TestUnknownKidRefreshIsSingleFlight(t *testing.T) {
	f := newFixture(t, nil)
	if _, err := f.verify(f.token(ecKey, nil)); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	f.as.publish(ecKey, rotatedEC)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		token := f.token(rotatedEC, func(h, c map[string]any) { c["jti"] = fmt.Sprint(i) })
		wg.Go(func() {
			_, err := f.verify(token)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := f.as.jwksHits.Load(); n != 2 {
		t.Fatalf("jwks fetched %d times by 32 concurrent requests, want 2", n)
	}
}

func TestMinKeyRefreshIntervalOption(t *testing.T) {
	f := newFixture(t, nil, func(o *Options) { o.MinKeyRefreshInterval = time.Second })
	if _, err := f.verify(f.token(ecKey, nil)); err != nil {
		t.Fatal(err)
	}
	f.as.publish(ecKey, rotatedEC)
	f.clock.Advance(2 * time.Second)
	if _, err := f.verify(f.token(rotatedEC, nil)); err != nil {
		t.Fatal(err)
	}
}

func TestIdPDownAfterKeysCached(t *testing.T) {
	f := newFixture(t, nil)
	if _, err := f.verify(f.token(ecKey, nil)); err != nil {
		t.Fatal(err)
	}
	f.as.down.Store(true)
	f.clock.Advance(time.Hour)

	// A background refresh fails and keeps the keys.
	s := f.v.servers[0]
	if err := s.refresh(context.Background()); err == nil {
		t.Fatal("refresh against a down IdP succeeded")
	}
	// A fresh token (not in the cache) still verifies with cached keys.
	if _, err := f.verify(f.token(ecKey, func(h, c map[string]any) { c["jti"] = "new" })); err != nil {
		t.Fatalf("with the IdP down: %v", err)
	}
	// An unknown kid cannot be fetched: invalid, not unavailable.
	unknown := f.token(rotatedEC, nil)
	_, err := f.verify(unknown)
	assertReason(t, unknown, err, ReasonKeyID)
	// Other key types are still there too.
	if _, err := f.verify(f.token(rsaKey, nil)); err != nil {
		t.Fatal(err)
	}
}

func TestBrokenJWKSKeepsCachedKeys(t *testing.T) {
	f := newFixture(t, nil)
	if _, err := f.verify(f.token(ecKey, nil)); err != nil {
		t.Fatal(err)
	}
	f.as.mu.Lock()
	f.as.jwksBody = []byte(`{"keys":[]}`)
	f.as.mu.Unlock()
	if err := f.v.servers[0].refresh(context.Background()); err == nil {
		t.Fatal("refresh with an empty JWKS succeeded")
	}
	if _, err := f.verify(f.token(ecKey, func(h, c map[string]any) { c["jti"] = "new" })); err != nil {
		t.Fatal(err)
	}
}

func TestIdPDownBeforeAnyFetch(t *testing.T) {
	f := newFixture(t, nil)
	f.as.down.Store(true)
	token := f.token(ecKey, nil)
	_, err := f.verify(token)
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidToken) {
		t.Fatalf("error = %v, want ErrUnavailable only", err)
	}
	assertNoLeak(t, token, err)
	hits := f.as.metadataHits.Load()

	// Failing fast: the next request within the retry interval does not
	// ask the IdP again.
	f.as.down.Store(false)
	if _, err := f.verify(token); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("within the retry interval: %v", err)
	}
	if n := f.as.metadataHits.Load(); n != hits {
		t.Fatalf("metadata fetched again within the retry interval")
	}
	f.clock.Advance(discoveryRetryInterval)
	if _, err := f.verify(token); err != nil {
		t.Fatalf("after the IdP came back: %v", err)
	}
}

func TestJWKSNeverObtained(t *testing.T) {
	f := newFixture(t, nil)
	f.as.mu.Lock()
	f.as.jwksBody = []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`) // nothing usable
	f.as.mu.Unlock()
	if _, err := f.verify(f.token(ecKey, nil)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("error = %v, want ErrUnavailable", err)
	}
}

func TestCache(t *testing.T) {
	f := newFixture(t, nil)
	token := f.token(ecKey, func(h, c map[string]any) { c["exp"] = testNow().Add(time.Minute).Unix() })
	first, err := f.verify(token)
	if err != nil {
		t.Fatal(err)
	}
	// Served from the cache: the same principal, even with the IdP down.
	f.as.down.Store(true)
	second, err := f.verify(token)
	if err != nil || second != first {
		t.Fatalf("second Verify = %p, %v; want the cached %p", second, err, first)
	}
	// Never past exp (the cache holds it until exp; the skew lets the
	// re-verification accept it a little longer).
	f.clock.Advance(time.Minute + 16*time.Second)
	_, err = f.verify(token)
	assertReason(t, token, err, ReasonExpired)
}

func TestCacheClearedWhenKeyWithdrawn(t *testing.T) {
	f := newFixture(t, nil)
	token := f.token(ecKey, nil)
	if _, err := f.verify(token); err != nil {
		t.Fatal(err)
	}
	f.as.publish(rotatedEC, ec384Key, rsaKey, edKey) // ec-1 pulled
	if err := f.v.servers[0].refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err := f.verify(token)
	assertReason(t, token, err, ReasonKeyID)
}

func TestCacheDisabled(t *testing.T) {
	f := newFixture(t, nil, func(o *Options) { o.CacheSize = -1 })
	token := f.token(ecKey, nil)
	first, err := f.verify(token)
	if err != nil {
		t.Fatal(err)
	}
	second, err := f.verify(token)
	if err != nil || second == first {
		t.Fatalf("with the cache off Verify returned the same principal twice (%v)", err)
	}
}

func TestStartDiscoversInBackground(t *testing.T) {
	f := newFixture(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	f.v.Start(ctx)
	f.v.Start(ctx) // a second Start does nothing
	deadline := time.Now().Add(5 * time.Second)
	for f.v.servers[0].state.Load() == nil {
		if time.Now().After(deadline) {
			t.Fatal("Start did not discover")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if n := f.as.metadataHits.Load(); n != 1 {
		t.Fatalf("metadata fetched %d times, want 1", n)
	}
	hits := f.as.jwksHits.Load()
	if _, err := f.verify(f.token(ecKey, nil)); err != nil {
		t.Fatal(err)
	}
	if f.as.jwksHits.Load() != hits {
		t.Fatal("Verify fetched keys although Start had")
	}
}

func TestIssuers(t *testing.T) {
	f := newFixture(t, nil)
	if got := f.v.Issuers(); len(got) != 1 || got[0] != f.as.issuer {
		t.Fatalf("Issuers before discovery = %v", got)
	}
	f.as.setMetadataIssuer(f.as.issuer + "/")
	token := f.token(ecKey, func(h, c map[string]any) { c["iss"] = f.as.issuer + "/" })
	if _, err := f.verify(token); err != nil {
		t.Fatal(err)
	}
	if got := f.v.Issuers(); len(got) != 1 || got[0] != f.as.issuer+"/" {
		t.Fatalf("Issuers after discovery = %v", got)
	}
	// Now exactly that spelling: without the slash is refused.
	other := f.token(ecKey, nil)
	_, err := f.verify(other)
	assertReason(t, other, err, ReasonIssuer)
}

func TestSeveralServersRouteByIssuer(t *testing.T) {
	loadKeys(t)
	clock := newClock()
	first := newFakeAS(t, ecKey)
	second := newFakeAS(t, rotatedEC)
	v, err := NewVerifier([]ServerConfig{
		{MetadataURL: first.metadataURL(), ExpectedAudiences: []string{testAudience}},
		{MetadataURL: second.metadataURL(), ExpectedAudiences: []string{testAudience}},
	}, Options{Logger: discardLogger(), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := v.Verify(ctx, mint(t, rotatedEC, second.claims(clock.Now()), nil))
	if err != nil || p.Issuer != second.issuer {
		t.Fatalf("second server's token: %v, %v", p, err)
	}
	if first.metadataHits.Load() != 0 {
		t.Fatal("a token for the second server made the first one discover")
	}
	// The first server's key does not verify tokens claiming the second issuer.
	forged := mint(t, ecKey, second.claims(clock.Now()), func(h, c map[string]any) { h["kid"] = "ec-2" })
	_, err = v.Verify(ctx, forged)
	assertReason(t, forged, err, ReasonSignature)
}
