package broker_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

// Two broker processes in the roles of Strata's separate deployment: the
// first is only the Auth Provider (users, agents, the token-exchange
// grant); the second serves MCP, accepts the first's tokens and obtains
// each upstream token from it over HTTP (RFC 8693), as a connector.
func TestSecondBrokerExchangesAtFirst(t *testing.T) {
	bin := buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	idpAddress, gatewayAddress, ledgerAddress := freeAddress(t), freeAddress(t), freeAddress(t)
	idp, gateway := "http://"+idpAddress, "http://"+gatewayAddress
	ledgerAudience := "http://" + ledgerAddress + "/mcp"
	callback := "http://127.0.0.1:53682/callback"

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "idp.yaml"), `
version: 1
admin: {address: "127.0.0.1:0"}
http: {address: `+idpAddress+`}
storage: {bolt: {path: idp.db}}
authProvider:
  enabled: true
  issuer: `+idp+`
  audiences: [`+gateway+`/mcp, `+ledgerAudience+`]
  scopes: [ledger:read, ledger:write]
  exchangeTTL: 30s
  login:
    users:
      - {username: demo, passwordHash: "`+demoPasswordHash+`", groups: [warehouse-ops]}
  clients:
    - clientID: agent
      clientSecret: agent-secret-0123456789
      redirectURIs: [`+callback+`]
      audiences: [`+gateway+`/mcp]
      scopes: [ledger:read]
    - clientID: gateway
      clientSecret: gateway-secret-0123456789
      grantTypes: [urn:ietf:params:oauth:grant-type:token-exchange]
      audiences: [`+ledgerAudience+`]
`)
	writeFile(t, filepath.Join(dir, "gateway.yaml"), `
version: 1
admin: {address: "127.0.0.1:0"}
audit: {dir: gateway-audit}
http: {address: `+gatewayAddress+`}
connectors:
  - name: corp-auth
    type: oidc
    oidcWellKnownURL: `+idp+`/.well-known/openid-configuration
    oauthClientID: gateway
    oauthClientSecret: gateway-secret-0123456789
mcpProvider:
  enabled: true
  authorization:
    oauth:
      enabled: true
      servers:
        - wellKnownEndpoint: `+idp+`/.well-known/oauth-authorization-server
          tokenValidation: {method: jwt, expectedAudiences: [`+gateway+`/mcp]}
apps:
  - name: ledger
    type: mcpProxy
    upstream: {transport: stream, stream: {url: "`+ledgerAudience+`"}}
    authorization:
      outbound:
        type: tokenExchange
        tokenExchange:
          type: delegation
          idp: corp-auth
          audience: `+ledgerAudience+`
          tools:
            - {name: whoami, ttl: 5s, scopes: [{name: ledger:read}]}
            - {name: "*", ttl: 5s}
`)
	startProcess(t, idpAddress, bin, "serve", "--config", filepath.Join(dir, "idp.yaml"))
	startProcess(t, ledgerAddress, bin, "upstream", "sample", "--listen", ledgerAddress,
		"--issuer", idp, "--audience", ledgerAudience)
	startProcess(t, gatewayAddress, bin, "serve", "--config", filepath.Join(dir, "gateway.yaml"))

	// The user signs in at the Auth Provider through the agent
	// (authorization code with PKCE), for the gateway's MCP endpoint.
	verifier := pkceVerifier(t)
	challenge := sha256.Sum256([]byte(verifier))
	authorize := idp + "/authorize?" + url.Values{
		"response_type":         {"code"},
		"client_id":             {"agent"},
		"redirect_uri":          {callback},
		"scope":                 {"ledger:read"},
		"state":                 {"s-1"},
		"resource":              {gateway + "/mcp"},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(challenge[:])},
		"code_challenge_method": {"S256"},
	}.Encode()
	back := browserLogin(t, authorize, "demo", "demo-password", "allow")
	if back.Query().Get("state") != "s-1" || back.Query().Get("code") == "" {
		t.Fatalf("authorization response %s", back)
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")},
		"redirect_uri": {callback}, "code_verifier": {verifier}}
	request, _ := http.NewRequest(http.MethodPost, idp+"/token", strings.NewReader(form.Encode()))
	request.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	request.SetBasicAuth("agent", "agent-secret-0123456789")
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		t.Fatal(err)
	}
	var issued struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	json.NewDecoder(response.Body).Decode(&issued)
	response.Body.Close()
	if issued.AccessToken == "" {
		t.Fatalf("token endpoint: %d %s", response.StatusCode, issued.Error)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	session := connectWithToken(t, ctx, gateway+"/mcp", issued.AccessToken)
	seen := whoami(t, ctx, session, "ledger_whoami")
	claims := seen.VerifiedClaims
	if !seen.Verified || claims == nil {
		t.Fatalf("the upstream did not verify a token: %+v", seen)
	}
	if claims.Issuer != idp || claims.Subject != "demo" || claims.ClientID != "agent" ||
		!slices.Equal(claims.Audience, []string{ledgerAudience}) || claims.Scope != "ledger:read" {
		t.Errorf("upstream saw %+v, want iss %s, sub demo, client agent, aud %s, scope ledger:read", claims, idp, ledgerAudience)
	}
	if claims.Actor["sub"] != "agent" {
		t.Errorf("act = %v, want sub agent", claims.Actor)
	}
	if lifetime := claims.ExpiresAt - claims.IssuedAt; lifetime != 5 {
		t.Errorf("exp - iat = %d, want the tool's ttl 5 (asked as requested_lifetime, under the Auth Provider's exchangeTTL 30)", lifetime)
	}
	if _, inbound := oauthtest.Decode(t, issued.AccessToken); claims.TokenID == "" || claims.TokenID == inbound["jti"] {
		t.Errorf("the upstream's token has jti %q, the agent's %v: it must be a new token", claims.TokenID, inbound["jti"])
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func pkceVerifier(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
