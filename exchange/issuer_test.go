package exchange

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

const outboundTestIssuer = "http://localhost:8080"

func outboundTestMinter(t *testing.T) *Minter {
	t.Helper()
	keys, err := NewKeySet(t.Context(), &MemoryKeyStore{}, KeySetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	minter, err := NewMinter(keys, MinterOptions{Issuer: outboundTestIssuer})
	if err != nil {
		t.Fatal(err)
	}
	return minter
}

// A tool's token never outlives the agent's token it was made for, whatever
// the tool's TTL: the agent's authorization ends with its own token.
func TestToolTokenDoesNotOutliveTheAgentToken(t *testing.T) {
	issuer := &MintingIssuer{Minter: outboundTestMinter(t)}
	agentExpiry := time.Now().Add(3 * time.Second)
	token, err := issuer.Issue(context.Background(), TokenRequest{
		Principal: &oauth.Principal{Issuer: outboundTestIssuer, Subject: "alice", ClientID: "agent", Expiry: agentExpiry},
		Audience:  "https://ledger.example/",
		Scopes:    []string{"ledger:read"},
		TTL:       time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, claims := oauthtest.Decode(t, string(token.Value))
	if token.ID == "" || token.ID != claims["jti"] || token.Audience != claims["aud"] || !slices.Equal(token.Scopes, []string{"ledger:read"}) {
		t.Errorf("the issued token says id %q, aud %q, scopes %v; its claims %v", token.ID, token.Audience, token.Scopes, claims)
	}
	exp := int64(claims["exp"].(float64))
	if exp > agentExpiry.Unix() {
		t.Errorf("tool token expires %s after the agent's token", time.Duration(exp-agentExpiry.Unix())*time.Second)
	}
}

// An agent whose token has less than a second left gets no tool token: the
// call is refused as one with an expired token would be.
func TestToolTokenRefusedWhenTheAgentTokenExpiresNow(t *testing.T) {
	issuer := &MintingIssuer{Minter: outboundTestMinter(t)}
	_, err := issuer.Issue(context.Background(), TokenRequest{
		Principal: &oauth.Principal{Issuer: outboundTestIssuer, Subject: "alice", ClientID: "agent", Expiry: time.Now().Add(500 * time.Millisecond)},
		Audience:  "https://ledger.example/",
		Scopes:    []string{"ledger:read"},
		TTL:       time.Hour,
	})
	if !errors.Is(err, ErrAgentTokenExpiring) {
		t.Fatalf("issue: %v, want %v", err, ErrAgentTokenExpiring)
	}
}

// Tokens minted for users of another authorization server name it in
// sub_iss, so that (sub_iss, sub) tells alice@external from the Auth
// Provider's own alice, whose tokens carry no sub_iss.
func TestMintedTokenKeepsTheInboundIssuerApart(t *testing.T) {
	issuer := &MintingIssuer{Minter: outboundTestMinter(t)}
	mint := func(from string) map[string]any {
		token, err := issuer.Issue(context.Background(), TokenRequest{
			Principal: &oauth.Principal{Issuer: from, Subject: "alice", ClientID: "agent", Expiry: time.Now().Add(time.Hour)},
			Audience:  "https://ledger.example/", Scopes: []string{"ledger:read"}, TTL: 5 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		_, claims := oauthtest.Decode(t, string(token.Value))
		return claims
	}
	local, external := mint(outboundTestIssuer), mint("https://dev-idp.example")
	if got, present := local[SubjectIssuerClaim]; present {
		t.Errorf("a token for the Auth Provider's own user has sub_iss %v", got)
	}
	if got := external[SubjectIssuerClaim]; got != "https://dev-idp.example" {
		t.Errorf("a token for another issuer's user has sub_iss %v, want https://dev-idp.example", got)
	}
	for _, claims := range []map[string]any{local, external} {
		if claims["iss"] != outboundTestIssuer || claims["sub"] != "alice" {
			t.Errorf("iss %v sub %v, want %s alice", claims["iss"], claims["sub"], outboundTestIssuer)
		}
	}
}

// A connector's token never grants more than was asked for. Asking for no
// scope (identity-only tokens, tools configured without scopes) allows
// none, although RFC 8693 servers commonly default to the subject token's
// whole scope; a JWT's own scope claims count even when the response
// leaves scope out.
func TestConnectorTokenCarriesNoScopeBeyondTheRequest(t *testing.T) {
	// The broker reads, not verifies, a connector's token: any key signs.
	key := oauthtest.NewKey(t, "connector-1", "ES256")
	// rawJWT is a JWT of a payload written out, member order included.
	rawJWT := func(payload string) string {
		return oauthtest.SignRaw(t, "ES256", key.Private, []byte(`{"alg":"ES256"}`), []byte(payload))
	}
	jwt := func(claims map[string]any) string { return rawJWT(string(oauthtest.JSON(t, claims))) }
	tests := []struct {
		name      string
		requested []string
		response  map[string]any // besides token_type, expires_in, issued_token_type
		ok        bool
	}{
		{"identity-only, the subject's whole scope granted", nil,
			map[string]any{"access_token": "full-scope-token", "scope": "ledger:read ledger:write admin"}, false},
		{"identity-only, an empty scope granted", nil,
			map[string]any{"access_token": "identity-token", "scope": ""}, true},
		{"identity-only, an opaque token without scope", nil,
			map[string]any{"access_token": "identity-token"}, true},
		{"identity-only, a JWT with scope and no scope in the response", nil,
			map[string]any{"access_token": jwt(map[string]any{"sub": "alice", "scope": "ledger:read"})}, false},
		{"identity-only, a JWT with scp", nil,
			map[string]any{"access_token": jwt(map[string]any{"sub": "alice", "scp": []string{"admin"}})}, false},
		{"identity-only, a JWT without scope", nil,
			map[string]any{"access_token": jwt(map[string]any{"sub": "alice"})}, true},
		{"identity-only, a JWT whose scope cannot be read", nil,
			map[string]any{"access_token": jwt(map[string]any{"sub": "alice", "scope": 7})}, false},
		{"a tool's scope granted as asked", []string{"ledger:read"},
			map[string]any{"access_token": jwt(map[string]any{"sub": "alice", "scope": "ledger:read"}), "scope": "ledger:read"}, true},
		{"a tool's scope, the response silent and the JWT wider", []string{"ledger:read"},
			map[string]any{"access_token": jwt(map[string]any{"sub": "alice", "scope": "ledger:read ledger:write"})}, false},
		{"a tool's scope, the JWT's scope hidden behind a case variant", []string{"ledger:read"},
			map[string]any{"access_token": rawJWT(`{"sub":"alice","scope":"admin","Scope":"ledger:read"}`)}, false},
		{"a tool's scope, a wider scope granted", []string{"ledger:read"},
			map[string]any{"access_token": "tool-token", "scope": "ledger:read admin"}, false},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			mux := http.NewServeMux()
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)
			mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(map[string]any{"issuer": srv.URL, "token_endpoint": srv.URL + "/token"})
			})
			mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				response := map[string]any{"token_type": "Bearer", "expires_in": 60, "issued_token_type": TokenTypeAccessToken}
				for name, value := range test.response {
					response[name] = value
				}
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(response)
			})
			ci := NewConnectorIssuer(Connector{
				Name: "corp-idp", DiscoveryURL: srv.URL + "/.well-known/openid-configuration",
				ClientID: "mcpbroker", ClientSecret: "secret-0123456789",
			}, oauth.NewFetcher(oauth.FetcherOptions{}))
			token, err := ci.Issue(context.Background(), TokenRequest{
				Principal:    &oauth.Principal{Subject: "alice", ClientID: "agent", Scopes: []string{"ledger:read", "ledger:write", "admin"}},
				SubjectToken: "agent-token",
				Audience:     "https://ledger.example/",
				Scopes:       test.requested,
				TTL:          5 * time.Second,
			})
			switch {
			case test.ok && err != nil:
				t.Errorf("issue: %v", err)
			case !test.ok && !errors.Is(err, ErrWiderScope):
				t.Errorf("issue: token accepted (expiry %s), error %v; want %v", token.Expiry, err, ErrWiderScope)
			}
		})
	}
}

