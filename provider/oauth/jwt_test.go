package oauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

// fixture is a test issuer publishing ES256, ES384, RS256 and EdDSA keys,
// a clock, and a verifier for the issuer.
type fixture struct {
	t     *testing.T
	as    *oauthtest.Issuer
	clock *testClock
	v     *Verifier
	// rotated (kid ec-2) is published only when a test rotates to it.
	rotated *oauthtest.Key
	// introspection is the issuer's RFC 7662 endpoint, in the fixtures of
	// newIntrospectionFixture.
	introspection *introspectionEndpoint
}

func newFixture(t *testing.T, edit func(*ServerConfig), opts ...func(*Options)) *fixture {
	t.Helper()
	f := &fixture{t: t, as: oauthtest.NewIssuer(t, nil), clock: newClock(), rotated: oauthtest.NewKey(t, "ec-2", "ES256")}
	f.v = newTestVerifier(t, f.as, f.clock, edit, opts...)
	return f
}

// token mints a token signed by key from the issuer's valid claims at the
// clock's time, after edit has had its way with header and claims.
func (f *fixture) token(key *oauthtest.Key, edit func(header, claims map[string]any)) string {
	f.t.Helper()
	return f.as.Token(f.t, f.clock.Now(), key, edit)
}

// raw signs header and payload bytes as given with the ES256 key.
func (f *fixture) raw(header, payload string) string {
	f.t.Helper()
	return oauthtest.SignRaw(f.t, "ES256", f.as.EC.Private, []byte(header), []byte(payload))
}

