package authserver

import (
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// documentHost serves client ID metadata documents over TLS, as clients
// host them, and counts the fetches of each path.
type documentHost struct {
	server *httptest.Server
	mu     sync.Mutex
	pages  map[string]documentPage
	hits   map[string]int
}

// documentPage is one response; status 0 means 200, contentType ""
// means application/json.
type documentPage struct {
	status       int
	contentType  string
	cacheControl string
	location     string
	body         string
}

func newDocumentHost(t *testing.T) *documentHost {
	h := &documentHost{pages: map[string]documentPage{}, hits: map[string]int{}}
	h.server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		page, ok := h.pages[r.URL.Path]
		h.hits[r.URL.Path]++
		h.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		contentType := page.contentType
		if contentType == "" {
			contentType = "application/json"
		}
		w.Header().Set("Content-Type", contentType)
		if page.cacheControl != "" {
			w.Header().Set("Cache-Control", page.cacheControl)
		}
		if page.location != "" {
			w.Header().Set("Location", page.location)
		}
		status := page.status
		if status == 0 {
			status = http.StatusOK
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(page.body))
	}))
	t.Cleanup(h.server.Close)
	return h
}

// serve puts page at path and returns the URL, the client_id.
func (h *documentHost) serve(path string, page documentPage) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pages[path] = page
	return h.server.URL + path
}

// serveDocument serves a document whose client_id is its URL, with fields
// added or, when nil, removed.
func (h *documentHost) serveDocument(t *testing.T, path string, fields map[string]any) string {
	t.Helper()
	id := h.server.URL + path
	document := map[string]any{
		"client_id":                  id,
		"client_name":                "Example Agent",
		"redirect_uris":              []string{agentRedirect},
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"token_endpoint_auth_method": "none",
		"logo_uri":                   "https://agent.example/logo.png",
	}
	for name, value := range fields {
		if value == nil {
			delete(document, name)
		} else {
			document[name] = value
		}
	}
	body, err := json.Marshal(document)
	if err != nil {
		t.Fatal(err)
	}
	return h.serve(path, documentPage{body: string(body)})
}

func (h *documentHost) fetches(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hits[path]
}

// roots trusts the host's certificate.
func (h *documentHost) roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(h.server.Certificate())
	return pool
}

// clock is a Now that tests move forward.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// withDocuments accepts client ID metadata documents from host, which is
// on loopback.
func withDocuments(host *documentHost, now func() time.Time) serverOption {
	return withOptions(func(o *Options) {
		o.ClientIDMetadataDocuments = true
		o.ClientIDMetadataFetch = oauth.FetcherOptions{AllowLoopback: true, RootCAs: host.roots()}
		if now != nil {
			o.Now = now
		}
	})
}

func TestClientIDMetadataDocumentSupportIsAdvertised(t *testing.T) {
	for _, enabled := range []bool{false, true} {
		ts := newTestServer(t, withOptions(func(o *Options) { o.ClientIDMetadataDocuments = enabled }))
		resp, err := http.Get(ts.origin + "/.well-known/oauth-authorization-server")
		if err != nil {
			t.Fatal(err)
		}
		var metadata map[string]any
		err = json.NewDecoder(resp.Body).Decode(&metadata)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		supported, present := metadata["client_id_metadata_document_supported"]
		if enabled && supported != true || !enabled && present {
			t.Errorf("enabled %v: client_id_metadata_document_supported = %v (present %v)", enabled, supported, present)
		}
		if got := ts.server.Metadata().ClientIDMetadataDocumentSupported; got != enabled {
			t.Errorf("enabled %v: Metadata() says %v", enabled, got)
		}
	}
}

