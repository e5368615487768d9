package oauth

import (
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

const opaqueToken = "opaque-token-0123456789abcdef"

func newIntrospectionFixture(t *testing.T, edit func(*ServerConfig), opts ...func(*Options)) *fixture {
	t.Helper()
	return newFixture(t, func(c *ServerConfig) {
		c.Method = MethodIntrospection
		if edit != nil {
			edit(c)
		}
	}, opts...)
}

func (f *fixture) activeResponse(edit func(map[string]any)) map[string]any {
	now := f.clock.Now()
	response := map[string]any{
		"active":     true,
		"iss":        f.as.issuer,
		"sub":        "alice",
		"aud":        testAudience,
		"client_id":  "agent-1",
		"scope":      "ledger:read",
		"exp":        now.Add(time.Hour).Unix(),
		"iat":        now.Add(-time.Minute).Unix(),
		"token_type": "Bearer",
	}
	if edit != nil {
		edit(response)
	}
	return response
}

func TestIntrospectionActive(t *testing.T) {
	f := newIntrospectionFixture(t, nil)
	f.as.setIntrospection(opaqueToken, f.activeResponse(nil))
	p, err := f.verify(opaqueToken)
	if err != nil {
		t.Fatal(err)
	}
	if p.Method != MethodIntrospection || p.Subject != "alice" || p.ClientID != "agent-1" || p.Issuer != f.as.issuer ||
		!reflect.DeepEqual(p.Scopes, []string{"ledger:read"}) {
		t.Fatalf("principal = %+v", p)
	}
	// The request: client_secret_basic with form-urlencoded id and secret,
	// the token and a hint in the form.
	f.as.mu.Lock()
	authorization, form := f.as.lastAuthorization, f.as.lastForm
	f.as.mu.Unlock()
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("broker+client:s3cr%3At%2B%2F%26%3D%C3%A9"))
	if authorization != want {
		t.Errorf("Authorization = %q, want %q", authorization, want)
	}
	if form.Get("token") != opaqueToken || form.Get("token_type_hint") != "access_token" || len(form) != 2 {
		t.Errorf("form = %v", form)
	}
}

