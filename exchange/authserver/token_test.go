package authserver

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestClientCredentials(t *testing.T) {
	ts := newTestServer(t)
	tests := []struct {
		name     string
		form     url.Values
		clientID string
		secret   string
		status   int
		errCode  string
		aud      string
	}{
		{"default audience", url.Values{"scope": {"mcp"}}, "webapp", webappSecret, http.StatusOK, "", ts.issuer + "/mcp"},
		{"resource", url.Values{"resource": {ledgerAudience}}, "webapp", webappSecret, http.StatusOK, "", ledgerAudience},
		{"secret in the body", url.Values{"client_id": {"webapp"}, "client_secret": {webappSecret}}, "", "", http.StatusOK, "", ts.issuer + "/mcp"},
		{"resource not allowed", url.Values{"resource": {"https://elsewhere.example/"}}, "webapp", webappSecret, http.StatusBadRequest, "invalid_target", ""},
		{"scope not allowed", url.Values{"scope": {"admin"}}, "webapp", webappSecret, http.StatusBadRequest, "invalid_scope", ""},
		{"wrong secret", url.Values{}, "webapp", "wrong", http.StatusUnauthorized, "invalid_client", ""},
		{"public client", url.Values{"client_id": {"agent"}}, "", "", http.StatusBadRequest, "invalid_grant", ""},
		{"grant not allowed", url.Values{}, "exchanger", exchangerSecret, http.StatusBadRequest, "unauthorized_client", ""},
		{"repeated parameter", url.Values{"scope": {"mcp", "mcp"}}, "webapp", webappSecret, http.StatusBadRequest, "invalid_request", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.form.Set("grant_type", "client_credentials")
			got := ts.post("/token", tt.form, tt.clientID, tt.secret)
			assertNoStore(t, got.header)
			if got.status != tt.status || got.str("error") != tt.errCode {
				t.Fatalf("%d %v, want %d %q", got.status, got.body, tt.status, tt.errCode)
			}
			if tt.status != http.StatusOK {
				if got.body["access_token"] != nil {
					t.Errorf("a refusal with a token: %v", got.body)
				}
				return
			}
			if got.body["refresh_token"] != nil || got.str("token_type") != "Bearer" {
				t.Errorf("response %v: want a Bearer token and no refresh token", got.body)
			}
			_, claims := ts.verifyJWT(got.str("access_token"))
			if claims["sub"] != "webapp" || claims["client_id"] != "webapp" || claims["aud"] != tt.aud {
				t.Errorf("claims %v, want sub and client_id webapp, aud %s", claims, tt.aud)
			}
			if got := stringList(claims["groups"]); !slices.Equal(got, []string{"robots"}) {
				t.Errorf("groups %v, want the client's", got)
			}
			if scope := tt.form.Get("scope"); claims["scope"] != nil && claims["scope"] != scope || scope != "" && claims["scope"] != scope {
				t.Errorf("scope %v, want %q", claims["scope"], scope)
			}
		})
	}
}

