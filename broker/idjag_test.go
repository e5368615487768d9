package broker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// companyIdP is a company identity provider that signs Identity Assertion
// JWT Authorization Grants: its OpenID configuration and keys are served.
type companyIdP struct {
	issuer string
	key    *ecdsa.PrivateKey
}

func startCompanyIdP(t *testing.T) *companyIdP {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p := &companyIdP{key: key}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	p.issuer = srv.URL
	serve := func(v any) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(v)
		}
	}
	mux.HandleFunc("GET /.well-known/openid-configuration", serve(map[string]string{"issuer": p.issuer, "jwks_uri": p.issuer + "/jwks",
		"authorization_endpoint": p.issuer + "/authorize", "token_endpoint": p.issuer + "/token"}))
	mux.HandleFunc("GET /jwks", serve(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "company-1", Use: "sig", Algorithm: "ES256"}}}))
	return p
}

// grant signs an ID-JAG for subject, for the authorization server aud and
// its resource, to client.
func (p *companyIdP) grant(t *testing.T, subject, aud, resource, client string) string {
	t.Helper()
	now := time.Now()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: p.key},
		(&jose.SignerOptions{}).WithHeader("kid", "company-1").WithType(jose.ContentType(oauth.TypIDJAG)))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]any{"iss": p.issuer, "sub": subject, "aud": aud, "resource": resource, "client_id": client,
		"jti": rand.Text(), "scope": "ledger:read", "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix()})
	signed, _ := signer.Sign(payload)
	token, _ := signed.CompactSerialize()
	return token
}