func TestIntrospectionJWTShapedTokenGoesToItsIssuer(t *testing.T) {
	f := newIntrospectionFixture(t, nil)
	// An HS256 JWT, which only the AS can check: introspected, not refused.
	token := b64([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + b64(mustJSON(t, f.as.claims(f.clock.Now()))) + ".c2ln"
	f.as.setIntrospection(token, f.activeResponse(nil))
	if _, err := f.verify(token); err != nil {
		t.Fatal(err)
	}
	if f.as.introspectionHits.Load() != 1 {
		t.Fatal("not introspected")
	}
}

func TestIntrospectionRejects(t *testing.T) {
	tests := []struct {
		name     string
		config   func(*ServerConfig)
		response func(f *fixture) map[string]any
		want     Reason
	}{
		{name: "inactive", want: ReasonInactive,
			response: func(f *fixture) map[string]any { return map[string]any{"active": false} }},
		{name: "unknown to the AS", want: ReasonInactive,
			response: func(f *fixture) map[string]any { return nil }},
		{name: "wrong issuer", want: ReasonIssuer,
			response: func(f *fixture) map[string]any {
				return f.activeResponse(func(r map[string]any) { r["iss"] = "https://evil.example" })
			}},
		{name: "wrong audience", want: ReasonAudience,
			response: func(f *fixture) map[string]any {
				return f.activeResponse(func(r map[string]any) { r["aud"] = []string{"https://other.example"} })
			}},
		{name: "expired", want: ReasonExpired,
			response: func(f *fixture) map[string]any {
				return f.activeResponse(func(r map[string]any) { r["exp"] = f.clock.Now().Add(-time.Hour).Unix() })
			}},
		{name: "not yet valid", want: ReasonNotYetValid,
			response: func(f *fixture) map[string]any {
				return f.activeResponse(func(r map[string]any) { r["nbf"] = f.clock.Now().Add(time.Hour).Unix() })
			}},
		{name: "refresh token", want: ReasonTokenType,
			response: func(f *fixture) map[string]any {
				return f.activeResponse(func(r map[string]any) { r["token_type"] = "refresh_token" })
			}},
		{name: "DPoP-bound", want: ReasonTokenType,
			response: func(f *fixture) map[string]any {
				return f.activeResponse(func(r map[string]any) { r["token_type"] = "DPoP"; r["cnf"] = map[string]any{"jkt": "x"} })
			}},
		{name: "no subject", want: ReasonSubject,
			response: func(f *fixture) map[string]any { return f.activeResponse(func(r map[string]any) { delete(r, "sub") }) }},
		{name: "exp as a string", want: ReasonMalformed,
			response: func(f *fixture) map[string]any { return f.activeResponse(func(r map[string]any) { r["exp"] = "soon" }) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newIntrospectionFixture(t, tt.config)
			f.as.setIntrospection(opaqueToken, tt.response(f))
			_, err := f.verify(opaqueToken)
			assertReason(t, opaqueToken, err, tt.want)
		})
	}
}

func TestIntrospectionOptionalClaims(t *testing.T) {
	f := newIntrospectionFixture(t, nil)
	f.as.setIntrospection(opaqueToken, map[string]any{"active": true, "sub": "alice"})
	p, err := f.verify(opaqueToken)
	if err != nil {
		t.Fatal(err)
	}
	if p.Issuer != f.as.issuer || !p.Expiry.IsZero() {
		t.Fatalf("principal = %+v", p)
	}
}

func TestIntrospectionUnavailable(t *testing.T) {
	tests := []struct {
		name    string
		arrange func(f *fixture)
	}{
		{name: "AS down", arrange: func(f *fixture) { f.as.down.Store(true) }},
		{name: "our client credentials refused", arrange: func(f *fixture) { f.as.secret = "rotated" }},
		{name: "active is not a boolean", arrange: func(f *fixture) { f.as.introspectionRaw = []byte(`{"active":"true","sub":"alice"}`) }},
		{name: "response is not JSON", arrange: func(f *fixture) { f.as.introspectionRaw = []byte(`<html>`) }},
		{name: "duplicate active", arrange: func(f *fixture) { f.as.introspectionRaw = []byte(`{"active":false,"active":true,"sub":"a"}`) }},
		{name: "response too large", arrange: func(f *fixture) {
			f.as.introspectionRaw = []byte(`{"active":true,"sub":"alice","pad":"` + strings.Repeat("x", 2<<20) + `"}`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newIntrospectionFixture(t, nil)
			f.as.setIntrospection(opaqueToken, f.activeResponse(nil))
			// Discover first, then break things.
			if _, err := f.v.servers[0].ready(t.Context()); err != nil {
				t.Fatal(err)
			}
			f.as.mu.Lock()
			tt.arrange(f)
			f.as.mu.Unlock()
			_, err := f.verify(opaqueToken)
			if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidToken) {
				t.Fatalf("error = %v, want ErrUnavailable only", err)
			}
			assertNoLeak(t, opaqueToken, err)
		})
	}
}

func TestIntrospectionCache(t *testing.T) {
	f := newIntrospectionFixture(t, func(c *ServerConfig) { c.IntrospectionCacheTTL = time.Minute })
	f.as.setIntrospection(opaqueToken, f.activeResponse(func(r map[string]any) {
		r["exp"] = f.clock.Now().Add(90 * time.Second).Unix()
	}))
	if _, err := f.verify(opaqueToken); err != nil {
		t.Fatal(err)
	}
	// Revoked at the AS: the cached answer stands until the TTL...
	f.as.setIntrospection(opaqueToken, nil)
	f.clock.Advance(59 * time.Second)
	if _, err := f.verify(opaqueToken); err != nil {
		t.Fatalf("within the cache TTL: %v", err)
	}
	if n := f.as.introspectionHits.Load(); n != 1 {
		t.Fatalf("introspected %d times, want 1", n)
	}
	// ...and no longer.
	f.clock.Advance(2 * time.Second)
	_, err := f.verify(opaqueToken)
	assertReason(t, opaqueToken, err, ReasonInactive)
	if n := f.as.introspectionHits.Load(); n != 2 {
		t.Fatalf("introspected %d times, want 2", n)
	}
}

func TestIntrospectionCacheNeverPastExp(t *testing.T) {
	f := newIntrospectionFixture(t, nil) // TTL 5m
	exp := f.clock.Now().Add(30 * time.Second)
	// An AS that keeps saying active (and repeats exp) after exp.
	f.as.setIntrospection(opaqueToken, f.activeResponse(func(r map[string]any) { r["exp"] = exp.Unix() }))
	if _, err := f.verify(opaqueToken); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(29 * time.Second)
	if _, err := f.verify(opaqueToken); err != nil {
		t.Fatal(err)
	}
	if n := f.as.introspectionHits.Load(); n != 1 {
		t.Fatalf("introspected %d times before exp, want 1", n)
	}
	f.clock.Advance(2 * time.Second) // past exp, within skew: asked again
	if _, err := f.verify(opaqueToken); err != nil {
		t.Fatal(err)
	}
	if n := f.as.introspectionHits.Load(); n != 2 {
		t.Fatalf("cache served past exp: introspected %d times, want 2", n)
	}
	f.clock.Advance(15 * time.Second) // beyond skew
	_, err := f.verify(opaqueToken)
	assertReason(t, opaqueToken, err, ReasonExpired)
}

func TestIntrospectionNegativeCacheIsShort(t *testing.T) {
	f := newIntrospectionFixture(t, nil)
	for range 3 {
		_, err := f.verify(opaqueToken)
		assertReason(t, opaqueToken, err, ReasonInactive)
	}
	if n := f.as.introspectionHits.Load(); n != 1 {
		t.Fatalf("introspected %d times, want 1", n)
	}
	f.as.setIntrospection(opaqueToken, f.activeResponse(nil))
	f.clock.Advance(negativeCacheTTL)
	if _, err := f.verify(opaqueToken); err != nil {
		t.Fatalf("after the negative TTL: %v", err)
	}
}

func TestOpaqueTokenWithoutIntrospection(t *testing.T) {
	f := newFixture(t, nil)
	_, err := f.verify(opaqueToken)
	assertReason(t, opaqueToken, err, ReasonMalformed)
	if f.as.introspectionHits.Load() != 0 || f.as.metadataHits.Load() != 0 {
		t.Fatal("an opaque token for a JWT-only verifier caused requests")
	}
}
