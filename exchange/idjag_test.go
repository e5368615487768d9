package exchange

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// Each user's token is redeemed once and kept for that user alone; an
// authorization server's refusal is an error that carries no assertion.
func TestIDJAGIssuerKeepsTokensPerUser(t *testing.T) {
	var mu sync.Mutex
	redeemed := map[string]int{}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "token_endpoint": srv.URL + "/token"})
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		user, _, _ := r.BasicAuth()
		assertion := r.PostForm.Get("assertion")
		w.Header().Set("Content-Type", "application/json")
		if r.PostForm.Get("grant_type") != GrantTypeJWTBearer || user != "broker" || strings.HasPrefix(assertion, "bad") {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant", "error_description": "refused " + assertion})
			return
		}
		mu.Lock()
		redeemed[assertion]++
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "token-for-" + assertion, "token_type": "Bearer", "expires_in": 600})
	})
	issuer := &IDJAGIssuer{Name: "saas", DiscoveryURL: srv.URL + "/.well-known/oauth-authorization-server", ClientID: "broker", ClientSecret: "secret-0123456789",
		Fetcher: oauth.NewFetcher(oauth.FetcherOptions{AllowPrivateNetworks: true}),
		Grant:   func(_ context.Context, p *oauth.Principal) (string, error) { return p.Subject, nil }}
	ctx := context.Background()
	issue := func(subject string) (UpstreamToken, error) {
		return issuer.Issue(ctx, TokenRequest{Principal: &oauth.Principal{Issuer: "https://b.example", Subject: subject}})
	}
	for _, subject := range []string{"alice", "bob", "alice", "bob", "alice"} {
		token, err := issue(subject)
		if err != nil || token.Value != Credential("token-for-"+subject) {
			t.Fatalf("%s got %q, %v", subject, token.Value, err)
		}
	}
	if redeemed["alice"] != 1 || redeemed["bob"] != 1 {
		t.Errorf("redeemed %v, want each user's grant once", redeemed)
	}
	_, err := issue("bad-assertion-value")
	if err == nil || strings.Contains(err.Error(), "bad-assertion-value") {
		t.Errorf("a refusal: %v; want an error without the assertion", err)
	}
}
