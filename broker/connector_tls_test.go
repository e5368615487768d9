package broker_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/broker/testpki"
)

// An identity provider on its own PKI that requires client certificates
// (here another broker's Auth Provider behind mutual TLS): with its CA and
// a client certificate the gateway reads its metadata and keys, checks the
// agent's token and exchanges it for the upstream's; with another CA the
// agent is refused with a clear error and nothing reaches the upstream.
func TestIdentityProviderOnPrivatePKI(t *testing.T) {
	ca, other := testpki.NewCA(t, "corp"), testpki.NewCA(t, "other")
	server, client := ca.Server(t, "idp"), ca.Client(t, "gateway")
	upstream, hits := countingUpstream(t)
	idp := mutualTLSAuthProvider(t, ca, server, `
  audiences: [https://gateway.example/mcp, https://ledger.example/]
  scopes: [ledger:read]
  clients:
    - {clientID: agent, clientSecret: agent-secret-0123456789, grantTypes: [client_credentials], audiences: [https://gateway.example/mcp]}
    - clientID: gateway
      clientSecret: gateway-secret-0123456789
      grantTypes: [urn:ietf:params:oauth:grant-type:token-exchange]
      audiences: [https://ledger.example/]
      subjectAudiences: [https://gateway.example/mcp]
`)

	gateway := func(caFile string, withCertificate bool) string {
		tlsBlock := fmt.Sprintf("{caFile: %q}", caFile)
		if withCertificate {
			tlsBlock = fmt.Sprintf("{caFile: %q, certFile: %q, keyFile: %q}", caFile, client.CertFile, client.KeyFile)
		}
		return startBroker(t, "%s", fmt.Sprintf(`
version: 1
connectors:
  - {name: corp, type: oidc, oidcWellKnownURL: %[1]s/.well-known/openid-configuration, oauthClientID: gateway,
     oauthClientSecret: gateway-secret-0123456789, tls: %[2]s}
mcpProvider:
  enabled: true
  authorization:
    oauth:
      enabled: true
      tls: %[2]s
      servers:
        - wellKnownEndpoint: %[1]s/.well-known/oauth-authorization-server
          tokenValidation: {method: jwt, expectedAudiences: [https://gateway.example/mcp]}
apps:
  - name: ledger
    type: mcpProxy
    upstream: {transport: stream, stream: {url: %[3]q}}
    authorization:
      outbound:
        type: tokenExchange
        tokenExchange:
          type: delegation
          idp: corp
          audience: https://ledger.example/
          tools: [{name: "*", ttl: 5s, scopes: [{name: ledger:read}]}]
`, idp, tlsBlock, upstream)) + "/mcp"
	}

	// The agent's token, over mutual TLS.
	agentClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{ca.Client(t, "agent").TLS}}}}
	accessToken := clientCredentialsToken(t, agentClient, idp+"/token", url.Values{"client_id": {"agent"},
		"client_secret": {"agent-secret-0123456789"}, "scope": {"ledger:read"}, "resource": {"https://gateway.example/mcp"}})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	session := connectWithToken(t, ctx, gateway(ca.File, true), accessToken)
	if res := callTool(t, ctx, session, "ledger_get_balance", map[string]any{"account": "alice"}); res.IsError {
		t.Fatalf("a call through the IdP on its own PKI: %s", text(res))
	}
	if hits.Load() == 0 {
		t.Fatal("the upstream saw nothing")
	}

	// Trusting another CA, or without the client certificate the IdP
	// requires, the gateway cannot check the agent's token.
	for name, endpoint := range map[string]string{"another CA": gateway(other.File, true), "no client certificate": gateway(ca.File, false)} {
		before := hits.Load()
		wrong := newWireClient(t, endpoint)
		wrong.header.Set("Authorization", "Bearer "+accessToken)
		answer := wrong.post(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
		body, _ := io.ReadAll(answer.Body)
		answer.Body.Close()
		if answer.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "authorization server unavailable") {
			t.Errorf("with %s: %d %s, want 503 authorization server unavailable", name, answer.StatusCode, body)
		}
		if hits.Load() != before {
			t.Errorf("with %s: a call reached the upstream although the agent's token could not be checked", name)
		}
	}
}

