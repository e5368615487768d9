package authserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// fakeIdP is an OpenID Provider that signs in one user, carol, without
// asking, and issues the ID token the test shapes.
type fakeIdP struct {
	t                      *testing.T
	server                 *httptest.Server
	key                    *ecdsa.PrivateKey
	clientID, clientSecret string

	mu     sync.Mutex
	grants map[string]url.Values // code → the authorization request
	// deny answers the authorization request with access_denied.
	deny bool
	// shape changes the ID token's claims before signing.
	shape func(claims map[string]any)
	// signWith signs the ID token with another key than the published one.
	signWith *ecdsa.PrivateKey
}

func newFakeIdP(t *testing.T) *fakeIdP {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	idp := &fakeIdP{t: t, key: key, clientID: "mcpbroker", clientSecret: "idp secret&more", grants: map[string]url.Values{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{
			"issuer": idp.server.URL, "authorization_endpoint": idp.server.URL + "/authorize",
			"token_endpoint": idp.server.URL + "/token", "jwks_uri": idp.server.URL + "/jwks",
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "idp-key", Algorithm: "ES256", Use: "sig"}}})
	})
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		back, err := url.Parse(q.Get("redirect_uri"))
		if err != nil || q.Get("client_id") != idp.clientID || q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" || q.Get("nonce") == "" {
			http.Error(w, "bad authorization request", http.StatusBadRequest)
			return
		}
		answer := url.Values{"state": {q.Get("state")}}
		idp.mu.Lock()
		if idp.deny {
			answer.Set("error", "access_denied")
		} else {
			code := randomID()
			idp.grants[code] = q
			answer.Set("code", code)
		}
		idp.mu.Unlock()
		back.RawQuery = answer.Encode()
		http.Redirect(w, r, back.String(), http.StatusSeeOther)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		id, secret, _ := r.BasicAuth()
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
		idp.mu.Lock()
		grant, ok := idp.grants[r.PostFormValue("code")]
		delete(idp.grants, r.PostFormValue("code"))
		idp.mu.Unlock()
		sum := sha256.Sum256([]byte(r.PostFormValue("code_verifier")))
		if id != idp.clientID || secret != idp.clientSecret || !ok || grant.Get("redirect_uri") != r.PostFormValue("redirect_uri") ||
			base64.RawURLEncoding.EncodeToString(sum[:]) != grant.Get("code_challenge") {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
			return
		}
		now := time.Now()
		claims := map[string]any{
			"iss": idp.server.URL, "sub": "idp-user-42", "aud": idp.clientID, "exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(),
			"nonce": grant.Get("nonce"), "preferred_username": "carol", "name": "Carol Federated", "email": "carol@idp.example",
			"groups": []string{"ops", "on-call"},
		}
		if idp.shape != nil {
			idp.shape(claims)
		}
		signingKey := idp.key
		if idp.signWith != nil {
			signingKey = idp.signWith
		}
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: signingKey},
			(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "idp-key"))
		if err != nil {
			t.Error(err)
			return
		}
		token, err := jwt.Signed(signer).Claims(claims).Serialize()
		if err != nil {
			t.Error(err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"access_token": "idp-access", "token_type": "Bearer", "id_token": token})
	})
	idp.server = httptest.NewServer(mux)
	t.Cleanup(idp.server.Close)
	return idp
}

func newFederatedServer(t *testing.T, idp *fakeIdP) *testServer {
	return newTestServer(t, withOptions(func(o *Options) {
		o.Users = nil
		o.Federation = &Federation{DiscoveryURL: idp.server.URL + "/.well-known/openid-configuration", ClientID: idp.clientID, ClientSecret: idp.clientSecret}
	}))
}

// federatedAuthorize follows the browser to the identity provider and back
// and returns the page the callback answers with.
func federatedAuthorize(t *testing.T, b *browser, authorizeURL string) *page {
	t.Helper()
	toProvider := b.get(authorizeURL)
	if toProvider.status != http.StatusSeeOther || toProvider.location == nil {
		t.Fatalf("GET /authorize: %d, want a redirect to the identity provider: %s", toProvider.status, toProvider.body)
	}
	back := b.get(toProvider.location.String())
	if back.status != http.StatusSeeOther || back.location == nil {
		t.Fatalf("identity provider: %d %s", back.status, back.body)
	}
	return b.get(back.location.String())
}