func TestClientIDMetadataDocumentFlow(t *testing.T) {
	host := newDocumentHost(t)
	var now clock
	ts := newTestServer(t, withDocuments(host, now.now))
	clientID := host.serveDocument(t, "/clients/agent.json", map[string]any{"client_name": "Example <Agent>"})
	hostPort := strings.TrimPrefix(host.server.URL, "https://")
	resource := ts.issuer + "/mcp"

	authorize := func() (code, verifier string) {
		t.Helper()
		verifier, challenge := newPKCE()
		b := newBrowser(t)
		authorizeURL := ts.authorizeURL(authorizeRequest{
			clientID: clientID, redirectURI: agentRedirect, scope: "mcp", state: "state-" + randomID(),
			resource: resource, challenge: challenge, method: "S256",
		})
		start := b.get(authorizeURL)
		if !isLoginPage(start) || !strings.Contains(start.body, "Example &lt;Agent&gt; ("+hostPort+")") {
			t.Fatalf("GET /authorize: want the login page naming the client and its host, got %d: %s", start.status, start.body)
		}
		consent := b.submit(start, url.Values{"username": {"alice"}, "password": {"alice-password"}})
		if !isConsentPage(consent) {
			t.Fatalf("after login: want the consent page, every time, got %d %v: %s", consent.status, consent.location, consent.body)
		}
		for _, shown := range []string{"Example &lt;Agent&gt;", "<strong>" + hostPort + "</strong>", agentRedirect, "only that host is verified"} {
			if !strings.Contains(consent.body, shown) {
				t.Errorf("consent page does not show %q: %s", shown, consent.body)
			}
		}
		back := b.submit(consent, url.Values{"consent": {"allow"}})
		if back.status != http.StatusSeeOther || back.location == nil || !strings.HasPrefix(back.location.String(), agentRedirect+"?") {
			t.Fatalf("after consent: %d %v, want 303 to %s", back.status, back.location, agentRedirect)
		}
		code = back.location.Query().Get("code")
		if code == "" || back.location.Query().Get("iss") != ts.issuer {
			t.Fatalf("redirect %s: want code and iss", back.location)
		}
		return code, verifier
	}

	code, verifier := authorize()
	tokens := ts.exchangeCode(clientID, "", code, verifier, agentRedirect)
	if tokens.status != http.StatusOK || tokens.str("access_token") == "" || tokens.str("refresh_token") == "" {
		t.Fatalf("token: %d %v", tokens.status, tokens.body)
	}
	assertNoStore(t, tokens.header)
	_, claims := ts.verifyJWT(tokens.str("access_token"))
	if claims["client_id"] != clientID || claims["sub"] != "alice" || claims["aud"] != resource {
		t.Errorf("claims %v: want client_id %s, sub alice, aud %s", claims, clientID, resource)
	}
	refresh := func(token string) tokenResponse {
		return ts.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}, "client_id": {clientID}}, "", "")
	}
	refreshed := refresh(tokens.str("refresh_token"))
	if refreshed.status != http.StatusOK || refreshed.str("refresh_token") == "" {
		t.Fatalf("refresh: %d %v", refreshed.status, refreshed.body)
	}
	if n := host.fetches("/clients/agent.json"); n != 1 {
		t.Errorf("the document was fetched %d times for an authorization and two token requests, want once", n)
	}
	// Another client may not redeem the code or use the refresh token.
	if stolen := ts.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshed.str("refresh_token")}, "client_id": {"agent"}}, "", ""); stolen.status == http.StatusOK {
		t.Errorf("another client used the refresh token: %v", stolen.body)
	}

	// Consent is asked again: it is not remembered for such clients.
	code, verifier = authorize()
	if again := ts.exchangeCode(clientID, "", code, verifier, agentRedirect); again.status != http.StatusOK {
		t.Fatalf("second token: %d %v", again.status, again.body)
	}

	// Once the cached copy expires, the token endpoint fetches again and
	// judges the document as it is now.
	host.serveDocument(t, "/clients/agent.json", map[string]any{"client_id": "https://attacker.example/agent.json"})
	now.advance(defaultClientDocumentTTL + time.Second)
	current := refreshed.str("refresh_token")
	if refused := refresh(current); refused.status != http.StatusUnauthorized || refused.str("error") != "invalid_client" {
		t.Fatalf("refresh with a broken document: %d %v, want 401 invalid_client", refused.status, refused.body)
	}
	if n := host.fetches("/clients/agent.json"); n != 2 {
		t.Errorf("fetches after expiry: %d, want 2 (failures are not cached as successes)", n)
	}
	host.serveDocument(t, "/clients/agent.json", nil)
	if restored := refresh(current); restored.status != http.StatusOK {
		t.Fatalf("refresh with the document restored: %d %v", restored.status, restored.body)
	}
}

