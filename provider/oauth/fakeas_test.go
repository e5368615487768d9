package oauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// This file holds the test fixtures: keys, a token minter that controls
// every byte of header and payload, a fake authorization server served
// over httptest, and a settable clock.

// testKey is a signing key and the JWK the fake AS publishes for it.
type testKey struct {
	kid     string
	alg     string
	private crypto.Signer
}

func (k *testKey) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.private.Public(), KeyID: k.kid, Use: "sig"}
}

var (
	keysOnce sync.Once
	ecKey    *testKey // ES256, P-256
	rsaKey   *testKey // RS256, 2048 bits
	edKey    *testKey // EdDSA
	ec384Key *testKey // ES384, P-384
	// Not published by the fake AS unless a test says so.
	attackerEC  *testKey
	rotatedEC   *testKey
	rotatedEC2  *testKey
	attackerRSA *testKey
)

func loadKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		ec := func(kid, alg string, curve elliptic.Curve) *testKey {
			k, err := ecdsa.GenerateKey(curve, rand.Reader)
			if err != nil {
				panic(err)
			}
			return &testKey{kid: kid, alg: alg, private: k}
		}
		rsaPrivate, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		attackerRSAPrivate, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		_, edPrivate, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		ecKey = ec("ec-1", "ES256", elliptic.P256())
		ec384Key = ec("ec384-1", "ES384", elliptic.P384())
		rsaKey = &testKey{kid: "rsa-1", alg: "RS256", private: rsaPrivate}
		edKey = &testKey{kid: "ed-1", alg: "EdDSA", private: edPrivate}
		attackerEC = ec("ec-1", "ES256", elliptic.P256()) // same kid as the real key
		rotatedEC = ec("ec-2", "ES256", elliptic.P256())
		rotatedEC2 = ec("ec-3", "ES256", elliptic.P256())
		attackerRSA = &testKey{kid: "rsa-1", alg: "RS256", private: attackerRSAPrivate}
	})
}

func b64(data []byte) string { return base64.RawURLEncoding.EncodeToString(data) }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// signRaw signs header and payload bytes exactly as given with alg.
func signRaw(t testing.TB, alg string, key crypto.Signer, header, payload []byte) string {
	t.Helper()
	input := b64(header) + "." + b64(payload)
	return input + "." + b64(signature(t, alg, key, []byte(input)))
}

func signature(t testing.TB, alg string, key crypto.Signer, input []byte) []byte {
	t.Helper()
	hash := func(h crypto.Hash) []byte {
		hasher := h.New()
		hasher.Write(input)
		return hasher.Sum(nil)
	}
	switch alg {
	case "ES256", "ES384", "ES512":
		h, size := map[string]crypto.Hash{"ES256": crypto.SHA256, "ES384": crypto.SHA384, "ES512": crypto.SHA512}[alg], map[string]int{"ES256": 32, "ES384": 48, "ES512": 66}[alg]
		r, s, err := ecdsa.Sign(rand.Reader, key.(*ecdsa.PrivateKey), hash(h))
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, 2*size)
		r.FillBytes(out[:size])
		s.FillBytes(out[size:])
		return out
	case "RS256":
		out, err := rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, hash(crypto.SHA256))
		if err != nil {
			t.Fatal(err)
		}
		return out
	case "PS256":
		out, err := rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, hash(crypto.SHA256), nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	case "EdDSA":
		return ed25519.Sign(key.(ed25519.PrivateKey), input)
	}
	t.Fatalf("signature: unsupported alg %s", alg)
	return nil
}

// fakeAS is an authorization server over httptest: RFC 8414 metadata,
// JWKS and RFC 7662 introspection, with switches for failures.
type fakeAS struct {
	t      testing.TB
	server *httptest.Server
	issuer string

	mu                sync.Mutex
	published         []*testKey
	metadataIssuer    string                    // "" means issuer
	introspection     map[string]map[string]any // token → response
	introspectionRaw  []byte                    // when set, served verbatim
	clientID, secret  string
	lastAuthorization string
	lastForm          url.Values
	jwksBody          []byte // when set, served verbatim

	down              atomic.Bool // every endpoint answers 503
	metadataHits      atomic.Int32
	jwksHits          atomic.Int32
	introspectionHits atomic.Int32
}

const (
	testClientID = "broker client"
	testSecret   = "s3cr:t+/&=é"
	testAudience = "https://broker.example/mcp"
)

func newFakeAS(t testing.TB, keys ...*testKey) *fakeAS {
	t.Helper()
	as := &fakeAS{t: t, published: keys, introspection: map[string]map[string]any{}, clientID: testClientID, secret: testSecret}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", as.serveMetadata)
	mux.HandleFunc("GET /jwks", as.serveJWKS)
	mux.HandleFunc("POST /introspect", as.serveIntrospection)
	as.server = httptest.NewServer(mux)
	t.Cleanup(as.server.Close)
	as.issuer = as.server.URL
	return as
}

