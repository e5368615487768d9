package exchange

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

const testIssuer = "http://localhost:8080"

func newTestMinter(t testing.TB, keys *KeySet, alg jose.SignatureAlgorithm, clock *testClock) *Minter {
	t.Helper()
	minter, err := NewMinter(keys, MinterOptions{Issuer: testIssuer, Algorithm: alg, Now: clock.Now})
	if err != nil {
		t.Fatalf("NewMinter: %v", err)
	}
	return minter
}

// testGrant is a delegated call: agent-7 (client agent-app), launched by an
// orchestrator, calls a ledger tool for alice.
func testGrant() Grant {
	return Grant{
		Subject:    "alice",
		ClientID:   "agent-app",
		Audience:   "https://ledger.example/",
		Scopes:     []string{"ledger:read", "ledger:accounts"},
		TTL:        5 * time.Second,
		Actor:      &oauth.Actor{Subject: "agent-7", ClientID: "agent-app", Actor: &oauth.Actor{Subject: "orchestrator"}},
		Delegation: true,
	}
}

// verifyToken checks token the way an upstream would, with go-jose and the
// published JWKS, and returns its header and claims.
func verifyToken(t *testing.T, token string, jwks jose.JSONWebKeySet) (jose.Header, map[string]any) {
	t.Helper()
	parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256})
	if err != nil {
		t.Fatalf("ParseSigned: %v", err)
	}
	if len(parsed.Headers) != 1 {
		t.Fatalf("%d signatures, want 1", len(parsed.Headers))
	}
	header := parsed.Headers[0]
	keys := jwks.Key(header.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q matches %d published keys, want 1", header.KeyID, len(keys))
	}
	if keys[0].Algorithm != header.Algorithm {
		t.Fatalf("token alg %s, key alg %s", header.Algorithm, keys[0].Algorithm)
	}
	var claims map[string]any
	if err := parsed.Claims(keys[0].Key, &claims); err != nil {
		t.Fatalf("signature does not verify against the JWKS: %v", err)
	}
	return header, claims
}

func tokenKeyID(t *testing.T, token string) string {
	t.Helper()
	parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	return parsed.Headers[0].KeyID
}

func TestMintedTokensVerifyAndCarryExactlyTheClaims(t *testing.T) {
	ctx := context.Background()
	clock := &testClock{now: epoch.Add(1500 * time.Millisecond)}
	keys := newTestKeySet(t, &MemoryKeyStore{}, KeySetOptions{Now: clock.Now})
	iat := float64(epoch.Unix() + 1)

	tests := []struct {
		name  string
		grant func(*Grant)
		want  map[string]any // without jti, which is random
	}{
		{
			name:  "delegation with nested actors",
			grant: func(*Grant) {},
			want: map[string]any{
				"iss": testIssuer, "sub": "alice", "aud": "https://ledger.example/",
				"scope": "ledger:read ledger:accounts", "client_id": "agent-app",
				"act": map[string]any{"sub": "agent-7", "client_id": "agent-app", "act": map[string]any{"sub": "orchestrator"}},
				"iat": iat, "exp": iat + 5,
			},
		},
		{
			name:  "delegation with one actor",
			grant: func(g *Grant) { g.Actor = &oauth.Actor{Subject: "agent-7"}; g.TTL = time.Hour },
			want: map[string]any{
				"iss": testIssuer, "sub": "alice", "aud": "https://ledger.example/",
				"scope": "ledger:read ledger:accounts", "client_id": "agent-app",
				"act": map[string]any{"sub": "agent-7"},
				"iat": iat, "exp": iat + 3600,
			},
		},
		{
			name:  "impersonation leaves the actor out",
			grant: func(g *Grant) { g.Delegation = false },
			want: map[string]any{
				"iss": testIssuer, "sub": "alice", "aud": "https://ledger.example/",
				"scope": "ledger:read ledger:accounts", "client_id": "agent-app",
				"iat": iat, "exp": iat + 5,
			},
		},
		{
			name:  "no scopes, no scope claim",
			grant: func(g *Grant) { g.Scopes = nil; g.Delegation = false; g.Actor = nil; g.TTL = time.Second },
			want: map[string]any{
				"iss": testIssuer, "sub": "alice", "aud": "https://ledger.example/",
				"client_id": "agent-app", "iat": iat, "exp": iat + 1,
			},
		},
		{
			name: "extra claims beside the registered ones",
			grant: func(g *Grant) {
				g.Extra = map[string]any{"tool": "listAccounts", "groups": []string{"finance"}, "tenant": map[string]any{"id": 7}}
			},
			want: map[string]any{
				"iss": testIssuer, "sub": "alice", "aud": "https://ledger.example/",
				"scope": "ledger:read ledger:accounts", "client_id": "agent-app",
				"act": map[string]any{"sub": "agent-7", "client_id": "agent-app", "act": map[string]any{"sub": "orchestrator"}},
				"iat": iat, "exp": iat + 5,
				"tool": "listAccounts", "groups": []any{"finance"}, "tenant": map[string]any{"id": float64(7)},
			},
		},
	}
	for _, alg := range signingAlgorithms {
		minter := newTestMinter(t, keys, alg, clock)
		active, _ := keys.Active(alg)
		for _, test := range tests {
			t.Run(string(alg)+"/"+test.name, func(t *testing.T) {
				grant := testGrant()
				test.grant(&grant)
				token, claims, err := minter.Mint(ctx, grant)
				if err != nil {
					t.Fatalf("Mint: %v", err)
				}
				header, got := verifyToken(t, token, keys.JWKS())
				if header.Algorithm != string(alg) || header.KeyID != active.KeyID() {
					t.Errorf("header alg %s kid %s, want %s %s", header.Algorithm, header.KeyID, alg, active.KeyID())
				}
				if typ := header.ExtraHeaders[jose.HeaderType]; typ != "at+jwt" {
					t.Errorf("header typ %v, want at+jwt", typ)
				}
				if len(header.ExtraHeaders) != 1 || header.JSONWebKey != nil || header.Nonce != "" {
					t.Errorf("header carries more than alg, kid and typ: %+v", header)
				}

				jti, ok := got["jti"].(string)
				if !ok || jti != claims.TokenID {
					t.Errorf("jti %v, returned claims say %q", got["jti"], claims.TokenID)
				}
				delete(got, "jti")
				if !reflect.DeepEqual(got, test.want) {
					t.Errorf("claims:\n got %v\nwant %v", got, test.want)
				}

				if d := claims.Expiry.Sub(claims.IssuedAt); d != grant.TTL {
					t.Errorf("exp - iat = %s, want the ttl %s", d, grant.TTL)
				}
				if claims.Issuer != testIssuer || claims.Subject != grant.Subject || claims.Audience != grant.Audience ||
					claims.ClientID != grant.ClientID || claims.Scope != strings.Join(grant.Scopes, " ") {
					t.Errorf("returned claims %+v do not match the grant", claims)
				}
				if (claims.Actor != nil) != grant.Delegation {
					t.Errorf("returned actor %v for delegation %v", claims.Actor, grant.Delegation)
				}
			})
		}
	}
}