func TestTokenEndpointRefusals(t *testing.T) {
	ts := newTestServer(t)
	code, verifier := ts.codeFor(t, "agent", agentRedirect, "mcp", ledgerAudience)
	tests := []struct {
		name    string
		form    url.Values
		status  int
		errCode string
	}{
		{"unsupported grant", url.Values{"grant_type": {"password"}, "client_id": {"agent"}, "username": {"alice"}, "password": {"alice-password"}}, http.StatusBadRequest, "unsupported_grant_type"},
		{"token exchange without an exchanger", url.Values{"grant_type": {GrantTokenExchange}, "client_id": {"agent"}}, http.StatusBadRequest, "unsupported_grant_type"},
		{"unknown client", url.Values{"grant_type": {"authorization_code"}, "client_id": {"nobody"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {agentRedirect}}, http.StatusUnauthorized, "invalid_client"},
		{"another client's code", url.Values{"grant_type": {"authorization_code"}, "client_id": {"firstparty"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {firstPartyRedirect}}, http.StatusBadRequest, "invalid_grant"},
		{"redirect_uri differs", url.Values{"grant_type": {"authorization_code"}, "client_id": {"agent"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {"http://127.0.0.1:9998/callback"}}, http.StatusBadRequest, "invalid_grant"},
		{"resource differs from the authorization's", url.Values{"grant_type": {"authorization_code"}, "client_id": {"agent"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {agentRedirect}, "resource": {ts.issuer + "/mcp"}}, http.StatusBadRequest, "invalid_target"},
		{"garbage code", url.Values{"grant_type": {"authorization_code"}, "client_id": {"agent"}, "code": {"garbage"}, "code_verifier": {verifier}, "redirect_uri": {agentRedirect}}, http.StatusBadRequest, "invalid_grant"},
		{"garbage refresh token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"agent"}, "refresh_token": {"garbage.garbage"}}, http.StatusBadRequest, "invalid_grant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ts.post("/token", tt.form, "", "")
			assertNoStore(t, got.header)
			if got.status != tt.status || got.str("error") != tt.errCode {
				t.Errorf("%d %v, want %d %q", got.status, got.body, tt.status, tt.errCode)
			}
		})
	}
	// The code, untouched by the refusals that never reached it, still
	// works with the resource it was authorized for.
	got := ts.post("/token", url.Values{"grant_type": {"authorization_code"}, "client_id": {"agent"}, "code": {code}, "code_verifier": {verifier},
		"redirect_uri": {agentRedirect}, "resource": {ledgerAudience}}, "", "")
	if got.status != http.StatusOK {
		t.Fatalf("%d %v", got.status, got.body)
	}
	if _, claims := ts.verifyJWT(got.str("access_token")); claims["aud"] != ledgerAudience {
		t.Errorf("aud %v, want %s", claims["aud"], ledgerAudience)
	}
	if !strings.HasPrefix(got.header.Get("Content-Type"), "application/json") {
		t.Errorf("Content-Type %q", got.header.Get("Content-Type"))
	}
}

func TestOpenIDScopeAddsAnIDToken(t *testing.T) {
	ts := newTestServer(t)
	verifier, challenge := newPKCE()
	back := newBrowser(t).authorize(ts.authorizeURL(authorizeRequest{
		clientID: "agent", redirectURI: agentRedirect, scope: "openid mcp", state: "state-12345",
		challenge: challenge, method: "S256", extra: url.Values{"nonce": {"nonce-67890"}},
	}), "alice", "alice-password", "allow")
	tokens := ts.exchangeCode("agent", "", back.Query().Get("code"), verifier, agentRedirect)
	if tokens.status != http.StatusOK || tokens.str("id_token") == "" {
		t.Fatalf("token: %d %v, want an id_token", tokens.status, tokens.body)
	}
	header, claims := ts.verifyJWT(tokens.str("id_token"))
	if header.Algorithm != "ES256" {
		t.Errorf("alg %s", header.Algorithm)
	}
	for claim, want := range map[string]any{"iss": ts.issuer, "sub": "alice", "aud": "agent", "nonce": "nonce-67890", "email": "alice@example.com"} {
		if claims[claim] != want {
			t.Errorf("%s = %v, want %v", claim, claims[claim], want)
		}
	}
	if claims["at_hash"] == nil || claims["auth_time"] == nil {
		t.Errorf("claims %v lack at_hash or auth_time", claims)
	}
	// An ID token is not an access token: it is not at+jwt and the
	// introspection endpoint does not know it.
	if header.ExtraHeaders["typ"] == "at+jwt" {
		t.Error("the ID token is typed at+jwt")
	}
	if info := ts.introspect(tokens.str("id_token")); info.body["active"] != false {
		t.Errorf("ID token introspected as %v", info.body)
	}
}
