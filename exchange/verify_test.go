package exchange

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// signRaw signs any header and claims with signer's key, for tokens the
// Minter would never make.
func signRaw(t *testing.T, signer *Signer, header, claims map[string]any) string {
	t.Helper()
	headerJSON, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	claimsJSON, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signingInput := base64url.EncodeToString(headerJSON) + "." + base64url.EncodeToString(claimsJSON)
	var signature []byte
	if signer.ed25519 != nil {
		signature = ed25519.Sign(signer.ed25519, []byte(signingInput))
	} else {
		digest := sha256.Sum256([]byte(signingInput))
		r, s, err := ecdsa.Sign(rand.Reader, signer.ecdsa, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		signature = make([]byte, 64)
		r.FillBytes(signature[:32])
		s.FillBytes(signature[32:])
	}
	return signingInput + "." + base64url.EncodeToString(signature)
}

// header is the protected header the minter writes for signer.
func header(signer *Signer) map[string]any {
	return map[string]any{"alg": string(signer.Algorithm()), "kid": signer.KeyID(), "typ": "at+jwt"}
}

// validClaims are claims Verify accepts at epoch.
func validClaims() map[string]any {
	return map[string]any{
		"iss": testIssuer, "sub": "alice", "aud": "https://ledger.example/", "client_id": "agent-app",
		"scope": "ledger:read ledger:write", "iat": epoch.Unix(), "exp": epoch.Unix() + 60, "jti": "id-1",
	}
}

func with(claims map[string]any, name string, value any) map[string]any {
	if value == nil {
		delete(claims, name)
	} else {
		claims[name] = value
	}
	return claims
}

func TestVerifyAcceptsMintedTokens(t *testing.T) {
	clock := &testClock{now: epoch}
	keys := newTestKeySet(t, &MemoryKeyStore{}, KeySetOptions{Now: clock.Now})
	grant := testGrant()
	grant.Extra = map[string]any{"may_act": map[string]any{"sub": "agent-7", "client_id": "agent-app"}, "tool": "listAccounts"}
	for _, alg := range signingAlgorithms {
		t.Run(string(alg), func(t *testing.T) {
			token, minted, err := newTestMinter(t, keys, alg, clock).Mint(context.Background(), grant)
			if err != nil {
				t.Fatal(err)
			}
			got, err := keys.Verify(token, VerifyOptions{Issuer: testIssuer, Audience: grant.Audience, Now: clock.Now})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := &VerifiedToken{
				Issuer: testIssuer, Subject: "alice", ClientID: "agent-app",
				Scope: "ledger:read ledger:accounts", Scopes: []string{"ledger:read", "ledger:accounts"},
				Audience: []string{grant.Audience}, Actor: grant.Actor,
				MayAct: &MayAct{Subject: "agent-7", ClientID: "agent-app"},
				Expiry: minted.Expiry, IssuedAt: minted.IssuedAt, TokenID: minted.TokenID,
			}
			claims := got.Claims
			got.Claims = nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Verify:\n got %+v\nwant %+v", got, want)
			}
			if claims["tool"] != "listAccounts" || claims["jti"] != minted.TokenID || claims["exp"] != float64(minted.Expiry.Unix()) {
				t.Errorf("raw claims %v", claims)
			}
		})
	}
}

