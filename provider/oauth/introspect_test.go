package oauth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

const opaqueToken = "opaque-token-0123456789abcdef"

func newIntrospectionFixture(t *testing.T, edit func(*ServerConfig), opts ...func(*Options)) *fixture {
	t.Helper()
	f := newFixture(t, func(c *ServerConfig) {
		c.Method = MethodIntrospection
		if edit != nil {
			edit(c)
		}
	}, opts...)
	f.introspection = &introspectionEndpoint{responses: map[string]map[string]any{}, secret: testSecret}
	f.as.Handle("POST /introspect", f.introspection)
	f.as.SetMetadata(map[string]any{"introspection_endpoint": f.as.URL + "/introspect"})
	return f
}

// introspectionEndpoint is the RFC 7662 endpoint of the introspection
// tests' issuer: for the broker's client it answers each token with the
// response set for it.
type introspectionEndpoint struct {
	mu            sync.Mutex
	responses     map[string]map[string]any // token → response
	raw           []byte                    // when set, served verbatim
	secret        string
	authorization string     // of the last request
	form          url.Values // of the last request
}

func (e *introspectionEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.authorization = r.Header.Get("Authorization")
	// client_secret_basic form-urlencodes id and secret before the Basic
	// encoding (RFC 6749 §2.3.1).
	user, pass, ok := r.BasicAuth()
	if !ok || user != url.QueryEscape(testClientID) || pass != url.QueryEscape(e.secret) || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		w.Header().Set("WWW-Authenticate", `Basic realm="as"`)
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	e.form = r.PostForm
	w.Header().Set("Content-Type", "application/json")
	if e.raw != nil {
		w.Write(e.raw)
		return
	}
	response, found := e.responses[r.PostForm.Get("token")]
	if !found {
		response = map[string]any{"active": false}
	}
	json.NewEncoder(w).Encode(response)
}

// set makes response the answer for token; nil makes the token unknown.
func (e *introspectionEndpoint) set(token string, response map[string]any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if response == nil {
		delete(e.responses, token)
		return
	}
	e.responses[token] = response
}

