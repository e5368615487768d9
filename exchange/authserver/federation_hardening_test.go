package authserver

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The provider's token endpoint receives the client secret and the code,
// and its jwks_uri decides which ID tokens are believed: neither may be
// plain http on a network, whatever the provider's metadata says.
func TestFederationRefusesCleartextProviderEndpoints(t *testing.T) {
	for _, endpoint := range []string{"authorization_endpoint", "token_endpoint", "jwks_uri"} {
		t.Run(endpoint, func(t *testing.T) {
			var server *httptest.Server
			server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				metadata := map[string]string{
					"issuer":                 server.URL,
					"authorization_endpoint": server.URL + "/authorize",
					"token_endpoint":         server.URL + "/token",
					"jwks_uri":               server.URL + "/jwks",
				}
				metadata[endpoint] = "http://idp.example/" + endpoint
				writeJSON(w, http.StatusOK, metadata)
			}))
			t.Cleanup(server.Close)
			f := newFederation(Federation{DiscoveryURL: server.URL + wellKnownOpenID, ClientID: "mcpbroker"},
				"https://broker.example/callback", time.Now, slog.New(slog.DiscardHandler))
			_, err := f.metadata(context.Background())
			if err == nil || !strings.Contains(err.Error(), endpoint) {
				t.Errorf("metadata naming %s over plain http: error %v, want a refusal", endpoint, err)
			}
		})
	}
}

// OpenID Connect Core §3.1.3.7: an ID token whose azp names another client
// was issued to that client, even when aud also names this one.
func TestFederatedSignInRefusesAnotherAuthorizedParty(t *testing.T) {
	idp := newFakeIdP(t)
	ts := newFederatedServer(t, idp)
	_, challenge := newPKCE()
	authorizeURL := ts.authorizeURL(authorizeRequest{clientID: "agent", redirectURI: agentRedirect, scope: "mcp", state: "state-12345", challenge: challenge, method: "S256"})
	idp.shape = func(c map[string]any) { c["azp"] = "someone-else" }
	got := federatedAuthorize(t, newBrowser(t), authorizeURL)
	if got.status != http.StatusSeeOther || got.location == nil {
		t.Fatalf("%d, want a redirect to the client: %s", got.status, got.body)
	}
	if q := got.location.Query(); q.Get("error") != "access_denied" || q.Get("code") != "" {
		t.Errorf("redirect %v, want access_denied", q)
	}
}
