package authserver

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// The whole authorization code flow, as an MCP client and a user in a
// browser go through it: authorize with PKCE, sign in, consent, redeem the
// code, refresh, introspect, revoke.
func TestAuthorizationCodeFlowWithPKCERefreshIntrospectionAndRevocation(t *testing.T) {
	ts := newTestServer(t)
	verifier, challenge := newPKCE()
	state := "state-" + randomID()
	resource := ts.issuer + "/mcp"
	b := newBrowser(t)

	start := b.get(ts.authorizeURL(authorizeRequest{
		clientID: "agent", redirectURI: agentRedirect, scope: "mcp ledger:read", state: state,
		resource: resource, challenge: challenge, method: "S256",
	}))
	if !isLoginPage(start) || isConsentPage(start) {
		t.Fatalf("GET /authorize: want the login page, got %d: %s", start.status, start.body)
	}
	if !strings.Contains(start.body, "Agent &lt;One&gt;") {
		t.Errorf("login page does not name the client (escaped): %s", start.body)
	}
	cookie := start.header.Get("Set-Cookie")
	for _, attribute := range []string{"mcpbroker_authorize=", "Path=/authorize", "HttpOnly", "SameSite=Lax"} {
		if !strings.Contains(cookie, attribute) {
			t.Errorf("flow cookie %q lacks %s", cookie, attribute)
		}
	}
	if strings.Contains(cookie, "Secure") {
		t.Errorf("flow cookie %q is Secure on an http issuer", cookie)
	}
	if start.header.Get("X-Frame-Options") != "DENY" || start.header.Get("Cache-Control") != "no-store" {
		t.Errorf("login page headers: %v", start.header)
	}
	if fields := hiddenFields(start); len(fields["csrf"]) != 1 || fields.Get("csrf") == "" {
		t.Fatalf("login form hidden fields %v, want one csrf", fields)
	}

	consent := b.submit(start, url.Values{"username": {"alice"}, "password": {"alice-password"}})
	if !isConsentPage(consent) || isLoginPage(consent) {
		t.Fatalf("after login: want the consent page, got %d: %s", consent.status, consent.body)
	}
	for _, shown := range []string{"Agent &lt;One&gt;", "mcp", "ledger:read", resource, `value="allow"`, `value="deny"`} {
		if !strings.Contains(consent.body, shown) {
			t.Errorf("consent page does not show %q: %s", shown, consent.body)
		}
	}
	back := b.submit(consent, url.Values{"consent": {"allow"}})
	if back.status != http.StatusSeeOther || back.location == nil {
		t.Fatalf("after consent: %d, want 303 to the client", back.status)
	}
	query := back.location.Query()
	if got := back.location.Scheme + "://" + back.location.Host + back.location.Path; got != agentRedirect {
		t.Errorf("redirected to %s, want %s", got, agentRedirect)
	}
	if query.Get("code") == "" || query.Get("state") != state || query.Get("iss") != ts.issuer || query.Get("error") != "" {
		t.Fatalf("authorization response %v: want code, state %q and iss %q", query, state, ts.issuer)
	}
	if !strings.Contains(back.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("flow cookie not cleared: %q", back.header.Get("Set-Cookie"))
	}

	// Redeem the code.
	tokens := ts.exchangeCode("agent", "", query.Get("code"), verifier, agentRedirect)
	if tokens.status != http.StatusOK {
		t.Fatalf("token: %d %v", tokens.status, tokens.body)
	}
	assertNoStore(t, tokens.header)
	if tokens.str("token_type") != "Bearer" || tokens.str("refresh_token") == "" || tokens.str("scope") != "mcp ledger:read" || tokens.body["expires_in"] == nil {
		t.Errorf("token response %v", tokens.body)
	}
	if tokens.body["id_token"] != nil {
		t.Errorf("an ID token without the openid scope: %v", tokens.body)
	}
	header, claims := ts.verifyJWT(tokens.str("access_token"))
	if header.ExtraHeaders["typ"] != "at+jwt" {
		t.Errorf("typ %v, want at+jwt", header.ExtraHeaders["typ"])
	}
	want := map[string]any{"iss": ts.issuer, "sub": "alice", "client_id": "agent", "aud": resource, "scope": "mcp ledger:read",
		"name": "Alice Example", "email": "alice@example.com"}
	for claim, value := range want {
		if claims[claim] != value {
			t.Errorf("claim %s = %v, want %v", claim, claims[claim], value)
		}
	}
	if got := stringList(claims["groups"]); !slices.Equal(got, []string{"ops", "finance"}) {
		t.Errorf("groups %v", got)
	}

	// Introspection by a resource server.
	info := ts.introspect(tokens.str("access_token"))
	assertNoStore(t, info.header)
	if info.status != http.StatusOK || info.body["active"] != true || info.str("sub") != "alice" || info.str("client_id") != "agent" ||
		info.str("scope") != "mcp ledger:read" || info.str("aud") != resource || info.str("jti") != claims["jti"] || info.str("token_type") != "Bearer" {
		t.Errorf("introspection: %d %v", info.status, info.body)
	}

	// Refresh: a new pair, the same grant; the old refresh token is spent.
	refresh := func(token string) tokenResponse {
		return ts.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}, "client_id": {"agent"}, "resource": {resource}}, "", "")
	}
	refreshed := refresh(tokens.str("refresh_token"))
	if refreshed.status != http.StatusOK || refreshed.str("refresh_token") == "" || refreshed.str("refresh_token") == tokens.str("refresh_token") {
		t.Fatalf("refresh: %d %v", refreshed.status, refreshed.body)
	}
	_, refreshedClaims := ts.verifyJWT(refreshed.str("access_token"))
	if refreshedClaims["sub"] != "alice" || refreshedClaims["aud"] != resource || refreshedClaims["scope"] != "mcp ledger:read" {
		t.Errorf("refreshed token claims %v", refreshedClaims)
	}
	// A refresh may not widen the grant (RFC 6749 §6): refused, and the
	// refresh token stays good.
	widened := ts.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshed.str("refresh_token")}, "client_id": {"agent"},
		"resource": {resource}, "scope": {"mcp ledger:read ledger:write"}}, "", "")
	if widened.status != http.StatusBadRequest || widened.str("error") != "invalid_scope" {
		t.Errorf("a refresh asking for more scope: %d %v, want invalid_scope", widened.status, widened.body)
	}
	if info := ts.introspect(refreshed.str("refresh_token")); info.body["active"] != true {
		t.Errorf("refresh token after a refused widening: %v, want active", info.body)
	}
	if reused := refresh(tokens.str("refresh_token")); reused.status != http.StatusBadRequest || reused.str("error") != "invalid_grant" {
		t.Errorf("reused refresh token: %d %v, want invalid_grant", reused.status, reused.body)
	}
	// Reuse of a rotated refresh token revokes the grant (RFC 9700 §4.14).
	if info := ts.introspect(refreshed.str("refresh_token")); info.body["active"] != false {
		t.Errorf("refresh token after reuse detection: %v, want inactive", info.body)
	}
	if info := ts.introspect(refreshed.str("access_token")); info.body["active"] != false {
		t.Errorf("access token after reuse detection: %v, want inactive", info.body)
	}
	if !ts.server.Revoked(t.Context(), refreshedClaims["jti"].(string)) {
		t.Errorf("access token of a revoked grant is not reported revoked")
	}
}

