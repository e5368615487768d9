package authserver

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestMetadataIsServedWhereClientsLookAndNamesTheIssuerExactly(t *testing.T) {
	tests := []struct {
		name      string
		path      string
		exchanger bool
		dcr       bool
		// wellKnown are the metadata URLs relative to the origin; missing
		// must not serve metadata.
		wellKnown []string
		missing   []string
	}{
		{
			name:      "issuer at the root",
			exchanger: true,
			dcr:       true,
			wellKnown: []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"},
		},
		{
			name: "issuer with a path",
			path: "/auth",
			wellKnown: []string{
				"/.well-known/oauth-authorization-server/auth",
				"/auth/.well-known/openid-configuration",
				"/.well-known/openid-configuration/auth",
			},
			missing: []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			options := []serverOption{withPath(tt.path), withOptions(func(o *Options) { o.Registration = tt.dcr })}
			if tt.exchanger {
				options = append(options, withExchanger())
			}
			ts := newTestServer(t, options...)
			for _, path := range tt.wellKnown {
				resp, err := http.Get(ts.origin + path)
				if err != nil {
					t.Fatal(err)
				}
				var m map[string]any
				err = json.NewDecoder(resp.Body).Decode(&m)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || err != nil {
					t.Fatalf("GET %s: %d, %v", path, resp.StatusCode, err)
				}
				if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("%s: Content-Type %q", path, ct)
				}
				if cc := resp.Header.Get("Cache-Control"); !strings.HasPrefix(cc, "public, max-age=") {
					t.Errorf("%s: Cache-Control %q", path, cc)
				}
				if m["issuer"] != ts.issuer {
					t.Errorf("%s: issuer %v, want %q", path, m["issuer"], ts.issuer)
				}
				for field, endpoint := range map[string]string{
					"authorization_endpoint": "/authorize", "token_endpoint": "/token", "jwks_uri": "/jwks.json",
					"introspection_endpoint": "/introspect", "revocation_endpoint": "/revoke",
				} {
					if m[field] != ts.issuer+endpoint {
						t.Errorf("%s: %s = %v, want %s", path, field, m[field], ts.issuer+endpoint)
					}
				}
				if registration, ok := m["registration_endpoint"]; ok != tt.dcr || (ok && registration != ts.issuer+"/register") {
					t.Errorf("%s: registration_endpoint = %v, want it iff registration is on", path, registration)
				}
				lists := map[string][]string{
					"code_challenge_methods_supported":      {"S256"},
					"response_types_supported":              {"code"},
					"response_modes_supported":              {"query"},
					"token_endpoint_auth_methods_supported": {"client_secret_basic", "client_secret_post", "none"},
					"subject_types_supported":               {"public"},
					"id_token_signing_alg_values_supported": {"ES256"},
					"scopes_supported":                      {"mcp", "ledger:read", "ledger:write", "openid"},
				}
				grants := []string{"authorization_code", "refresh_token", "client_credentials"}
				if tt.exchanger {
					grants = append(grants, "urn:ietf:params:oauth:grant-type:token-exchange")
				}
				lists["grant_types_supported"] = grants
				for field, want := range lists {
					if got := stringList(m[field]); !slices.Equal(got, want) {
						t.Errorf("%s: %s = %v, want %v", path, field, got, want)
					}
				}
				if m["authorization_response_iss_parameter_supported"] != true {
					t.Errorf("%s: authorization_response_iss_parameter_supported = %v", path, m["authorization_response_iss_parameter_supported"])
				}
			}
			for _, path := range tt.missing {
				resp, err := http.Get(ts.origin + path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusNotFound {
					t.Errorf("GET %s: %d, want 404", path, resp.StatusCode)
				}
			}

			resp, err := http.Get(ts.issuer + "/jwks.json")
			if err != nil {
				t.Fatal(err)
			}
			var jwks struct {
				Keys []map[string]any `json:"keys"`
			}
			err = json.NewDecoder(resp.Body).Decode(&jwks)
			resp.Body.Close()
			if err != nil || len(jwks.Keys) != 2 {
				t.Fatalf("jwks: %v, %d keys, want the EdDSA and ES256 keys", err, len(jwks.Keys))
			}
			for _, key := range jwks.Keys {
				if key["d"] != nil || key["kid"] == "" || key["use"] != "sig" {
					t.Errorf("published key %v: want a public signing key with a kid", key)
				}
			}

			if got := ts.server.Metadata(); got.Issuer != ts.issuer || !slices.Equal(got.CodeChallengeMethodsSupported, []string{"S256"}) {
				t.Errorf("Metadata() = %+v", got)
			}
		})
	}
}

func stringList(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, item := range list {
		s, _ := item.(string)
		out = append(out, s)
	}
	return out
}

func TestNewRefusesBadOptions(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Options)
		want   string
	}{
		{"issuer with a trailing slash", func(o *Options) { o.Issuer += "/" }, "issuer"},
		{"issuer with a query", func(o *Options) { o.Issuer += "?x=1" }, "issuer"},
		{"no audience", func(o *Options) { o.Audiences = nil }, "audiences"},
		{"plain http redirect", func(o *Options) { o.Clients[0].RedirectURIs = []string{"http://app.example/cb"} }, "clients[0].redirectURIs[0]"},
		{"public client with client_credentials", func(o *Options) { o.Clients[0].GrantTypes = []string{GrantClientCredentials} }, "clients[0].grantTypes[0]"},
		{"unknown scope", func(o *Options) { o.Clients[0].Scopes = []string{"admin"} }, "clients[0].scopes[0]"},
		{"password not bcrypt", func(o *Options) { o.Users[0].PasswordHash = "secret" }, "users[0].passwordHash"},
		{"mixed bcrypt costs", func(o *Options) { o.Users[1].PasswordHash = hashPasswordAt(t, "bob-password", bcrypt.MinCost+1) }, "users[1].passwordHash"},
		{"introspecting public client", func(o *Options) { o.Clients[0].Introspect = true }, "clients[0].introspect"},
		{"subject audience not a URI", func(o *Options) { o.Clients[3].SubjectAudiences = []string{"ledger"} }, "clients[3].subjectAudiences[0]"},
		{"duplicate client", func(o *Options) { o.Clients[1].ID = o.Clients[0].ID }, "clients[1].clientID"},
		{"access token too long", func(o *Options) { o.AccessTokenTTL = 2 * time.Hour }, "accessTokenTTL"},
	}
	ts := newTestServer(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := ts.defaultOptions()
			opts.DB, opts.Keys, opts.Minter = ts.db, ts.keys, ts.minter
			tt.modify(&opts)
			_, err := New(t.Context(), opts)
			if err == nil || !strings.Contains(err.Error(), tt.want+":") {
				t.Fatalf("New: %v, want a problem at %s", err, tt.want)
			}
		})
	}
}
