package oauth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

func TestDeriveIssuer(t *testing.T) {
	tests := []struct {
		url, want string // want "" means an error
	}{
		{"https://as.example/.well-known/oauth-authorization-server", "https://as.example"},
		{"https://as.example/.well-known/oauth-authorization-server/tenant/a", "https://as.example/tenant/a"},
		{"https://as.example/.well-known/openid-configuration", "https://as.example"},
		{"https://as.example/tenant/.well-known/openid-configuration", "https://as.example/tenant"},
		{"https://as.example/.well-known/openid-configuration/tenant", "https://as.example/tenant"},
		{"https://as.example:8443/realms/x/.well-known/openid-configuration", "https://as.example:8443/realms/x"},
		{"http://127.0.0.1:8080/.well-known/oauth-authorization-server", "http://127.0.0.1:8080"},
		{"https://as.example/tenant/.well-known/oauth-authorization-server", ""}, // RFC 8414 inserts, never appends
		{"https://as.example/metadata.json", ""},
		{"https://as.example/.well-known/oauth-authorization-server?x=1", ""},
		{"https://as.example/.well-known/oauth-authorization-server/", ""},
		{"https://as.example//.well-known/openid-configuration", ""},
		{"http://as.example/.well-known/openid-configuration", ""},
		{"https://u:p@as.example/.well-known/openid-configuration", ""},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			got, err := IssuerFromMetadataURL(tt.url)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("deriveIssuer = %q, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("deriveIssuer = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestParseMetadata(t *testing.T) {
	const issuer = "https://as.example"
	tests := []struct {
		name, body, method, wantErr string
	}{
		{name: "jwt", method: MethodJWT, body: `{"issuer":"https://as.example","jwks_uri":"https://as.example/jwks"}`},
		{name: "issuer with trailing slash", method: MethodJWT, body: `{"issuer":"https://as.example/","jwks_uri":"https://keys.example/jwks"}`},
		{name: "introspection", method: MethodIntrospection, body: `{"issuer":"https://as.example","introspection_endpoint":"https://as.example/introspect"}`},
		{name: "issuer mismatch", method: MethodJWT, wantErr: "does not match",
			body: `{"issuer":"https://evil.example","jwks_uri":"https://as.example/jwks"}`},
		{name: "issuer with a different path", method: MethodJWT, wantErr: "does not match",
			body: `{"issuer":"https://as.example/other","jwks_uri":"https://as.example/jwks"}`},
		{name: "issuer missing", method: MethodJWT, wantErr: "issuer missing", body: `{"jwks_uri":"https://as.example/jwks"}`},
		{name: "issuer not a string", method: MethodJWT, wantErr: "issuer missing", body: `{"issuer":1,"jwks_uri":"https://as.example/jwks"}`},
		{name: "duplicate issuer", method: MethodJWT, wantErr: "duplicate",
			body: `{"issuer":"https://evil.example","issuer":"https://as.example","jwks_uri":"https://as.example/jwks"}`},
		{name: "jwks_uri missing", method: MethodJWT, wantErr: "jwks_uri is required", body: `{"issuer":"https://as.example"}`},
		{name: "jwks_uri over http", method: MethodJWT, wantErr: "jwks_uri", body: `{"issuer":"https://as.example","jwks_uri":"http://as.example/jwks"}`},
		{name: "jwks_uri with userinfo", method: MethodJWT, wantErr: "jwks_uri", body: `{"issuer":"https://as.example","jwks_uri":"https://a:b@as.example/jwks"}`},
		{name: "introspection_endpoint missing", method: MethodIntrospection, wantErr: "introspection_endpoint is required",
			body: `{"issuer":"https://as.example","jwks_uri":"https://as.example/jwks"}`},
		{name: "not an object", method: MethodJWT, wantErr: "metadata", body: `[]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseMetadata([]byte(tt.body), issuer, tt.method)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestMetadataIssuerMismatchRejected(t *testing.T) {
	f := newFixture(t, nil)
	f.as.SetMetadata(map[string]any{"issuer": "https://evil.example"})
	_, err := f.verify(f.token(f.as.EC, nil))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("error = %v, want ErrUnavailable for the issuer mismatch", err)
	}
	if f.as.Hits("/jwks") != 0 {
		t.Fatal("keys fetched from a server whose metadata names another issuer")
	}
}

func TestParseJWKS(t *testing.T) {
	ecJSON := string(oauthtest.JSON(t, oauthtest.NewKey(t, "ec-1", "ES256").JWK()))
	rsaJSON := string(oauthtest.JSON(t, oauthtest.NewKey(t, "rsa-1", "RS256").JWK()))
	tests := []struct {
		name    string
		body    string
		keys    int
		wantErr bool
	}{
		{name: "two keys", body: `{"keys":[` + ecJSON + `,` + rsaJSON + `]}`, keys: 2},
		{name: "symmetric and encryption keys skipped", keys: 1,
			body: `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"},` + strings.Replace(rsaJSON, `"use":"sig"`, `"use":"enc"`, 1) + `,` + ecJSON + `]}`},
		{name: "unknown key type skipped", keys: 1, body: `{"keys":[{"kty":"ML-DSA","kid":"pq"},` + ecJSON + `]}`},
		{name: "key_ops without verify skipped", keys: 1,
			body: `{"keys":[` + strings.Replace(rsaJSON, `"use":"sig"`, `"key_ops":["encrypt"]`, 1) + `,` + ecJSON + `]}`},
		{name: "alg that does not fit the key skipped", keys: 1,
			body: `{"keys":[` + strings.Replace(ecJSON, `"kty"`, `"alg":"RS256","kty"`, 1) + `,` + rsaJSON + `]}`},
		{name: "HS alg on a key skipped", keys: 1,
			body: `{"keys":[` + strings.Replace(rsaJSON, `"kty"`, `"alg":"HS256","kty"`, 1) + `,` + ecJSON + `]}`},
		{name: "no usable key", body: `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`, wantErr: true},
		{name: "empty", body: `{"keys":[]}`, wantErr: true},
		{name: "not JSON", body: `keys`, wantErr: true},
		{name: "keys not an array", body: `{"keys":{}}`, wantErr: true},
		{name: "duplicate keys member", body: `{"keys":[` + ecJSON + `],"keys":[]}`, wantErr: true},
		{name: "too many keys", body: `{"keys":[` + strings.Repeat(ecJSON+",", maxJWKSKeys) + ecJSON + `]}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, _, err := parseJWKS([]byte(tt.body))
			if tt.wantErr {
				if err == nil {
					t.Fatal("want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(set.keys) != tt.keys {
				t.Fatalf("%d keys, want %d", len(set.keys), tt.keys)
			}
		})
	}
}

func TestJWKSWithWeakRSAKeySkipped(t *testing.T) {
	body := `{"keys":[{"kty":"RSA","kid":"weak","n":"` + oauthtest.B64(make1024BitModulus()) + `","e":"AQAB"}]}`
	if _, skipped, err := parseJWKS([]byte(body)); err == nil || len(skipped) != 1 {
		t.Fatalf("weak RSA key: err=%v skipped=%v", err, skipped)
	}
}

func make1024BitModulus() []byte {
	n := make([]byte, 128)
	n[0] = 0xc1
	n[127] = 0x01
	return n
}

func TestNewVerifierValidation(t *testing.T) {
	good := ServerConfig{MetadataURL: "https://as.example/.well-known/openid-configuration", ExpectedAudiences: []string{oauthtest.Audience}}
	tests := []struct {
		name    string
		servers []ServerConfig
		want    []string // substrings of the joined error; nil means valid
	}{
		{name: "valid", servers: []ServerConfig{good}},
		{name: "no servers", want: []string{"at least one"}},
		{name: "every problem at once", servers: []ServerConfig{{
			MetadataURL: "http://as.example/.well-known/openid-configuration",
			Method:      "magic",
			Algorithms:  []string{"HS256", "none", "ES256"},
			ClockSkew:   time.Hour,
		}}, want: []string{"servers[0].metadataURL", "servers[0].method", "servers[0].algorithms[0]", "servers[0].algorithms[1]", "servers[0].clockSkew", "servers[0].expectedAudiences"}},
		{name: "introspection needs credentials", servers: []ServerConfig{{MetadataURL: good.MetadataURL, ExpectedAudiences: good.ExpectedAudiences, Method: MethodIntrospection}},
			want: []string{"servers[0].clientID"}},
		{name: "relaxed audience needs no audiences", servers: []ServerConfig{{MetadataURL: good.MetadataURL, RelaxedAudience: true}}},
		{name: "empty audience", servers: []ServerConfig{{MetadataURL: good.MetadataURL, ExpectedAudiences: []string{""}}},
			want: []string{"expectedAudiences[0]"}},
		{name: "duplicate issuer", servers: []ServerConfig{good, {MetadataURL: "https://as.example/.well-known/oauth-authorization-server", ExpectedAudiences: good.ExpectedAudiences}},
			want: []string{"servers[1].metadataURL", "already"}},
		{name: "refresh too often", servers: []ServerConfig{{MetadataURL: good.MetadataURL, ExpectedAudiences: good.ExpectedAudiences, RefreshInterval: time.Second}},
			want: []string{"refreshInterval"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewVerifier(tt.servers, Options{})
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("want an error")
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestNewVerifierDoesNoIO(t *testing.T) {
	f := newFixture(t, nil)
	_ = f.v.Issuers()
	if f.as.Hits(oauthtest.MetadataPath) != 0 {
		t.Fatal("NewVerifier or Issuers fetched metadata")
	}
}