// A code is good once; redeeming it again revokes what it gave (RFC 6749
// §4.1.2).
func TestCodeReuseRevokesItsTokens(t *testing.T) {
	ts := newTestServer(t)
	code, verifier := ts.codeFor(t, "agent", agentRedirect, "mcp", "")
	tokens := ts.exchangeCode("agent", "", code, verifier, agentRedirect)
	if tokens.status != http.StatusOK {
		t.Fatalf("token: %d %v", tokens.status, tokens.body)
	}
	if info := ts.introspect(tokens.str("access_token")); info.body["active"] != true {
		t.Fatalf("fresh token: %v", info.body)
	}
	again := ts.exchangeCode("agent", "", code, verifier, agentRedirect)
	if again.status != http.StatusBadRequest || again.str("error") != "invalid_grant" {
		t.Errorf("second redemption: %d %v, want invalid_grant", again.status, again.body)
	}
	for name, token := range map[string]string{"access": tokens.str("access_token"), "refresh": tokens.str("refresh_token")} {
		if info := ts.introspect(token); info.body["active"] != false {
			t.Errorf("%s token after code reuse: %v, want inactive", name, info.body)
		}
	}
}

func TestRevocationEndsTheGrantAndReportsTheJTI(t *testing.T) {
	ts := newTestServer(t)
	code, verifier := ts.codeFor(t, "webapp", webappRedirect, "mcp", "")
	tokens := ts.exchangeCode("webapp", webappSecret, code, verifier, webappRedirect)
	if tokens.status != http.StatusOK {
		t.Fatalf("token: %d %v", tokens.status, tokens.body)
	}
	_, claims := ts.verifyJWT(tokens.str("access_token"))
	jti := claims["jti"].(string)
	if claims["aud"] != ts.issuer+"/mcp" {
		t.Errorf("aud %v, want the default audience", claims["aud"])
	}
	if ts.server.Revoked(t.Context(), jti) {
		t.Fatal("a fresh token is reported revoked")
	}

	tests := []struct {
		name     string
		form     url.Values
		clientID string
		secret   string
		status   int
		errCode  string
	}{
		{"no token", url.Values{"token_type_hint": {"access_token"}}, "webapp", webappSecret, http.StatusBadRequest, "invalid_request"},
		{"wrong secret", url.Values{"token": {tokens.str("access_token")}}, "webapp", "wrong", http.StatusUnauthorized, "invalid_client"},
		{"another client's token", url.Values{"token": {tokens.str("access_token")}}, "resource-server", resourceSecret, http.StatusBadRequest, "unauthorized_client"},
		{"unknown token", url.Values{"token": {"no-such-token"}}, "webapp", webappSecret, http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ts.post("/revoke", tt.form, tt.clientID, tt.secret)
			if got.status != tt.status || got.str("error") != tt.errCode {
				t.Errorf("revoke: %d %v, want %d %q", got.status, got.body, tt.status, tt.errCode)
			}
			assertNoStore(t, got.header)
		})
	}
	if info := ts.introspect(tokens.str("access_token")); info.body["active"] != true {
		t.Fatalf("token inactive before its revocation: %v", info.body)
	}

	revoked := ts.post("/revoke", url.Values{"token": {tokens.str("access_token")}, "token_type_hint": {"access_token"}}, "webapp", webappSecret)
	if revoked.status != http.StatusOK {
		t.Fatalf("revoke: %d %v", revoked.status, revoked.body)
	}
	if info := ts.introspect(tokens.str("access_token")); info.status != http.StatusOK || info.body["active"] != false || len(info.body) != 1 {
		t.Errorf("introspection after revocation: %d %v, want only active=false", info.status, info.body)
	}
	if !ts.server.Revoked(t.Context(), jti) {
		t.Error("Revoked(jti) = false after revocation")
	}
	if refreshed := ts.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tokens.str("refresh_token")}}, "webapp", webappSecret); refreshed.status != http.StatusBadRequest {
		t.Errorf("refresh after the grant was revoked: %d %v", refreshed.status, refreshed.body)
	}
}

