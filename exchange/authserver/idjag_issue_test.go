package authserver

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// The Auth Provider as the company's identity provider: a client trades an
// ID token it was given for an ID-JAG for a registered resource
// application, as the policy allows; each wrong request is refused.
func TestIssueIDJAG(t *testing.T) {
	const resourceAS, resource = "https://b.example", "https://b.example/mcp"
	ts := newTestServer(t, withExchanger(), withOptions(func(o *Options) {
		o.Clients = append(o.Clients,
			Client{ID: "xaa-agent", Secret: "xaa-agent-secret-0123456789", RedirectURIs: []string{agentRedirect},
				GrantTypes: []string{GrantAuthorizationCode, GrantTokenExchange}, Scopes: []string{"openid", "ledger:read"}},
			Client{ID: "other-agent", Secret: "other-agent-secret-0123456789", RedirectURIs: []string{agentRedirect},
				GrantTypes: []string{GrantAuthorizationCode, GrantTokenExchange}, Scopes: []string{"openid"}})
		o.IDJAGIssuing = &IDJAGIssuing{
			Resources: []IDJAGResource{{Name: "ledger-b", Audience: resourceAS, Resources: []string{resource}, Scopes: []string{"ledger:read", "ledger:write"}}},
			Decide: func(_ context.Context, r IDJAGRequest) (bool, []string, string) {
				if !slices.Contains(r.Groups, "finance") || slices.Contains(r.Scopes, "ledger:write") {
					return false, nil, "finance may read the ledger, nothing more"
				}
				return true, nil, ""
			},
		}
	}))
	idToken := func(client, secret string) string {
		code, verifier := ts.codeFor(t, client, agentRedirect, "openid", "")
		tokens := ts.exchangeCode(client, secret, code, verifier, agentRedirect)
		if tokens.str("id_token") == "" {
			t.Fatalf("no id_token: %d %v", tokens.status, tokens.body)
		}
		return tokens.str("id_token")
	}
	aliceForXAA := idToken("xaa-agent", "xaa-agent-secret-0123456789")
	exchange := func(extra url.Values, subject string) tokenResponse {
		form := url.Values{"grant_type": {GrantTokenExchange}, "requested_token_type": {TokenTypeIDJAG},
			"subject_token": {subject}, "subject_token_type": {TokenTypeIDToken},
			"audience": {resourceAS}, "resource": {resource}, "scope": {"ledger:read"}}
		for k, v := range extra {
			form[k] = v
		}
		return ts.post("/token", form, "xaa-agent", "xaa-agent-secret-0123456789")
	}
	got := exchange(nil, aliceForXAA)
	if got.status != http.StatusOK || got.str("token_type") != "N_A" || got.str("issued_token_type") != TokenTypeIDJAG || got.body["expires_in"] != float64(300) {
		t.Fatalf("the exchange: %d %v", got.status, got.body)
	}
	header, claims := ts.verifyJWT(got.str("access_token"))
	if header.ExtraHeaders["typ"] != oauth.TypIDJAG {
		t.Errorf("typ %v", header.ExtraHeaders["typ"])
	}
	for k, want := range map[string]any{"iss": ts.issuer, "sub": "alice", "aud": resourceAS, "resource": resource, "client_id": "xaa-agent", "scope": "ledger:read"} {
		if claims[k] != want {
			t.Errorf("the grant's %s = %v, want %v", k, claims[k], want)
		}
	}
	if claims["jti"] == nil || claims["exp"].(float64)-claims["iat"].(float64) != 300 {
		t.Errorf("jti %v, lifetime %v", claims["jti"], claims["exp"].(float64)-claims["iat"].(float64))
	}

	for _, tt := range []struct {
		name    string
		extra   url.Values
		subject string
		error   string
		says    string
	}{
		{"subject token for another client", nil, idToken("other-agent", "other-agent-secret-0123456789"), "invalid_grant", "this client"},
		{"an access token as the subject", url.Values{"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"}}, aliceForXAA, "invalid_request", "ID token"},
		{"unknown resource application", url.Values{"audience": {"https://c.example"}, "resource": {"https://c.example/mcp"}}, aliceForXAA, "invalid_target", "no registered resource application"},
		{"a resource of no application", url.Values{"resource": {"https://b.example/other"}}, aliceForXAA, "invalid_target", "no registered resource application"},
		{"a scope the application does not offer", url.Values{"scope": {"admin"}}, aliceForXAA, "invalid_scope", "admin"},
		{"policy denial", url.Values{"scope": {"ledger:write"}}, aliceForXAA, "access_denied", "finance may read the ledger"},
		{"actor token present", url.Values{"actor_token": {aliceForXAA}, "actor_token_type": {TokenTypeIDToken}}, aliceForXAA, "invalid_request", "no actor token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := exchange(tt.extra, tt.subject)
			if got.status < 400 || got.str("error") != tt.error || !strings.Contains(got.str("error_description"), tt.says) {
				t.Fatalf("%d %v; want %s saying %q", got.status, got.body, tt.error, tt.says)
			}
		})
	}
}
