package authserver

import (
	"net/url"
	"testing"
	"time"
)

// An unknown username is compared against a hash of the users' bcrypt
// cost, one for all (New refuses mixed costs), so that a wrong password
// for an existing user takes as long as an unknown username and the form
// does not tell which usernames exist. The fixtures' hashes are cheap
// (bcrypt.MinCost): a dummy at any other cost shows.
func TestLoginTimingDoesNotRevealUsers(t *testing.T) {
	ts := newTestServer(t)
	_, challenge := newPKCE()
	authorizeURL := ts.authorizeURL(authorizeRequest{clientID: "agent", redirectURI: agentRedirect, scope: "mcp",
		state: "state-12345", challenge: challenge, method: "S256"})
	attempt := func(username string) time.Duration {
		b := newBrowser(t)
		p := b.get(authorizeURL)
		start := time.Now()
		b.submit(p, url.Values{"username": {username}, "password": {"wrong-password"}})
		return time.Since(start)
	}
	var known, unknown time.Duration
	for i := range 3 { // below the per-user throttle
		known += attempt("alice")
		unknown += attempt([]string{"mallory", "trent", "oscar"}[i])
	}
	if unknown > 3*known {
		t.Errorf("a wrong password for an existing user takes %s, an unknown user %s: the timing tells them apart",
			known/3, unknown/3)
	}
}