func TestIntrospectionIsForConfidentialClients(t *testing.T) {
	ts := newTestServer(t)
	tokens := ts.post("/token", url.Values{"grant_type": {"client_credentials"}}, "webapp", webappSecret)
	if tokens.status != http.StatusOK {
		t.Fatalf("client_credentials: %d %v", tokens.status, tokens.body)
	}
	access := tokens.str("access_token")
	tests := []struct {
		name     string
		form     url.Values
		clientID string
		secret   string
		bearer   string
		status   int
		active   any
	}{
		{"confidential client, basic", url.Values{"token": {access}}, "resource-server", resourceSecret, "", http.StatusOK, true},
		{"confidential client, post", url.Values{"token": {access}, "client_id": {"resource-server"}, "client_secret": {resourceSecret}}, "", "", "", http.StatusOK, true},
		{"garbage token", url.Values{"token": {"garbage"}}, "resource-server", resourceSecret, "", http.StatusOK, false},
		{"public client", url.Values{"token": {access}, "client_id": {"agent"}}, "", "", "", http.StatusUnauthorized, nil},
		{"no client", url.Values{"token": {access}}, "", "", "", http.StatusBadRequest, nil},
		{"wrong secret", url.Values{"token": {access}}, "resource-server", "wrong", "", http.StatusUnauthorized, nil},
		{"bearer token", url.Values{"token": {access}}, "", "", access, http.StatusUnauthorized, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, ts.issuer+"/introspect", strings.NewReader(tt.form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tt.secret != "" {
				req.SetBasicAuth(tt.clientID, tt.secret)
			}
			if tt.bearer != "" {
				req.Header.Set("Authorization", "Bearer "+tt.bearer)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.active != nil {
				var got tokenResponse
				if tt.secret != "" {
					got = ts.post("/introspect", tt.form, tt.clientID, tt.secret)
				} else {
					got = ts.post("/introspect", tt.form, "", "")
				}
				if got.body["active"] != tt.active {
					t.Errorf("active = %v, want %v", got.body["active"], tt.active)
				}
			}
		})
	}
}

func TestPKCEIsRequiredAndChecked(t *testing.T) {
	ts := newTestServer(t)
	_, challenge := newPKCE()
	t.Run("refused at the authorization endpoint", func(t *testing.T) {
		tests := []struct {
			name, challenge, method string
		}{
			{"no challenge", "", ""},
			{"no method (plain)", challenge, ""},
			{"plain", challenge, "plain"},
			{"unknown method", challenge, "S512"},
			{"not a SHA-256", "short", "S256"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				p := newBrowser(t).get(ts.authorizeURL(authorizeRequest{
					clientID: "agent", redirectURI: agentRedirect, state: "state-12345", challenge: tt.challenge, method: tt.method,
				}))
				if p.status != http.StatusSeeOther || p.location == nil {
					t.Fatalf("%d, want a redirect with the error: %s", p.status, p.body)
				}
				q := p.location.Query()
				if q.Get("error") != "invalid_request" || q.Get("state") != "state-12345" || q.Get("iss") != ts.issuer || q.Get("code") != "" {
					t.Errorf("redirect %v, want invalid_request with state and iss", q)
				}
			})
		}
	})
	t.Run("refused at the token endpoint", func(t *testing.T) {
		otherVerifier, _ := newPKCE()
		tests := []struct {
			name     string
			verifier func(right string) string
			errCode  string
		}{
			{"missing verifier", func(string) string { return "" }, "invalid_grant"},
			{"wrong verifier", func(string) string { return otherVerifier }, "invalid_grant"},
			{"right verifier", func(right string) string { return right }, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				code, verifier := ts.codeFor(t, "agent", agentRedirect, "mcp", "")
				got := ts.exchangeCode("agent", "", code, tt.verifier(verifier), agentRedirect)
				if got.str("error") != tt.errCode || (tt.errCode == "") != (got.status == http.StatusOK) {
					t.Errorf("token: %d %v, want error %q", got.status, got.body, tt.errCode)
				}
			})
		}
	})
}

