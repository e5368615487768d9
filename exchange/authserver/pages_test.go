package authserver

import (
	"net/http"
	"strings"
	"testing"
)

// Guards: a self-registered client_name is escaped on the login and
// consent pages, which cannot be framed; near-miss redirect URIs (case,
// port, encoding, trailing parts, userinfo tricks) get an error page and
// never a redirect.
func TestPagesEscapeAndRedirectsMatchExactly(t *testing.T) {
	ts := newTestServer(t)
	const evil = `"><script>alert(1)</script><img src=x onerror=alert(2)>`
	registered := ts.register(`{"redirect_uris":["http://127.0.0.1:40000/cb"],"token_endpoint_auth_method":"none","client_name":"`+
		strings.ReplaceAll(evil, `"`, `\"`)+`"}`, "application/json")
	clientID := registered.str("client_id")
	if clientID == "" {
		t.Fatalf("registration: %v", registered.body)
	}
	_, challenge := newPKCE()
	b := newBrowser(t)
	authorizeURL := ts.authorizeURL(authorizeRequest{clientID: clientID, redirectURI: "http://127.0.0.1:40000/cb",
		scope: "mcp", state: "state-12345", challenge: challenge, method: "S256"})
	login := b.get(authorizeURL)
	consent := b.submit(login, map[string][]string{"username": {"alice"}, "password": {"alice-password"}})
	for name, p := range map[string]*page{"login": login, "consent": consent} {
		if p.status != http.StatusOK {
			t.Fatalf("%s: %d", name, p.status)
		}
		if strings.Contains(p.body, "<script>") || strings.Contains(p.body, "<img") {
			t.Errorf("%s page renders client_name unescaped", name)
		}
		if p.header.Get("X-Frame-Options") != "DENY" || !strings.Contains(p.header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Errorf("%s page may be framed: %v", name, p.header)
		}
		assertNoStore(t, p.header)
	}

	for _, redirect := range []string{
		"http://127.0.0.1:9998/callback", "http://127.0.0.1/callback", "HTTP://127.0.0.1:9999/callback",
		"http://127.0.0.1:9999/Callback", "http://127.0.0.1:9999/callback/", "http://127.0.0.1:9999/callback?x=1",
		"http://127.0.0.1:9999/callback%2F..", "http://127.0.0.1:9999/callback#", "http://localhost:9999/callback",
		"http://127.0.0.1:9999@evil.example/callback", "https://127.0.0.1:9999/callback", "http://127.0.0.1:9999/callback ",
	} {
		p := newBrowser(t).get(ts.authorizeURL(authorizeRequest{clientID: "agent", redirectURI: redirect, scope: "mcp",
			state: "state-12345", challenge: challenge, method: "S256"}))
		if p.location != nil || p.status != http.StatusBadRequest {
			t.Errorf("redirect_uri %q: %d %v, want an error page", redirect, p.status, p.location)
		}
	}
}
