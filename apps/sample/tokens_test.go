package sample

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

const testAudience = "https://ledger.example/"

// newTestIssuer starts an authorization server under a path, so that its
// RFC 8414 metadata URL has the well-known part inserted before the path.
func newTestIssuer(t *testing.T) *oauthtest.Issuer {
	t.Helper()
	return oauthtest.NewIssuer(t, &oauthtest.Options{Path: "/tenant", Audience: testAudience})
}

// delegatedClaims are a valid delegated token's, to be changed by each
// case.
func delegatedClaims(is *oauthtest.Issuer) map[string]any {
	claims := is.Claims(time.Now())
	claims["client_id"], claims["scope"] = "agent-1", "ledger:read ledger:write"
	claims["act"] = map[string]any{"sub": "agent-1", "client_id": "agent-1", "act": map[string]any{"sub": "orchestrator"}}
	return claims
}

func protectedServer(t *testing.T, is *oauthtest.Issuer) string {
	t.Helper()
	handler, err := ProtectedHandler(nil, TokenOptions{Issuer: is.ID, Audience: testAudience})
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
		c := delegatedClaims(is)
		change(c)
		return is.Mint(t, c)
	}
	other := newTestIssuer(t)
	const invalidToken = `Bearer error="invalid_token"`
	tests := []struct {
		name          string
		authorization string
		status        int
		challenge     string
	}{
		{"valid", "Bearer " + is.Mint(t, delegatedClaims(is)), http.StatusOK, ""},
		{"no token", "", http.StatusUnauthorized, "Bearer"},
		{"basic scheme", "Basic YWxpY2U6c2VjcmV0", http.StatusBadRequest, `Bearer error="invalid_request"`},
		{"other audience", "Bearer " + with(func(c map[string]any) { c["aud"] = "https://other.example/" }), http.StatusUnauthorized, invalidToken},
		{"expired", "Bearer " + with(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }), http.StatusUnauthorized, invalidToken},
		{"other issuer", "Bearer " + other.Mint(t, delegatedClaims(other)), http.StatusUnauthorized, invalidToken},
		{"issuer claimed, key not its", "Bearer " + func() string {
			c := delegatedClaims(other)
			c["iss"] = is.ID
			return other.Mint(t, c)
		}(), http.StatusUnauthorized, invalidToken},
		{"not an access token", "Bearer " + is.EC.Token(t, delegatedClaims(is), func(h, _ map[string]any) { h["typ"] = "JWT" }), http.StatusUnauthorized, invalidToken},
		{"unsigned", "Bearer " + unsignedJWT(t, delegatedClaims(is)), http.StatusUnauthorized, invalidToken},
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
	claims := delegatedClaims(is)
	token := is.Mint(t, claims)
	session, _ := connect(t, endpoint, clientSetup{transport: authorizingTransport{"Bearer " + token}})
	res := callTool(t, session, "whoami", nil)
	if res.IsError {
		t.Fatalf("whoami: %s", resultText(res))
	}
	got := structured[Identity](t, res)
	want := Identity{
		AuthorizationPresent: true, Scheme: "Bearer", TokenFormat: "jwt", Verified: true,
		VerifiedClaims: &VerifiedClaims{
			Issuer: is.ID, Subject: "alice", ClientID: "agent-1", Audience: []string{testAudience},
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
