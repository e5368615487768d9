package authserver

import (
	"net/http"
	"net/url"
	"slices"
	"testing"
)

// Removing a user from the configuration ends their grants on the next
// start: the refresh token mints no more, introspection reports the
// tokens inactive and the access tokens' jtis are revoked. The grants of
// users still configured, and of federated users, go on.
func TestRemovedUsersGrantsEnd(t *testing.T) {
	removeBob := false
	ts := newTestServer(t, withOptions(func(o *Options) {
		if removeBob {
			o.Users = slices.DeleteFunc(o.Users, func(u User) bool { return u.Username == "bob" })
		}
	}))
	grant := func(username string) tokenResponse {
		verifier, challenge := newPKCE()
		back := newBrowser(t).authorize(ts.authorizeURL(authorizeRequest{clientID: "agent", redirectURI: agentRedirect,
			scope: "mcp", state: "state-12345", challenge: challenge, method: "S256"}), username, username+"-password", "allow")
		tokens := ts.exchangeCode("agent", "", back.Query().Get("code"), verifier, agentRedirect)
		if tokens.status != http.StatusOK || tokens.str("refresh_token") == "" {
			t.Fatalf("token for %s: %d %v", username, tokens.status, tokens.body)
		}
		return tokens
	}
	bob, alice := grant("bob"), grant("alice")

	removeBob = true
	ts.restart()

	refreshed := refresh(ts, bob.str("refresh_token"))
	if refreshed.status != http.StatusBadRequest || refreshed.str("error") != "invalid_grant" {
		t.Errorf("bob was removed, yet his refresh token got %d %v", refreshed.status, refreshed.body)
	}
	for _, token := range []string{"refresh_token", "access_token"} {
		if info := ts.introspect(bob.str(token)); info.body["active"] != false {
			t.Errorf("bob's %s introspects as %v", token, info.body)
		}
	}
	_, claims := ts.verifyJWT(bob.str("access_token"))
	if jti, _ := claims["jti"].(string); !ts.server.Revoked(t.Context(), jti) {
		t.Errorf("bob's access token %s is not revoked", jti)
	}
	if got := refresh(ts, alice.str("refresh_token")); got.status != http.StatusOK {
		t.Errorf("alice is still configured, yet her refresh token got %d %v", got.status, got.body)
	}
}

func TestFederatedUsersGrantsSurviveARestart(t *testing.T) {
	idp := newFakeIdP(t)
	ts := newFederatedServer(t, idp)
	verifier, challenge := newPKCE()
	b := newBrowser(t)
	consent := federatedAuthorize(t, b, ts.authorizeURL(authorizeRequest{clientID: "agent", redirectURI: agentRedirect,
		scope: "mcp", state: "state-12345", challenge: challenge, method: "S256"}))
	back := b.submit(consent, url.Values{"consent": {"allow"}})
	if back.location == nil {
		t.Fatalf("after consent: %d %s", back.status, back.body)
	}
	tokens := ts.exchangeCode("agent", "", back.location.Query().Get("code"), verifier, agentRedirect)
	if tokens.status != http.StatusOK {
		t.Fatalf("token: %d %v", tokens.status, tokens.body)
	}
	ts.restart()
	if got := refresh(ts, tokens.str("refresh_token")); got.status != http.StatusOK {
		t.Errorf("a federated user's refresh token after a restart: %d %v", got.status, got.body)
	}
}

func refresh(ts *testServer, token string) tokenResponse {
	ts.t.Helper()
	return ts.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}, "client_id": {"agent"}}, "", "")
}