func TestClientIDMetadataDocumentCacheControl(t *testing.T) {
	host := newDocumentHost(t)
	var now clock
	ts := newTestServer(t, withDocuments(host, now.now))
	body, _ := json.Marshal(map[string]any{"client_id": host.server.URL + "/short.json", "redirect_uris": []string{agentRedirect}})
	clientID := host.serve("/short.json", documentPage{body: string(body), cacheControl: "public, max-age=90"})
	_, challenge := newPKCE()
	open := func() {
		t.Helper()
		if p := newBrowser(t).get(ts.authorizeURL(authorizeRequest{clientID: clientID, state: "state-12345", challenge: challenge, method: "S256"})); !isLoginPage(p) {
			t.Fatalf("%d: %s", p.status, p.body)
		}
	}
	open()
	now.advance(80 * time.Second)
	open()
	if n := host.fetches("/short.json"); n != 1 {
		t.Errorf("within max-age: %d fetches, want 1", n)
	}
	now.advance(20 * time.Second)
	open()
	if n := host.fetches("/short.json"); n != 2 {
		t.Errorf("past max-age: %d fetches, want 2", n)
	}
}

func TestClientIDMetadataDocumentRefusalsShowAPageAndNeverRedirect(t *testing.T) {
	host := newDocumentHost(t)
	ts := newTestServer(t, withDocuments(host, nil))
	_, challenge := newPKCE()
	closed := httptest.NewTLSServer(http.NotFoundHandler())
	unreachable := closed.URL + "/client.json"
	closed.Close()

	tests := []struct {
		name     string
		clientID string
		redirect string
		// documentOK: only the request is wrong, not the document.
		documentOK bool
	}{
		{"client_id mismatch", host.serveDocument(t, "/mismatch.json", map[string]any{"client_id": host.server.URL + "/other.json"}), agentRedirect, false},
		{"client_id differs in case", host.serveDocument(t, "/Case.json", map[string]any{"client_id": host.server.URL + "/case.json"}), agentRedirect, false},
		{"no client_id", host.serveDocument(t, "/no-id.json", map[string]any{"client_id": nil}), agentRedirect, false},
		{"redirect_uri not in the document", host.serveDocument(t, "/agent.json", nil), "http://127.0.0.1:9998/callback", true},
		{"no redirect_uris", host.serveDocument(t, "/no-redirects.json", map[string]any{"redirect_uris": nil}), agentRedirect, false},
		{"plain http redirect", host.serveDocument(t, "/http.json", map[string]any{"redirect_uris": []string{"http://agent.example/cb"}}), "http://agent.example/cb", false},
		{"redirect with a fragment", host.serveDocument(t, "/fragment.json", map[string]any{"redirect_uris": []string{"https://agent.example/cb#x"}}), "https://agent.example/cb#x", false},
		{"client_secret_basic", host.serveDocument(t, "/basic.json", map[string]any{"token_endpoint_auth_method": "client_secret_basic"}), agentRedirect, false},
		{"client_secret_post", host.serveDocument(t, "/post.json", map[string]any{"token_endpoint_auth_method": "client_secret_post"}), agentRedirect, false},
		{"private_key_jwt", host.serveDocument(t, "/jwt.json", map[string]any{"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://agent.example/jwks"}), agentRedirect, false},
		{"client_secret", host.serveDocument(t, "/secret.json", map[string]any{"token_endpoint_auth_method": nil, "client_secret": "s3cret"}), agentRedirect, false},
		{"client_credentials grant", host.serveDocument(t, "/cc.json", map[string]any{"grant_types": []string{"client_credentials"}}), agentRedirect, false},
		{"implicit", host.serveDocument(t, "/implicit.json", map[string]any{"response_types": []string{"token"}}), agentRedirect, false},
		{"control characters in the name", host.serveDocument(t, "/name.json", map[string]any{"client_name": "Agent\u202e\x07"}), agentRedirect, false},
		{"too large", host.serveDocument(t, "/large.json", map[string]any{"client_name": "Agent", "padding": strings.Repeat("x", 6<<10)}), agentRedirect, false},
		{"not JSON", host.serve("/html.json", documentPage{contentType: "application/json", body: "<html>hello</html>"}), agentRedirect, false},
		{"served as HTML", host.serve("/as-html", documentPage{contentType: "text/html", body: `{"client_id":"` + host.server.URL + `/as-html","redirect_uris":["` + agentRedirect + `"]}`}), agentRedirect, false},
		{"not an object", host.serve("/array.json", documentPage{body: `["` + agentRedirect + `"]`}), agentRedirect, false},
		{"trailing data", host.serve("/trailing.json", documentPage{body: `{"client_id":"` + host.server.URL + `/trailing.json","redirect_uris":["` + agentRedirect + `"]} {}`}), agentRedirect, false},
		{"not found", host.server.URL + "/missing.json", agentRedirect, false},
		{"server error", host.serve("/error.json", documentPage{status: http.StatusInternalServerError, body: "{}"}), agentRedirect, false},
		{"redirect", host.serve("/moved.json", documentPage{status: http.StatusFound, location: host.serveDocument(t, "/target.json", nil)}), agentRedirect, false},
		{"unreachable", unreachable, agentRedirect, false},
		{"no path", host.server.URL, agentRedirect, false},
		{"root path", host.server.URL + "/", agentRedirect, false},
		{"fragment", host.serveDocument(t, "/frag.json", nil) + "#x", agentRedirect, false},
		{"dot segment", host.server.URL + "/a/../agent.json", agentRedirect, false},
		{"escaped dot segment", host.server.URL + "/a/%2e%2E/agent.json", agentRedirect, false},
		{"user information", strings.Replace(host.serveDocument(t, "/user.json", nil), "https://", "https://user:pass@", 1), agentRedirect, false},
		{"plain http client_id", strings.Replace(host.serveDocument(t, "/plain.json", nil), "https://", "http://", 1), agentRedirect, false},
		{"space", host.server.URL + "/a b.json", agentRedirect, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newBrowser(t).get(ts.authorizeURL(authorizeRequest{
				clientID: tt.clientID, redirectURI: tt.redirect, state: "state-12345", challenge: challenge, method: "S256",
			}))
			if p.status != http.StatusBadRequest || p.location != nil || p.header.Get("Location") != "" {
				t.Fatalf("%d, Location %v; want 400 and no redirect: %s", p.status, p.location, p.body)
			}
			if !strings.HasPrefix(p.header.Get("Content-Type"), "text/html") || strings.Contains(p.body, "<form") ||
				!(strings.Contains(p.body, "Unknown application") || strings.Contains(p.body, "Invalid redirect")) {
				t.Errorf("error page: %s", p.body)
			}
			// The token endpoint refuses the client as well.
			if got := ts.exchangeCode(tt.clientID, "", "code", "verifier", tt.redirect); !tt.documentOK &&
				(got.status != http.StatusUnauthorized || got.str("error") != "invalid_client") {
				t.Errorf("token endpoint: %d %v, want 401 invalid_client", got.status, got.body)
			}
		})
	}
	if n := host.fetches("/target.json"); n != 0 {
		t.Errorf("a redirect was followed %d times", n)
	}
	for _, path := range []string{"/frag.json", "/user.json", "/plain.json", "/a/../agent.json"} {
		if n := host.fetches(path); n != 0 {
			t.Errorf("%s was fetched %d times for a client_id that is not acceptable", path, n)
		}
	}
}

