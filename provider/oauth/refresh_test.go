package oauth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

func TestKeyRotationAcceptedAfterRefresh(t *testing.T) {
	f := newFixture(t, nil)
	if _, err := f.verify(f.token(f.as.EC, nil)); err != nil {
		t.Fatal(err)
	}
	if n := f.as.Hits("/jwks"); n != 1 {
		t.Fatalf("jwks fetched %d times, want 1", n)
	}
	f.as.Publish(f.as.EC, f.rotated)
	f.clock.Advance(31 * time.Second)
	if _, err := f.verify(f.token(f.rotated, nil)); err != nil {
		t.Fatalf("token with the rotated key: %v", err)
	}
	if n := f.as.Hits("/jwks"); n != 2 {
		t.Fatalf("jwks fetched %d times, want 2", n)
	}
	// The new key is cached now: no further fetch.
	if _, err := f.verify(f.token(f.rotated, func(h, c map[string]any) { c["jti"] = "other" })); err != nil {
		t.Fatal(err)
	}
	if n := f.as.Hits("/jwks"); n != 2 {
		t.Fatalf("jwks fetched %d times, want 2", n)
	}
}

func TestUnknownKidRefreshIsRateLimited(t *testing.T) {
	f := newFixture(t, nil)
	if _, err := f.verify(f.token(f.as.EC, nil)); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)

	unknown := f.token(f.as.AttackerEC, func(h, c map[string]any) { h["kid"] = "nope-1" })
	_, err := f.verify(unknown)
	assertReason(t, unknown, err, ReasonKeyID)
	if n := f.as.Hits("/jwks"); n != 2 {
		t.Fatalf("first unknown kid: jwks fetched %d times, want 2", n)
	}

	// A second unknown kid inside the window does not refetch, even if
	// the key has appeared meanwhile.
	f.as.Publish(f.as.EC, f.rotated)
	f.clock.Advance(10 * time.Second)
	rotated := f.token(f.rotated, nil)
	_, err = f.verify(rotated)
	assertReason(t, rotated, err, ReasonKeyID)
	if n := f.as.Hits("/jwks"); n != 2 {
		t.Fatalf("second unknown kid within 30s: jwks fetched %d times, want 2", n)
	}

	// After the window, it does.
	f.clock.Advance(21 * time.Second)
	if _, err := f.verify(rotated); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	if n := f.as.Hits("/jwks"); n != 3 {
		t.Fatalf("after the window: jwks fetched %d times, want 3", n)
	}
}

func TestUnknownKidRefreshIsSingleFlight(t *testing.T) {
	f := newFixture(t, nil)
	if _, err := f.verify(f.token(f.as.EC, nil)); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	f.as.Publish(f.as.EC, f.rotated)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		token := f.token(f.rotated, func(h, c map[string]any) { c["jti"] = fmt.Sprint(i) })
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
	if n := f.as.Hits("/jwks"); n != 2 {
		t.Fatalf("jwks fetched %d times by 32 concurrent requests, want 2", n)
	}
}

func TestMinKeyRefreshIntervalOption(t *testing.T) {
	f := newFixture(t, nil, func(o *Options) { o.MinKeyRefreshInterval = time.Second })
	if _, err := f.verify(f.token(f.as.EC, nil)); err != nil {
		t.Fatal(err)
	}
	f.as.Publish(f.as.EC, f.rotated)
	f.clock.Advance(2 * time.Second)
	if _, err := f.verify(f.token(f.rotated, nil)); err != nil {
		t.Fatal(err)
	}
}

func TestIdPDownAfterKeysCached(t *testing.T) {
	f := newFixture(t, nil)
	if _, err := f.verify(f.token(f.as.EC, nil)); err != nil {
		t.Fatal(err)
	}
	f.as.Down.Store(true)
	f.clock.Advance(time.Hour)

	// A background refresh fails and keeps the keys.
	s := f.v.servers[0]
	if err := s.refresh(context.Background()); err == nil {
		t.Fatal("refresh against a down IdP succeeded")
	}
	// A fresh token (not in the cache) still verifies with cached keys.
	if _, err := f.verify(f.token(f.as.EC, func(h, c map[string]any) { c["jti"] = "new" })); err != nil {
		t.Fatalf("with the IdP down: %v", err)
	}
	// An unknown kid cannot be fetched: invalid, not unavailable.
	unknown := f.token(f.rotated, nil)
	_, err := f.verify(unknown)
	assertReason(t, unknown, err, ReasonKeyID)
	// Other key types are still there too.
	if _, err := f.verify(f.token(f.as.RSA, nil)); err != nil {
		t.Fatal(err)
	}
}

func TestBrokenJWKSKeepsCachedKeys(t *testing.T) {
	f := newFixture(t, nil)
	if _, err := f.verify(f.token(f.as.EC, nil)); err != nil {
		t.Fatal(err)
	}
	f.as.SetJWKS([]byte(`{"keys":[]}`))
	if err := f.v.servers[0].refresh(context.Background()); err == nil {
		t.Fatal("refresh with an empty JWKS succeeded")
	}
	if _, err := f.verify(f.token(f.as.EC, func(h, c map[string]any) { c["jti"] = "new" })); err != nil {
		t.Fatal(err)
	}
}

