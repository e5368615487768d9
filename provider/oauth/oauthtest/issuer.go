package oauthtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Audience is the audience the issuer's tokens carry unless Options say
// another.
const Audience = "https://mcp.example/mcp"

// MetadataPath is where the issuer serves its RFC 8414 metadata, followed
// by the issuer's path (Options.Path) when it has one.
const MetadataPath = "/.well-known/oauth-authorization-server"

// Key is a signing key and the kid under which an issuer may publish it.
type Key struct {
	ID        string
	Algorithm string
	Private   crypto.Signer
}

// NewKey makes a key for algorithm (ES256, ES384, RS256 or EdDSA) under the
// kid id, for a test to publish (Issuer.Publish) or to forge with.
func NewKey(t testing.TB, id, algorithm string) *Key {
	t.Helper()
	var private crypto.Signer
	var err error
	switch algorithm {
	case "ES256":
		private, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		private, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "RS256":
		private, err = rsa.GenerateKey(rand.Reader, 2048)
	case "EdDSA":
		_, private, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("oauthtest: cannot make a key for %q", algorithm)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &Key{ID: id, Algorithm: algorithm, Private: private}
}

// JWK is the public key as an issuer publishes it.
func (key *Key) JWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: key.Private.Public(), KeyID: key.ID, Use: "sig"}
}

// Token signs claims with key under the header an access token has (alg,
// kid, typ at+jwt), after edit (when not nil) has changed header and
// claims. When the header then names an algorithm Sign does not know, the
// key's own algorithm signs.
func (key *Key) Token(t testing.TB, claims map[string]any, edit func(header, claims map[string]any)) string {
	t.Helper()
	header := map[string]any{"alg": key.Algorithm, "kid": key.ID, "typ": "at+jwt"}
	if edit != nil {
		edit(header, claims)
	}
	algorithm, _ := header["alg"].(string)
	switch algorithm {
	case "ES256", "ES384", "RS256", "PS256", "EdDSA":
	default:
		algorithm = key.Algorithm
	}
	return SignRaw(t, algorithm, key.Private, JSON(t, header), JSON(t, claims))
}

// Options change an issuer from the defaults; nil means the defaults.
type Options struct {
	// Path follows the server's URL in the issuer identifier ("/tenant");
	// the metadata is then at MetadataPath + Path (RFC 8414 §3.1) and the
	// keys at Path + "/jwks".
	Path string
	// Audience is the aud of Claims; the constant Audience when empty.
	Audience string
}

// Issuer is an authorization server over httptest: RFC 8414 metadata and a
// JWKS publishing an ES256, an ES384, an RS256 and an EdDSA key.
//
// EC, EC384, Ed and AttackerEC are the issuer's own; RSA and AttackerRSA
// are made once per test binary and shared by its issuers, as making RSA
// keys is slow.
type Issuer struct {
	*httptest.Server
	// ID is the issuer identifier: the server's URL, then Options.Path.
	ID string
	// Audience is the aud of Claims.
	Audience string

	EC, EC384, RSA, Ed *Key
	// Attacker keys are never published; they reuse the kids of EC and RSA.
	AttackerEC, AttackerRSA *Key
	// Down, while set, makes every endpoint answer 503.
	Down atomic.Bool

	path      string
	mux       *http.ServeMux
	mu        sync.Mutex
	hits      map[string]int
	metadata  map[string]any
	published []*Key
	jwks      []byte // when set, served instead of the published keys
}

var sharedRSA struct {
	once           sync.Once
	real, attacker *rsa.PrivateKey
	err            error
}

// NewIssuer starts an issuer that stops when the test ends.
func NewIssuer(t testing.TB, options *Options) *Issuer {
	t.Helper()
	if options == nil {
		options = &Options{}
	}
	sharedRSA.once.Do(func() {
		if sharedRSA.real, sharedRSA.err = rsa.GenerateKey(rand.Reader, 2048); sharedRSA.err == nil {
			sharedRSA.attacker, sharedRSA.err = rsa.GenerateKey(rand.Reader, 2048)
		}
	})
	if sharedRSA.err != nil {
		t.Fatal(sharedRSA.err)
	}
	issuer := &Issuer{
		Audience: options.Audience, path: options.Path, mux: http.NewServeMux(), hits: map[string]int{},
		EC: NewKey(t, "ec-1", "ES256"), EC384: NewKey(t, "ec384-1", "ES384"), Ed: NewKey(t, "ed-1", "EdDSA"),
		RSA:        &Key{ID: "rsa-1", Algorithm: "RS256", Private: sharedRSA.real},
		AttackerEC: NewKey(t, "ec-1", "ES256"), AttackerRSA: &Key{ID: "rsa-1", Algorithm: "RS256", Private: sharedRSA.attacker},
	}
	if issuer.Audience == "" {
		issuer.Audience = Audience
	}
	issuer.published = []*Key{issuer.EC, issuer.EC384, issuer.RSA, issuer.Ed}
	issuer.mux.HandleFunc(MetadataPath+issuer.path, issuer.serveMetadata)
	issuer.mux.HandleFunc(issuer.path+"/jwks", issuer.serveJWKS)
	issuer.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		issuer.mu.Lock()
		issuer.hits[r.URL.Path]++
		issuer.mu.Unlock()
		if issuer.Down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		issuer.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(issuer.Close)
	issuer.ID = issuer.URL + issuer.path
	issuer.metadata = map[string]any{"issuer": issuer.ID, "jwks_uri": issuer.ID + "/jwks", "token_endpoint": issuer.ID + "/token"}
	return issuer
}