func TestVerifyRefuses(t *testing.T) {
	clock := &testClock{now: epoch}
	keys := newTestKeySet(t, &MemoryKeyStore{}, KeySetOptions{Now: clock.Now})
	es256, _ := keys.Active(jose.ES256)
	eddsa, _ := keys.Active(jose.EdDSA)
	other := newTestKeySet(t, &MemoryKeyStore{}, KeySetOptions{Now: clock.Now})
	stranger, _ := other.Active(jose.ES256)
	good := signRaw(t, es256, header(es256), validClaims())

	tests := []struct {
		name   string
		token  string
		reason oauth.Reason
	}{
		{"another key set's key", signRaw(t, stranger, header(stranger), validClaims()), oauth.ReasonKeyID},
		{"a kid from elsewhere on our key", signRaw(t, es256, with(header(es256), "kid", "elsewhere"), validClaims()), oauth.ReasonKeyID},
		{"no kid", signRaw(t, es256, with(header(es256), "kid", nil), validClaims()), oauth.ReasonKeyID},
		{"ES256 header on the EdDSA key", signRaw(t, es256, with(header(es256), "kid", eddsa.KeyID()), validClaims()), oauth.ReasonAlgorithm},
		{"EdDSA header on the ES256 key", signRaw(t, eddsa, with(header(eddsa), "kid", es256.KeyID()), validClaims()), oauth.ReasonAlgorithm},
		{"alg none", unsigned(signRaw(t, es256, with(header(es256), "alg", "none"), validClaims())), oauth.ReasonAlgorithm},
		{"alg HS256", signRaw(t, es256, with(header(es256), "alg", "HS256"), validClaims()), oauth.ReasonAlgorithm},
		{"alg RS256", signRaw(t, es256, with(header(es256), "alg", "RS256"), validClaims()), oauth.ReasonAlgorithm},
		{"typ JWT", signRaw(t, es256, with(header(es256), "typ", "JWT"), validClaims()), oauth.ReasonType},
		{"no typ", signRaw(t, es256, with(header(es256), "typ", nil), validClaims()), oauth.ReasonType},
		{"crit", signRaw(t, es256, with(header(es256), "crit", []string{"exp"}), validClaims()), oauth.ReasonCritical},
		{"other issuer", signRaw(t, es256, header(es256), with(validClaims(), "iss", "http://localhost:8081")), oauth.ReasonIssuer},
		{"issuer with a trailing slash", signRaw(t, es256, header(es256), with(validClaims(), "iss", testIssuer+"/")), oauth.ReasonIssuer},
		{"no issuer", signRaw(t, es256, header(es256), with(validClaims(), "iss", nil)), oauth.ReasonIssuer},
		{"no exp", signRaw(t, es256, header(es256), with(validClaims(), "exp", nil)), oauth.ReasonNoExpiry},
		{"expired beyond the skew", signRaw(t, es256, header(es256), with(validClaims(), "exp", epoch.Unix()-5)), oauth.ReasonExpired},
		{"exp a string", signRaw(t, es256, header(es256), with(validClaims(), "exp", "tomorrow")), oauth.ReasonMalformed},
		{"nbf in the future", signRaw(t, es256, header(es256), with(validClaims(), "nbf", epoch.Unix()+6)), oauth.ReasonNotYetValid},
		{"iat in the future", signRaw(t, es256, header(es256), with(validClaims(), "iat", epoch.Unix()+6)), oauth.ReasonIssuedInFuture},
		{"no sub", signRaw(t, es256, header(es256), with(validClaims(), "sub", nil)), oauth.ReasonSubject},
		{"empty sub", signRaw(t, es256, header(es256), with(validClaims(), "sub", "")), oauth.ReasonSubject},
		{"sub a number", signRaw(t, es256, header(es256), with(validClaims(), "sub", 7)), oauth.ReasonMalformed},
		{"aud an object", signRaw(t, es256, header(es256), with(validClaims(), "aud", map[string]any{})), oauth.ReasonMalformed},
		{"aud not ours", signRaw(t, es256, header(es256), with(validClaims(), "aud", []string{"https://mail.example/"})), oauth.ReasonAudience},
		{"scope an array", signRaw(t, es256, header(es256), with(validClaims(), "scope", []string{"a"})), oauth.ReasonMalformed},
		{"act a string", signRaw(t, es256, header(es256), with(validClaims(), "act", "agent")), oauth.ReasonMalformed},
		{"act without sub or client_id", signRaw(t, es256, header(es256), with(validClaims(), "act", map[string]any{"iss": "x"})), oauth.ReasonMalformed},
		{"may_act a string", signRaw(t, es256, header(es256), with(validClaims(), "may_act", "agent")), oauth.ReasonMalformed},
		{"may_act empty", signRaw(t, es256, header(es256), with(validClaims(), "may_act", map[string]any{})), oauth.ReasonMalformed},
		{"tampered payload", tamper(good), oauth.ReasonSignature},
		{"signature one byte short", shortSignature(good), oauth.ReasonSignature},
		{"no signature", unsigned(good), oauth.ReasonSignature},
		{"line break in the payload", strings.Replace(good, ".", ".\n", 1), oauth.ReasonMalformed},
		{"padding", good + "==", oauth.ReasonMalformed},
		{"two parts", good[:strings.LastIndex(good, ".")], oauth.ReasonMalformed},
		{"five parts (JWE)", good + ".a.b", oauth.ReasonMalformed},
		{"header not json", base64url.EncodeToString([]byte("[1]")) + good[strings.Index(good, "."):], oauth.ReasonMalformed},
		{"too large", good + strings.Repeat("A", MaxTokenSize), oauth.ReasonMalformed},
		{"empty", "", oauth.ReasonMalformed},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			got, err := keys.Verify(test.token, VerifyOptions{Issuer: testIssuer, Audience: "https://ledger.example/", Now: clock.Now})
			if !errors.Is(err, oauth.ErrInvalidToken) || got != nil {
				t.Fatalf("Verify: %v, %v; want oauth.ErrInvalidToken", got, err)
			}
			if reason := oauth.ReasonOf(err); reason != test.reason {
				t.Errorf("reason %q (%v), want %q", reason, err, test.reason)
			}
			if len(test.token) > 40 && strings.Contains(err.Error(), test.token[len(test.token)-40:]) {
				t.Errorf("error %q quotes the token", err)
			}
		})
	}
}

