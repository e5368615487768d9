package oauth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

func TestVerifyIDToken(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys, err := oauth.NewKeySet([]jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Use: "sig"}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rules := oauth.IDTokenRules{Issuer: "https://idp.example", ClientID: "broker", Nonce: "n-1"}
	sign := func(signer *ecdsa.PrivateKey, header map[string]any, claims map[string]any) string {
		options := (&jose.SignerOptions{}).WithHeader("kid", "k1")
		for name, value := range header {
			options = options.WithHeader(jose.HeaderKey(name), value)
		}
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: signer}, options)
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := json.Marshal(claims)
		signed, err := s.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		token, _ := signed.CompactSerialize()
		return token
	}
	valid := func() map[string]any {
		return map[string]any{"iss": "https://idp.example", "sub": "carol", "aud": "broker", "nonce": "n-1",
			"iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
	}
	b64 := base64.RawURLEncoding.EncodeToString
	tests := []struct {
		name   string
		token  func() string
		reason oauth.Reason
	}{
		{"valid", func() string { return sign(key, nil, valid()) }, ""},
		{"typ JWT", func() string { return sign(key, map[string]any{"typ": "JWT"}, valid()) }, ""},
		{"an access token", func() string { return sign(key, map[string]any{"typ": "at+jwt"}, valid()) }, oauth.ReasonType},
		{"another key", func() string { return sign(other, nil, valid()) }, oauth.ReasonSignature},
		{"unknown kid", func() string { return sign(key, map[string]any{"kid": "k2"}, valid()) }, oauth.ReasonKeyID},
		{"crit", func() string { return sign(key, map[string]any{"crit": []string{"exp"}, "exp": 1}, valid()) }, oauth.ReasonCritical},
		{"alg none", func() string {
			c, _ := json.Marshal(valid())
			return b64([]byte(`{"alg":"none"}`)) + "." + b64(c) + "."
		}, oauth.ReasonAlgorithm},
		{"another issuer", func() string { c := valid(); c["iss"] = "https://evil.example"; return sign(key, nil, c) }, oauth.ReasonIssuer},
		{"another audience", func() string { c := valid(); c["aud"] = "other"; return sign(key, nil, c) }, oauth.ReasonAudience},
		{"several audiences, no azp", func() string { c := valid(); c["aud"] = []string{"broker", "other"}; return sign(key, nil, c) }, oauth.ReasonAudience},
		{"several audiences, azp", func() string {
			c := valid()
			c["aud"], c["azp"] = []string{"broker", "other"}, "broker"
			return sign(key, nil, c)
		}, ""},
		{"azp another client", func() string { c := valid(); c["azp"] = "other"; return sign(key, nil, c) }, oauth.ReasonAudience},
		{"wrong nonce", func() string { c := valid(); c["nonce"] = "n-2"; return sign(key, nil, c) }, oauth.ReasonMalformed},
		{"no nonce", func() string { c := valid(); delete(c, "nonce"); return sign(key, nil, c) }, oauth.ReasonMalformed},
		{"expired", func() string { c := valid(); c["exp"] = now.Add(-time.Hour).Unix(); return sign(key, nil, c) }, oauth.ReasonExpired},
		{"no exp", func() string { c := valid(); delete(c, "exp"); return sign(key, nil, c) }, oauth.ReasonNoExpiry},
		{"issued in the future", func() string { c := valid(); c["iat"] = now.Add(time.Hour).Unix(); return sign(key, nil, c) }, oauth.ReasonIssuedInFuture},
		{"no subject", func() string { c := valid(); delete(c, "sub"); return sign(key, nil, c) }, oauth.ReasonSubject},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			claims, err := oauth.VerifyIDToken(test.token(), keys, rules, now)
			if test.reason == "" {
				if err != nil || claims["sub"] != "carol" {
					t.Fatalf("got %v, want the claims", err)
				}
				return
			}
			if got := oauth.ReasonOf(err); got != test.reason {
				t.Errorf("got %v (reason %q), want reason %q", err, got, test.reason)
			}
		})
	}
}
