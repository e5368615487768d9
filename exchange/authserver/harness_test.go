package authserver

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/bcrypt"

	"github.com/mcpbroker/mcpbroker/broker/limit/redistest"
	"github.com/mcpbroker/mcpbroker/exchange"
)

// Test fixtures: users with cheap bcrypt hashes, and one client of each
// kind the server knows.
const (
	agentRedirect      = "http://127.0.0.1:9999/callback"
	webappRedirect     = "https://app.example/cb"
	firstPartyRedirect = "https://first.example/cb"
	webappSecret       = "webapp-secret"
	exchangerSecret    = "exchanger-secret"
	resourceSecret     = "resource-server-secret"
	ledgerAudience     = "https://ledger.example/"
)

func hashPassword(t testing.TB, password string) string {
	t.Helper()
	return hashPasswordAt(t, password, bcrypt.MinCost)
}

func hashPasswordAt(t testing.TB, password string, cost int) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		t.Fatal(err)
	}
	return string(hash)
}

// testServer is a Server behind an httptest server whose address, and so
// the issuer, survives restarts: the HTTP server stays, the Server behind
// it is rebuilt on the reopened database.
type testServer struct {
	t        *testing.T
	issuer   string
	basePath string
	origin   string
	dbPath   string
	db       *bolt.DB
	keys     *exchange.KeySet
	minter   *exchange.Minter
	server   *Server
	handler  atomic.Pointer[http.ServeMux]
	http     *httptest.Server
	// configure adjusts the options of every (re)start.
	configure func(*Options)
	// withExchanger serves the token-exchange grant with a real
	// exchange.Exchanger.
	withExchanger bool
	// newRedis, when set, makes a client of the Redis that holds the
	// state of replicas Servers built alike on it, each with clients of
	// its own, which the HTTP server takes turns to send each request to;
	// server is the first.
	newRedis func() redis.UniversalClient
	replicas int
	servers  []*Server
	turn     atomic.Int64
}

// onRedis, while set, makes every test server keep its state in the
// Redis it makes clients of, served by three Servers in turn (see
// TestFlowsOnRedisReplicas).
var onRedis func() redis.UniversalClient

// withRedisReplicas keeps the state in Redis and serves every request
// through the next of n Servers sharing it.
func withRedisReplicas(server *redistest.Server, n int) serverOption {
	return withRedisClients(func() redis.UniversalClient { return server.Client() }, n)
}

// withRedisClients is withRedisReplicas on the Redis newClient reaches.
func withRedisClients(newClient func() redis.UniversalClient, n int) serverOption {
	return func(ts *testServer) { ts.newRedis, ts.replicas = newClient, n }
}

type serverOption func(*testServer)

func withPath(path string) serverOption {
	return func(ts *testServer) { ts.basePath = path }
}

func withOptions(configure func(*Options)) serverOption {
	return func(ts *testServer) { ts.configure = configure }
}

func withExchanger() serverOption {
	return func(ts *testServer) { ts.withExchanger = true }
}

func newTestServer(t *testing.T, options ...serverOption) *testServer {
	t.Helper()
	ts := &testServer{t: t, dbPath: filepath.Join(t.TempDir(), "authserver.db")}
	if onRedis != nil {
		withRedisClients(onRedis, 3)(ts)
	}
	for _, option := range options {
		option(ts)
	}
	ts.http = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.handler.Load().ServeHTTP(w, r)
	}))
	ts.origin = "http://" + ts.http.Listener.Addr().String()
	ts.issuer = ts.origin + ts.basePath
	ts.start()
	ts.http.Start()
	t.Cleanup(func() {
		ts.http.Close()
		if ts.db != nil {
			ts.db.Close()
		}
	})
	return ts
}

