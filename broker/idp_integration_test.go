package broker_test

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// bearerTransport adds an access token to every request, as an MCP client
// holding a token does.
type bearerTransport struct {
	token string
	base  http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

func connectWithToken(t *testing.T, ctx context.Context, endpoint, token string) *mcp.ClientSession {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "idp-test", Version: "1"}, nil)
	transport := &mcp.StreamableClientTransport{Endpoint: endpoint,
		HTTPClient: &http.Client{Transport: bearerTransport{token: token, base: http.DefaultTransport}}}
	session, err := client.Connect(ctx, transport, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { session.Close() })
	return session
}

// An agent holding a token from a real identity provider (panva's
// oidc-provider) discovers it from the broker's challenge, and lists and
// calls tools; the upstream never sees the agent's token; calls keep
// working with cached keys when the identity provider goes down.
func TestRealIdentityProvider(t *testing.T) {
	idp := startIDP(t)
	upstreamURL, _ := countingUpstream(t)
	addr := freeAddress(t)
	resource := "http://" + addr + "/mcp"
	brokerURL := startBrokerAt(t, addr, scenario(t, "auth"), idp.Issuer, resource, upstreamURL)
	endpoint := brokerURL + "/mcp"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("discovery from the challenge", func(t *testing.T) {
		resp, err := http.Post(endpoint, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		m := regexp.MustCompile(`resource_metadata="([^"]+)"`).FindStringSubmatch(resp.Header.Get("WWW-Authenticate"))
		if resp.StatusCode != http.StatusUnauthorized || m == nil {
			t.Fatalf("no token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		var prm struct {
			Resource             string   `json:"resource"`
			AuthorizationServers []string `json:"authorization_servers"`
		}
		getJSON(t, m[1], &prm)
		if prm.Resource != resource || len(prm.AuthorizationServers) != 1 || prm.AuthorizationServers[0] != idp.Issuer {
			t.Fatalf("protected resource metadata: %+v", prm)
		}
		var as struct {
			Issuer        string `json:"issuer"`
			TokenEndpoint string `json:"token_endpoint"`
		}
		getJSON(t, prm.AuthorizationServers[0]+"/.well-known/oauth-authorization-server", &as)
		if as.Issuer != idp.Issuer || as.TokenEndpoint == "" {
			t.Fatalf("authorization server metadata: %+v", as)
		}
	})

	token := idp.Token(t, "agent-1", "agent-1-secret", resource, "mcp:tools ledger:read")
	// Minted now, first shown to the broker after the IdP is gone.
	later := idp.Token(t, "agent-2", "agent-2-secret", resource, "mcp:tools")

	session := connectWithToken(t, ctx, endpoint, token)
	t.Run("list and call with the token", func(t *testing.T) {
		if names := toolNames(t, ctx, session); !names["ledger_whoami"] {
			t.Fatalf("tools: %v", names)
		}
		res := callTool(t, ctx, session, "ledger_whoami", nil)
		var seen map[string]any
		raw, _ := json.Marshal(res.StructuredContent)
		json.Unmarshal(raw, &seen)
		if present, ok := seen["authorizationPresent"].(bool); res.IsError || !ok || present {
			t.Errorf("the upstream saw an Authorization header: the agent's token must never pass (%s)", raw)
		}
	})

	t.Run("a token for another resource", func(t *testing.T) {
		other := idp.Token(t, "agent-1", "agent-1-secret", "http://127.0.0.1:1/mcp", "mcp:tools")
		req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+other)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("token for another resource: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	})

	t.Run("the identity provider goes down", func(t *testing.T) {
		idp.Stop()
		if res := callTool(t, ctx, session, "ledger_list_accounts", nil); res.IsError {
			t.Errorf("call with a verified token after the IdP went down: %s", text(res))
		}
		fresh := connectWithToken(t, ctx, endpoint, later)
		if res := callTool(t, ctx, fresh, "ledger_get_balance", map[string]any{"account": "bob"}); res.IsError {
			t.Errorf("new token checked with cached keys after the IdP went down: %s", text(res))
		}
	})
}

// With introspection, the identity provider decides on every token it has
// not vouched for yet: a revoked token is refused.
func TestIntrospectionWithRealIdentityProvider(t *testing.T) {
	idp := startIDP(t)
	upstreamURL, hits := countingUpstream(t)
	addr := freeAddress(t)
	resource := "http://" + addr + "/mcp"
	brokerURL := startBrokerAt(t, addr, scenario(t, "introspection-with-real-identity-provider"), idp.Issuer, resource, upstreamURL)
	endpoint := brokerURL + "/mcp"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	token := idp.Token(t, "agent-1", "agent-1-secret", resource, "mcp:tools")
	session := connectWithToken(t, ctx, endpoint, token)
	if res := callTool(t, ctx, session, "ledger_list_accounts", nil); res.IsError {
		t.Fatalf("call with an introspected token: %s", text(res))
	}

	revoked := idp.Token(t, "agent-2", "agent-2-secret", resource, "mcp:tools")
	idp.Revoke(t, revoked)
	before := hits.Load()
	c := newWireClient(t, endpoint)
	c.header = http.Header{"Authorization": {"Bearer " + revoked}}
	resp := c.post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("revoked token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if hits.Load() != before {
		t.Error("a revoked token reached the upstream")
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