func TestTokenIDsAreDistinct(t *testing.T) {
	keys := newTestKeySet(t, &MemoryKeyStore{}, KeySetOptions{})
	minter := newTestMinter(t, keys, jose.EdDSA, &testClock{now: epoch})
	seen := make(map[string]bool)
	for range 1000 {
		token, claims, err := minter.Mint(context.Background(), testGrant())
		if err != nil {
			t.Fatal(err)
		}
		if seen[claims.TokenID] {
			t.Fatalf("jti %q repeated", claims.TokenID)
		}
		seen[claims.TokenID] = true
		id, err := base64url.DecodeString(claims.TokenID)
		if err != nil || len(id) != 16 {
			t.Fatalf("jti %q is not 128 bits in base64url (%v)", claims.TokenID, err)
		}
		if seen[token] {
			t.Fatal("token repeated")
		}
		seen[token] = true
	}
}

func TestMintRefusesBadGrants(t *testing.T) {
	keys := newTestKeySet(t, &MemoryKeyStore{}, KeySetOptions{MaxTokenTTL: 10 * time.Minute})
	minter := newTestMinter(t, keys, jose.ES256, &testClock{now: epoch})
	deep := &oauth.Actor{Subject: "a0"}
	for range oauth.MaxActorDepth {
		deep = &oauth.Actor{Subject: "a", Actor: deep}
	}
	tests := []struct {
		name  string
		grant func(*Grant)
		want  error
	}{
		{"zero ttl", func(g *Grant) { g.TTL = 0 }, ErrTTL},
		{"negative ttl", func(g *Grant) { g.TTL = -time.Second }, ErrTTL},
		{"fractional ttl", func(g *Grant) { g.TTL = 1500 * time.Millisecond }, ErrTTL},
		{"sub-second ttl", func(g *Grant) { g.TTL = 500 * time.Millisecond }, ErrTTL},
		{"ttl over the keys' maximum", func(g *Grant) { g.TTL = 10*time.Minute + time.Second }, ErrTTL},
		{"ttl over an hour", func(g *Grant) { g.TTL = time.Hour + time.Second }, ErrTTL},
		{"no subject", func(g *Grant) { g.Subject = "" }, ErrNoSubject},
		{"no audience", func(g *Grant) { g.Audience = "" }, ErrNoAudience},
		{"no client", func(g *Grant) { g.ClientID = "" }, ErrNoClientID},
		{"empty scope", func(g *Grant) { g.Scopes = []string{"ledger:read", ""} }, ErrScope},
		{"scope with a space", func(g *Grant) { g.Scopes = []string{"ledger:read ledger:write"} }, ErrScope},
		{"scope with a quote", func(g *Grant) { g.Scopes = []string{`ledger"read`} }, ErrScope},
		{"scope with a backslash", func(g *Grant) { g.Scopes = []string{`ledger\read`} }, ErrScope},
		{"scope with non-ASCII", func(g *Grant) { g.Scopes = []string{"lédger"} }, ErrScope},
		{"delegation without an actor", func(g *Grant) { g.Actor = nil }, ErrActor},
		{"actor link without sub or client_id", func(g *Grant) { g.Actor.Actor = &oauth.Actor{} }, ErrActor},
		{"actor chain too deep", func(g *Grant) { g.Actor = deep }, ErrActor},
		{"extra overrides sub", func(g *Grant) { g.Extra = map[string]any{"sub": "mallory"} }, ErrExtraClaim},
		{"extra sets nbf", func(g *Grant) { g.Extra = map[string]any{"nbf": 0} }, ErrExtraClaim},
		{"extra overrides act", func(g *Grant) { g.Extra = map[string]any{"act": nil} }, ErrExtraClaim},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			grant := testGrant()
			test.grant(&grant)
			token, _, err := minter.Mint(context.Background(), grant)
			if !errors.Is(err, test.want) {
				t.Fatalf("Mint: %v, want %v", err, test.want)
			}
			if token != "" {
				t.Error("a token came with the error")
			}
		})
	}

	t.Run("extra claims that do not encode", func(t *testing.T) {
		grant := testGrant()
		grant.Extra = map[string]any{"callback": func() {}}
		if _, _, err := minter.Mint(context.Background(), grant); err == nil {
			t.Fatal("Mint encoded a function")
		}
	})
	t.Run("the longest chain is fine", func(t *testing.T) {
		grant := testGrant()
		grant.Actor = deep.Actor // oauth.MaxActorDepth links
		if _, _, err := minter.Mint(context.Background(), grant); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("impersonation ignores a bad chain", func(t *testing.T) {
		grant := testGrant()
		grant.Delegation, grant.Actor = false, deep
		if _, _, err := minter.Mint(context.Background(), grant); err != nil {
			t.Fatal(err)
		}
	})
}

func TestNewMinter(t *testing.T) {
	keys := newTestKeySet(t, &MemoryKeyStore{}, KeySetOptions{})
	if _, err := NewMinter(keys, MinterOptions{}); err == nil {
		t.Error("NewMinter without an issuer")
	}
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.HS256, jose.ES384, "none"} {
		if _, err := NewMinter(keys, MinterOptions{Issuer: testIssuer, Algorithm: alg}); !errors.Is(err, ErrAlgorithm) {
			t.Errorf("NewMinter with %s: %v, want ErrAlgorithm", alg, err)
		}
	}
	minter, err := NewMinter(keys, MinterOptions{Issuer: testIssuer})
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := minter.Mint(context.Background(), testGrant())
	if err != nil {
		t.Fatal(err)
	}
	if header, _ := verifyToken(t, token, keys.JWKS()); header.Algorithm != string(jose.ES256) {
		t.Errorf("default algorithm %s, want ES256", header.Algorithm)
	}
}

