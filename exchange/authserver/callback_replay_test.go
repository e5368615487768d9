package authserver

import (
	"net/http"
	"testing"
)

// The identity provider's answer is good for one callback: replaying it
// with the same cookie, before or after the first use, is refused with a
// page (not passed on to the provider, whose refusal would come back as a
// redirect to the client).
func TestFederatedCallbackSingleUse(t *testing.T) {
	idp := newFakeIdP(t)
	ts := newFederatedServer(t, idp)
	_, challenge := newPKCE()
	authorizeURL := ts.authorizeURL(authorizeRequest{clientID: "agent", redirectURI: agentRedirect, scope: "mcp", state: "state-12345", challenge: challenge, method: "S256"})
	tests := []struct {
		name        string
		replayFirst bool
	}{
		{"replay after the sign-in", false},
		{"replay before the sign-in", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBrowser(t)
			toProvider := b.get(authorizeURL)
			if toProvider.status != http.StatusSeeOther || toProvider.location == nil {
				t.Fatalf("GET /authorize: %d %s", toProvider.status, toProvider.body)
			}
			back := b.get(toProvider.location.String()).location
			if back == nil {
				t.Fatal("the identity provider did not send the browser back")
			}
			replay := newBrowser(t)
			replay.client.Jar.SetCookies(back, b.client.Jar.Cookies(back))
			first, second := b, replay
			if tt.replayFirst {
				first, second = replay, b
			}
			if got := first.get(back.String()); !isConsentPage(got) {
				t.Fatalf("first callback: %d %s, want the consent page", got.status, got.body)
			}
			idp.mu.Lock()
			// The code is redeemed; had the replay reached the provider it
			// would be offered again.
			pending := len(idp.grants)
			idp.mu.Unlock()
			if pending != 0 {
				t.Fatalf("%d codes left unredeemed", pending)
			}
			got := second.get(back.String())
			if got.status != http.StatusBadRequest && got.status != http.StatusForbidden || got.location != nil || isConsentPage(got) {
				t.Errorf("second callback: %d %v, want a refusal page and no redirect", got.status, got.location)
			}
		})
	}
}
