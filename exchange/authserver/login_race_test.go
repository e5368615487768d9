package authserver

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// loginRequest is an authorization request that leads to the login page.
func loginRequest(ts *testServer) authorizeRequest {
	_, challenge := newPKCE()
	return authorizeRequest{clientID: "agent", redirectURI: agentRedirect, scope: "mcp",
		resource: ts.issuer + "/mcp", challenge: challenge, method: "S256"}
}

// signInOutcome classifies the answer to a posted password.
type signInOutcome int

const (
	refused  signInOutcome = iota // throttled or the form not accepted: no guess evaluated
	wrong                         // evaluated, wrong password
	signedIn                      // evaluated, right password
)

func classify(t *testing.T, p *page) signInOutcome {
	t.Helper()
	switch {
	case p.status == http.StatusTooManyRequests, p.status == http.StatusForbidden:
		return refused
	case isLoginPage(p) && strings.Contains(p.body, "Invalid username or password"):
		return wrong
	case isConsentPage(p), p.status == http.StatusSeeOther:
		return signedIn
	}
	t.Fatalf("unexpected answer to a sign-in: %d %s", p.status, p.body)
	return refused
}

// Parallel guesses are counted before the password is checked: however many
// arrive at once, through one sign-in form or many, at most the throttle's
// budget of them is evaluated, and the right password sent among more wrong
// ones than that budget does not get through on its own merit.
func TestSignInThrottleHoldsUnderConcurrency(t *testing.T) {
	const guesses = 60
	// A realistic cost, so that guesses overlap while bcrypt runs.
	slowHash := func(password string) string {
		hash, err := bcrypt.GenerateFromPassword([]byte(password), 10)
		if err != nil {
			t.Fatal(err)
		}
		return string(hash)
	}
	for _, oneForm := range []bool{true, false} {
		name := "one form replayed"
		if !oneForm {
			name = "a form each"
		}
		t.Run(name, func(t *testing.T) {
			ts := newTestServer(t, withOptions(func(o *Options) {
				o.Users = []User{{Username: "alice", PasswordHash: slowHash("alice-password")}}
			}))
			target := ts.authorizeURL(loginRequest(ts))
			type form struct {
				b *browser
				p *page
			}
			forms := make([]form, guesses)
			for i := range forms {
				if oneForm && i > 0 {
					forms[i] = forms[0]
					continue
				}
				b := newBrowser(t)
				p := b.get(target)
				if !isLoginPage(p) {
					t.Fatalf("GET /authorize: %d %s", p.status, p.body)
				}
				forms[i] = form{b, p}
			}
			outcomes := make([]signInOutcome, guesses)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range guesses {
				password := "guess-" + string(rune('a'+i%26))
				if i == guesses-1 {
					password = "alice-password"
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					f := forms[i]
					outcomes[i] = classify(t, f.b.submit(f.p, url.Values{"username": {"alice"}, "password": {password}}))
				}()
			}
			close(start)
			wg.Wait()
			evaluated := 0
			for _, o := range outcomes {
				if o != refused {
					evaluated++
				}
			}
			budget := maxUserFailures
			if oneForm {
				budget = 1 // a form is good for one post
			}
			if evaluated > budget {
				t.Errorf("%d of %d parallel guesses were evaluated, want at most %d", evaluated, guesses, budget)
			}
		})
	}
}

// A login form is good for one post: posting it again with the same cookie
// and token is refused without evaluating the password, and the page shown
// after a wrong password carries a fresh form that works.
func TestLoginFormSingleUse(t *testing.T) {
	ts := newTestServer(t)
	b := newBrowser(t)
	p := b.get(ts.authorizeURL(loginRequest(ts)))
	if !isLoginPage(p) {
		t.Fatalf("GET /authorize: %d %s", p.status, p.body)
	}
	jar := b.client.Jar
	cookies := jar.Cookies(p.url)
	wrongPage := b.submit(p, url.Values{"username": {"alice"}, "password": {"nope"}})
	if classify(t, wrongPage) != wrong {
		t.Fatalf("first post: %d %s", wrongPage.status, wrongPage.body)
	}
	// Replay the first form with its own cookie.
	replay := newBrowser(t)
	replay.client.Jar.SetCookies(p.url, cookies)
	again := replay.submit(p, url.Values{"username": {"alice"}, "password": {"alice-password"}})
	if classify(t, again) != refused {
		t.Errorf("the replayed form was evaluated: %d %s", again.status, again.body)
	}
	next := b.submit(wrongPage, url.Values{"username": {"alice"}, "password": {"alice-password"}})
	if classify(t, next) != signedIn {
		t.Errorf("the fresh form after a wrong password: %d %s", next.status, next.body)
	}
}

// A consent form is good for one post too: a copy of the cookie and token
// posted after the user's answer (or before it) gets no second code.
func TestConsentFormSingleUse(t *testing.T) {
	ts := newTestServer(t)
	// Each user once: an allowed consent is remembered.
	for user, replayFirst := range map[string]bool{"alice": false, "bob": true} {
		b := newBrowser(t)
		login := b.get(ts.authorizeURL(loginRequest(ts)))
		consent := b.submit(login, url.Values{"username": {user}, "password": {user + "-password"}})
		if !isConsentPage(consent) {
			t.Fatalf("sign-in: %d %s", consent.status, consent.body)
		}
		replay := newBrowser(t)
		replay.client.Jar.SetCookies(consent.url, b.client.Jar.Cookies(consent.url))
		first, second := b, replay
		if replayFirst {
			first, second = replay, b
		}
		if got := first.submit(consent, url.Values{"consent": {"allow"}}); got.status != http.StatusSeeOther || got.location.Query().Get("code") == "" {
			t.Fatalf("replay first %v: first post: %d %v", replayFirst, got.status, got.location)
		}
		if got := second.submit(consent, url.Values{"consent": {"allow"}}); got.status != http.StatusForbidden || got.location != nil {
			t.Errorf("replay first %v: second post: %d %v, want 403 and no code", replayFirst, got.status, got.location)
		}
	}
}