func TestBadClientOrRedirectShowsAPageAndNeverRedirects(t *testing.T) {
	ts := newTestServer(t)
	_, challenge := newPKCE()
	tests := []struct {
		name      string
		clientID  string
		redirect  string
		wantTitle string
	}{
		{"unknown client", "nobody", agentRedirect, "Unknown application"},
		{"no client", "", agentRedirect, "Unknown application"},
		{"other loopback port", "agent", "http://127.0.0.1:9998/callback", "Invalid redirect"},
		{"other path", "agent", "http://127.0.0.1:9999/callback/x", "Invalid redirect"},
		{"extra query", "agent", agentRedirect + "?x=1", "Invalid redirect"},
		{"attacker", "agent", "https://attacker.example/cb", "Invalid redirect"},
		{"another client's redirect", "agent", webappRedirect, "Invalid redirect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newBrowser(t).get(ts.authorizeURL(authorizeRequest{
				clientID: tt.clientID, redirectURI: tt.redirect, state: "state-12345", challenge: challenge, method: "S256",
			}))
			if p.status != http.StatusBadRequest || p.location != nil {
				t.Fatalf("%d, Location %v; want 400 and no redirect", p.status, p.location)
			}
			if !strings.HasPrefix(p.header.Get("Content-Type"), "text/html") || !strings.Contains(p.body, tt.wantTitle) || strings.Contains(p.body, "<form") {
				t.Errorf("error page: %s", p.body)
			}
		})
	}
	t.Run("omitted redirect_uri uses the only registered one", func(t *testing.T) {
		p := newBrowser(t).get(ts.authorizeURL(authorizeRequest{clientID: "agent", state: "state-12345", challenge: challenge, method: "S256"}))
		if !isLoginPage(p) {
			t.Errorf("%d: %s", p.status, p.body)
		}
	})
}