// MetadataURL is where the issuer's RFC 8414 metadata is.
func (issuer *Issuer) MetadataURL() string { return issuer.URL + MetadataPath + issuer.path }

// SetMetadata sets members of the metadata document; a nil value removes
// the member.
func (issuer *Issuer) SetMetadata(members map[string]any) {
	issuer.mu.Lock()
	defer issuer.mu.Unlock()
	for name, value := range members {
		if value == nil {
			delete(issuer.metadata, name)
			continue
		}
		issuer.metadata[name] = value
	}
}

// Publish makes keys the issuer's JWKS, in place of what it published.
func (issuer *Issuer) Publish(keys ...*Key) {
	issuer.mu.Lock()
	defer issuer.mu.Unlock()
	issuer.published = keys
}

// SetJWKS serves body as the JWKS instead of the published keys; nil
// serves the keys again.
func (issuer *Issuer) SetJWKS(body []byte) {
	issuer.mu.Lock()
	defer issuer.mu.Unlock()
	issuer.jwks = body
}

// Handle adds an endpoint to the issuer (an http.ServeMux pattern).
func (issuer *Issuer) Handle(pattern string, handler http.Handler) {
	issuer.mux.Handle(pattern, handler)
}

// Hits is how many requests the issuer has had for path, answered or not.
func (issuer *Issuer) Hits(path string) int {
	issuer.mu.Lock()
	defer issuer.mu.Unlock()
	return issuer.hits[path]
}

func (issuer *Issuer) serveMetadata(w http.ResponseWriter, _ *http.Request) {
	issuer.mu.Lock()
	document := maps.Clone(issuer.metadata)
	issuer.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(document)
}

func (issuer *Issuer) serveJWKS(w http.ResponseWriter, _ *http.Request) {
	issuer.mu.Lock()
	body := issuer.jwks
	var set jose.JSONWebKeySet
	for _, key := range issuer.published {
		set.Keys = append(set.Keys, key.JWK())
	}
	issuer.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if body != nil {
		_, _ = w.Write(body)
		return
	}
	_ = json.NewEncoder(w).Encode(set)
}

// Claims are the claims of a valid access token issued at now.
func (issuer *Issuer) Claims(now time.Time) map[string]any {
	return map[string]any{
		"iss": issuer.ID, "sub": "alice", "aud": issuer.Audience, "client_id": "agent-app",
		"scope": "tools:read", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": "token-1",
	}
}

// Token is a token signed with key from the valid claims at now, after
// edit (when not nil) has changed header and claims (see Key.Token).
func (issuer *Issuer) Token(t testing.TB, now time.Time, key *Key, edit func(header, claims map[string]any)) string {
	t.Helper()
	return key.Token(t, issuer.Claims(now), edit)
}

// Mint signs claims with the EC key under an access token's header.
func (issuer *Issuer) Mint(t testing.TB, claims map[string]any) string {
	t.Helper()
	return issuer.EC.Token(t, claims, nil)
}

// Decode reads a compact JWS's header and claims without verifying
// anything, for tests that look inside the tokens they are given. It
// fails the test unless the token has three segments, the first two
// base64url JSON objects.
func Decode(t testing.TB, token string) (header, claims map[string]any) {
	t.Helper()
	segments := strings.Split(token, ".")
	if len(segments) != 3 {
		t.Fatalf("oauthtest: not a compact JWS: %d segments", len(segments))
	}
	decode := func(segment string) map[string]any {
		data, err := base64.RawURLEncoding.DecodeString(segment)
		if err != nil {
			t.Fatalf("oauthtest: JWS segment %q: %v", segment, err)
		}
		object := map[string]any{}
		if err := json.Unmarshal(data, &object); err != nil {
			t.Fatalf("oauthtest: JWS segment %s: %v", data, err)
		}
		return object
	}
	return decode(segments[0]), decode(segments[1])
}

// B64 is unpadded base64url.
func B64(data []byte) string { return base64.RawURLEncoding.EncodeToString(data) }

// JSON is v encoded, failing the test if it cannot be.
func JSON(t testing.TB, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// SignRaw signs header and payload bytes exactly as given.
func SignRaw(t testing.TB, algorithm string, key crypto.Signer, header, payload []byte) string {
	t.Helper()
	input := B64(header) + "." + B64(payload)
	return input + "." + B64(Sign(t, algorithm, key, []byte(input)))
}

// Sign makes the JWS signature of input with algorithm.
func Sign(t testing.TB, algorithm string, key crypto.Signer, input []byte) []byte {
	t.Helper()
	digest := func(h crypto.Hash) []byte {
		hasher := h.New()
		hasher.Write(input)
		return hasher.Sum(nil)
	}
	var out []byte
	var err error
	switch algorithm {
	case "ES256", "ES384":
		h, size := crypto.SHA256, 32
		if algorithm == "ES384" {
			h, size = crypto.SHA384, 48
		}
		r, s, signErr := ecdsa.Sign(rand.Reader, key.(*ecdsa.PrivateKey), digest(h))
		out, err = make([]byte, 2*size), signErr
		if err == nil {
			r.FillBytes(out[:size])
			s.FillBytes(out[size:])
		}
	case "RS256":
		out, err = rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, digest(crypto.SHA256))
	case "PS256":
		out, err = rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, digest(crypto.SHA256), nil)
	case "EdDSA":
		out = ed25519.Sign(key.(ed25519.PrivateKey), input)
	default:
		t.Fatalf("oauthtest: cannot sign with %q", algorithm)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}