func (as *fakeAS) metadataURL() string {
	return as.server.URL + "/.well-known/oauth-authorization-server"
}

func (as *fakeAS) setMetadataIssuer(issuer string) {
	as.mu.Lock()
	defer as.mu.Unlock()
	as.metadataIssuer = issuer
}

func (as *fakeAS) publish(keys ...*testKey) {
	as.mu.Lock()
	defer as.mu.Unlock()
	as.published = keys
}

func (as *fakeAS) serveMetadata(w http.ResponseWriter, r *http.Request) {
	as.metadataHits.Add(1)
	if as.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	as.mu.Lock()
	issuer := as.metadataIssuer
	as.mu.Unlock()
	if issuer == "" {
		issuer = as.issuer
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"issuer":                 issuer,
		"jwks_uri":               as.server.URL + "/jwks",
		"introspection_endpoint": as.server.URL + "/introspect",
		"token_endpoint":         as.server.URL + "/token",
	})
}

func (as *fakeAS) serveJWKS(w http.ResponseWriter, r *http.Request) {
	as.jwksHits.Add(1)
	if as.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	as.mu.Lock()
	defer as.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if as.jwksBody != nil {
		w.Write(as.jwksBody)
		return
	}
	var set jose.JSONWebKeySet
	for _, k := range as.published {
		set.Keys = append(set.Keys, k.jwk())
	}
	json.NewEncoder(w).Encode(set)
}

func (as *fakeAS) serveIntrospection(w http.ResponseWriter, r *http.Request) {
	as.introspectionHits.Add(1)
	if as.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	as.mu.Lock()
	defer as.mu.Unlock()
	as.lastAuthorization = r.Header.Get("Authorization")
	user, pass, ok := r.BasicAuth()
	if !ok || user != urlEncode(as.clientID) || pass != urlEncode(as.secret) || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		w.Header().Set("WWW-Authenticate", `Basic realm="as"`)
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	as.lastForm = r.PostForm
	w.Header().Set("Content-Type", "application/json")
	if as.introspectionRaw != nil {
		w.Write(as.introspectionRaw)
		return
	}
	response, found := as.introspection[r.PostForm.Get("token")]
	if !found {
		response = map[string]any{"active": false}
	}
	json.NewEncoder(w).Encode(response)
}

func (as *fakeAS) setIntrospection(token string, response map[string]any) {
	as.mu.Lock()
	defer as.mu.Unlock()
	if response == nil {
		delete(as.introspection, token)
		return
	}
	as.introspection[token] = response
}

// claims returns a valid RFC 9068 claim set for this AS.
func (as *fakeAS) claims(now time.Time) map[string]any {
	return map[string]any{
		"iss":       as.issuer,
		"sub":       "alice",
		"aud":       testAudience,
		"exp":       now.Add(10 * time.Minute).Unix(),
		"iat":       now.Add(-time.Minute).Unix(),
		"nbf":       now.Add(-time.Minute).Unix(),
		"scope":     "ledger:read ledger:write",
		"client_id": "agent-1",
		"jti":       "token-1",
	}
}

// mint signs claims with key under the default RFC 9068 header, after
// edit has changed header or claims.
func mint(t testing.TB, key *testKey, claims map[string]any, edit func(header, claims map[string]any)) string {
	t.Helper()
	header := map[string]any{"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}
	if edit != nil {
		edit(header, claims)
	}
	alg, _ := header["alg"].(string)
	switch alg {
	case "ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA":
	default:
		alg = key.alg // the header lies; sign with the key's own algorithm
	}
	return signRaw(t, alg, key.private, mustJSON(t, header), mustJSON(t, claims))
}

// testClock is a settable clock for Options.Now.
type testClock struct{ now atomic.Int64 }

func newClock() *testClock {
	c := &testClock{}
	c.now.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *testClock) Now() time.Time          { return time.Unix(0, c.now.Load()) }
func (c *testClock) Advance(d time.Duration) { c.now.Add(int64(d)) }

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newTestVerifier builds a verifier for as with a JWT server config that
// edit may change.
func newTestVerifier(t testing.TB, as *fakeAS, clock *testClock, edit func(*ServerConfig), opts ...func(*Options)) *Verifier {
	t.Helper()
	config := ServerConfig{
		MetadataURL:       as.metadataURL(),
		ExpectedAudiences: []string{testAudience},
		Method:            MethodJWT,
		ClientID:          testClientID,
		ClientSecret:      testSecret,
	}
	if edit != nil {
		edit(&config)
	}
	options := Options{Logger: discardLogger(), Now: clock.Now}
	for _, o := range opts {
		o(&options)
	}
	v, err := NewVerifier([]ServerConfig{config}, options)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// urlEncode is what client_secret_basic does to id and secret before
// Basic encoding (RFC 6749 §2.3.1).
func urlEncode(s string) string { return url.QueryEscape(s) }
