package oauthtest

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Rejected is a token every verifier must refuse, and the reason the
// broker's inbound verifier gives: the text of its oauth.Reason, which
// callers compare as oauth.Reason(Reason). (oauthtest does not import
// oauth, so that oauth's own tests can use the issuer.)
type Rejected struct {
	Name   string
	Token  string
	Reason string
}

// RejectedTokens builds the refusal table for tokens checked at now against
// this issuer and its Audience, under the default rules: every supported
// algorithm allowed, typ at+jwt required, a skew of at most 15s.
func RejectedTokens(t testing.TB, issuer *Issuer, now time.Time) []Rejected {
	t.Helper()
	token := func(key *Key, edit func(header, claims map[string]any)) string {
		return issuer.Token(t, now, key, edit)
	}
	claims := func(edit func(map[string]any)) []byte {
		c := issuer.Claims(now)
		if edit != nil {
			edit(c)
		}
		return JSON(t, c)
	}
	raw := func(header string, payload []byte) string {
		return SignRaw(t, "ES256", issuer.EC.Private, []byte(header), payload)
	}
	const ecHeader = `{"alg":"ES256","kid":"ec-1","typ":"at+jwt"}`
	valid := token(issuer.EC, nil)
	parts := strings.Split(valid, ".")
	claim := func(name string, value any) func(h, c map[string]any) {
		return func(h, c map[string]any) { c[name] = value }
	}
	drop := func(name string) func(h, c map[string]any) {
		return func(h, c map[string]any) { delete(c, name) }
	}
	header := func(name string, value any) func(h, c map[string]any) {
		return func(h, c map[string]any) { h[name] = value }
	}
	deepAct := map[string]any{"sub": "agent-0"}
	for i := 1; i < 10; i++ {
		deepAct = map[string]any{"sub": fmt.Sprintf("agent-%d", i), "act": deepAct}
	}
	hmacWithPublicKey := func() string {
		der, err := x509.MarshalPKIXPublicKey(issuer.RSA.Private.Public())
		if err != nil {
			t.Fatal(err)
		}
		secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		input := B64([]byte(`{"alg":"HS256","kid":"rsa-1","typ":"at+jwt"}`)) + "." + B64(claims(nil))
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(input))
		return input + "." + B64(mac.Sum(nil))
	}
	swapped := strings.Split(token(issuer.EC, claim("sub", "admin")), ".")
	attackerJWK := jose.JSONWebKey{Key: issuer.AttackerEC.Private.Public(), KeyID: "ec-1"}

	return []Rejected{
		// Signatures, algorithms and keys.
		{"forged signature with the real kid", token(issuer.AttackerEC, nil), "bad signature"},
		{"RSA forged with the real kid", token(issuer.AttackerRSA, nil), "bad signature"},
		{"signature of another token", swapped[0] + "." + swapped[1] + "." + parts[2], "bad signature"},
		{"alg none without signature", B64([]byte(`{"alg":"none","typ":"at+jwt"}`)) + "." + B64(claims(nil)) + ".", "alg"},
		{"alg none with a signature", token(issuer.EC, header("alg", "none")), "alg"},
		{"alg missing", token(issuer.EC, func(h, c map[string]any) { delete(h, "alg") }), "alg"},
		{"alg HS256 keyed with the RSA public key", hmacWithPublicKey(), "alg"},
		{"alg RS256 on an EC key", token(issuer.RSA, header("kid", "ec-1")), "alg"},
		{"alg ES384 on a P-256 key", token(issuer.EC384, header("kid", "ec-1")), "alg"},
		{"alg EdDSA on an EC key", token(issuer.Ed, header("kid", "ec-1")), "alg"},
		{"unknown kid", token(issuer.AttackerEC, header("kid", "evil")), "kid"},
		{"embedded jwk with the real kid", token(issuer.AttackerEC, header("jwk", attackerJWK)), "bad signature"},
		{"empty signature", parts[0] + "." + parts[1] + ".", "bad signature"},
		{"crit header", token(issuer.EC, header("crit", []string{"exp"})), "crit"},
		{"b64 header", token(issuer.EC, header("b64", false)), "malformed"},
		{"enc header in a JWS", token(issuer.EC, header("enc", "A256GCM")), "malformed"},
		{"nested JWT (cty)", token(issuer.EC, header("cty", "JWT")), "malformed"},
		{"kid is a number", token(issuer.EC, header("kid", 1)), "malformed"},
		// typ (RFC 9068 §4) and ID tokens.
		{"typ JWT", token(issuer.EC, header("typ", "JWT")), "typ"},
		{"typ missing", token(issuer.EC, func(h, c map[string]any) { delete(h, "typ") }), "typ"},
		{"typ of another kind", token(issuer.EC, header("typ", "dpop+jwt")), "typ"},
		{"ID token with nonce", token(issuer.EC, claim("nonce", "n-1")), "id token"},
		{"c_hash", token(issuer.EC, claim("c_hash", "x")), "id token"},
		{"auth_time without scope or client_id", token(issuer.EC, func(h, c map[string]any) {
			delete(c, "scope")
			delete(c, "client_id")
			c["auth_time"] = now.Unix()
		}), "id token"},
		// Claims.
		{"wrong iss", token(issuer.EC, claim("iss", "https://evil.example")), "issuer"},
		{"iss with a trailing slash", token(issuer.EC, claim("iss", issuer.ID+"/")), "issuer"},
		{"iss missing", token(issuer.EC, drop("iss")), "issuer"},
		{"iss is a number", token(issuer.EC, claim("iss", 1)), "malformed"},
		{"wrong aud", token(issuer.EC, claim("aud", "https://other.example/")), "audience"},
		{"aud missing", token(issuer.EC, drop("aud")), "audience"},
		{"aud array without the expected audience", token(issuer.EC, claim("aud", []string{"a", "b"})), "audience"},
		{"aud prefix of the expected audience", token(issuer.EC, claim("aud", issuer.Audience[:len(issuer.Audience)-1])), "audience"},
		{"aud as a number", token(issuer.EC, claim("aud", 1)), "malformed"},
		{"aud array with a number", token(issuer.EC, claim("aud", []any{issuer.Audience, 1})), "malformed"},
		{"expired", token(issuer.EC, claim("exp", now.Add(-time.Minute).Unix())), "expired"},
		{"expired beyond the skew", token(issuer.EC, claim("exp", now.Add(-16*time.Second).Unix())), "expired"},
		{"no exp", token(issuer.EC, drop("exp")), "no expiry"},
		{"exp as a string", token(issuer.EC, claim("exp", fmt.Sprint(now.Add(time.Hour).Unix()))), "malformed"},
		{"exp null", token(issuer.EC, claim("exp", nil)), "malformed"},
		{"exp negative", token(issuer.EC, claim("exp", -1)), "malformed"},
		{"exp after the year 9999", token(issuer.EC, claim("exp", int64(253402300800))), "malformed"},
		{"nbf in the future", token(issuer.EC, claim("nbf", now.Add(time.Minute).Unix())), "not yet valid"},
		{"nbf as a string", token(issuer.EC, claim("nbf", "0")), "malformed"},
		{"iat in the future", token(issuer.EC, claim("iat", now.Add(time.Minute).Unix())), "issued in future"},
		{"no sub", token(issuer.EC, drop("sub")), "subject"},
		{"empty sub", token(issuer.EC, claim("sub", "")), "subject"},
		{"sub as a number", token(issuer.EC, claim("sub", 7)), "malformed"},
		{"scope as an array", token(issuer.EC, claim("scope", []string{"a"})), "malformed"},
		{"client_id as an object", token(issuer.EC, claim("client_id", map[string]any{"a": 1})), "malformed"},
		{"groups as a number", token(issuer.EC, claim("groups", 1)), "malformed"},
		{"act as a string", token(issuer.EC, claim("act", "agent")), "malformed"},
		{"act without sub or client_id", token(issuer.EC, claim("act", map[string]any{"iss": "x"})), "malformed"},
		{"act nested too deeply", token(issuer.EC, claim("act", deepAct)), "malformed"},
		{"sender-constrained token (cnf) as bearer", token(issuer.EC, claim("cnf", map[string]any{"jkt": "x"})), "token type"},
		// Serialization.
		{"empty token", "", "malformed"},
		{"one segment", "abc", "malformed"},
		{"two segments", parts[0] + "." + parts[1], "malformed"},
		{"extra segment", valid + ".x", "malformed"},
		{"JWE-shaped (five segments)", parts[0] + ".a.b.c.d", "malformed"},
		{"oversized token", parts[0] + "." + B64(claims(func(c map[string]any) { c["pad"] = strings.Repeat("x", 20<<10) })) + "." + parts[2], "malformed"},
		{"header is not JSON", raw(`not json`, claims(nil)), "malformed"},
		{"header is a JSON array", raw(`["ES256"]`, claims(nil)), "malformed"},
		{"payload is not JSON", raw(ecHeader, []byte(`not json`)), "malformed"},
		{"payload is a JSON array", raw(ecHeader, []byte(`[1]`)), "malformed"},
		{"payload with trailing data", raw(ecHeader, append(claims(nil), []byte(`{}`)...)), "malformed"},
		{"payload with invalid UTF-8", raw(ecHeader, []byte(`{"iss":"`+issuer.ID+`","sub":"\xff"}`)), "malformed"},
		{"duplicate alg in the header", raw(`{"alg":"ES256","alg":"none","kid":"ec-1","typ":"at+jwt"}`, claims(nil)), "malformed"},
		{"duplicate sub in the payload", raw(ecHeader, []byte(strings.Replace(string(claims(nil)), `"sub":"alice"`, `"sub":"alice","sub":"admin"`, 1))), "malformed"},
		{"padded base64", parts[0] + "==." + parts[1] + "." + parts[2], "malformed"},
		{"standard base64 alphabet", standardAlphabet(t, func(i int) string { return token(issuer.EC, claim("jti", fmt.Sprint(i))) }), "malformed"},
		{"non-canonical base64 correctly signed", nonCanonical(t, issuer, claims(nil)), "malformed"},
		{"line break inside the token", valid[:20] + "\n" + valid[20:], "malformed"},
	}
}

// standardAlphabet spells a valid token in the standard base64 alphabet,
// which is a b64token but not base64url.
func standardAlphabet(t testing.TB, token func(int) string) string {
	for i := range 100 {
		if s := token(i); strings.ContainsAny(s, "-_") {
			return strings.NewReplacer("-", "+", "_", "/").Replace(s)
		}
	}
	t.Fatal("oauthtest: no token with a character that differs between the alphabets")
	return ""
}

// nonCanonical spells the header segment with non-zero unused trailing
// bits, which lenient base64 decoders accept, and signs that spelling.
func nonCanonical(t testing.TB, issuer *Issuer, payload []byte) string {
	segment := B64([]byte(`{"alg":"ES256","kid":"ec-1","typ":"at+jwt"}`)) // 43 bytes: 4 unused bits
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, segment[len(segment)-1])
	segment = segment[:len(segment)-1] + string(alphabet[last|1])
	input := segment + "." + B64(payload)
	return input + "." + B64(Sign(t, "ES256", issuer.EC.Private, []byte(input)))
}