// An agent that holds an ID-JAG the company's identity provider issued
// for the broker redeems it at the broker's Auth Provider (the JWT bearer
// grant) and calls a tool with the access token: the upstream sees the
// company's user, delegated to the agent, with no sign-in at the broker.
func TestIDJAGRedeemedAtTheBroker(t *testing.T) {
	idp := startCompanyIdP(t)
	addr := freeAddress(t)
	issuer := "http://" + addr
	audience := ledgerFor(t, issuer)
	brokerURL := startBrokerAt(t, addr, scenario(t, "idjag-resource"), filepath.Join(t.TempDir(), "broker.db"), issuer, demoPasswordHash,
		idp.issuer+"/.well-known/openid-configuration", audience)

	redeem := func(assertion string) (int, map[string]any) {
		return ledgerAgentPost(t, brokerURL+"/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {assertion}})
	}
	status, tokens := redeem(idp.grant(t, "alice@corp", issuer, issuer+"/mcp", "ledger-agent"))
	if status != http.StatusOK || tokens["access_token"] == nil || tokens["refresh_token"] != nil {
		t.Fatalf("redeeming the ID-JAG: %d %v", status, tokens)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	session := connectWithToken(t, ctx, brokerURL+"/mcp", tokens["access_token"].(string))
	seen := whoami(t, ctx, session, "ledger_whoami")
	if c := seen.VerifiedClaims; !seen.Verified || c == nil || c.Subject != idp.issuer+"|alice@corp" || c.Actor["sub"] != "ledger-agent" {
		t.Fatalf("the upstream saw %+v, want alice@corp delegated to ledger-agent", seen)
	}
	// An ID-JAG for another authorization server is refused here.
	if status, body := redeem(idp.grant(t, "alice@corp", "https://other-as.example", issuer+"/mcp", "ledger-agent")); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("an ID-JAG for another server: %d %v", status, body)
	}
}

// Enterprise-managed authorization between two broker processes: A is the
// company's identity provider, where alice signs in once; B fronts the
// ledger and trusts A's grants. The agent trades alice's ID token at A
// for an ID-JAG for B, as A's policy allows, redeems it at B, and calls
// B's tool: the upstream sees alice from A, delegated to the agent. At A,
// the grant is refused for a scope the policy does not allow, for another
// user's group, and with an actor token.
func TestIDJAGBetweenTwoBrokers(t *testing.T) {
	aAddr, bAddr := freeAddress(t), freeAddress(t)
	a, b := "http://"+aAddr, "http://"+bAddr
	audience, policy := ledgerFor(t, b), idjagPolicy(t)
	startBrokerProcess(t, aAddr, scenario(t, "idjag-company"), filepath.Join(t.TempDir(), "a.db"), a, demoPasswordHash, b, policy)
	startBrokerProcess(t, bAddr, scenario(t, "idjag-resource"), filepath.Join(t.TempDir(), "b.db"), b, demoPasswordHash,
		a+"/.well-known/openid-configuration", audience)

	post := func(endpoint string, form url.Values) (int, map[string]any) {
		return ledgerAgentPost(t, endpoint, form)
	}
	idToken := func(user string) string {
		verifier := rand.Text() + rand.Text()
		sum := sha256.Sum256([]byte(verifier))
		query := url.Values{"response_type": {"code"}, "client_id": {"ledger-agent"}, "redirect_uri": {"https://agent.example/cb"},
			"scope": {"openid"}, "state": {"s"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
		back := browserLogin(t, a+"/authorize?"+query.Encode(), user, "demo-password", "allow")
		status, tokens := post(a+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")},
			"code_verifier": {verifier}, "redirect_uri": {"https://agent.example/cb"}})
		id, _ := tokens["id_token"].(string)
		if status != http.StatusOK || id == "" {
			t.Fatalf("%s's ID token at A: %d %v", user, status, tokens)
		}
		return id
	}
	exchange := func(subject string, extra url.Values) (int, map[string]any) {
		form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
			"requested_token_type": {"urn:ietf:params:oauth:token-type:id-jag"},
			"subject_token":        {subject}, "subject_token_type": {"urn:ietf:params:oauth:token-type:id_token"},
			"audience": {b}, "resource": {b + "/mcp"}, "scope": {"ledger:read"}}
		for k, v := range extra {
			form[k] = v
		}
		return post(a+"/token", form)
	}
	alice := idToken("alice")
	status, jag := exchange(alice, nil)
	if status != http.StatusOK || jag["issued_token_type"] != "urn:ietf:params:oauth:token-type:id-jag" || jag["token_type"] != "N_A" {
		t.Fatalf("the ID-JAG from A: %d %v", status, jag)
	}
	status, tokens := post(b+"/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {jag["access_token"].(string)}})
	if status != http.StatusOK || tokens["access_token"] == nil {
		t.Fatalf("redeeming A's ID-JAG at B: %d %v", status, tokens)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seen := whoami(t, ctx, connectWithToken(t, ctx, b+"/mcp", tokens["access_token"].(string)), "ledger_whoami")
	if c := seen.VerifiedClaims; !seen.Verified || c == nil || c.Subject != a+"|alice" || c.Actor["sub"] != "ledger-agent" {
		t.Fatalf("B's upstream saw %+v, want alice of A (%s|alice) delegated to ledger-agent", seen, a)
	}

	for _, tt := range []struct {
		name    string
		subject string
		extra   url.Values
		error   string
	}{
		{"a scope the policy does not allow", alice, url.Values{"scope": {"ledger:write"}}, "access_denied"},
		{"a user outside finance", idToken("bob"), nil, "access_denied"},
		{"an actor token", alice, url.Values{"actor_token": {alice}, "actor_token_type": {"urn:ietf:params:oauth:token-type:id_token"}}, "invalid_request"},
		{"an unknown application", alice, url.Values{"audience": {"https://crm.example"}, "resource": {"https://crm.example/mcp"}}, "invalid_target"},
	} {
		if status, body := exchange(tt.subject, tt.extra); status < 400 || body["error"] != tt.error {
			t.Errorf("%s: %d %v, want %s", tt.name, status, body, tt.error)
		}
	}
}

// Outbound enterprise-managed authorization through broker processes (and
// the test's sample ledger): C plays
// a SaaS MCP server whose authorization server takes only identity
// assertion grants (from B); B's app for C obtains C's tokens with
// ID-JAGs its own Auth Provider issues. alice's and bob's calls through B
// reach C's upstream each as themselves, and neither's token serves the
// other.
func TestIDJAGOutbound(t *testing.T) {
	bAddr, cAddr := freeAddress(t), freeAddress(t)
	b, c := "http://"+bAddr, "http://"+cAddr
	audience, policy := ledgerFor(t, c), idjagPolicy(t)
	startBrokerProcess(t, cAddr, scenario(t, "idjag-resource"), filepath.Join(t.TempDir(), "c.db"), c, demoPasswordHash,
		b+"/.well-known/openid-configuration", audience)
	startBrokerProcess(t, bAddr, scenario(t, "idjag-gateway"), filepath.Join(t.TempDir(), "b.db"), b, demoPasswordHash, c, policy)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	users := map[string]string{"alice": userToken(t, b, "alice"), "bob": userToken(t, b, "bob")}
	for _, user := range []string{"alice", "bob", "alice"} {
		seen := whoami(t, ctx, connectWithToken(t, ctx, b+"/mcp", users[user]), "saas_ledger_whoami")
		if cl := seen.VerifiedClaims; !seen.Verified || cl == nil || cl.Subject != b+"|"+user || cl.Actor["sub"] != "ledger-agent" {
			t.Fatalf("%s's call through B reached C's upstream as %+v, want %s", user, seen, user)
		}
	}
}

// ledgerAgentPost posts form to a token endpoint as the confidential
// client ledger-agent and returns the status and the JSON answer.
func ledgerAgentPost(t *testing.T, endpoint string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("ledger-agent", "ledger-agent-secret-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// ledgerFor starts the sample ledger, which takes only issuer's tokens for
// its own audience, and returns that audience (its MCP endpoint).
func ledgerFor(t *testing.T, issuer string) string {
	t.Helper()
	address := freeAddress(t)
	audience := "http://" + address + "/mcp"
	startProcess(t, address, buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker"),
		"upstream", "sample", "--listen", address, "--issuer", issuer, "--audience", audience)
	return audience
}

// idjagPolicy is the shipped policy of identity assertion grants.
func idjagPolicy(t *testing.T) string {
	t.Helper()
	policy, err := filepath.Abs("../policies/idjag.rego")
	if err != nil {
		t.Fatal(err)
	}
	return policy
}