// Tokens shaped as Strata's orchestrator shapes them: the gateway acts,
// the agent nested inside it (and whoever acted before, inside the agent);
// sub qualified by the issuer that authenticated the user; claims copied
// from the agent's token, those it lacks left out.
func TestMintedTokenShapes(t *testing.T) {
	issuer := &MintingIssuer{Minter: outboundTestMinter(t)}
	principal := &oauth.Principal{Issuer: "https://idp.example", Subject: "alice", ClientID: "agent",
		Actor:  &oauth.Actor{Subject: "orchestrator-1"},
		Expiry: time.Now().Add(time.Hour),
		Claims: map[string]any{"email": "alice@example.com", "groups": []any{"finance"}}}
	issue := func(shape TokenShape) map[string]any {
		token, err := issuer.Issue(context.Background(), TokenRequest{Principal: principal, Audience: "https://ledger.example/",
			TTL: time.Minute, Delegation: true, Shape: shape})
		if err != nil {
			t.Fatal(err)
		}
		_, claims := oauthtest.Decode(t, string(token.Value))
		return claims
	}
	asJSON := func(v any) string { raw, _ := json.Marshal(v); return string(raw) }

	agent := issue(TokenShape{})
	if got := asJSON(agent["act"]); got != `{"act":{"sub":"orchestrator-1"},"client_id":"agent","sub":"agent"}` || agent["sub"] != "alice" || agent["sub_iss"] != "https://idp.example" {
		t.Errorf("the default shape: sub %v, sub_iss %v, act %s", agent["sub"], agent["sub_iss"], got)
	}
	gateway := issue(TokenShape{Gateway: outboundTestIssuer, QualifiedSubject: true,
		Claims: []CopiedClaim{{Name: "email", From: "email"}, {Name: "team", From: "groups"}, {Name: "department", From: "department"}}})
	if got := asJSON(gateway["act"]); got != `{"act":{"act":{"sub":"orchestrator-1"},"client_id":"agent","sub":"agent"},"sub":"http://localhost:8080"}` {
		t.Errorf("actor gateway: act %s", got)
	}
	if gateway["sub"] != "https://idp.example|alice" || gateway["sub_iss"] != nil {
		t.Errorf("qualified subject: sub %v, sub_iss %v", gateway["sub"], gateway["sub_iss"])
	}
	if gateway["email"] != "alice@example.com" || asJSON(gateway["team"]) != `["finance"]` {
		t.Errorf("copied claims: email %v, team %v", gateway["email"], gateway["team"])
	}
	if _, present := gateway["department"]; present {
		t.Error("a claim the agent's token lacks was added")
	}
}

// A connector shapes its own tokens: asking for a shape there is refused
// when the apps are built, not ignored.
func TestShapeRefusedForConnectorTokens(t *testing.T) {
	_, err := NewOutbound([]AppOptions{{Name: "ledger", Audience: "https://ledger.example/", Issuer: &ConnectorIssuer{},
		Shape: TokenShape{Gateway: "https://broker.example"}}})
	if err == nil {
		t.Error("a token shape for a connector's tokens was accepted")
	}
}
