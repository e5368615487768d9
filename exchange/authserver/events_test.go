package authserver

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestEventsTellWhatTheAuthProviderDid: sign-in failed and ok, consent,
// the code redeemed, the token refreshed and revoked, a client that fails
// to authenticate, and a registration each reach OnEvent once, with who
// and what, and never a secret.
func TestEventsTellWhatTheAuthProviderDid(t *testing.T) {
	var mu sync.Mutex
	var events []Event
	ts := newTestServer(t, withOptions(func(o *Options) {
		o.OnEvent = func(_ context.Context, e Event) error {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, e)
			return nil
		}
	}))
	names := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, e := range events {
			out = append(out, e.Name)
		}
		return out
	}
	find := func(name string) Event {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range events {
			if e.Name == name {
				return e
			}
		}
		t.Fatalf("no %s event in %v", name, events)
		return Event{}
	}

	verifier, challenge := newPKCE()
	authorizeURL := ts.authorizeURL(authorizeRequest{clientID: "webapp", redirectURI: webappRedirect, scope: "mcp",
		state: "state-12345", challenge: challenge, method: "S256", resource: ts.issuer + "/mcp"})
	b := newBrowser(t)
	b.login(authorizeURL, "alice", "not-her-password")
	back := b.authorize(authorizeURL, "alice", "alice-password", "allow")
	tokens := ts.exchangeCode("webapp", webappSecret, back.Query().Get("code"), verifier, webappRedirect)
	if tokens.status != 200 {
		t.Fatalf("code: %d %v", tokens.status, tokens.body)
	}
	if refresh := tokens.str("refresh_token"); refresh != "" {
		if again := ts.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}, "webapp", webappSecret); again.status != 200 {
			t.Fatalf("refresh: %d %v", again.status, again.body)
		}
	}
	if bad := ts.post("/token", url.Values{"grant_type": {"client_credentials"}}, "webapp", "wrong-secret"); bad.status != 401 {
		t.Fatalf("a wrong secret: %d", bad.status)
	}
	if revoked := ts.post("/revoke", url.Values{"token": {tokens.str("access_token")}}, "webapp", webappSecret); revoked.status != 200 {
		t.Fatalf("revoke: %d %v", revoked.status, revoked.body)
	}

	got := names()
	for _, want := range []string{EventSignInFailed, EventSignIn, EventConsentGranted, EventTokenIssued, EventClientAuthFailed, EventTokenRevoked} {
		if !slices.Contains(got, want) {
			t.Errorf("no %s event in %v", want, got)
		}
	}
	if failed := find(EventSignInFailed); failed.Subject != "alice" || failed.Client != "webapp" || failed.Source == "" {
		t.Errorf("sign-in failed: %+v", failed)
	}
	issued := find(EventTokenIssued)
	if issued.Subject != "alice" || issued.Client != "webapp" || issued.TokenID == "" || !slices.Contains(issued.Audience, ts.issuer+"/mcp") {
		t.Errorf("token issued: %+v", issued)
	}
	if auth := find(EventClientAuthFailed); auth.Status != 401 || auth.Detail != "invalid_client" {
		t.Errorf("client auth failed: %+v", auth)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, e := range events {
		text := strings.Join([]string{e.Subject, e.Client, e.TokenID, e.Detail, e.Source}, " ")
		for _, secret := range []string{"alice-password", "not-her-password", webappSecret, "wrong-secret", tokens.str("access_token")} {
			if strings.Contains(text, secret) {
				t.Errorf("event %s carries a secret", e.Name)
			}
		}
	}
}

// A token whose event cannot be recorded is not handed out.
func TestUnrecordedTokenIsRefused(t *testing.T) {
	ts := newTestServer(t, withOptions(func(o *Options) {
		o.OnEvent = func(_ context.Context, e Event) error {
			if e.Name == EventTokenIssued {
				return errors.New("disk full")
			}
			return nil
		}
	}))
	got := ts.post("/token", url.Values{"grant_type": {"client_credentials"}}, "webapp", webappSecret)
	if got.status != 503 || got.body["error"] != "temporarily_unavailable" || got.str("access_token") != "" {
		t.Errorf("got %d %v, want 503 temporarily_unavailable and no token", got.status, got.body)
	}
}