// unsigned drops a token's signature, keeping the last dot.
func unsigned(token string) string { return token[:strings.LastIndex(token, ".")+1] }

// shortSignature drops the last byte of a token's signature.
func shortSignature(token string) string {
	signature, _ := base64url.DecodeString(token[strings.LastIndex(token, ".")+1:])
	return unsigned(token) + base64url.EncodeToString(signature[:len(signature)-1])
}

// tamper changes sub in a token's payload and keeps the signature.
func tamper(token string) string {
	parts := strings.Split(token, ".")
	payload, _ := base64url.DecodeString(parts[1])
	payload = []byte(strings.Replace(string(payload), `"alice"`, `"mallory"`, 1))
	return parts[0] + "." + base64url.EncodeToString(payload) + "." + parts[2]
}

func TestVerifyIgnoresKeyLocatingHeaders(t *testing.T) {
	clock := &testClock{now: epoch}
	keys := newTestKeySet(t, &MemoryKeyStore{}, KeySetOptions{Now: clock.Now})
	signer, _ := keys.Active(jose.EdDSA)
	attacker := newTestKeySet(t, &MemoryKeyStore{}, KeySetOptions{Now: clock.Now})
	attackerSigner, _ := attacker.Active(jose.EdDSA)
	attackerJWK := attacker.JWKS().Keys[0]
	attackerJWKJSON, err := attackerJWK.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var jwk map[string]any
	_ = json.Unmarshal(attackerJWKJSON, &jwk)
	withLocators := func(h map[string]any) map[string]any {
		h["jku"] = "https://attacker.example/jwks"
		h["x5u"] = "https://attacker.example/cert"
		h["jwk"] = jwk
		return h
	}

	// Our key signed it: the extra headers change nothing.
	ours := signRaw(t, signer, withLocators(header(signer)), validClaims())
	if _, err := keys.Verify(ours, VerifyOptions{Issuer: testIssuer, Now: clock.Now}); err != nil {
		t.Errorf("Verify of our token with jku, x5u and jwk headers: %v", err)
	}
	// The attacker's key signed it, naming our kid and offering its own key.
	forged := signRaw(t, attackerSigner, with(withLocators(header(attackerSigner)), "kid", signer.KeyID()), validClaims())
	if _, err := keys.Verify(forged, VerifyOptions{Issuer: testIssuer, Now: clock.Now}); oauth.ReasonOf(err) != oauth.ReasonSignature {
		t.Errorf("Verify of a token signed with an embedded key: %v, want bad signature", err)
	}
}

func TestVerifyClock(t *testing.T) {
	clock := &testClock{now: epoch}
	keys := newTestKeySet(t, &MemoryKeyStore{}, KeySetOptions{Now: clock.Now})
	signer, _ := keys.Active(jose.ES256)
	token := signRaw(t, signer, header(signer), with(validClaims(), "nbf", epoch.Unix()))
	exp := epoch.Add(60 * time.Second)
	tests := []struct {
		name   string
		now    time.Time
		skew   time.Duration
		reason oauth.Reason
	}{
		{"just before exp", exp.Add(-time.Nanosecond), time.Second, ""},
		{"at exp, inside the default skew", exp, 0, ""},
		{"at exp plus the default skew", exp.Add(DefaultVerifyClockSkew), 0, oauth.ReasonExpired},
		{"at exp plus a configured skew", exp.Add(30 * time.Second), time.Minute, ""},
		{"nbf and iat within the skew", epoch.Add(-4 * time.Second), 0, ""},
		{"nbf beyond the skew", epoch.Add(-6 * time.Second), 0, oauth.ReasonNotYetValid},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			_, err := keys.Verify(token, VerifyOptions{Issuer: testIssuer, ClockSkew: test.skew, Now: func() time.Time { return test.now }})
			if reason := oauth.ReasonOf(err); reason != test.reason || (test.reason == "" && err != nil) {
				t.Errorf("Verify: %v, want reason %q", err, test.reason)
			}
		})
	}
	for _, skew := range []time.Duration{-time.Second, 6 * time.Minute} {
		if _, err := keys.Verify(token, VerifyOptions{Issuer: testIssuer, ClockSkew: skew}); err == nil || errors.Is(err, oauth.ErrInvalidToken) {
			t.Errorf("Verify with skew %s: %v, want a configuration error", skew, err)
		}
	}
	if _, err := keys.Verify(token, VerifyOptions{}); err == nil || errors.Is(err, oauth.ErrInvalidToken) {
		t.Errorf("Verify without an issuer: %v, want a configuration error", err)
	}
}