func TestClientIDMetadataDocumentOnLoopbackNeedsLoopbackAllowed(t *testing.T) {
	host := newDocumentHost(t)
	clientID := host.serveDocument(t, "/agent.json", nil)
	ts := newTestServer(t, withOptions(func(o *Options) {
		o.ClientIDMetadataDocuments = true
		o.ClientIDMetadataFetch = oauth.FetcherOptions{RootCAs: host.roots()}
	}))
	_, challenge := newPKCE()
	for _, id := range []string{clientID, strings.Replace(clientID, "127.0.0.1", "localhost", 1)} {
		p := newBrowser(t).get(ts.authorizeURL(authorizeRequest{clientID: id, state: "state-12345", challenge: challenge, method: "S256"}))
		if p.status != http.StatusBadRequest || p.location != nil {
			t.Errorf("%s: %d %v, want the error page", id, p.status, p.location)
		}
	}
	if n := host.fetches("/agent.json"); n != 0 {
		t.Errorf("a loopback document was fetched %d times", n)
	}
}

func TestClientIDMetadataDocumentsOffLeaveURLsUnknown(t *testing.T) {
	host := newDocumentHost(t)
	clientID := host.serveDocument(t, "/agent.json", nil)
	ts := newTestServer(t)
	_, challenge := newPKCE()
	p := newBrowser(t).get(ts.authorizeURL(authorizeRequest{clientID: clientID, state: "state-12345", challenge: challenge, method: "S256"}))
	if p.status != http.StatusBadRequest || p.location != nil || !strings.Contains(p.body, "not registered") {
		t.Errorf("%d %v: %s", p.status, p.location, p.body)
	}
	if n := host.fetches("/agent.json"); n != 0 {
		t.Errorf("fetched %d times with documents off", n)
	}
}