// Federated sign-in through an identity provider on its own PKI that
// requires client certificates: the gateway's Auth Provider discovers it,
// redeems the code and checks the ID token through the connector's TLS.
func TestFederatedSignInOnPrivatePKI(t *testing.T) {
	ca := testpki.NewCA(t, "corp")
	server, client := ca.Server(t, "idp"), ca.Client(t, "gateway")
	gatewayAddr := freeAddress(t)
	gatewayURL := "http://" + gatewayAddr
	idp := mutualTLSAuthProvider(t, ca, server, fmt.Sprintf(`
  scopes: [openid, profile, email]
  login:
    users:
      - {username: demo, passwordHash: %q, name: Demo User, email: demo@example.com}
  clients:
    - {clientID: gateway-login, clientSecret: gateway-login-secret, redirectURIs: [%s/oidc-callback], skipConsent: true, scopes: [openid, profile, email]}
`, demoPasswordHash, gatewayURL))
	startBrokerAt(t, gatewayAddr, "%s", fmt.Sprintf(`
version: 1
storage: {bolt: {path: %q}}
connectors:
  - name: corp
    type: oidc
    oidcWellKnownURL: %s/.well-known/openid-configuration
    oauthClientID: gateway-login
    oauthClientSecret: gateway-login-secret
    oauthLoginRedirect: {urls: [%s/oidc-callback]}
    tls: {caFile: %q, certFile: %q, keyFile: %q}
authProvider:
  enabled: true
  issuer: %s
  scopes: [ledger:read]
  login: {connector: corp}
  clients:
    - {clientID: agent, redirectURIs: [https://agent.example/cb], skipConsent: true}
mcpProvider:
  enabled: true
  authorization: {unauthenticated: {enabled: true}}
`, filepath.Join(t.TempDir(), "gateway.db"), idp, gatewayURL, ca.File, client.CertFile, client.KeyFile, gatewayURL))

	// The user's browser, which holds a certificate the IdP accepts too.
	b := newBrowser(t)
	b.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{ca.Client(t, "browser").TLS}}}
	start, _ := agentAuthorizeURL(gatewayURL, "https://agent.example/cb", "state-pki")
	page, err := url.Parse(start)
	if err != nil {
		t.Fatal(err)
	}
	var form url.Values
	for step := 0; step < 10; step++ {
		resp, body := b.do(page, form)
		form = nil
		if location := resp.Header.Get("Location"); location != "" {
			next, err := page.Parse(location)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(next.String(), "https://agent.example/cb") {
				if next.Query().Get("code") == "" {
					t.Fatalf("back at the agent without a code: %s", next)
				}
				return
			}
			page = next
			continue
		}
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="password"`) {
			t.Fatalf("step %d at %s: %d\n%s\nrequests:\n%s", step, page, resp.StatusCode, body, strings.Join(b.trail, "\n"))
		}
		form = hiddenInputs(body)
		form.Set("username", "demo")
		form.Set("password", "demo-password")
		action := formTag.FindString(body)
		if target, err := page.Parse(tagAttributes(action)["action"]); err == nil {
			page = target
		}
	}
	t.Fatalf("the sign-in did not come back to the agent:\n%s", strings.Join(b.trail, "\n"))
}

// mutualTLSAuthProvider starts a broker whose Auth Provider is served
// over TLS with server, asking clients for certificates ca issued, and
// returns its issuer URL. authProvider is the rest of the authProvider
// block (indented by two).
func mutualTLSAuthProvider(t *testing.T, ca *testpki.CA, server *testpki.Leaf, authProvider string) string {
	t.Helper()
	addr := freeAddress(t)
	issuer := "https://" + addr
	startBrokerAt(t, addr, "%s", fmt.Sprintf(`
version: 1
http: {tls: {certFile: %q, keyFile: %q, clientCA: %q}}
storage: {bolt: {path: %q}}
authProvider:
  enabled: true
  issuer: %s%s
mcpProvider:
  enabled: true
  authorization: {unauthenticated: {enabled: true}}
`, server.CertFile, server.KeyFile, ca.File, filepath.Join(t.TempDir(), "idp.db"), issuer, authProvider))
	return issuer
}

// clientCredentialsToken asks tokenURL for a client_credentials token with
// form (which authenticates the client) and returns it.
func clientCredentialsToken(t *testing.T, client *http.Client, tokenURL string, form url.Values) string {
	t.Helper()
	form.Set("grant_type", "client_credentials")
	resp, err := client.PostForm(tokenURL, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var issued struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&issued)
	if issued.AccessToken == "" {
		t.Fatalf("no token from %s: %d", tokenURL, resp.StatusCode)
	}
	return issued.AccessToken
}

// hiddenInputs are a page's hidden form fields.
func hiddenInputs(body string) url.Values {
	values := url.Values{}
	for _, input := range inputTag.FindAllString(body, -1) {
		a := tagAttributes(input)
		if strings.EqualFold(a["type"], "hidden") && a["name"] != "" {
			values.Add(a["name"], a["value"])
		}
	}
	return values
}
