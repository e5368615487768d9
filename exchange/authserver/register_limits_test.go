package authserver

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Dynamic registration is anonymous: each address may register
// registrationBurst clients and then waits, so that one source cannot fill
// maxRegisteredClients and close registration for everyone.
func TestRegistrationIsRateLimitedPerAddress(t *testing.T) {
	ts := newTestServer(t)
	for i := range registrationBurst + 1 {
		body := fmt.Sprintf(`{"redirect_uris":["https://spam%d.example/cb"],"token_endpoint_auth_method":"none"}`, i)
		resp, err := http.Post(ts.issuer+"/register", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		switch {
		case i < registrationBurst && resp.StatusCode != http.StatusCreated:
			t.Fatalf("registration %d: %d, want 201", i+1, resp.StatusCode)
		case i == registrationBurst:
			retryAfter, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			if resp.StatusCode != http.StatusTooManyRequests || retryAfter <= 0 {
				t.Errorf("registration %d from one address: %d, Retry-After %q; want 429 with Retry-After",
					i+1, resp.StatusCode, resp.Header.Get("Retry-After"))
			}
			assertNoStore(t, resp.Header)
		}
	}
}

func TestRegistrationLimiter(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	perToken := registrationWindow / registrationBurst
	exhaust := func(l *addressLimiter, address string, now time.Time) {
		t.Helper()
		for i := range registrationBurst {
			if _, ok := l.allow(address, now); !ok {
				t.Fatalf("%s: attempt %d refused", address, i+1)
			}
		}
		if _, ok := l.allow(address, now); ok {
			t.Fatalf("%s: attempt %d allowed", address, registrationBurst+1)
		}
	}

	t.Run("tokens come back over the window", func(t *testing.T) {
		l := newAddressLimiter(registrationBurst, registrationWindow, 100)
		exhaust(l, "203.0.113.7", start)
		if wait, ok := l.allow("203.0.113.7", start.Add(perToken/2)); ok || wait <= 0 || wait > perToken {
			t.Errorf("half a token later: allowed %v, wait %s", ok, wait)
		}
		if _, ok := l.allow("203.0.113.7", start.Add(perToken)); !ok {
			t.Error("refused a token's time later")
		}
		if _, ok := l.allow("203.0.113.8", start); !ok {
			t.Error("another address is refused")
		}
	})

	t.Run("an IPv6 /64 is one address", func(t *testing.T) {
		l := newAddressLimiter(registrationBurst, registrationWindow, 100)
		exhaust(l, "2001:db8:1:2::1", start)
		if _, ok := l.allow("2001:db8:1:2:ffff::9", start); ok {
			t.Error("another address of the same /64 is allowed")
		}
		if _, ok := l.allow("2001:db8:1:3::1", start); !ok {
			t.Error("an address of another /64 is refused")
		}
	})

	t.Run("a full table drops the bucket full soonest, never all", func(t *testing.T) {
		const size = 50
		l := newAddressLimiter(registrationBurst, registrationWindow, size)
		exhaust(l, "203.0.113.7", start)
		for i := range 10 * size {
			if _, ok := l.allow(fmt.Sprintf("10.0.%d.%d", i/250, i%250), start.Add(time.Second)); !ok {
				t.Fatalf("new address %d refused", i)
			}
		}
		if len(l.buckets) > size || l.byFull.Len() != len(l.buckets) {
			t.Fatalf("%d buckets, %d in the heap; want at most %d", len(l.buckets), l.byFull.Len(), size)
		}
		if _, ok := l.allow("203.0.113.7", start.Add(time.Second)); ok {
			t.Error("the exhausted address was dropped for addresses that spent one token each")
		}
	})
}

// A registered client that no token was issued to within unusedClientTTL
// is deleted by the sweep, and stops counting against the cap; one that
// completed an authorization stays.
func TestUnusedRegisteredClientsExpire(t *testing.T) {
	ts := newTestServer(t)
	registerPublic := func(redirect string) string {
		registered := ts.register(`{"redirect_uris":["`+redirect+`"],"token_endpoint_auth_method":"none"}`, "application/json")
		if registered.status != http.StatusCreated {
			t.Fatalf("register: %d %v", registered.status, registered.body)
		}
		return registered.str("client_id")
	}
	const usedRedirect, unusedRedirect = "http://127.0.0.1:40000/used", "http://127.0.0.1:40000/unused"
	used, unused := registerPublic(usedRedirect), registerPublic(unusedRedirect)
	code, verifier := ts.codeFor(t, used, usedRedirect, "mcp", "")
	if tokens := ts.exchangeCode(used, "", code, verifier, usedRedirect); tokens.status != http.StatusOK {
		t.Fatalf("token: %d %v", tokens.status, tokens.body)
	}

	if _, err := ts.server.store.sweep(time.Now().Add(unusedClientTTL - time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.server.store.GetClient(t.Context(), unused); err != nil {
		t.Fatalf("the unused client is gone before its time: %v", err)
	}
	if _, err := ts.server.store.sweep(time.Now().Add(unusedClientTTL + time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.server.store.GetClient(t.Context(), unused); err == nil {
		t.Error("a registered client that no token was issued to outlived unusedClientTTL")
	}
	if _, err := ts.server.store.GetClient(t.Context(), used); err != nil {
		t.Errorf("a registered client in use was deleted: %v", err)
	}
	if n := storedRegisteredCount(t, ts); n != 1 {
		t.Errorf("%d clients count against the cap, want 1", n)
	}
}

func storedRegisteredCount(t *testing.T, ts *testServer) uint64 {
	t.Helper()
	var count uint64
	err := ts.server.store.kv.view(func(tx kvTx) error {
		var err error
		count, err = registeredCount(tx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return count
}

// Anyone can register a client, or publish a client ID metadata document,
// with a redirect URI of their own. An authorization request for such a
// client that fails a check before the user saw anything gets an error
// page, so that this server does not send the browser on to a site of the
// requester's choosing (an open redirector, RFC 9700 §4.11.2). Configured
// clients get the error at their redirect URI as usual.
func TestRegisteredClientErrorsShowAPageAndNeverRedirect(t *testing.T) {
	host := newDocumentHost(t)
	ts := newTestServer(t, withDocuments(host, nil))
	registered := ts.register(`{"redirect_uris":["https://phish.example/landing"],"token_endpoint_auth_method":"none"}`, "application/json")
	registeredID := registered.str("client_id")
	if registeredID == "" {
		t.Fatalf("registration: %v", registered.body)
	}
	documentID := host.serveDocument(t, "/agent.json", map[string]any{"redirect_uris": []string{"https://phish.example/landing"}})
	_, challenge := newPKCE()
	problems := []struct {
		name  string
		query url.Values
	}{
		{"no PKCE", url.Values{"response_type": {"code"}}},
		{"plain PKCE", url.Values{"response_type": {"code"}, "code_challenge": {challenge}, "code_challenge_method": {"plain"}}},
		{"unknown scope", url.Values{"response_type": {"code"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}, "scope": {"admin"}}},
		{"resource not allowed", url.Values{"response_type": {"code"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}, "resource": {"https://elsewhere.example/"}}},
		{"implicit", url.Values{"response_type": {"token"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}}},
		{"prompt none", url.Values{"response_type": {"code"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}, "prompt": {"none"}}},
	}
	for _, clientID := range []string{registeredID, documentID} {
		for _, problem := range problems {
			t.Run(problem.name, func(t *testing.T) {
				query := url.Values{"client_id": {clientID}, "state": {"state-12345"}}
				for name, values := range problem.query {
					query[name] = values
				}
				p := newBrowser(t).get(ts.issuer + "/authorize?" + query.Encode())
				if p.status != http.StatusBadRequest || p.location != nil || strings.Contains(p.body, "<form") ||
					!strings.HasPrefix(p.header.Get("Content-Type"), "text/html") {
					t.Errorf("client %s: %d, Location %v; want a 400 error page: %s", clientID, p.status, p.location, p.body)
				}
			})
		}
	}
	p := newBrowser(t).get(ts.issuer + "/authorize?response_type=code&client_id=agent")
	if p.status != http.StatusSeeOther || p.location == nil || p.location.Query().Get("error") != "invalid_request" {
		t.Errorf("a configured client's error: %d %v, want a redirect with invalid_request", p.status, p.location)
	}
}