func TestCheckClientIDURL(t *testing.T) {
	tests := []struct {
		id            string
		allowLoopback bool
		ok            bool
	}{
		{"https://agent.example/client.json", false, true},
		{"https://agent.example:8443/clients/1?v=2", false, true},
		{"https://agent.example/.well-known/client", false, true},
		{"https://agent.example/a/.../b", false, true},
		{"https://127.0.0.1:8443/client.json", true, true},
		{"https://agent.example", false, false},
		{"https://agent.example/", false, false},
		{"https://agent.example/./client.json", false, false},
		{"https://agent.example/a/..", false, false},
		{"https://agent.example/%2E/client.json", false, false},
		{"https://agent.example/%zz", false, false},
		{"https://agent.example/client.json#", false, false},
		{"https://u@agent.example/client.json", false, false},
		{"http://agent.example/client.json", false, false},
		{"https:///client.json", false, false},
		{"https://127.0.0.1/client.json", false, false},
		{"https://[::1]/client.json", false, false},
		{"https://localhost./client.json", false, false},
		{"https://LOCALHOST/client.json", false, false},
		{"https://agent.example/" + strings.Repeat("a", maxClientIDURLBytes), false, false},
		{"https://agent.example/\u00e9", false, false},
	}
	for _, tt := range tests {
		if err := checkClientIDURL(tt.id, tt.allowLoopback); (err == nil) != tt.ok {
			t.Errorf("checkClientIDURL(%q, %v) = %v, want ok %v", tt.id, tt.allowLoopback, err, tt.ok)
		}
	}
}

func TestDocumentTTL(t *testing.T) {
	tests := []struct {
		cacheControl []string
		want         time.Duration
	}{
		{nil, defaultClientDocumentTTL},
		{[]string{"public, max-age=3600"}, time.Hour},
		{[]string{"max-age=\"120\""}, 2 * time.Minute},
		{[]string{"max-age=5"}, minClientDocumentTTL},
		{[]string{"max-age=0"}, minClientDocumentTTL},
		{[]string{"max-age=999999999999"}, maxClientDocumentTTL},
		{[]string{"max-age=99999999999999999999"}, defaultClientDocumentTTL},
		{[]string{"max-age=-1"}, defaultClientDocumentTTL},
		{[]string{"max-age=soon"}, defaultClientDocumentTTL},
		{[]string{"no-store"}, minClientDocumentTTL},
		{[]string{"max-age=3600", "No-Cache"}, minClientDocumentTTL},
	}
	for _, tt := range tests {
		if got := documentTTL(tt.cacheControl); got != tt.want {
			t.Errorf("documentTTL(%q) = %s, want %s", tt.cacheControl, got, tt.want)
		}
	}
}

// FuzzClientDocument: whatever a document holds, a client built from it is
// public, has its URL as its id, and only acceptable redirect URIs and
// grants.
func FuzzClientDocument(f *testing.F) {
	const id = "https://agent.example/client.json"
	f.Add([]byte(`{"client_id":"` + id + `","redirect_uris":["https://agent.example/cb"],"token_endpoint_auth_method":"none"}`))
	f.Add([]byte(`{"client_id":"` + id + `","redirect_uris":["http://127.0.0.1:1/cb"],"grant_types":["authorization_code"],"client_name":"x"}`))
	f.Add([]byte(`{"client_id":"` + id + `","redirect_uris":["https://a/cb"],"client_secret":null}`))
	f.Add([]byte(`{"client_id":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var document clientDocument
		if decodeJSONObject(body, &document) != nil {
			return
		}
		c, err := document.client(id)
		if err != nil {
			return
		}
		if c.ID != id || !c.IsPublic() || c.AuthMethod != authMethodNone || c.documentHost != "agent.example" || len(c.RedirectURIs) == 0 {
			t.Fatalf("accepted %s as %+v", body, c)
		}
		for _, redirect := range c.RedirectURIs {
			if checkRedirectURI(redirect) != nil {
				t.Fatalf("accepted redirect URI %q", redirect)
			}
		}
		for _, grant := range c.GrantTypes {
			if grant != GrantAuthorizationCode && grant != GrantRefreshToken {
				t.Fatalf("accepted grant %q", grant)
			}
		}
	})
}