func (f *fixture) claimsJSON(edit func(map[string]any)) string {
	claims := f.as.Claims(f.clock.Now())
	if edit != nil {
		edit(claims)
	}
	return string(oauthtest.JSON(f.t, claims))
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

const (
	testClientID = "broker client"
	testSecret   = "s3cr:t+/&=é"
)

// newTestVerifier builds a verifier for as with a JWT server config that
// edit may change.
func newTestVerifier(t testing.TB, as *oauthtest.Issuer, clock *testClock, edit func(*ServerConfig), opts ...func(*Options)) *Verifier {
	t.Helper()
	config := ServerConfig{
		MetadataURL:       as.MetadataURL(),
		ExpectedAudiences: []string{oauthtest.Audience},
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

func (f *fixture) verify(token string) (*Principal, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return f.v.Verify(ctx, token)
}

// assertReason fails unless err is an invalid-token error with reason, and
// checks that no part of the token leaked into the message.
func assertReason(t *testing.T, token string, err error, reason Reason) {
	t.Helper()
	if !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("error = %v, want ErrInvalidToken (%s)", err, reason)
	}
	if errors.Is(err, ErrUnavailable) {
		t.Fatalf("error %v is both invalid and unavailable", err)
	}
	if got := ReasonOf(err); got != reason {
		t.Fatalf("reason = %q (%v), want %q", got, err, reason)
	}
	assertNoLeak(t, token, err)
}

func assertNoLeak(t *testing.T, token string, err error) {
	t.Helper()
	message := err.Error()
	for _, part := range strings.Split(token, ".") {
		if len(part) >= 8 && strings.Contains(message, part[:8]) {
			t.Fatalf("error %q contains token material", message)
		}
	}
}

func TestVerifyValidTokens(t *testing.T) {
	// The case's issuer signs with one of its published keys.
	ecKey := func(as *oauthtest.Issuer) *oauthtest.Key { return as.EC }
	ec384Key := func(as *oauthtest.Issuer) *oauthtest.Key { return as.EC384 }
	rsaKey := func(as *oauthtest.Issuer) *oauthtest.Key { return as.RSA }
	edKey := func(as *oauthtest.Issuer) *oauthtest.Key { return as.Ed }
	embedded := oauthtest.NewKey(t, "ec-1", "ES256").JWK()
	tests := []struct {
		name   string
		key    func(*oauthtest.Issuer) *oauthtest.Key
		config func(*ServerConfig)
		edit   func(header, claims map[string]any)
		check  func(t *testing.T, p *Principal)
	}{
		{name: "ES256", key: ecKey},
		{name: "ES384", key: ec384Key},
		{name: "RS256", key: rsaKey},
		{name: "PS256 with the RSA key", key: rsaKey, edit: func(h, c map[string]any) { h["alg"] = "PS256" }},
		{name: "EdDSA", key: edKey},
		{name: "typ application/at+jwt", key: ecKey, edit: func(h, c map[string]any) { h["typ"] = "application/at+jwt" }},
		{name: "typ compared case-insensitively", key: ecKey, edit: func(h, c map[string]any) { h["typ"] = "AT+JWT" }},
		{name: "missing typ with AllowMissingTyp", key: ecKey,
			config: func(c *ServerConfig) { c.AllowMissingTyp = true },
			edit:   func(h, c map[string]any) { delete(h, "typ") }},
		{name: "typ JWT with AllowMissingTyp", key: ecKey,
			config: func(c *ServerConfig) { c.AllowMissingTyp = true },
			edit:   func(h, c map[string]any) { h["typ"] = "JWT" }},
		{name: "expired within skew", key: ecKey, edit: func(h, c map[string]any) { c["exp"] = testNow().Add(-10 * time.Second).Unix() }},
		{name: "nbf within skew", key: ecKey, edit: func(h, c map[string]any) { c["nbf"] = testNow().Add(10 * time.Second).Unix() }},
		{name: "iat within skew", key: ecKey, edit: func(h, c map[string]any) { c["iat"] = testNow().Add(10 * time.Second).Unix() }},
		{name: "fractional exp", key: ecKey, edit: func(h, c map[string]any) { c["exp"] = float64(testNow().Add(time.Minute).Unix()) + 0.5 }},
		{name: "aud array with the expected audience among others", key: ecKey,
			edit: func(h, c map[string]any) { c["aud"] = []string{"https://other.example", oauthtest.Audience} }},
		{name: "relaxed audience accepts a foreign aud", key: ecKey,
			config: func(c *ServerConfig) { c.RelaxedAudience = true; c.ExpectedAudiences = nil },
			edit:   func(h, c map[string]any) { c["aud"] = "https://other.example" }},
		{name: "no kid and exactly one key of the type", key: edKey, edit: func(h, c map[string]any) { delete(h, "kid") }},
		{name: "jku, x5u and jwk headers are ignored, the JWKS key verifies", key: ecKey,
			edit: func(h, c map[string]any) {
				h["jku"] = "https://evil.example/jwks"
				h["x5u"] = "https://evil.example/cert"
				h["jwk"] = embedded
			}},
		{name: "auth_time beside scope is an access token", key: ecKey, edit: func(h, c map[string]any) { c["auth_time"] = testNow().Unix() }},
		{name: "principal fields", key: ecKey,
			edit: func(h, c map[string]any) {
				c["scope"] = "ledger:read ledger:write"
				c["nbf"] = testNow().Add(-time.Minute).Unix()
				c["groups"] = []string{"finance", "admins"}
				c["act"] = map[string]any{"sub": "agent-7", "client_id": "agent-app", "act": map[string]any{"sub": "orchestrator"}}
			},
			check: func(t *testing.T, p *Principal) {
				want := &Actor{Subject: "agent-7", ClientID: "agent-app", Actor: &Actor{Subject: "orchestrator"}}
				if p.Subject != "alice" || p.ClientID != "agent-app" || p.TokenID != "token-1" || p.Method != MethodJWT ||
					!reflect.DeepEqual(p.Scopes, []string{"ledger:read", "ledger:write"}) ||
					!reflect.DeepEqual(p.Groups, []string{"finance", "admins"}) ||
					!reflect.DeepEqual(p.Audience, []string{oauthtest.Audience}) ||
					!reflect.DeepEqual(p.Actor, want) ||
					!p.Expiry.Equal(testNow().Add(5*time.Minute)) || !p.IssuedAt.Equal(testNow()) ||
					p.Claims["sub"] != "alice" {
					t.Errorf("principal = %+v", p)
				}
			}},
		{name: "azp and scp as used by some IdPs", key: ecKey,
			config: func(c *ServerConfig) { c.GroupsClaim = "roles" },
			edit: func(h, c map[string]any) {
				delete(c, "client_id")
				delete(c, "scope")
				c["azp"] = "agent-2"
				c["scp"] = []string{"a", "b"}
				c["roles"] = "admin"
			},
			check: func(t *testing.T, p *Principal) {
				if p.ClientID != "agent-2" || !reflect.DeepEqual(p.Scopes, []string{"a", "b"}) || !reflect.DeepEqual(p.Groups, []string{"admin"}) {
					t.Errorf("principal = %+v", p)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.config)
			token := f.token(tt.key(f.as), tt.edit)
			p, err := f.verify(token)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if p.Issuer != f.as.ID {
				t.Errorf("issuer = %q, want %q", p.Issuer, f.as.ID)
			}
			if tt.check != nil {
				tt.check(t, p)
			}
		})
	}
}

func testNow() time.Time { return newClock().Now() }

func TestVerifyRejects(t *testing.T) {
	// The hostile server must never be asked for anything.
	var hostileHits atomic.Int32
	hostileKey := oauthtest.NewKey(t, "ec-1", "ES256").JWK()
	hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hostileHits.Add(1)
		json.NewEncoder(w).Encode(map[string]any{"keys": []any{hostileKey}})
	}))
	defer hostile.Close()

	tests := []struct {
		name   string
		config func(*ServerConfig)
		build  func(f *fixture) string
		want   Reason
	}{
		// Signatures and algorithms.
		{name: "forged signature with the real kid", want: ReasonSignature,
			build: func(f *fixture) string { return f.token(f.as.AttackerEC, nil) }},
		{name: "signature of another token", want: ReasonSignature,
			build: func(f *fixture) string {
				a := strings.Split(f.token(f.as.EC, nil), ".")
				b := strings.Split(f.token(f.as.EC, func(h, c map[string]any) { c["sub"] = "admin" }), ".")
				return b[0] + "." + b[1] + "." + a[2]
			}},
		{name: "RSA forged with the real kid", want: ReasonSignature,
			build: func(f *fixture) string { return f.token(f.as.AttackerRSA, nil) }},
		{name: "alg none without signature", want: ReasonAlgorithm,
			build: func(f *fixture) string {
				return oauthtest.B64([]byte(`{"alg":"none","typ":"at+jwt"}`)) + "." + oauthtest.B64([]byte(f.claimsJSON(nil))) + "."
			}},
		{name: "alg none with a signature", want: ReasonAlgorithm,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { h["alg"] = "none" }) }},
		{name: "alg None spelled differently", want: ReasonAlgorithm,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { h["alg"] = "nOnE" }) }},
		{name: "alg missing", want: ReasonAlgorithm,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { delete(h, "alg") }) }},
		{name: "alg HS256 keyed with the RSA public key", want: ReasonAlgorithm,
			build: func(f *fixture) string {
				der, err := x509.MarshalPKIXPublicKey(f.as.RSA.Private.Public())
				if err != nil {
					f.t.Fatal(err)
				}
				secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
				input := oauthtest.B64([]byte(`{"alg":"HS256","kid":"rsa-1","typ":"at+jwt"}`)) + "." + oauthtest.B64([]byte(f.claimsJSON(nil)))
				mac := hmac.New(sha256.New, secret)
				mac.Write([]byte(input))
				return input + "." + oauthtest.B64(mac.Sum(nil))
			}},
		{name: "alg RS256 on an EC key", want: ReasonAlgorithm,
			build: func(f *fixture) string { return f.token(f.as.RSA, func(h, c map[string]any) { h["kid"] = "ec-1" }) }},
		{name: "alg ES384 on a P-256 key", want: ReasonAlgorithm,
			build: func(f *fixture) string { return f.token(f.as.EC384, func(h, c map[string]any) { h["kid"] = "ec-1" }) }},
		{name: "alg ES256 on the RSA key", want: ReasonAlgorithm,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { h["kid"] = "rsa-1" }) }},
		{name: "alg EdDSA on an EC key", want: ReasonAlgorithm,
			build: func(f *fixture) string { return f.token(f.as.Ed, func(h, c map[string]any) { h["kid"] = "ec-1" }) }},
		{name: "alg outside the server's allow-list", want: ReasonAlgorithm,
			config: func(c *ServerConfig) { c.Algorithms = []string{"ES256"} },
			build:  func(f *fixture) string { return f.token(f.as.RSA, nil) }},
		{name: "unknown kid with a hostile jku", want: ReasonKeyID,
			build: func(f *fixture) string {
				return f.token(f.as.AttackerEC, func(h, c map[string]any) { h["kid"] = "evil"; h["jku"] = hostile.URL + "/jwks" })
			}},
		{name: "embedded jwk with the real kid", want: ReasonSignature,
			build: func(f *fixture) string {
				return f.token(f.as.AttackerEC, func(h, c map[string]any) { h["jwk"] = f.as.AttackerEC.JWK() })
			}},
		{name: "embedded jwk without kid", want: ReasonSignature,
			build: func(f *fixture) string {
				return f.token(f.as.AttackerEC, func(h, c map[string]any) { delete(h, "kid"); h["jwk"] = f.as.AttackerEC.JWK() })
			}},
		{name: "x5u with the real kid", want: ReasonSignature,
			build: func(f *fixture) string {
				return f.token(f.as.AttackerEC, func(h, c map[string]any) { h["x5u"] = hostile.URL + "/cert.pem" })
			}},
		{name: "x5c with a self-signed attacker certificate", want: ReasonSignature,
			build: func(f *fixture) string {
				return f.token(f.as.AttackerEC, func(h, c map[string]any) { h["x5c"] = []string{selfSigned(f.t, f.as.AttackerEC)} })
			}},
		{name: "empty signature", want: ReasonSignature,
			build: func(f *fixture) string {
				parts := strings.Split(f.token(f.as.EC, nil), ".")
				return parts[0] + "." + parts[1] + "."
			}},
		{name: "crit header", want: ReasonCritical,
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) { h["crit"] = []string{"exp"}; h["exp"] = 1 })
			}},
		{name: "b64 false (RFC 7797) with crit", want: ReasonCritical,
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) { h["crit"] = []string{"b64"}; h["b64"] = false })
			}},
		{name: "b64 header without crit", want: ReasonMalformed,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { h["b64"] = true }) }},
		{name: "enc header in a JWS", want: ReasonMalformed,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { h["enc"] = "A256GCM" }) }},
		{name: "nested JWT (cty)", want: ReasonMalformed,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { h["cty"] = "JWT" }) }},
		{name: "kid is a number", want: ReasonMalformed,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { h["kid"] = 1 }) }},

		// typ (RFC 9068 §4) and ID tokens (mistake 4).
		{name: "typ JWT without AllowMissingTyp", want: ReasonType,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { h["typ"] = "JWT" }) }},
		{name: "typ missing without AllowMissingTyp", want: ReasonType,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { delete(h, "typ") }) }},
		{name: "typ of another kind even with AllowMissingTyp", want: ReasonType,
			config: func(c *ServerConfig) { c.AllowMissingTyp = true },
			build:  func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { h["typ"] = "dpop+jwt" }) }},
		{name: "typ is a number", want: ReasonMalformed,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { h["typ"] = 1 }) }},
		{name: "ID token with nonce", want: ReasonIDToken,
			config: func(c *ServerConfig) { c.AllowMissingTyp = true },
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) { h["typ"] = "JWT"; c["nonce"] = "n-0S6_WzA2Mj" })
			}},
		{name: "ID token with at_hash and no typ", want: ReasonIDToken,
			config: func(c *ServerConfig) { c.AllowMissingTyp = true },
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) { delete(h, "typ"); c["at_hash"] = "77QmUPtjPfzWtF2AnpK9RQ" })
			}},
		{name: "c_hash even under typ at+jwt", want: ReasonIDToken,
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) { c["c_hash"] = "LDktKdoQak3Pk0cnXxCltA" })
			}},
		{name: "ID token shape: auth_time, no scope, no client_id", want: ReasonIDToken,
			config: func(c *ServerConfig) { c.AllowMissingTyp = true },
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) {
					delete(h, "typ")
					delete(c, "scope")
					delete(c, "client_id")
					c["auth_time"] = testNow().Unix()
				})
			}},

		// Issuer.
		{name: "wrong iss", want: ReasonIssuer,
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) { c["iss"] = "https://evil.example" })
			}},
		{name: "iss with a trailing slash", want: ReasonIssuer,
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) { c["iss"] = f.as.ID + "/" })
			}},
		{name: "iss differing in case", want: ReasonIssuer,
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) { c["iss"] = strings.ToUpper(f.as.ID) })
			}},
		{name: "iss missing", want: ReasonIssuer,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { delete(c, "iss") }) }},
		{name: "iss is a number", want: ReasonMalformed,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { c["iss"] = 1 }) }},

		// Audience (RFC 8707; mistake 4).
		{name: "wrong aud", want: ReasonAudience,
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) { c["aud"] = "https://other.example" })
			}},
		{name: "aud missing", want: ReasonAudience,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { delete(c, "aud") }) }},
		{name: "aud is the client id (ID token style)", want: ReasonAudience,
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) { c["aud"] = c["client_id"] })
			}},
		{name: "aud array without the expected audience", want: ReasonAudience,
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) { c["aud"] = []string{"a", "b"} })
			}},
		{name: "aud as a number", want: ReasonMalformed,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { c["aud"] = 42 }) }},
		{name: "aud array with a number", want: ReasonMalformed,
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) { c["aud"] = []any{oauthtest.Audience, 1} })
			}},
		{name: "aud prefix of the expected audience", want: ReasonAudience,
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) { c["aud"] = strings.TrimSuffix(oauthtest.Audience, "/mcp") })
			}},

		// Time.
		{name: "expired", want: ReasonExpired,
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) { c["exp"] = testNow().Add(-time.Hour).Unix() })
			}},
		{name: "expired exactly at the skew boundary", want: ReasonExpired,
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) { c["exp"] = testNow().Add(-15 * time.Second).Unix() })
			}},
		{name: "expired beyond a custom skew", want: ReasonExpired,
			config: func(c *ServerConfig) { c.ClockSkew = time.Second },
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) { c["exp"] = testNow().Add(-10 * time.Second).Unix() })
			}},
		{name: "no exp", want: ReasonNoExpiry,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { delete(c, "exp") }) }},
		{name: "exp as a string", want: ReasonMalformed,
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) { c["exp"] = "9999999999" })
			}},
		{name: "exp null", want: ReasonMalformed,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { c["exp"] = nil }) }},
		{name: "exp negative", want: ReasonMalformed,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { c["exp"] = -1 }) }},
		{name: "exp after the year 9999", want: ReasonMalformed,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { c["exp"] = 1e15 }) }},
		{name: "exp out of float range", want: ReasonMalformed,
			build: func(f *fixture) string {
				return f.raw(`{"alg":"ES256","kid":"ec-1","typ":"at+jwt"}`, strings.Replace(f.claimsJSON(nil), `"exp":`, `"exp":1e999,"x":`, 1))
			}},
		{name: "nbf in the future", want: ReasonNotYetValid,
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) { c["nbf"] = testNow().Add(time.Hour).Unix() })
			}},
		{name: "iat in the future", want: ReasonIssuedInFuture,
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) { c["iat"] = testNow().Add(time.Hour).Unix() })
			}},
		{name: "nbf as a string", want: ReasonMalformed,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { c["nbf"] = "0" }) }},

		// Subject and other claims.
		{name: "no sub", want: ReasonSubject,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { delete(c, "sub") }) }},
		{name: "empty sub", want: ReasonSubject,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { c["sub"] = "" }) }},
		{name: "sub as a number", want: ReasonMalformed,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { c["sub"] = 7 }) }},
		{name: "scope as an array", want: ReasonMalformed,
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) { c["scope"] = []string{"a"} })
			}},
		{name: "client_id as an object", want: ReasonMalformed,
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) { c["client_id"] = map[string]any{} })
			}},
		{name: "groups as a number", want: ReasonMalformed,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { c["groups"] = 1 }) }},
		{name: "act as a string", want: ReasonMalformed,
			build: func(f *fixture) string { return f.token(f.as.EC, func(h, c map[string]any) { c["act"] = "agent" }) }},
		{name: "act without sub or client_id", want: ReasonMalformed,
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) { c["act"] = map[string]any{} })
			}},
		{name: "act nested too deeply", want: ReasonMalformed,
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) {
					act := map[string]any{"sub": "a0"}
					for i := range 12 {
						act = map[string]any{"sub": "a", "act": act, "n": i}
					}
					c["act"] = act
				})
			}},
		{name: "sender-constrained token (cnf) as bearer", want: ReasonTokenType,
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) {
					c["cnf"] = map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}
				})
			}},

		// Shape and encoding.
		{name: "empty token", want: ReasonMalformed, build: func(f *fixture) string { return "" }},
		{name: "one segment", want: ReasonMalformed, build: func(f *fixture) string { return "abc" }},
		{name: "truncated to two segments", want: ReasonMalformed,
			build: func(f *fixture) string {
				parts := strings.Split(f.token(f.as.EC, nil), ".")
				return parts[0] + "." + parts[1]
			}},
		{name: "truncated signature", want: ReasonSignature,
			build: func(f *fixture) string {
				parts := strings.Split(f.token(f.as.EC, nil), ".")
				signature, _ := base64.RawURLEncoding.DecodeString(parts[2])
				return parts[0] + "." + parts[1] + "." + oauthtest.B64(signature[:len(signature)-3])
			}},
		{name: "truncated mid-symbol", want: ReasonMalformed,
			build: func(f *fixture) string {
				for range 100 { // until the cut leaves non-zero unused bits
					token := f.token(f.as.EC, nil)
					token = token[:len(token)-4]
					if _, err := base64.RawURLEncoding.Strict().DecodeString(token[strings.LastIndexByte(token, '.')+1:]); err != nil {
						return token
					}
				}
				f.t.Fatal("no suitable token")
				return ""
			}},
		{name: "extra segment", want: ReasonMalformed,
			build: func(f *fixture) string { return f.token(f.as.EC, nil) + ".e30" }},
		{name: "JWE-shaped (five segments)", want: ReasonMalformed,
			build: func(f *fixture) string {
				return oauthtest.B64([]byte(`{"alg":"RSA-OAEP","enc":"A256GCM"}`)) + ".a2V5.aXY.Y2lwaGVy.dGFn"
			}},
		{name: "oversized token", want: ReasonMalformed,
			build: func(f *fixture) string {
				return f.token(f.as.EC, func(h, c map[string]any) { c["pad"] = strings.Repeat("x", MaxTokenSize) })
			}},
		{name: "garbage in the header segment", want: ReasonMalformed,
			build: func(f *fixture) string {
				parts := strings.Split(f.token(f.as.EC, nil), ".")
				return "!!!" + parts[0] + "." + parts[1] + "." + parts[2]
			}},
		{name: "header is not JSON", want: ReasonMalformed,
			build: func(f *fixture) string { return f.raw(`alg=ES256`, f.claimsJSON(nil)) }},
		{name: "header is a JSON array", want: ReasonMalformed,
			build: func(f *fixture) string { return f.raw(`["ES256"]`, f.claimsJSON(nil)) }},
		{name: "garbage in the payload segment", want: ReasonMalformed,
			build: func(f *fixture) string {
				parts := strings.Split(f.token(f.as.EC, nil), ".")
				return parts[0] + ".$$" + parts[1] + "." + parts[2]
			}},
		{name: "garbage in the signature segment", want: ReasonMalformed,
			build: func(f *fixture) string {
				parts := strings.Split(f.token(f.as.EC, nil), ".")
				return parts[0] + "." + parts[1] + "." + parts[2][:10] + "*" + parts[2][11:]
			}},
		{name: "payload is not JSON", want: ReasonMalformed,
			build: func(f *fixture) string { return f.raw(`{"alg":"ES256","kid":"ec-1","typ":"at+jwt"}`, "hello") }},
		{name: "payload is a JSON array", want: ReasonMalformed,
			build: func(f *fixture) string {
				return f.raw(`{"alg":"ES256","kid":"ec-1","typ":"at+jwt"}`, "["+f.claimsJSON(nil)+"]")
			}},
		{name: "payload with trailing data", want: ReasonMalformed,
			build: func(f *fixture) string {
				return f.raw(`{"alg":"ES256","kid":"ec-1","typ":"at+jwt"}`, f.claimsJSON(nil)+`{}`)
			}},
		{name: "payload with invalid UTF-8", want: ReasonMalformed,
			build: func(f *fixture) string {
				return f.raw(`{"alg":"ES256","kid":"ec-1","typ":"at+jwt"}`, strings.Replace(f.claimsJSON(nil), `"alice"`, "\"ali\xffce\"", 1))
			}},
		{name: "duplicate alg in the header", want: ReasonMalformed,
			build: func(f *fixture) string {
				return f.raw(`{"alg":"none","kid":"ec-1","typ":"at+jwt","alg":"ES256"}`, f.claimsJSON(nil))
			}},
		{name: "duplicate sub in the payload", want: ReasonMalformed,
			build: func(f *fixture) string {
				claims := f.claimsJSON(nil)
				return f.raw(`{"alg":"ES256","kid":"ec-1","typ":"at+jwt"}`, claims[:len(claims)-1]+`,"sub":"admin"}`)
			}},
		{name: "duplicate member inside act", want: ReasonMalformed,
			build: func(f *fixture) string {
				claims := f.claimsJSON(nil)
				return f.raw(`{"alg":"ES256","kid":"ec-1","typ":"at+jwt"}`, claims[:len(claims)-1]+`,"act":{"sub":"a","sub":"b"}}`)
			}},
		{name: "padded base64", want: ReasonMalformed,
			build: func(f *fixture) string {
				parts := strings.Split(f.token(f.as.EC, nil), ".")
				return parts[0] + "==." + parts[1] + "." + parts[2]
			}},
		{name: "standard base64 alphabet", want: ReasonMalformed,
			build: func(f *fixture) string { return standardAlphabet(f) }},
		{name: "non-canonical base64 correctly signed", want: ReasonMalformed,
			build: func(f *fixture) string { return nonCanonical(f) }},
		{name: "line break inside the token", want: ReasonMalformed,
			build: func(f *fixture) string { t := f.token(f.as.EC, nil); return t[:20] + "\n" + t[20:] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.config)
			token := tt.build(f)
			p, err := f.verify(token)
			if p != nil {
				t.Fatalf("Verify returned a principal for %q", tt.name)
			}
			assertReason(t, token, err, tt.want)
		})
	}
	if n := hostileHits.Load(); n != 0 {
		t.Errorf("hostile jku/x5u server was asked %d times", n)
	}
}