func TestAuthorizationErrorsGoBackToTheClient(t *testing.T) {
	ts := newTestServer(t)
	_, challenge := newPKCE()
	tests := []struct {
		name    string
		req     authorizeRequest
		errCode string
	}{
		{"scope the client may not have", authorizeRequest{scope: "admin"}, "invalid_scope"},
		{"resource the client may not have", authorizeRequest{resource: "https://elsewhere.example/"}, "invalid_target"},
		{"two resources", authorizeRequest{extra: url.Values{"resource": {ledgerAudience, ts.issuer + "/mcp"}}}, "invalid_target"},
		{"resource with a fragment", authorizeRequest{resource: ledgerAudience + "#x"}, "invalid_target"},
		{"repeated scope", authorizeRequest{extra: url.Values{"scope": {"mcp", "mcp"}}}, "invalid_request"},
		{"implicit grant", authorizeRequest{extra: url.Values{"response_type": {"token"}}}, "unsupported_response_type"},
		{"fragment response mode", authorizeRequest{extra: url.Values{"response_mode": {"fragment"}}}, "unsupported_response_mode"},
		{"prompt none", authorizeRequest{extra: url.Values{"prompt": {"none"}}}, "login_required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			req.clientID, req.redirectURI, req.state, req.challenge, req.method = "agent", agentRedirect, "xyz", challenge, "S256"
			p := newBrowser(t).get(ts.authorizeURL(req))
			if p.status != http.StatusSeeOther || p.location == nil {
				t.Fatalf("%d, want a redirect: %s", p.status, p.body)
			}
			q := p.location.Query()
			if q.Get("error") != tt.errCode || q.Get("state") != "xyz" || q.Get("iss") != ts.issuer {
				t.Errorf("redirect %v, want error %s with state xyz and iss", q, tt.errCode)
			}
		})
	}
}

func TestLoginFormRefusesWithoutTellingWhy(t *testing.T) {
	ts := newTestServer(t)
	_, challenge := newPKCE()
	authorizeURL := ts.authorizeURL(authorizeRequest{clientID: "agent", redirectURI: agentRedirect, state: "state-12345", challenge: challenge, method: "S256"})
	tests := []struct {
		name, username, password string
	}{
		{"wrong password", "alice", "nope"},
		{"unknown user", "mallory", "alice-password"},
		{"another user's password", "bob", "alice-password"},
	}
	var messages []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newBrowser(t).login(authorizeURL, tt.username, tt.password)
			if !isLoginPage(p) || p.location != nil {
				t.Fatalf("%d: want the login page again: %s", p.status, p.body)
			}
			if !strings.Contains(p.body, messageBadLogin) {
				t.Errorf("no generic message: %s", p.body)
			}
			messages = append(messages, strings.ReplaceAll(p.body, tt.username, ""))
		})
	}
	for i := range messages {
		page := messages[i]
		page = page[strings.Index(page, "<h1>"):strings.Index(page, "<form")]
		messages[i] = page
	}
	if len(messages) == len(tests) && (messages[0] != messages[1] || messages[1] != messages[2]) {
		t.Errorf("failure pages differ, which tells users apart:\n%s", strings.Join(messages, "\n---\n"))
	}
	t.Run("retry on the same page succeeds", func(t *testing.T) {
		b := newBrowser(t)
		p := b.login(authorizeURL, "alice", "nope")
		p = b.submit(p, url.Values{"username": {"alice"}, "password": {"alice-password"}})
		if !isConsentPage(p) {
			t.Errorf("%d: want the consent page: %s", p.status, p.body)
		}
	})
}

