package authserver

import (
	"net/http"
	"net/url"
	"testing"
)

// Introspection reveals who is behind any token, refresh tokens of other
// clients included, so it is for the configured clients allowed it (RFC
// 7662 §4): not for a confidential client configured without Introspect,
// and never for a registered one, which anyone can get.
func TestOnlyIntrospectingClientsMayIntrospect(t *testing.T) {
	ts := newTestServer(t)
	registered := ts.register(`{"redirect_uris":["https://attacker.example/cb"],"client_name":"x"}`, "application/json")
	id, secret := registered.str("client_id"), registered.str("client_secret")
	if id == "" || secret == "" {
		t.Fatalf("registration: %d %v", registered.status, registered.body)
	}
	code, verifier := ts.codeFor(t, "agent", agentRedirect, "mcp", "")
	tokens := ts.exchangeCode("agent", "", code, verifier, agentRedirect)
	if tokens.status != http.StatusOK {
		t.Fatalf("token: %d %v", tokens.status, tokens.body)
	}
	refresh := url.Values{"token": {tokens.str("refresh_token")}}
	for _, caller := range []struct{ name, id, secret string }{
		{"registered client", id, secret},
		{"configured client without introspect", "webapp", webappSecret},
	} {
		info := ts.post("/introspect", refresh, caller.id, caller.secret)
		if info.status != http.StatusForbidden || info.body["active"] != nil {
			t.Errorf("%s: %d %v, want 403 and nothing about the token", caller.name, info.status, info.body)
		}
	}
	if info := ts.post("/introspect", refresh, "resource-server", resourceSecret); info.status != http.StatusOK || info.body["active"] != true {
		t.Errorf("the client allowed to introspect: %d %v", info.status, info.body)
	}
}