func (f *fixture) activeResponse(edit func(map[string]any)) map[string]any {
	now := f.clock.Now()
	response := map[string]any{
		"active":     true,
		"iss":        f.as.ID,
		"sub":        "alice",
		"aud":        oauthtest.Audience,
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
	f.introspection.set(opaqueToken, f.activeResponse(nil))
	p, err := f.verify(opaqueToken)
	if err != nil {
		t.Fatal(err)
	}
	if p.Method != MethodIntrospection || p.Subject != "alice" || p.ClientID != "agent-1" || p.Issuer != f.as.ID ||
		!reflect.DeepEqual(p.Scopes, []string{"ledger:read"}) {
		t.Fatalf("principal = %+v", p)
	}
	// The request: client_secret_basic with form-urlencoded id and secret,
	// the token and a hint in the form.
	f.introspection.mu.Lock()
	authorization, form := f.introspection.authorization, f.introspection.form
	f.introspection.mu.Unlock()
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
	token := oauthtest.B64([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + oauthtest.B64(oauthtest.JSON(t, f.as.Claims(f.clock.Now()))) + ".c2ln"
	f.introspection.set(token, f.activeResponse(nil))
	if _, err := f.verify(token); err != nil {
		t.Fatal(err)
	}
	if f.as.Hits("/introspect") != 1 {
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
			f.introspection.set(opaqueToken, tt.response(f))
			_, err := f.verify(opaqueToken)
			assertReason(t, opaqueToken, err, tt.want)
		})
	}
}

func TestIntrospectionOptionalClaims(t *testing.T) {
	f := newIntrospectionFixture(t, nil)
	f.introspection.set(opaqueToken, map[string]any{"active": true, "sub": "alice"})
	p, err := f.verify(opaqueToken)
	if err != nil {
		t.Fatal(err)
	}
	if p.Issuer != f.as.ID || !p.Expiry.IsZero() {
		t.Fatalf("principal = %+v", p)
	}
}

func TestIntrospectionUnavailable(t *testing.T) {
	tests := []struct {
		name    string
		arrange func(f *fixture)
	}{
		{name: "AS down", arrange: func(f *fixture) { f.as.Down.Store(true) }},
		{name: "our client credentials refused", arrange: func(f *fixture) { f.introspection.secret = "rotated" }},
		{name: "active is not a boolean", arrange: func(f *fixture) { f.introspection.raw = []byte(`{"active":"true","sub":"alice"}`) }},
		{name: "response is not JSON", arrange: func(f *fixture) { f.introspection.raw = []byte(`<html>`) }},
		{name: "duplicate active", arrange: func(f *fixture) { f.introspection.raw = []byte(`{"active":false,"active":true,"sub":"a"}`) }},
		{name: "response too large", arrange: func(f *fixture) {
			f.introspection.raw = []byte(`{"active":true,"sub":"alice","pad":"` + strings.Repeat("x", 2<<20) + `"}`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newIntrospectionFixture(t, nil)
			f.introspection.set(opaqueToken, f.activeResponse(nil))
			// Discover first, then break things.
			if _, err := f.v.servers[0].ready(t.Context()); err != nil {
				t.Fatal(err)
			}
			f.introspection.mu.Lock()
			tt.arrange(f)
			f.introspection.mu.Unlock()
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
	f.introspection.set(opaqueToken, f.activeResponse(func(r map[string]any) {
		r["exp"] = f.clock.Now().Add(90 * time.Second).Unix()
	}))
	if _, err := f.verify(opaqueToken); err != nil {
		t.Fatal(err)
	}
	// Revoked at the AS: the cached answer stands until the TTL...
	f.introspection.set(opaqueToken, nil)
	f.clock.Advance(59 * time.Second)
	if _, err := f.verify(opaqueToken); err != nil {
		t.Fatalf("within the cache TTL: %v", err)
	}
	if n := f.as.Hits("/introspect"); n != 1 {
		t.Fatalf("introspected %d times, want 1", n)
	}
	// ...and no longer.
	f.clock.Advance(2 * time.Second)
	_, err := f.verify(opaqueToken)
	assertReason(t, opaqueToken, err, ReasonInactive)
	if n := f.as.Hits("/introspect"); n != 2 {
		t.Fatalf("introspected %d times, want 2", n)
	}
}

func TestIntrospectionCacheNeverPastExp(t *testing.T) {
	f := newIntrospectionFixture(t, nil) // TTL 5m
	exp := f.clock.Now().Add(30 * time.Second)
	// An AS that keeps saying active (and repeats exp) after exp.
	f.introspection.set(opaqueToken, f.activeResponse(func(r map[string]any) { r["exp"] = exp.Unix() }))
	if _, err := f.verify(opaqueToken); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(29 * time.Second)
	if _, err := f.verify(opaqueToken); err != nil {
		t.Fatal(err)
	}
	if n := f.as.Hits("/introspect"); n != 1 {
		t.Fatalf("introspected %d times before exp, want 1", n)
	}
	f.clock.Advance(2 * time.Second) // past exp, within skew: asked again
	if _, err := f.verify(opaqueToken); err != nil {
		t.Fatal(err)
	}
	if n := f.as.Hits("/introspect"); n != 2 {
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
	if n := f.as.Hits("/introspect"); n != 1 {
		t.Fatalf("introspected %d times, want 1", n)
	}
	f.introspection.set(opaqueToken, f.activeResponse(nil))
	f.clock.Advance(negativeCacheTTL)
	if _, err := f.verify(opaqueToken); err != nil {
		t.Fatalf("after the negative TTL: %v", err)
	}
}

func TestOpaqueTokenWithoutIntrospection(t *testing.T) {
	f := newFixture(t, nil)
	_, err := f.verify(opaqueToken)
	assertReason(t, opaqueToken, err, ReasonMalformed)
	if f.as.Hits("/introspect") != 0 || f.as.Hits(oauthtest.MetadataPath) != 0 {
		t.Fatal("an opaque token for a JWT-only verifier caused requests")
	}
}
