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
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Audience is the audience the issuer's tokens carry and verifiers expect.
const Audience = "https://mcp.example/mcp"

// MetadataPath is where the issuer serves its RFC 8414 metadata.
const MetadataPath = "/.well-known/oauth-authorization-server"

// Key is a signing key and the kid under which the issuer may publish it.
type Key struct {
	ID        string
	Algorithm string
	Private   crypto.Signer
}

// Issuer is an authorization server over httptest publishing an ES256, an
// ES384, an RS256 and an EdDSA key; its URL is the issuer.
type Issuer struct {
	*httptest.Server
	EC, EC384, RSA, Ed *Key
	// Attacker keys are never published; AttackerEC reuses EC's kid.
	AttackerEC, AttackerRSA *Key
}

// NewIssuer starts an issuer that stops when the test ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	ec := func(id, algorithm string, curve elliptic.Curve) *Key {
		private, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return &Key{ID: id, Algorithm: algorithm, Private: private}
	}
	rsaKey := func(id string) *Key {
		private, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return &Key{ID: id, Algorithm: "RS256", Private: private}
	}
	_, edPrivate, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	issuer := &Issuer{
		EC: ec("ec-1", "ES256", elliptic.P256()), EC384: ec("ec384-1", "ES384", elliptic.P384()),
		RSA: rsaKey("rsa-1"), Ed: &Key{ID: "ed-1", Algorithm: "EdDSA", Private: edPrivate},
		AttackerEC: ec("ec-1", "ES256", elliptic.P256()), AttackerRSA: rsaKey("rsa-1"),
	}
	issuer.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var document any
		switch r.URL.Path {
		case MetadataPath:
			document = map[string]any{"issuer": issuer.URL, "jwks_uri": issuer.URL + "/jwks", "token_endpoint": issuer.URL + "/token"}
		case "/jwks":
			var keys []jose.JSONWebKey
			for _, key := range []*Key{issuer.EC, issuer.EC384, issuer.RSA, issuer.Ed} {
				keys = append(keys, jose.JSONWebKey{Key: key.Private.Public(), KeyID: key.ID, Use: "sig"})
			}
			document = jose.JSONWebKeySet{Keys: keys}
		default:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(document)
	}))
	t.Cleanup(issuer.Close)
	return issuer
}

// Claims are the claims of a valid access token issued at now.
func (issuer *Issuer) Claims(now time.Time) map[string]any {
	return map[string]any{
		"iss": issuer.URL, "sub": "alice", "aud": Audience, "client_id": "agent-app",
		"scope": "tools:read", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": "token-1",
	}
}

// Token is a token signed with key from the valid claims at now, after
// edit (when not nil) has changed header and claims. When the header names
// an algorithm the key cannot sign with, the key's own algorithm signs.
func (issuer *Issuer) Token(t testing.TB, now time.Time, key *Key, edit func(header, claims map[string]any)) string {
	t.Helper()
	header := map[string]any{"alg": key.Algorithm, "kid": key.ID, "typ": "at+jwt"}
	claims := issuer.Claims(now)
	if edit != nil {
		edit(header, claims)
	}
	algorithm, _ := header["alg"].(string)
	switch algorithm {
	case "ES256", "ES384", "RS256", "PS256", "EdDSA":
	default:
		algorithm = key.Algorithm
	}
	return SignRaw(t, algorithm, key.Private, mustJSON(t, header), mustJSON(t, claims))
}

// B64 is unpadded base64url.
func B64(data []byte) string { return base64.RawURLEncoding.EncodeToString(data) }

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

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