func TestIdPDownBeforeAnyFetch(t *testing.T) {
	f := newFixture(t, nil)
	f.as.Down.Store(true)
	token := f.token(f.as.EC, nil)
	_, err := f.verify(token)
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidToken) {
		t.Fatalf("error = %v, want ErrUnavailable only", err)
	}
	assertNoLeak(t, token, err)
	hits := f.as.Hits(oauthtest.MetadataPath)

	// Failing fast: the next request within the retry interval does not
	// ask the IdP again.
	f.as.Down.Store(false)
	if _, err := f.verify(token); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("within the retry interval: %v", err)
	}
	if n := f.as.Hits(oauthtest.MetadataPath); n != hits {
		t.Fatalf("metadata fetched again within the retry interval")
	}
	f.clock.Advance(discoveryRetryInterval)
	if _, err := f.verify(token); err != nil {
		t.Fatalf("after the IdP came back: %v", err)
	}
}

func TestJWKSNeverObtained(t *testing.T) {
	f := newFixture(t, nil)
	f.as.SetJWKS([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`)) // nothing usable
	if _, err := f.verify(f.token(f.as.EC, nil)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("error = %v, want ErrUnavailable", err)
	}
}

func TestCache(t *testing.T) {
	f := newFixture(t, nil)
	token := f.token(f.as.EC, func(h, c map[string]any) { c["exp"] = testNow().Add(time.Minute).Unix() })
	first, err := f.verify(token)
	if err != nil {
		t.Fatal(err)
	}
	// Served from the cache: the same principal, even with the IdP down.
	f.as.Down.Store(true)
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
	token := f.token(f.as.EC, nil)
	if _, err := f.verify(token); err != nil {
		t.Fatal(err)
	}
	f.as.Publish(f.rotated, f.as.EC384, f.as.RSA, f.as.Ed) // ec-1 pulled
	if err := f.v.servers[0].refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err := f.verify(token)
	assertReason(t, token, err, ReasonKeyID)
}

func TestCacheDisabled(t *testing.T) {
	f := newFixture(t, nil, func(o *Options) { o.CacheSize = -1 })
	token := f.token(f.as.EC, nil)
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
	if n := f.as.Hits(oauthtest.MetadataPath); n != 1 {
		t.Fatalf("metadata fetched %d times, want 1", n)
	}
	hits := f.as.Hits("/jwks")
	if _, err := f.verify(f.token(f.as.EC, nil)); err != nil {
		t.Fatal(err)
	}
	if f.as.Hits("/jwks") != hits {
		t.Fatal("Verify fetched keys although Start had")
	}
}

func TestIssuers(t *testing.T) {
	f := newFixture(t, nil)
	if got := f.v.Issuers(); len(got) != 1 || got[0] != f.as.ID {
		t.Fatalf("Issuers before discovery = %v", got)
	}
	f.as.SetMetadata(map[string]any{"issuer": f.as.ID + "/"})
	token := f.token(f.as.EC, func(h, c map[string]any) { c["iss"] = f.as.ID + "/" })
	if _, err := f.verify(token); err != nil {
		t.Fatal(err)
	}
	if got := f.v.Issuers(); len(got) != 1 || got[0] != f.as.ID+"/" {
		t.Fatalf("Issuers after discovery = %v", got)
	}
	// Now exactly that spelling: without the slash is refused.
	other := f.token(f.as.EC, nil)
	_, err := f.verify(other)
	assertReason(t, other, err, ReasonIssuer)
}

func TestSeveralServersRouteByIssuer(t *testing.T) {
	clock := newClock()
	first, second := oauthtest.NewIssuer(t, nil), oauthtest.NewIssuer(t, nil)
	rotated := oauthtest.NewKey(t, "ec-2", "ES256")
	first.Publish(first.EC)
	second.Publish(rotated)
	v, err := NewVerifier([]ServerConfig{
		{MetadataURL: first.MetadataURL(), ExpectedAudiences: []string{oauthtest.Audience}},
		{MetadataURL: second.MetadataURL(), ExpectedAudiences: []string{oauthtest.Audience}},
	}, Options{Logger: discardLogger(), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := v.Verify(ctx, second.Token(t, clock.Now(), rotated, nil))
	if err != nil || p.Issuer != second.ID {
		t.Fatalf("second server's token: %v, %v", p, err)
	}
	if first.Hits(oauthtest.MetadataPath) != 0 {
		t.Fatal("a token for the second server made the first one discover")
	}
	// The first server's key does not verify tokens claiming the second issuer.
	forged := second.Token(t, clock.Now(), first.EC, func(h, c map[string]any) { h["kid"] = "ec-2" })
	_, err = v.Verify(ctx, forged)
	assertReason(t, forged, err, ReasonSignature)
}
