package broker_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpbroker/mcpbroker/apps/sample"
	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

// An app whose tokens are shaped as Strata's orchestrator shapes them, and
// whose requests tell the upstream who calls in headers: the upstream's
// token says the gateway acts with the agent nested, sub is qualified by
// the issuer, the user's email is copied (a claim the user lacks is left
// out); the identity headers carry the agent token's claims, and the
// client cannot set them itself.
func TestStrataShapedTokensAndIdentityHeaders(t *testing.T) {
	var mu sync.Mutex
	var seen []http.Header
	addr := freeAddress(t)
	issuer := "http://" + addr
	// The sample ledger verifies the broker's tokens for its audience.
	ledger, err := sample.ProtectedHandler(nil, sample.TokenOptions{Issuer: issuer, Audience: "https://ledger.example/"})
	if err != nil {
		t.Fatal(err)
	}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			mu.Lock()
			seen = append(seen, r.Header.Clone())
			mu.Unlock()
		}
		ledger.ServeHTTP(w, r)
	}))
	t.Cleanup(upstream.Close)
	broker := startBrokerAt(t, addr, scenario(t, "strata-shaped"), filepath.Join(t.TempDir(), "broker.db"), issuer, demoPasswordHash, upstream.URL+"/mcp")

	// The demo user signs in through the agent.
	verifier := "a-verifier-long-enough-for-pkce-0123456789-abcdefgh"
	sum := sha256.Sum256([]byte(verifier))
	query := url.Values{"response_type": {"code"}, "client_id": {"agent"}, "redirect_uri": {"https://agent.example/cb"}, "scope": {"ledger:read"},
		"state": {"s"}, "resource": {issuer + "/mcp"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	back := browserLogin(t, broker+"/authorize?"+query.Encode(), "demo", "demo-password", "allow")
	resp, err := http.PostForm(broker+"/token", url.Values{"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")},
		"code_verifier": {verifier}, "redirect_uri": {"https://agent.example/cb"}, "client_id": {"agent"}, "resource": {issuer + "/mcp"}})
	if err != nil {
		t.Fatal(err)
	}
	var tokens struct {
		AccessToken string `json:"access_token"`
	}
	var raw json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&raw)
	_ = json.Unmarshal(raw, &tokens)
	resp.Body.Close()
	if tokens.AccessToken == "" {
		t.Fatalf("no access token: %d %s", resp.StatusCode, raw)
	}

	// The client tries to set the identity headers itself.
	spoofing := &http.Client{Transport: headerTransport{"X-User": "mallory", "X-Groups": "admins", "X-Agent": "someone-else",
		"Authorization": "Bearer " + tokens.AccessToken}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	session, err := mcp.NewClient(&mcp.Implementation{Name: "shape-test", Version: "1"}, nil).
		Connect(ctx, &mcp.StreamableClientTransport{Endpoint: broker + "/mcp", HTTPClient: spoofing}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	mu.Lock()
	seen = nil
	mu.Unlock()
	if res := callTool(t, ctx, session, "ledger_get_balance", map[string]any{"account": "alice"}); res.IsError {
		t.Fatalf("get_balance: %s", text(res))
	}
	// The ledger verified the token, and reads the chain nested.
	who := callTool(t, ctx, session, "ledger_whoami", nil)
	structured, _ := json.Marshal(who.StructuredContent)
	var identity sample.Identity
	if err := json.Unmarshal(structured, &identity); err != nil || !identity.Verified || identity.VerifiedClaims == nil {
		t.Fatalf("whoami: %v %s", err, structured)
	}
	if nested, _ := identity.VerifiedClaims.Actor["act"].(map[string]any); identity.VerifiedClaims.Actor["sub"] != issuer || nested["sub"] != "agent" {
		t.Errorf("the ledger verified act %v, want the broker acting with the agent nested", identity.VerifiedClaims.Actor)
	}

	mu.Lock()
	defer mu.Unlock()
	var call http.Header
	for _, h := range seen {
		if strings.HasPrefix(h.Get("Authorization"), "Bearer ") {
			call = h
		}
	}
	if call == nil {
		t.Fatalf("no tool call with a token reached the upstream: %v", seen)
	}
	if call.Get("X-User") != "demo" || call.Get("X-Groups") != "warehouse-ops,finance" || call.Get("X-Agent") != "agent" {
		t.Errorf("identity headers X-User %q, X-Groups %q, X-Agent %q; want demo, warehouse-ops,finance and agent (never the client's own)",
			call.Get("X-User"), call.Get("X-Groups"), call.Get("X-Agent"))
	}
	_, claims := oauthtest.Decode(t, strings.TrimPrefix(call.Get("Authorization"), "Bearer "))
	act, _ := json.Marshal(claims["act"])
	if string(act) != `{"act":{"client_id":"agent","sub":"agent"},"sub":"`+issuer+`"}` {
		t.Errorf("act %s, want the gateway with the agent nested", act)
	}
	if claims["sub"] != issuer+"|demo" || claims["email"] != "demo@example.com" {
		t.Errorf("sub %v, email %v; want %s|demo and the user's email", claims["sub"], claims["email"], issuer)
	}
	if _, present := claims["department"]; present {
		t.Error("a claim the user's token lacks was added")
	}
}

// headerTransport sets headers on every request.
type headerTransport map[string]string

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for name, value := range h {
		r.Header.Set(name, value)
	}
	return http.DefaultTransport.RoundTrip(r)
}
