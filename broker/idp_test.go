package broker_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

// testIDP is a real OAuth 2.1 authorization server for the tests:
// testdata/node/idp.mjs, panva's oidc-provider on loopback. Its clients
// are agent-1/agent-1-secret (groups [warehouse-ops]), agent-2/
// agent-2-secret (groups [customer-support]) and broker/broker-secret,
// which may introspect and revoke any token. A client_credentials token
// requested with resource=R is a JWT (typ at+jwt, ES256) with aud R, the
// granted scope among "mcp:tools ledger:read ledger:write pii:read",
// client_id, sub (= client_id), groups, iss, iat, exp and jti.
type testIDP struct {
	Issuer      string
	MetadataURL string // RFC 8414: <issuer>/.well-known/oauth-authorization-server

	cmd  *exec.Cmd
	meta struct {
		TokenEndpoint         string `json:"token_endpoint"`
		IntrospectionEndpoint string `json:"introspection_endpoint"`
		RevocationEndpoint    string `json:"revocation_endpoint"`
		JWKSURI               string `json:"jwks_uri"`
	}
}

// startIDP runs the IdP until the test ends. It issues tokens for the
// given resources (RFC 8707 indicators such as the broker's
// http://127.0.0.1:PORT/mcp; "*" in one matches anything); with none it
// issues tokens for any resource.
func startIDP(t testing.TB, resources ...string) *testIDP {
	t.Helper()
	var args []string
	for _, r := range resources {
		args = append(args, "--resource", r)
	}
	return startIDPArgs(t, args...)
}