func (ts *testServer) defaultOptions() Options {
	t := ts.t
	return Options{
		Issuer:    ts.issuer,
		Audiences: []string{ts.issuer + "/mcp", ledgerAudience},
		Scopes:    []string{"mcp", "ledger:read", "ledger:write", "openid"},
		Users: []User{
			{Username: "alice", PasswordHash: hashPassword(t, "alice-password"), Name: "Alice Example", Email: "alice@example.com", Groups: []string{"ops", "finance"}},
			{Username: "bob", PasswordHash: hashPassword(t, "bob-password")},
		},
		Registration: true,
		Clients: []Client{
			{ID: "agent", Name: "Agent <One>", RedirectURIs: []string{agentRedirect}},
			{ID: "webapp", Name: "Web App", Secret: webappSecret, RedirectURIs: []string{webappRedirect},
				GrantTypes: []string{GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials}, Groups: []string{"robots"}},
			{ID: "firstparty", Name: "First Party", RedirectURIs: []string{firstPartyRedirect}, SkipConsent: true},
			{ID: "exchanger", Secret: exchangerSecret, GrantTypes: []string{GrantTokenExchange}, Audiences: []string{ledgerAudience}},
			{ID: "resource-server", Secret: resourceSecret, GrantTypes: []string{GrantClientCredentials}, Introspect: true},
		},
	}
}

