package bench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// authBroker is plainBroker with OAuth: every request needs a JWT access
// token from the authorization server whose metadata is at %[2]q, for the
// audience %[3]q, the broker's own MCP endpoint. %[1]q is the upstream.
const authBroker = `
version: 1
mcpProvider:
  enabled: true
  transports:
    stream: {enabled: true, path: /mcp, session: {enabled: true, allowClientTermination: true}}
  authorization:
    oauth:
      enabled: true
      servers:
        - wellKnownEndpoint: %[2]q
          tokenValidation: {method: jwt, expectedAudiences: [%[3]q]}
apps:
  - name: ledger
    type: mcpProxy
    toolNamespace: {disabled: true}
    upstream: {transport: stream, stream: {url: %[1]q}}
`

// authBrokerPath runs the broker from yaml (see authBroker) with its own
// authorization server; each session gets a token for a different user.
// The verifier caches a token once verified, so after the warm-up the row
// measures authentication with a warm cache: parsing the Authorization
// header and a cache lookup per request.
func authBrokerPath(yaml string) func(testing.TB, string) target {
	return func(tb testing.TB, upstream string) target {
		tb.Helper()
		as := startAuthServer(tb)
		ln := listen(tb)
		audience := brokerEndpoint(ln) // known before the config is written
		endpoint := serveBroker(tb, ln, fmt.Sprintf(yaml, upstream, as.metadataURL(), audience))
		return target{
			endpoint: endpoint,
			token:    func(i int) string { return as.mint(tb, audience, fmt.Sprintf("bench-user-%d", i)) },
		}
	}
}

// authServer is the bench's authorization server: metadata and a JWKS with
// one ES256 key over httptest, and that key to mint access tokens with.
type authServer struct {
	issuer string
	signer jose.Signer
}

const authKeyID = "bench-es256"

func startAuthServer(tb testing.TB) *authServer {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		&jose.SignerOptions{ExtraHeaders: map[jose.HeaderKey]any{"typ": "at+jwt", "kid": authKeyID}})
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	as := &authServer{issuer: srv.URL, signer: signer}
	mux.HandleFunc("/.well-known/oauth-authorization-server", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{
			"issuer":                   as.issuer,
			"jwks_uri":                 as.issuer + "/jwks",
			"token_endpoint":           as.issuer + "/token",
			"response_types_supported": []string{"code"},
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &key.PublicKey, KeyID: authKeyID, Algorithm: string(jose.ES256), Use: "sig"},
		}})
	})
	return as
}

func (as *authServer) metadataURL() string {
	return as.issuer + "/.well-known/oauth-authorization-server"
}

// mint signs an access token for subject at audience, valid for an hour.
func (as *authServer) mint(tb testing.TB, audience, subject string) string {
	tb.Helper()
	jti := make([]byte, 12)
	rand.Read(jti)
	now := time.Now()
	payload, err := json.Marshal(map[string]any{
		"iss": as.issuer, "sub": subject, "aud": audience,
		"client_id": "mcpbroker-bench", "scope": "mcp:tools",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": fmt.Sprintf("%x", jti),
	})
	if err != nil {
		tb.Fatal(err)
	}
	jws, err := as.signer.Sign(payload)
	if err != nil {
		tb.Fatal(err)
	}
	token, err := jws.CompactSerialize()
	if err != nil {
		tb.Fatal(err)
	}
	return token
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
