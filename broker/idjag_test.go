package broker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
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
	bin := buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	addr := freeAddress(t)
	issuer := "http://" + addr
	ledgerAddress := freeAddress(t)
	audience := "http://" + ledgerAddress + "/mcp"
	startProcess(t, ledgerAddress, bin, "upstream", "sample", "--listen", ledgerAddress, "--issuer", issuer, "--audience", audience)
	brokerURL := startBrokerAt(t, addr, scenario(t, "idjag-resource"), filepath.Join(t.TempDir(), "broker.db"), issuer, demoPasswordHash,
		idp.issuer+"/.well-known/openid-configuration", audience)

	redeem := func(assertion string) (int, map[string]any) {
		form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {assertion}}
		req, _ := http.NewRequest(http.MethodPost, brokerURL+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("jag-agent", "jag-agent-secret-0123456789")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	status, tokens := redeem(idp.grant(t, "alice@corp", issuer, issuer+"/mcp", "jag-agent"))
	if status != http.StatusOK || tokens["access_token"] == nil || tokens["refresh_token"] != nil {
		t.Fatalf("redeeming the ID-JAG: %d %v", status, tokens)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	session := connectWithToken(t, ctx, brokerURL+"/mcp", tokens["access_token"].(string))
	seen := whoami(t, ctx, session, "ledger_whoami")
	if c := seen.VerifiedClaims; !seen.Verified || c == nil || c.Subject != "alice@corp" || c.Actor["sub"] != "jag-agent" {
		t.Fatalf("the upstream saw %+v, want alice@corp delegated to jag-agent", seen)
	}
	// An ID-JAG for another authorization server is refused here.
	if status, body := redeem(idp.grant(t, "alice@corp", "https://other-as.example", issuer+"/mcp", "jag-agent")); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("an ID-JAG for another server: %d %v", status, body)
	}
}