// start opens the database and builds the Server, as the broker does on
// every start.
func (ts *testServer) start() {
	if ts.newRedis != nil {
		ts.startReplicas()
		return
	}
	t := ts.t
	t.Helper()
	ctx := t.Context()
	db, err := exchange.OpenBolt(ts.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	ts.db = db
	if ts.keys, err = exchange.NewKeySet(ctx, exchange.NewBoltKeyStore(db), exchange.KeySetOptions{}); err != nil {
		t.Fatal(err)
	}
	minter, err := exchange.NewMinter(ts.keys, exchange.MinterOptions{Issuer: ts.issuer})
	if err != nil {
		t.Fatal(err)
	}
	ts.minter = minter
	opts := ts.defaultOptions()
	opts.DB, opts.Keys, opts.Minter = db, ts.keys, minter
	opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var server *Server
	if ts.withExchanger {
		exchanger, err := exchange.NewExchanger(minter, ts.keys, exchange.ExchangerOptions{
			Revoked: func(ctx context.Context, tokenID string) bool { return server.Revoked(ctx, tokenID) },
		})
		if err != nil {
			t.Fatal(err)
		}
		opts.Exchanger = exchanger
	}
	if ts.configure != nil {
		ts.configure(&opts)
	}
	if server, err = New(ctx, opts); err != nil {
		t.Fatalf("New: %v", err)
	}
	ts.server = server
	mux := http.NewServeMux()
	server.Register(mux)
	ts.handler.Store(mux)
}

// startReplicas builds the Servers sharing Redis, each with its own keys
// on the shared key store, and sends each request to the next of them.
func (ts *testServer) startReplicas() {
	t := ts.t
	t.Helper()
	ctx := t.Context()
	ts.servers = nil
	muxes := make([]*http.ServeMux, ts.replicas)
	for i := range ts.replicas {
		keys, err := exchange.NewKeySet(ctx, exchange.NewRedisKeyStore(ts.newRedis(), "auth-test:"), exchange.KeySetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		minter, err := exchange.NewMinter(keys, exchange.MinterOptions{Issuer: ts.issuer})
		if err != nil {
			t.Fatal(err)
		}
		opts := ts.defaultOptions()
		opts.Redis, opts.RedisKeyPrefix, opts.Keys, opts.Minter = ts.newRedis(), "auth-test:", keys, minter
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
		if ts.configure != nil {
			ts.configure(&opts)
		}
		server, err := New(ctx, opts)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		ts.servers = append(ts.servers, server)
		muxes[i] = http.NewServeMux()
		server.Register(muxes[i])
		if i == 0 {
			ts.keys, ts.minter, ts.server = keys, minter, server
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		muxes[int(ts.turn.Add(1))%len(muxes)].ServeHTTP(w, r)
	})
	ts.handler.Store(mux)
}

// restart closes the database and builds everything again from it.
func (ts *testServer) restart() {
	ts.t.Helper()
	if ts.db != nil {
		if err := ts.db.Close(); err != nil {
			ts.t.Fatal(err)
		}
	}
	ts.start()
}

// pkce returns a code verifier and its S256 challenge.
func newPKCE() (verifier, challenge string) {
	verifier = randomID() + randomID() + "-._~"
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorizeRequest is the query of an authorization request.
type authorizeRequest struct {
	clientID, redirectURI, scope, state, resource string
	challenge, method                             string
	extra                                         url.Values
}

func (ts *testServer) authorizeURL(req authorizeRequest) string {
	q := url.Values{"response_type": {"code"}, "client_id": {req.clientID}}
	set := func(name, value string) {
		if value != "" {
			q.Set(name, value)
		}
	}
	set("redirect_uri", req.redirectURI)
	set("scope", req.scope)
	set("state", req.state)
	set("resource", req.resource)
	set("code_challenge", req.challenge)
	set("code_challenge_method", req.method)
	for name, values := range req.extra {
		q[name] = values
	}
	return ts.issuer + "/authorize?" + q.Encode()
}

// browser is a user agent with a cookie jar that does not follow
// redirects, so that tests see them.
type browser struct {
	t      *testing.T
	client *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, client: &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// page is a response as a browser sees it.
type page struct {
	status   int
	header   http.Header
	body     string
	url      *url.URL
	location *url.URL
}

func (b *browser) do(method, target string, form url.Values) *page {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	p := &page{status: resp.StatusCode, header: resp.Header, body: string(raw), url: req.URL}
	if location := resp.Header.Get("Location"); location != "" {
		if p.location, err = req.URL.Parse(location); err != nil {
			b.t.Fatal(err)
		}
	}
	return p
}

func (b *browser) get(target string) *page { return b.do(http.MethodGet, target, nil) }

var (
	formTag  = regexp.MustCompile(`(?is)<form\b[^>]*>`)
	inputTag = regexp.MustCompile(`(?is)<input\b[^>]*>`)
	attrs    = regexp.MustCompile(`(?is)\s([a-z_-]+)\s*=\s*"([^"]*)"`)
)

func tagAttributes(tag string) map[string]string {
	found := map[string]string{}
	for _, m := range attrs.FindAllStringSubmatch(tag, -1) {
		found[strings.ToLower(m[1])] = html.UnescapeString(m[2])
	}
	return found
}

// submit posts the page's form with its hidden fields and fields.
func (b *browser) submit(p *page, fields url.Values) *page {
	b.t.Helper()
	form := formTag.FindString(p.body)
	if form == "" {
		b.t.Fatalf("no form on the page (%d): %s", p.status, p.body)
	}
	formAttributes := tagAttributes(form)
	if !strings.EqualFold(formAttributes["method"], "post") {
		b.t.Fatalf("form method %q, want post", formAttributes["method"])
	}
	action, err := p.url.Parse(formAttributes["action"])
	if err != nil {
		b.t.Fatal(err)
	}
	values := hiddenFields(p)
	for name, list := range fields {
		values[name] = list
	}
	return b.do(http.MethodPost, action.String(), values)
}

func hiddenFields(p *page) url.Values {
	values := url.Values{}
	for _, input := range inputTag.FindAllString(p.body, -1) {
		a := tagAttributes(input)
		if strings.EqualFold(a["type"], "hidden") && a["name"] != "" {
			values.Add(a["name"], a["value"])
		}
	}
	return values
}

func isLoginPage(p *page) bool {
	return p.status == http.StatusOK && strings.Contains(p.body, `name="password"`)
}

func isConsentPage(p *page) bool {
	return p.status == http.StatusOK && strings.Contains(p.body, `name="consent"`)
}

// login opens authorizeURL and signs in; it returns the page that follows.
func (b *browser) login(authorizeURL, username, password string) *page {
	b.t.Helper()
	p := b.get(authorizeURL)
	if !isLoginPage(p) {
		b.t.Fatalf("GET %s: want the login page, got %d %v: %s", authorizeURL, p.status, p.location, p.body)
	}
	return b.submit(p, url.Values{"username": {username}, "password": {password}})
}

// authorize runs a whole authorization as username, answering consent
// with answer when asked, and returns the redirect back to the client.
func (b *browser) authorize(authorizeURL, username, password, answer string) *url.URL {
	b.t.Helper()
	p := b.login(authorizeURL, username, password)
	if isConsentPage(p) {
		p = b.submit(p, url.Values{"consent": {answer}})
	}
	if p.status != http.StatusSeeOther || p.location == nil {
		b.t.Fatalf("want a redirect to the client, got %d: %s", p.status, p.body)
	}
	return p.location
}

// codeFor runs an authorization for a client with PKCE and returns the
// code and the verifier.
func (ts *testServer) codeFor(t *testing.T, clientID, redirectURI, scope, resource string) (code, verifier string) {
	t.Helper()
	verifier, challenge := newPKCE()
	back := newBrowser(t).authorize(ts.authorizeURL(authorizeRequest{
		clientID: clientID, redirectURI: redirectURI, scope: scope, state: "state-" + randomID(),
		resource: resource, challenge: challenge, method: "S256",
	}), "alice", "alice-password", "allow")
	code = back.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in %s", back)
	}
	return code, verifier
}

// tokenResponse is a token endpoint answer.
type tokenResponse struct {
	status int
	header http.Header
	body   map[string]any
}

func (r tokenResponse) str(name string) string {
	s, _ := r.body[name].(string)
	return s
}

// post sends a form to an endpoint, with HTTP Basic credentials when
// clientID is given with a secret.
func (ts *testServer) post(path string, form url.Values, clientID, secret string) tokenResponse {
	ts.t.Helper()
	req, err := http.NewRequest(http.MethodPost, ts.issuer+path, strings.NewReader(form.Encode()))
	if err != nil {
		ts.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if secret != "" {
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	answer := tokenResponse{status: resp.StatusCode, header: resp.Header, body: map[string]any{}}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &answer.body); err != nil {
			ts.t.Fatalf("POST %s: %d, not JSON: %s", path, resp.StatusCode, raw)
		}
	}
	return answer
}

// exchangeCode redeems a code at the token endpoint.
func (ts *testServer) exchangeCode(clientID, secret, code, verifier, redirectURI string) tokenResponse {
	ts.t.Helper()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}}
	if verifier != "" {
		form.Set("code_verifier", verifier)
	}
	if secret == "" {
		form.Set("client_id", clientID)
	}
	return ts.post("/token", form, clientID, secret)
}

func (ts *testServer) introspect(token string) tokenResponse {
	ts.t.Helper()
	return ts.post("/introspect", url.Values{"token": {token}}, "resource-server", resourceSecret)
}

// verifyJWT checks token against the published JWKS, as a resource server
// would, and returns its header and claims.
func (ts *testServer) verifyJWT(token string) (jose.Header, map[string]any) {
	t := ts.t
	t.Helper()
	resp, err := http.Get(ts.issuer + "/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var jwks jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&jwks); err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	if err != nil {
		t.Fatalf("not a JWS: %v", err)
	}
	keys := jwks.Key(parsed.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q is not published", parsed.Headers[0].KeyID)
	}
	var claims map[string]any
	if err := parsed.Claims(keys[0].Key, &claims); err != nil {
		t.Fatalf("signature: %v", err)
	}
	return parsed.Headers[0], claims
}

func assertNoStore(t *testing.T, header http.Header) {
	t.Helper()
	if header.Get("Cache-Control") != "no-store" || header.Get("Pragma") != "no-cache" {
		t.Errorf("Cache-Control %q, Pragma %q; want no-store, no-cache", header.Get("Cache-Control"), header.Get("Pragma"))
	}
}
