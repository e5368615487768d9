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

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// Rejected is a token every verifier must refuse, and the reason the
// broker's inbound verifier gives.
type Rejected struct {
	Name   string
	Token  string
	Reason oauth.Reason
}

// RejectedTokens builds the refusal table for tokens checked at now against
// this issuer and Audience, under the default rules: every supported
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
		return mustJSON(t, c)
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
		{"forged signature with the real kid", token(issuer.AttackerEC, nil), oauth.ReasonSignature},
		{"RSA forged with the real kid", token(issuer.AttackerRSA, nil), oauth.ReasonSignature},
		{"signature of another token", swapped[0] + "." + swapped[1] + "." + parts[2], oauth.ReasonSignature},
		{"alg none without signature", B64([]byte(`{"alg":"none","typ":"at+jwt"}`)) + "." + B64(claims(nil)) + ".", oauth.ReasonAlgorithm},
		{"alg none with a signature", token(issuer.EC, header("alg", "none")), oauth.ReasonAlgorithm},
		{"alg missing", token(issuer.EC, func(h, c map[string]any) { delete(h, "alg") }), oauth.ReasonAlgorithm},
		{"alg HS256 keyed with the RSA public key", hmacWithPublicKey(), oauth.ReasonAlgorithm},
		{"alg RS256 on an EC key", token(issuer.RSA, header("kid", "ec-1")), oauth.ReasonAlgorithm},
		{"alg ES384 on a P-256 key", token(issuer.EC384, header("kid", "ec-1")), oauth.ReasonAlgorithm},
		{"alg EdDSA on an EC key", token(issuer.Ed, header("kid", "ec-1")), oauth.ReasonAlgorithm},
		{"unknown kid", token(issuer.AttackerEC, header("kid", "evil")), oauth.ReasonKeyID},
		{"embedded jwk with the real kid", token(issuer.AttackerEC, header("jwk", attackerJWK)), oauth.ReasonSignature},
		{"empty signature", parts[0] + "." + parts[1] + ".", oauth.ReasonSignature},
		{"crit header", token(issuer.EC, header("crit", []string{"exp"})), oauth.ReasonCritical},
		{"b64 header", token(issuer.EC, header("b64", false)), oauth.ReasonMalformed},
		{"enc header in a JWS", token(issuer.EC, header("enc", "A256GCM")), oauth.ReasonMalformed},
		{"nested JWT (cty)", token(issuer.EC, header("cty", "JWT")), oauth.ReasonMalformed},
		{"kid is a number", token(issuer.EC, header("kid", 1)), oauth.ReasonMalformed},
		// typ (RFC 9068 §4) and ID tokens.
		{"typ JWT", token(issuer.EC, header("typ", "JWT")), oauth.ReasonType},
		{"typ missing", token(issuer.EC, func(h, c map[string]any) { delete(h, "typ") }), oauth.ReasonType},
		{"typ of another kind", token(issuer.EC, header("typ", "dpop+jwt")), oauth.ReasonType},
		{"ID token with nonce", token(issuer.EC, claim("nonce", "n-1")), oauth.ReasonIDToken},
		{"c_hash", token(issuer.EC, claim("c_hash", "x")), oauth.ReasonIDToken},
		{"auth_time without scope or client_id", token(issuer.EC, func(h, c map[string]any) {
			delete(c, "scope")
			delete(c, "client_id")
			c["auth_time"] = now.Unix()
		}), oauth.ReasonIDToken},
		// Claims.
		{"wrong iss", token(issuer.EC, claim("iss", "https://evil.example")), oauth.ReasonIssuer},
		{"iss with a trailing slash", token(issuer.EC, claim("iss", issuer.URL+"/")), oauth.ReasonIssuer},
		{"iss missing", token(issuer.EC, drop("iss")), oauth.ReasonIssuer},
		{"iss is a number", token(issuer.EC, claim("iss", 1)), oauth.ReasonMalformed},
		{"wrong aud", token(issuer.EC, claim("aud", "https://other.example/")), oauth.ReasonAudience},
		{"aud missing", token(issuer.EC, drop("aud")), oauth.ReasonAudience},
		{"aud array without the expected audience", token(issuer.EC, claim("aud", []string{"a", "b"})), oauth.ReasonAudience},
		{"aud prefix of the expected audience", token(issuer.EC, claim("aud", Audience[:len(Audience)-1])), oauth.ReasonAudience},
		{"aud as a number", token(issuer.EC, claim("aud", 1)), oauth.ReasonMalformed},
		{"aud array with a number", token(issuer.EC, claim("aud", []any{Audience, 1})), oauth.ReasonMalformed},
		{"expired", token(issuer.EC, claim("exp", now.Add(-time.Minute).Unix())), oauth.ReasonExpired},
		{"expired beyond the skew", token(issuer.EC, claim("exp", now.Add(-16*time.Second).Unix())), oauth.ReasonExpired},
		{"no exp", token(issuer.EC, drop("exp")), oauth.ReasonNoExpiry},
		{"exp as a string", token(issuer.EC, claim("exp", fmt.Sprint(now.Add(time.Hour).Unix()))), oauth.ReasonMalformed},
		{"exp null", token(issuer.EC, claim("exp", nil)), oauth.ReasonMalformed},
		{"exp negative", token(issuer.EC, claim("exp", -1)), oauth.ReasonMalformed},
		{"exp after the year 9999", token(issuer.EC, claim("exp", int64(253402300800))), oauth.ReasonMalformed},
		{"nbf in the future", token(issuer.EC, claim("nbf", now.Add(time.Minute).Unix())), oauth.ReasonNotYetValid},
		{"nbf as a string", token(issuer.EC, claim("nbf", "0")), oauth.ReasonMalformed},
		{"iat in the future", token(issuer.EC, claim("iat", now.Add(time.Minute).Unix())), oauth.ReasonIssuedInFuture},
		{"no sub", token(issuer.EC, drop("sub")), oauth.ReasonSubject},
		{"empty sub", token(issuer.EC, claim("sub", "")), oauth.ReasonSubject},
		{"sub as a number", token(issuer.EC, claim("sub", 7)), oauth.ReasonMalformed},
		{"scope as an array", token(issuer.EC, claim("scope", []string{"a"})), oauth.ReasonMalformed},
		{"client_id as an object", token(issuer.EC, claim("client_id", map[string]any{"a": 1})), oauth.ReasonMalformed},
		{"groups as a number", token(issuer.EC, claim("groups", 1)), oauth.ReasonMalformed},
		{"act as a string", token(issuer.EC, claim("act", "agent")), oauth.ReasonMalformed},
		{"act without sub or client_id", token(issuer.EC, claim("act", map[string]any{"iss": "x"})), oauth.ReasonMalformed},
		{"act nested too deeply", token(issuer.EC, claim("act", deepAct)), oauth.ReasonMalformed},
		{"sender-constrained token (cnf) as bearer", token(issuer.EC, claim("cnf", map[string]any{"jkt": "x"})), oauth.ReasonTokenType},
		// Serialization.
		{"empty token", "", oauth.ReasonMalformed},
		{"one segment", "abc", oauth.ReasonMalformed},
		{"two segments", parts[0] + "." + parts[1], oauth.ReasonMalformed},
		{"extra segment", valid + ".x", oauth.ReasonMalformed},
		{"JWE-shaped (five segments)", parts[0] + ".a.b.c.d", oauth.ReasonMalformed},
		{"oversized token", parts[0] + "." + B64(claims(func(c map[string]any) { c["pad"] = strings.Repeat("x", 20<<10) })) + "." + parts[2], oauth.ReasonMalformed},
		{"header is not JSON", raw(`not json`, claims(nil)), oauth.ReasonMalformed},
		{"header is a JSON array", raw(`["ES256"]`, claims(nil)), oauth.ReasonMalformed},
		{"payload is not JSON", raw(ecHeader, []byte(`not json`)), oauth.ReasonMalformed},
		{"payload is a JSON array", raw(ecHeader, []byte(`[1]`)), oauth.ReasonMalformed},
		{"payload with trailing data", raw(ecHeader, append(claims(nil), []byte(`{}`)...)), oauth.ReasonMalformed},
		{"payload with invalid UTF-8", raw(ecHeader, []byte(`{"iss":"`+issuer.URL+`","sub":"\xff"}`)), oauth.ReasonMalformed},
		{"duplicate alg in the header", raw(`{"alg":"ES256","alg":"none","kid":"ec-1","typ":"at+jwt"}`, claims(nil)), oauth.ReasonMalformed},
		{"duplicate sub in the payload", raw(ecHeader, []byte(strings.Replace(string(claims(nil)), `"sub":"alice"`, `"sub":"alice","sub":"admin"`, 1))), oauth.ReasonMalformed},
		{"padded base64", parts[0] + "==." + parts[1] + "." + parts[2], oauth.ReasonMalformed},
		{"standard base64 alphabet", standardAlphabet(t, func(i int) string { return token(issuer.EC, claim("jti", fmt.Sprint(i))) }), oauth.ReasonMalformed},
		{"non-canonical base64 correctly signed", nonCanonical(t, issuer, claims(nil)), oauth.ReasonMalformed},
		{"line break inside the token", valid[:20] + "\n" + valid[20:], oauth.ReasonMalformed},
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
