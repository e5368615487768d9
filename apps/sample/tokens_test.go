package sample

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// testIssuer is an authorization server under a path, so that its RFC 8414
// metadata URL has the well-known part inserted before the path.
type testIssuer struct {
	issuer string
	key    *ecdsa.PrivateKey
}

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is := &testIssuer{key: key}
	mux := http.NewServeMux()
	server := httptest.NewServer(mux)
	t.Cleanup(server.Close)
	is.issuer = server.URL + "/tenant"
	mux.HandleFunc("/.well-known/oauth-authorization-server/tenant", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"issuer": is.issuer, "jwks_uri": is.issuer + "/jwks"})
	})
	mux.HandleFunc("/tenant/jwks", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &key.PublicKey, KeyID: "k1", Algorithm: string(jose.ES256), Use: "sig"},
		}})
	})
	return is
}

const testAudience = "https://ledger.example/"

// claims are a valid delegated token's, to be changed by each case.
func (is *testIssuer) claims() map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": is.issuer, "sub": "alice", "aud": testAudience, "client_id": "agent-1",
		"scope": "ledger:read ledger:write", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": "token-1",
		"act": map[string]any{"sub": "agent-1", "client_id": "agent-1", "act": map[string]any{"sub": "orchestrator"}},
	}
}

func (is *testIssuer) sign(t *testing.T, claims map[string]any, typ string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: is.key},
		&jose.SignerOptions{ExtraHeaders: map[jose.HeaderKey]any{"typ": typ, "kid": "k1"}})
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	token, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func protectedServer(t *testing.T, is *testIssuer) string {
	t.Helper()
	handler, err := ProtectedHandler(nil, TokenOptions{Issuer: is.issuer, Audience: testAudience})
	if err != nil {
		t.Fatal(err)
	}
	return startServer(t, handler)
}

// Every request needs a valid access token for the audience; anything
// else is answered with the resource server's challenge, before MCP.
func TestProtectedHandlerRefuses(t *testing.T) {
	is := newTestIssuer(t)
	endpoint := protectedServer(t, is)
	with := func(change func(map[string]any)) string {
		c := is.claims()
		change(c)
		return is.sign(t, c, "at+jwt")
	}
	other := newTestIssuer(t)
	const invalidToken = `Bearer error="invalid_token"`
	tests := []struct {
		name          string
		authorization string
		status        int
		challenge     string
	}{
		{"valid", "Bearer " + is.sign(t, is.claims(), "at+jwt"), http.StatusOK, ""},
		{"no token", "", http.StatusUnauthorized, "Bearer"},
		{"basic scheme", "Basic YWxpY2U6c2VjcmV0", http.StatusBadRequest, `Bearer error="invalid_request"`},
		{"other audience", "Bearer " + with(func(c map[string]any) { c["aud"] = "https://other.example/" }), http.StatusUnauthorized, invalidToken},
		{"expired", "Bearer " + with(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }), http.StatusUnauthorized, invalidToken},
		{"other issuer", "Bearer " + other.sign(t, other.claims(), "at+jwt"), http.StatusUnauthorized, invalidToken},
		{"issuer claimed, key not its", "Bearer " + func() string {
			c := other.claims()
			c["iss"] = is.issuer
			return other.sign(t, c, "at+jwt")
		}(), http.StatusUnauthorized, invalidToken},
		{"not an access token", "Bearer " + is.sign(t, is.claims(), "JWT"), http.StatusUnauthorized, invalidToken},
		{"unsigned", "Bearer " + unsignedJWT(t, is.claims()), http.StatusUnauthorized, invalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(
				`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			if tt.authorization != "" {
				req.Header.Set("Authorization", tt.authorization)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, tt.challenge) || (tt.challenge == "") != (got == "") {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.challenge)
			}
		})
	}
}

// whoami reports the claims it verified, act chain included, and never
// the token.
func TestProtectedWhoami(t *testing.T) {
	is := newTestIssuer(t)
	endpoint := protectedServer(t, is)
	claims := is.claims()
	token := is.sign(t, claims, "at+jwt")
	session, _ := connect(t, endpoint, clientSetup{transport: authorizingTransport{"Bearer " + token}})
	res := callTool(t, session, "whoami", nil)
	if res.IsError {
		t.Fatalf("whoami: %s", resultText(res))
	}
	got := structured[Identity](t, res)
	want := Identity{
		AuthorizationPresent: true, Scheme: "Bearer", TokenFormat: "jwt", Verified: true,
		VerifiedClaims: &VerifiedClaims{
			Issuer: is.issuer, Subject: "alice", ClientID: "agent-1", Audience: []string{testAudience},
			Scope:     "ledger:read ledger:write",
			Actor:     map[string]any{"sub": "agent-1", "client_id": "agent-1", "act": map[string]any{"sub": "orchestrator"}},
			IssuedAt:  claims["iat"].(int64),
			ExpiresAt: claims["exp"].(int64),
			TokenID:   "token-1",
		},
	}
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(want)
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Errorf("identity = %s\nwant       %s", gotJSON, wantJSON)
	}
	raw, _ := json.Marshal(res)
	if bytes.Contains(raw, []byte(strings.Split(token, ".")[2])) {
		t.Error("whoami echoes the token")
	}
	if !strings.Contains(resultText(res), "claims (verified)") {
		t.Errorf("text %q does not say the claims are verified", resultText(res))
	}
}

func TestMetadataURL(t *testing.T) {
	tests := []struct {
		issuer, want string
	}{
		{"https://as.example", "https://as.example/.well-known/oauth-authorization-server"},
		{"https://as.example/", "https://as.example/.well-known/oauth-authorization-server"},
		{"http://127.0.0.1:8080/tenant/a", "http://127.0.0.1:8080/.well-known/oauth-authorization-server/tenant/a"},
		{"as.example", ""},
		{"https://as.example/?x=1", ""},
		{"ftp://as.example", ""},
	}
	for _, tt := range tests {
		got, err := metadataURL(tt.issuer)
		if got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("metadataURL(%q) = %q, %v; want %q", tt.issuer, got, err, tt.want)
		}
	}
}