// standardAlphabet spells a valid token in the standard base64 alphabet,
// which is a b64token but not base64url.
func standardAlphabet(f *fixture) string {
	for i := range 100 {
		token := f.token(f.as.EC, func(h, c map[string]any) { c["jti"] = fmt.Sprint(i) })
		if strings.ContainsAny(token, "-_") {
			return strings.NewReplacer("-", "+", "_", "/").Replace(token)
		}
	}
	f.t.Fatal("no token with a character that differs between the alphabets")
	return ""
}

// nonCanonical re-spells the header segment with non-zero unused trailing
// bits, which lenient base64 decoders accept, and signs that spelling.
func nonCanonical(f *fixture) string {
	header := `{"alg":"ES256","kid":"ec-1","typ":"at+jwt"}` // 43 bytes: last symbol has 4 unused bits
	if len(header)%3 == 0 {
		f.t.Fatal("header length must leave unused bits")
	}
	segment := oauthtest.B64([]byte(header))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, segment[len(segment)-1])
	segment = segment[:len(segment)-1] + string(alphabet[last|1])
	if decoded, err := base64.RawURLEncoding.DecodeString(segment); err != nil || string(decoded) != header {
		f.t.Fatalf("lenient decoding should still give the header: %q %v", decoded, err)
	}
	input := segment + "." + oauthtest.B64([]byte(f.claimsJSON(nil)))
	return input + "." + oauthtest.B64(oauthtest.Sign(f.t, "ES256", f.as.EC.Private, []byte(input)))
}

func selfSigned(t *testing.T, key *oauthtest.Key) string {
	t.Helper()
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "evil"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Private.Public(), key.Private.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}