func TestSignerOtherTypes(t *testing.T) {
	keys := newTestKeySet(t, &MemoryKeyStore{}, KeySetOptions{})
	for _, alg := range signingAlgorithms {
		signer, _ := keys.Active(alg)
		payload, _ := json.Marshal(map[string]any{"sub": "alice"})
		token, err := signer.Sign("JWT", payload)
		if err != nil {
			t.Fatal(err)
		}
		header, claims := verifyToken(t, token, keys.JWKS())
		if header.ExtraHeaders[jose.HeaderType] != "JWT" {
			t.Errorf("%s: typ %v, want JWT", alg, header.ExtraHeaders[jose.HeaderType])
		}
		if !maps.Equal(claims, map[string]any{"sub": "alice"}) {
			t.Errorf("%s: claims %v", alg, claims)
		}
	}
}

func benchmarkMint(b *testing.B, alg jose.SignatureAlgorithm) {
	keys := newTestKeySet(b, &MemoryKeyStore{}, KeySetOptions{})
	minter, err := NewMinter(keys, MinterOptions{Issuer: testIssuer, Algorithm: alg})
	if err != nil {
		b.Fatal(err)
	}
	grant := testGrant()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := minter.Mint(ctx, grant); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMintEdDSA(b *testing.B) { benchmarkMint(b, jose.EdDSA) }
func BenchmarkMintES256(b *testing.B) { benchmarkMint(b, jose.ES256) }