// startIDPArgs is startIDP with idp.mjs flags of the caller's choosing
// (--resource, --clients, --scopes, --alg, --ttl, --format, and
// --login-redirect for OpenID Connect sign-in as broker-login; see idp.mjs).
func startIDPArgs(t testing.TB, args ...string) *testIDP {
	t.Helper()
	bin, _ := nodeTools(t)
	script, err := filepath.Abs(filepath.Join("..", "testdata", "node", "idp.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddress(t)
	_, port, _ := strings.Cut(addr, ":")
	cmd := startProcess(t, addr, filepath.Join(bin, "node"),
		append([]string{script, "--port", port}, args...)...)
	p := &testIDP{
		Issuer: "http://" + addr,
		cmd:    cmd,
	}
	p.MetadataURL = p.Issuer + "/.well-known/oauth-authorization-server"

	// The port is open just before the READY line is written.
	want := "IDP READY " + p.Issuer + "\n"
	out := cmd.Stdout.(*lockedWriter)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(out.String(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("idp.mjs did not print %q; output:\n%s", want, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	resp, err := http.Get(p.MetadataURL)
	if err != nil {
		t.Fatalf("IdP metadata: %v", err)
	}
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("IdP metadata: %s\n%s", resp.Status, body)
	}
	if err := json.Unmarshal(body, &p.meta); err != nil {
		t.Fatalf("IdP metadata: %v\n%s", err, body)
	}
	return p
}

// Token requests a client_credentials access token and fails the test
// unless one is issued. Empty resource or scope leaves the parameter out.
func (p *testIDP) Token(t testing.TB, clientID, secret, resource, scope string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	if resource != "" {
		form.Set("resource", resource)
	}
	if scope != "" {
		form.Set("scope", scope)
	}
	status, body := p.post(t, p.meta.TokenEndpoint, clientID, secret, form)
	token, _ := body["access_token"].(string)
	if status != http.StatusOK || token == "" {
		t.Fatalf("token for %s (resource %q, scope %q): %d %v", clientID, resource, scope, status, body)
	}
	return token
}

// TokenResponse posts form to the token endpoint as clientID (HTTP Basic)
// and returns the status and JSON body, for tests of refusals.
func (p *testIDP) TokenResponse(t testing.TB, clientID, secret string, form url.Values) (int, map[string]any) {
	t.Helper()
	return p.post(t, p.meta.TokenEndpoint, clientID, secret, form)
}

// Introspect asks the IdP about a token as the broker client.
func (p *testIDP) Introspect(t testing.TB, token string) map[string]any {
	t.Helper()
	status, body := p.post(t, p.meta.IntrospectionEndpoint, "broker", "broker-secret", url.Values{"token": {token}})
	if status != http.StatusOK {
		t.Fatalf("introspection: %d %v", status, body)
	}
	return body
}

// Revoke revokes a token (RFC 7009) as the broker client.
func (p *testIDP) Revoke(t testing.TB, token string) {
	t.Helper()
	status, body := p.post(t, p.meta.RevocationEndpoint, "broker", "broker-secret", url.Values{"token": {token}})
	if status != http.StatusOK {
		t.Fatalf("revocation: %d %v", status, body)
	}
}

// Stop kills the IdP, to test what happens when it is down. The test's
// cleanup does not mind.
func (p *testIDP) Stop() {
	_ = p.cmd.Process.Kill()
	_, _ = p.cmd.Process.Wait()
}

func (p *testIDP) post(t testing.TB, endpoint, clientID, secret string, form url.Values) (int, map[string]any) {
	t.Helper()
	if endpoint == "" {
		t.Fatal("IdP metadata lacks the endpoint")
	}
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", endpoint, err)
	}
	raw := readBody(t, resp)
	body := map[string]any{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Fatalf("POST %s: %s: %v\n%s", endpoint, resp.Status, err, raw)
		}
	}
	return resp.StatusCode, body
}

// readBody reads and closes a response body.
func readBody(t testing.TB, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIDPHarness(t *testing.T) {
	const resource = "http://127.0.0.1:1/mcp"
	start := time.Now()
	idp := startIDP(t, resource)
	t.Logf("IdP %s ready in %v", idp.Issuer, time.Since(start).Round(time.Millisecond))

	// The RFC 8414 document and OIDC discovery agree.
	var oidc struct {
		Issuer string `json:"issuer"`
	}
	resp, err := http.Get(idp.Issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(readBody(t, resp), &oidc); err != nil || oidc.Issuer != idp.Issuer {
		t.Fatalf("OIDC discovery issuer %q (%v), want %q", oidc.Issuer, err, idp.Issuer)
	}
	if idp.meta.TokenEndpoint != idp.Issuer+"/token" || idp.meta.IntrospectionEndpoint == "" || idp.meta.RevocationEndpoint == "" {
		t.Fatalf("RFC 8414 metadata: %+v", idp.meta)
	}

	token := idp.Token(t, "agent-1", "agent-1-secret", resource, "mcp:tools ledger:read")
	header, claims := oauthtest.Decode(t, token)
	t.Logf("header %v claims %v", header, claims)
	if header["typ"] != "at+jwt" || header["alg"] != "ES256" || header["kid"] == nil {
		t.Errorf("header = %v, want typ at+jwt, alg ES256, a kid", header)
	}
	for k, want := range map[string]any{
		"iss":       idp.Issuer,
		"aud":       resource,
		"scope":     "mcp:tools ledger:read",
		"client_id": "agent-1",
		"sub":       "agent-1",
		"groups":    []any{"warehouse-ops"},
	} {
		if !reflect.DeepEqual(claims[k], want) {
			t.Errorf("claim %s = %#v, want %#v", k, claims[k], want)
		}
	}
	for _, k := range []string{"jti", "iat", "exp"} {
		if claims[k] == nil {
			t.Errorf("claim %s missing", k)
		}
	}

	// Scopes: what is not granted for the resource is dropped; a client
	// without secret gets nothing; an unknown resource is refused.
	_, claims2 := oauthtest.Decode(t, idp.Token(t, "agent-2", "agent-2-secret", resource, "pii:read admin"))
	if claims2["scope"] != "pii:read" || !reflect.DeepEqual(claims2["groups"], []any{"customer-support"}) {
		t.Errorf("agent-2 claims = %v", claims2)
	}
	if status, body := idp.TokenResponse(t, "agent-1", "wrong", url.Values{"grant_type": {"client_credentials"}, "resource": {resource}}); status != http.StatusUnauthorized || body["error"] != "invalid_client" {
		t.Errorf("wrong secret: %d %v", status, body)
	}
	if status, body := idp.TokenResponse(t, "agent-1", "agent-1-secret", url.Values{"grant_type": {"client_credentials"}, "resource": {"http://127.0.0.1:2/mcp"}}); status != http.StatusBadRequest || body["error"] != "invalid_target" {
		t.Errorf("unknown resource: %d %v", status, body)
	}

	got := idp.Introspect(t, token)
	for k, want := range map[string]any{
		"active": true, "iss": idp.Issuer, "aud": resource, "client_id": "agent-1", "sub": "agent-1",
		"scope": "mcp:tools ledger:read", "jti": claims["jti"], "exp": claims["exp"], "groups": []any{"warehouse-ops"},
	} {
		if !reflect.DeepEqual(got[k], want) {
			t.Errorf("introspection %s = %#v, want %#v", k, got[k], want)
		}
	}
	// A forged token (payload of another token, this one's signature) is not active.
	parts, parts2 := strings.Split(token, "."), strings.Split(idp.Token(t, "agent-2", "agent-2-secret", resource, ""), ".")
	if forged := idp.Introspect(t, parts[0]+"."+parts2[1]+"."+parts[2]); forged["active"] != false {
		t.Errorf("forged token introspection = %v", forged)
	}

	idp.Revoke(t, token)
	if got := idp.Introspect(t, token); !reflect.DeepEqual(got, map[string]any{"active": false}) {
		t.Errorf("introspection after revocation = %v, want inactive", got)
	}

	idp.Stop()
	if _, err := http.Get(idp.MetadataURL); err == nil {
		t.Error("IdP still answering after Stop")
	}
}
