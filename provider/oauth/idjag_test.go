package oauth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// Every rule of an ID-JAG, each refused with its reason and a description
// that names the rule.
func TestVerifyIDJAG(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys, err := oauth.NewKeySet([]jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Use: "sig"}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rules := oauth.IDJAGRules{Issuer: "https://idp.example", Audience: "https://as.example", Resources: []string{"https://as.example/mcp"},
		ClientID: "agent", MaxLifetime: 5 * time.Minute}
	sign := func(signer *ecdsa.PrivateKey, typ string, claims map[string]any) string {
		options := (&jose.SignerOptions{}).WithHeader("kid", "k1")
		if typ != "" {
			options = options.WithType(jose.ContentType(typ))
		}
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: signer}, options)
		payload, _ := json.Marshal(claims)
		signed, _ := s.Sign(payload)
		token, _ := signed.CompactSerialize()
		return token
	}
	valid := func() map[string]any {
		return map[string]any{"iss": "https://idp.example", "sub": "carol", "aud": "https://as.example", "resource": "https://as.example/mcp",
			"client_id": "agent", "jti": "j-1", "scope": "ledger:read", "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix()}
	}
	with := func(change func(map[string]any)) map[string]any { c := valid(); change(c); return c }
	tests := []struct {
		name   string
		token  string
		reason oauth.Reason
		says   string
	}{
		{"valid", sign(key, oauth.TypIDJAG, valid()), "", ""},
		{"no typ", sign(key, "", valid()), oauth.ReasonType, "oauth-id-jag+jwt"},
		{"an access token", sign(key, "at+jwt", valid()), oauth.ReasonType, "oauth-id-jag+jwt"},
		{"typ JWT", sign(key, "JWT", valid()), oauth.ReasonType, "oauth-id-jag+jwt"},
		{"another key", sign(other, oauth.TypIDJAG, valid()), oauth.ReasonSignature, ""},
		{"another issuer", sign(key, oauth.TypIDJAG, with(func(c map[string]any) { c["iss"] = "https://evil.example" })), oauth.ReasonIssuer, ""},
		{"another audience", sign(key, oauth.TypIDJAG, with(func(c map[string]any) { c["aud"] = "https://other.example" })), oauth.ReasonAudience, "aud"},
		{"two audiences", sign(key, oauth.TypIDJAG, with(func(c map[string]any) { c["aud"] = []string{"https://as.example", "https://other.example"} })), oauth.ReasonAudience, "aud"},
		{"another resource", sign(key, oauth.TypIDJAG, with(func(c map[string]any) { c["resource"] = "https://other.example/mcp" })), oauth.ReasonAudience, "resource"},
		{"another client", sign(key, oauth.TypIDJAG, with(func(c map[string]any) { c["client_id"] = "mallory" })), oauth.ReasonAudience, "client_id"},
		{"no jti", sign(key, oauth.TypIDJAG, with(func(c map[string]any) { delete(c, "jti") })), oauth.ReasonMalformed, "jti"},
		{"no sub", sign(key, oauth.TypIDJAG, with(func(c map[string]any) { delete(c, "sub") })), oauth.ReasonMalformed, "sub"},
		{"no iat", sign(key, oauth.TypIDJAG, with(func(c map[string]any) { delete(c, "iat") })), oauth.ReasonMalformed, "iat"},
		{"expired", sign(key, oauth.TypIDJAG, with(func(c map[string]any) {
			c["iat"], c["exp"] = now.Add(-3*time.Minute).Unix(), now.Add(-time.Minute).Unix()
		})), oauth.ReasonExpired, ""},
		{"lives too long", sign(key, oauth.TypIDJAG, with(func(c map[string]any) { c["exp"] = now.Add(time.Hour).Unix() })), oauth.ReasonExpired, "lives longer"},
		{"scope not a string", sign(key, oauth.TypIDJAG, with(func(c map[string]any) { c["scope"] = []string{"a"} })), oauth.ReasonMalformed, "scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := oauth.VerifyIDJAG(tt.token, keys, rules, now)
			if tt.reason == "" {
				if err != nil || g.Subject != "carol" || g.ID != "j-1" || g.ClientID != "agent" || strings.Join(g.Scopes, " ") != "ledger:read" {
					t.Fatalf("valid: %+v %v", g, err)
				}
				return
			}
			var invalid *oauth.InvalidTokenError
			if !errors.As(err, &invalid) || invalid.Reason != tt.reason || !strings.Contains(invalid.Error(), tt.says) {
				t.Fatalf("got %v, want reason %q saying %q", err, tt.reason, tt.says)
			}
			if strings.Contains(err.Error(), "carol") || strings.Contains(err.Error(), "j-1") {
				t.Errorf("the refusal carries token content: %v", err)
			}
		})
	}
}