func TestLoginIsThrottledAfterRepeatedFailures(t *testing.T) {
	ts := newTestServer(t)
	_, challenge := newPKCE()
	authorizeURL := ts.authorizeURL(authorizeRequest{clientID: "agent", redirectURI: agentRedirect, state: "state-12345", challenge: challenge, method: "S256"})
	b := newBrowser(t)
	p := b.get(authorizeURL)
	for i := 0; i < maxUserFailures; i++ {
		p = b.submit(p, url.Values{"username": {"bob"}, "password": {"wrong"}})
		if p.status != http.StatusOK {
			t.Fatalf("failure %d: %d", i+1, p.status)
		}
	}
	p = b.submit(p, url.Values{"username": {"bob"}, "password": {"bob-password"}})
	if p.status != http.StatusTooManyRequests || !isLoginPageBody(p) || !strings.Contains(p.body, messageThrottled) {
		t.Fatalf("after %d failures the right password: %d, want 429 with the login page: %s", maxUserFailures, p.status, p.body)
	}
	// Another user is not locked out by bob's failures.
	if p := b.submit(p, url.Values{"username": {"alice"}, "password": {"alice-password"}}); !isConsentPage(p) {
		t.Errorf("alice after bob's lockout: %d %s", p.status, p.body)
	}
	// The window passes.
	ts.server.now = func() time.Time { return time.Now().Add(throttleWindow) }
	if p := newBrowser(t).login(authorizeURL, "bob", "bob-password"); !isConsentPage(p) {
		t.Errorf("bob after the window: %d %s", p.status, p.body)
	}
}

func isLoginPageBody(p *page) bool { return strings.Contains(p.body, `name="password"`) }

func TestFormsNeedTheirCSRFTokenAndCookie(t *testing.T) {
	ts := newTestServer(t)
	_, challenge := newPKCE()
	authorizeURL := ts.authorizeURL(authorizeRequest{clientID: "agent", redirectURI: agentRedirect, state: "state-12345", challenge: challenge, method: "S256"})
	login := url.Values{"username": {"alice"}, "password": {"alice-password"}}
	tests := []struct {
		name   string
		post   func(b *browser, p *page) *page
		status int
	}{
		{"csrf missing", func(b *browser, p *page) *page {
			return b.do(http.MethodPost, ts.issuer+"/authorize", login)
		}, http.StatusForbidden},
		{"csrf wrong", func(b *browser, p *page) *page {
			return b.submit(p, url.Values{"csrf": {randomID()}, "username": login["username"], "password": login["password"]})
		}, http.StatusForbidden},
		{"csrf of another flow", func(b *browser, p *page) *page {
			other := newBrowser(b.t).get(authorizeURL)
			return b.submit(p, url.Values{"csrf": hiddenFields(other)["csrf"], "username": login["username"], "password": login["password"]})
		}, http.StatusForbidden},
		{"no cookie", func(b *browser, p *page) *page {
			return newBrowser(b.t).submit(p, login)
		}, http.StatusBadRequest},
		{"expired flow", func(b *browser, p *page) *page {
			ts.server.now = func() time.Time { return time.Now().Add(flowTTL + time.Second) }
			defer func() { ts.server.now = time.Now }()
			return b.submit(p, login)
		}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBrowser(t)
			p := b.get(authorizeURL)
			got := tt.post(b, p)
			if got.status != tt.status || got.location != nil || isConsentPage(got) || isLoginPage(got) {
				t.Fatalf("%d %v, want %d and an error page: %s", got.status, got.location, tt.status, got.body)
			}
		})
	}
	t.Run("consent csrf wrong", func(t *testing.T) {
		b := newBrowser(t)
		consent := b.login(authorizeURL, "alice", "alice-password")
		got := b.submit(consent, url.Values{"csrf": {"forged"}, "consent": {"allow"}})
		if got.status != http.StatusForbidden || got.location != nil {
			t.Fatalf("%d %v, want 403", got.status, got.location)
		}
		// The login page's token does not carry over to the consent step.
		loginCSRF := hiddenFields(b.get(authorizeURL))["csrf"]
		consent = b.submit(b.get(authorizeURL), login)
		if got := b.submit(consent, url.Values{"csrf": loginCSRF, "consent": {"allow"}}); got.status != http.StatusForbidden {
			t.Errorf("consent with a login-step token: %d", got.status)
		}
	})
}