func TestFederatedSignIn(t *testing.T) {
	idp := newFakeIdP(t)
	ts := newFederatedServer(t, idp)
	verifier, challenge := newPKCE()
	authorizeURL := ts.authorizeURL(authorizeRequest{clientID: "agent", redirectURI: agentRedirect, scope: "mcp", state: "state-12345", challenge: challenge, method: "S256"})

	b := newBrowser(t)
	toProvider := b.get(authorizeURL)
	if toProvider.location == nil || toProvider.location.Host != idp.server.Listener.Addr().String() {
		t.Fatalf("GET /authorize: %d %v, want the identity provider", toProvider.status, toProvider.location)
	}
	sent := toProvider.location.Query()
	if sent.Get("redirect_uri") != ts.issuer+"/callback" || sent.Get("scope") != "openid profile email" || sent.Get("code_challenge") == "" {
		t.Errorf("request to the identity provider: %v", sent)
	}
	consent := b.get(b.get(toProvider.location.String()).location.String())
	if !isConsentPage(consent) {
		t.Fatalf("callback: %d, want the consent page: %s", consent.status, consent.body)
	}
	back := b.submit(consent, url.Values{"consent": {"allow"}})
	if back.location == nil || back.location.Query().Get("code") == "" || back.location.Query().Get("iss") != ts.issuer {
		t.Fatalf("after consent: %d %v", back.status, back.location)
	}
	tokens := ts.exchangeCode("agent", "", back.location.Query().Get("code"), verifier, agentRedirect)
	_, claims := ts.verifyJWT(tokens.str("access_token"))
	if claims["sub"] != "idp-user-42" || claims["name"] != "Carol Federated" || !slices.Equal(stringList(claims["groups"]), []string{"ops", "on-call"}) {
		t.Errorf("claims %v", claims)
	}
	if info := ts.introspect(tokens.str("access_token")); info.str("username") != "carol" {
		t.Errorf("introspection %v, want username carol", info.body)
	}

	// Consent is remembered for the provider's subject.
	again := federatedAuthorize(t, newBrowser(t), authorizeURL)
	if again.status != http.StatusSeeOther || again.location.Query().Get("code") == "" {
		t.Errorf("second authorization: %d %v, want the code straight away", again.status, again.location)
	}
}

func TestFederatedSignInRefusesWhatItCannotVerify(t *testing.T) {
	idp := newFakeIdP(t)
	ts := newFederatedServer(t, idp)
	_, challenge := newPKCE()
	authorizeURL := ts.authorizeURL(authorizeRequest{clientID: "agent", redirectURI: agentRedirect, scope: "mcp", state: "state-12345", challenge: challenge, method: "S256"})
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tests := []struct {
		name     string
		deny     bool
		shape    func(map[string]any)
		signWith *ecdsa.PrivateKey
	}{
		{"provider denies", true, nil, nil},
		{"wrong nonce", false, func(c map[string]any) { c["nonce"] = "other" }, nil},
		{"no nonce", false, func(c map[string]any) { delete(c, "nonce") }, nil},
		{"another audience", false, func(c map[string]any) { c["aud"] = "someone-else" }, nil},
		{"several audiences without azp", false, func(c map[string]any) { c["aud"] = []string{idp.clientID, "someone-else"} }, nil},
		{"another issuer", false, func(c map[string]any) { c["iss"] = "https://evil.example" }, nil},
		{"expired", false, func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }, nil},
		{"no exp", false, func(c map[string]any) { delete(c, "exp") }, nil},
		{"no subject", false, func(c map[string]any) { delete(c, "sub") }, nil},
		{"unknown key", false, nil, otherKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp.mu.Lock()
			idp.deny, idp.shape, idp.signWith = tt.deny, tt.shape, tt.signWith
			idp.mu.Unlock()
			got := federatedAuthorize(t, newBrowser(t), authorizeURL)
			if got.status != http.StatusSeeOther || got.location == nil {
				t.Fatalf("%d, want a redirect to the client: %s", got.status, got.body)
			}
			q := got.location.Query()
			if q.Get("error") != "access_denied" || q.Get("code") != "" || q.Get("state") != "state-12345" {
				t.Errorf("redirect %v, want access_denied", q)
			}
		})
	}
	idp.mu.Lock()
	idp.deny, idp.shape, idp.signWith = false, nil, nil
	idp.mu.Unlock()

	t.Run("state from another sign-in", func(t *testing.T) {
		b := newBrowser(t)
		back := b.get(b.get(authorizeURL).location.String()).location
		q := back.Query()
		q.Set("state", randomID())
		back.RawQuery = q.Encode()
		if got := b.get(back.String()); got.status != http.StatusForbidden || got.location != nil {
			t.Errorf("%d %v, want 403 and no redirect", got.status, got.location)
		}
	})
	t.Run("callback without the cookie", func(t *testing.T) {
		back := newBrowser(t).get(newBrowser(t).get(authorizeURL).location.String()).location
		if got := newBrowser(t).get(back.String()); got.status != http.StatusBadRequest || got.location != nil {
			t.Errorf("%d %v, want 400 and no redirect", got.status, got.location)
		}
	})
}

func TestFederationOptions(t *testing.T) {
	ts := newTestServer(t)
	tests := []struct {
		name       string
		federation Federation
		users      bool
		want       string
	}{
		{"plain http", Federation{DiscoveryURL: "http://idp.example/.well-known/openid-configuration", ClientID: "x"}, false, "federation.discoveryURL"},
		{"not a discovery URL", Federation{DiscoveryURL: "https://idp.example/", ClientID: "x"}, false, "federation.discoveryURL"},
		{"no client", Federation{DiscoveryURL: "https://idp.example/.well-known/openid-configuration"}, false, "federation.clientID"},
		{"with local users", Federation{DiscoveryURL: "https://idp.example/.well-known/openid-configuration", ClientID: "x"}, true, "users"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := ts.defaultOptions()
			opts.DB, opts.Keys, opts.Minter = ts.db, ts.keys, ts.minter
			if !tt.users {
				opts.Users = nil
			}
			opts.Federation = &tt.federation
			_, err := New(t.Context(), opts)
			if err == nil || !strings.Contains(err.Error(), tt.want+":") {
				t.Fatalf("New: %v, want a problem at %s", err, tt.want)
			}
		})
	}
}