func TestVerifyAcrossRotation(t *testing.T) {
	ctx := context.Background()
	clock := &testClock{now: epoch}
	keys := newTestKeySet(t, &MemoryKeyStore{}, KeySetOptions{Now: clock.Now, MaxTokenTTL: 10 * time.Minute, ClockSkew: time.Minute})
	minter := newTestMinter(t, keys, jose.EdDSA, clock)
	grant := testGrant()
	grant.TTL = 10 * time.Minute
	token, _, err := minter.Mint(ctx, grant)
	if err != nil {
		t.Fatal(err)
	}
	options := VerifyOptions{Issuer: testIssuer, Now: clock.Now}

	if err := keys.Rotate(ctx, epoch.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	clock.now = epoch.Add(9 * time.Minute)
	if _, err := keys.Verify(token, options); err != nil {
		t.Errorf("a token of the retired key: %v", err)
	}
	// The retired key is dropped once its tokens can no longer be valid.
	if err := keys.Prune(ctx, epoch.Add(12*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Verify(token, options); oauth.ReasonOf(err) != oauth.ReasonKeyID {
		t.Errorf("a token of a dropped key: %v, want unknown kid", err)
	}
}

func FuzzVerify(f *testing.F) {
	keys := newTestKeySet(f, &MemoryKeyStore{}, KeySetOptions{})
	minter, err := NewMinter(keys, MinterOptions{Issuer: testIssuer, Now: func() time.Time { return epoch }})
	if err != nil {
		f.Fatal(err)
	}
	token, _, err := minter.Mint(context.Background(), testGrant())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(token)
	f.Add(tamper(token))
	f.Add("e30.e30.")
	options := VerifyOptions{Issuer: testIssuer, Now: func() time.Time { return epoch }}
	f.Fuzz(func(t *testing.T, token string) {
		verified, err := keys.Verify(token, options)
		if err != nil {
			if !errors.Is(err, oauth.ErrInvalidToken) {
				t.Fatalf("Verify: %v is not ErrInvalidToken", err)
			}
			return
		}
		if verified.Subject == "" || verified.Issuer != testIssuer || verified.Expiry.IsZero() {
			t.Fatalf("accepted %+v", verified)
		}
	})
}

func TestVerifyAudience(t *testing.T) {
	clock := &testClock{now: epoch}
	keys := newTestKeySet(t, &MemoryKeyStore{}, KeySetOptions{Now: clock.Now})
	signer, _ := keys.Active(jose.EdDSA)
	tests := []struct {
		name     string
		aud      any
		required string
		want     []string
		ok       bool
	}{
		{"an array containing it", []string{"https://mail.example/", "https://ledger.example/"}, "https://ledger.example/", []string{"https://mail.example/", "https://ledger.example/"}, true},
		{"a string equal to it", "https://ledger.example/", "https://ledger.example/", []string{"https://ledger.example/"}, true},
		{"none required", []string{"a", "b"}, "", []string{"a", "b"}, true},
		{"none present, none required", nil, "", nil, true},
		{"none present", nil, "https://ledger.example/", nil, false},
		{"a prefix of it", "https://ledger.example", "https://ledger.example/", nil, false},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			token := signRaw(t, signer, header(signer), with(validClaims(), "aud", test.aud))
			got, err := keys.Verify(token, VerifyOptions{Issuer: testIssuer, Audience: test.required, Now: clock.Now})
			if (err == nil) != test.ok {
				t.Fatalf("Verify: %v, want ok=%v", err, test.ok)
			}
			if err == nil && !reflect.DeepEqual(got.Audience, test.want) {
				t.Errorf("audience %q, want %q", got.Audience, test.want)
			}
		})
	}
}