func TestConsentDenyRememberAndSkip(t *testing.T) {
	ts := newTestServer(t)
	_, challenge := newPKCE()
	request := func(clientID, redirect, scope string) string {
		return ts.authorizeURL(authorizeRequest{clientID: clientID, redirectURI: redirect, scope: scope, state: "state-12345", challenge: challenge, method: "S256"})
	}

	t.Run("deny", func(t *testing.T) {
		back := newBrowser(t).authorize(request("agent", agentRedirect, "mcp"), "bob", "bob-password", "deny")
		q := back.Query()
		if q.Get("error") != "access_denied" || q.Get("state") != "state-12345" || q.Get("iss") != ts.issuer || q.Get("code") != "" {
			t.Errorf("deny: %v", q)
		}
	})
	t.Run("denied consent is not remembered", func(t *testing.T) {
		if p := newBrowser(t).login(request("agent", agentRedirect, "mcp"), "bob", "bob-password"); !isConsentPage(p) {
			t.Errorf("%d, want the consent page", p.status)
		}
	})
	t.Run("allowed consent is remembered per user, client and scope", func(t *testing.T) {
		newBrowser(t).authorize(request("agent", agentRedirect, "mcp ledger:read"), "alice", "alice-password", "allow")
		if p := newBrowser(t).login(request("agent", agentRedirect, "mcp"), "alice", "alice-password"); p.status != http.StatusSeeOther || p.location.Query().Get("code") == "" {
			t.Errorf("same client, fewer scopes: %d, want the code straight away", p.status)
		}
		for name, url := range map[string]string{
			"more scopes":      request("agent", agentRedirect, "mcp ledger:write"),
			"another client":   request("webapp", webappRedirect, "mcp"),
			"prompt=consent":   request("agent", agentRedirect, "mcp") + "&prompt=consent",
			"another user":     "",
			"another audience": ts.authorizeURL(authorizeRequest{clientID: "agent", redirectURI: agentRedirect, scope: "mcp", resource: ledgerAudience, challenge: challenge, method: "S256"}),
		} {
			user, password := "alice", "alice-password"
			if name == "another user" {
				url, user, password = request("agent", agentRedirect, "mcp"), "bob", "bob-password"
			}
			if p := newBrowser(t).login(url, user, password); !isConsentPage(p) {
				t.Errorf("%s: %d, want the consent page", name, p.status)
			}
		}
	})
	t.Run("a consent post without an answer asks again", func(t *testing.T) {
		b := newBrowser(t)
		consent := b.login(request("agent", agentRedirect, "ledger:write"), "bob", "bob-password")
		again := b.submit(consent, url.Values{"consent": {"maybe"}})
		if !isConsentPage(again) || again.location != nil {
			t.Fatalf("%d %v, want the consent page again", again.status, again.location)
		}
		if back := b.submit(again, url.Values{"consent": {"allow"}}); back.location == nil || back.location.Query().Get("code") == "" {
			t.Errorf("allow after asking again: %d", back.status)
		}
	})
	t.Run("first-party client skips consent", func(t *testing.T) {
		p := newBrowser(t).login(request("firstparty", firstPartyRedirect, "mcp"), "bob", "bob-password")
		if p.status != http.StatusSeeOther || p.location.Query().Get("code") == "" {
			t.Errorf("%d, want the code without consent", p.status)
		}
	})
}

// Under an issuer with a path, every endpoint and the flow cookie live
// under that path.
func TestIssuerWithAPathServesTheWholeFlow(t *testing.T) {
	ts := newTestServer(t, withPath("/tenant/auth"))
	verifier, challenge := newPKCE()
	b := newBrowser(t)
	start := b.get(ts.authorizeURL(authorizeRequest{clientID: "agent", redirectURI: agentRedirect, scope: "mcp", state: "state-12345", challenge: challenge, method: "S256"}))
	if !isLoginPage(start) || !strings.Contains(start.header.Get("Set-Cookie"), "Path=/tenant/auth/authorize") ||
		!strings.Contains(start.body, `action="/tenant/auth/authorize"`) {
		t.Fatalf("login page %d, cookie %q: %s", start.status, start.header.Get("Set-Cookie"), start.body)
	}
	consent := b.submit(start, url.Values{"username": {"alice"}, "password": {"alice-password"}})
	back := b.submit(consent, url.Values{"consent": {"allow"}})
	if back.location == nil || back.location.Query().Get("iss") != ts.issuer {
		t.Fatalf("%d %v", back.status, back.location)
	}
	tokens := ts.exchangeCode("agent", "", back.location.Query().Get("code"), verifier, agentRedirect)
	if tokens.status != http.StatusOK {
		t.Fatalf("token: %d %v", tokens.status, tokens.body)
	}
	if _, claims := ts.verifyJWT(tokens.str("access_token")); claims["iss"] != ts.issuer || claims["aud"] != ts.issuer+"/mcp" {
		t.Errorf("claims %v", claims)
	}
	if info := ts.introspect(tokens.str("access_token")); info.body["active"] != true {
		t.Errorf("introspection %v", info.body)
	}
}
