package broker_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpbroker/mcpbroker/broker/config"
)

// itemServer is the guide's upstream: four item tools, each answering with
// the claims of the token its request carried.
func itemServer(t *testing.T) string {
	server := mcp.NewServer(&mcp.Implementation{Name: "items", Version: "1"}, nil)
	for _, name := range []string{"listItems", "getItem", "createItem", "updateItem"} {
		mcp.AddTool(server, &mcp.Tool{Name: name, Description: name}, func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			token := strings.TrimPrefix(req.Extra.Header.Get("Authorization"), "Bearer ")
			parts := strings.Split(token, ".")
			payload := []byte("{}")
			if len(parts) == 3 {
				payload, _ = base64.RawURLEncoding.DecodeString(parts[1])
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(payload)}}}, nil, nil
		})
	}
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil))
	t.Cleanup(srv.Close)
	return srv.URL + "/mcp"
}

// The blocks of Strata's guide load unchanged (no version; the client
// secret a secret-provider reference) and every key does what the guide
// says, with local stand-ins for its hosts: the stream and SSE transports
// at their paths, the session header and client termination, the
// protected resource metadata at metadataPath, agents' tokens checked
// against the authorization server for the expected audience, the tool
// namespace, the inline pre-1.0 Rego allowing two tools, and per-tool
// token exchange at the connector, authenticated with the referenced
// secret, for the tool's scopes and TTL.
func TestStrataGuideBlocks(t *testing.T) {
	authAddr, gatewayAddr := freeAddress(t), freeAddress(t)
	auth, gateway := "http://"+authAddr, "http://"+gatewayAddr
	upstream := itemServer(t)
	const gatewaySecret = "gateway-secret-from-a-provider"
	t.Setenv("STRATA_GATEWAY_clientSecret", gatewaySecret)

	// The authorization server: another broker's Auth Provider.
	startBrokerAt(t, authAddr, "%s", `
version: 1
storage: {bolt: {path: `+filepath.Join(t.TempDir(), "auth.db")+`}}
authProvider:
  enabled: true
  issuer: `+auth+`
  audiences: [`+gateway+`/, https://mcp-server.example.com/]
  scopes: [item:List, item:Get, item:Create, item:Update]
  clients:
    - clientID: agent
      clientSecret: agent-secret-0123456789
      grantTypes: [client_credentials]
      audiences: [`+gateway+`/]
    - clientID: ai-identity-gateway
      clientSecret: `+gatewaySecret+`
      grantTypes: [urn:ietf:params:oauth:grant-type:token-exchange]
      audiences: [https://mcp-server.example.com/]
      subjectAudiences: [`+gateway+`/]
mcpProvider:
  enabled: true
  authorization: {unauthenticated: {enabled: true}}
`)

	guide, err := os.ReadFile(filepath.Join("..", "testdata", "strata", "maverics.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	configured := strings.NewReplacer(
		"https://your-auth-server.example.com", auth,
		"https://your-gateway.example.com", gateway,
		"http://mcp-server.example.com:8080/mcp", upstream,
	).Replace(string(guide))
	// The Maverics secret provider the reference names.
	configured += "\nsecretProviders:\n  - {name: gateway, type: env, prefix: STRATA_GATEWAY_}\n"
	cfg, err := config.Parse([]byte(configured), "maverics.yaml")
	if err != nil {
		t.Fatalf("the guide's blocks do not load: %v", err)
	}
	// The keys whose effect takes time to show (keep-alives, refresh and
	// idle intervals, clock skew, the upstream pool) are read as written;
	// their effects have tests of their own.
	sse, stream, server := cfg.MCPProvider.Transports.SSE, cfg.MCPProvider.Transports.Stream, cfg.MCPProvider.Authorization.OAuth.Servers[0]
	connection := cfg.Apps[0].Upstream.Stream.Connection
	for key, ok := range map[string]bool{
		"sse.keepAlive":                   sse.KeepAlive.Enabled && time.Duration(sse.KeepAlive.Interval) == 30*time.Second,
		"stream.session.timeout":          time.Duration(stream.Session.Timeout) == time.Hour,
		"stream.session.headerName":       stream.Session.HeaderName == "Mcp-Session-Id",
		"servers[0].refreshInterval":      time.Duration(server.RefreshInterval) == 24*time.Hour,
		"servers[0].tokenValidation.jwt":  time.Duration(server.TokenValidation.JWT.ClockSkew) == 15*time.Second,
		"upstream.stream.connection":      time.Duration(connection.DialTimeout) == 10*time.Second && time.Duration(connection.KeepAlive.Interval) == 15*time.Second,
		"upstream.stream.connection.pool": connection.Pool.MaxIdleConns == 100 && connection.Pool.MaxIdleConnsPerHost == 100,
		"connectors[0].oauthClientSecret": cfg.Connectors[0].OAuthClientSecret.Value() == gatewaySecret,
		"toolNamespace":                   cfg.Apps[0].ToolNamespace.Name == "my_server_" && !cfg.Apps[0].ToolNamespace.Disabled,
	} {
		if !ok {
			t.Errorf("%s is not read as the guide writes it", key)
		}
	}
	if notes := cfg.Unused(); len(notes) != 2 {
		t.Errorf("the notes on settings without effect: %q, want the connector's login and logout redirects", notes)
	}
	startBrokerAt(t, gatewayAddr, "%s", configured)

	// An agent's token from the authorization server, for the gateway.
	accessToken := clientCredentialsToken(t, http.DefaultClient, auth+"/token", url.Values{"client_id": {"agent"},
		"client_secret": {"agent-secret-0123456789"}, "scope": {"item:List item:Get item:Create item:Update"}, "resource": {gateway + "/"}})

	t.Run("metadataPath serves the protected resource metadata", func(t *testing.T) {
		resp, err := http.Get(gateway + "/.well-known/oauth-protected-resource")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var prm struct {
			AuthorizationServers []string `json:"authorization_servers"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&prm); err != nil || resp.StatusCode != http.StatusOK || len(prm.AuthorizationServers) != 1 || prm.AuthorizationServers[0] != auth {
			t.Errorf("PRM: %d %v %+v", resp.StatusCode, err, prm)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Run("stream transport, namespace, inline Rego, per-tool exchange", func(t *testing.T) {
		session := connectWithToken(t, ctx, gateway+"/mcp", accessToken)
		names := toolNames(t, ctx, session)
		if len(names) != 2 || !names["my_server_listItems"] || !names["my_server_getItem"] {
			t.Errorf("tools/list: %v, want my_server_listItems and my_server_getItem (the policy allows those)", names)
		}
		res := callTool(t, ctx, session, "my_server_listItems", nil)
		var claims struct {
			Aud   any     `json:"aud"`
			Scope string  `json:"scope"`
			Iat   float64 `json:"iat"`
			Exp   float64 `json:"exp"`
			Act   any     `json:"act"`
			Iss   string  `json:"iss"`
		}
		if err := json.Unmarshal([]byte(text(res)), &claims); err != nil {
			t.Fatalf("listItems: %s: %v", text(res), err)
		}
		if claims.Iss != auth || claims.Scope != "item:List" || claims.Exp-claims.Iat != 5 || claims.Act == nil {
			t.Errorf("the upstream's token: %s; want one the authorization server issued, scope item:List, 5 s, with act", text(res))
		}
		if aud, _ := json.Marshal(claims.Aud); !strings.Contains(string(aud), "https://mcp-server.example.com/") {
			t.Errorf("the upstream's token is for %s, want https://mcp-server.example.com/", aud)
		}
		_, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "my_server_createItem"})
		var rpcErr *jsonrpc.Error
		if !errors.As(err, &rpcErr) || rpcErr.Code != -32010 {
			t.Errorf("createItem, which the policy does not allow: %v, want -32010", err)
		}
	})

	t.Run("session header and client termination", func(t *testing.T) {
		c := newWireClient(t, gateway+"/mcp")
		c.header.Set("Authorization", "Bearer "+accessToken)
		c.initialize(`{}`)
		if c.session == "" {
			t.Fatal("no Mcp-Session-Id")
		}
		req, _ := http.NewRequest(http.MethodDelete, gateway+"/mcp", nil)
		req.Header.Set("Mcp-Session-Id", c.session)
		req.Header.Set("Authorization", "Bearer "+accessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("DELETE: %d, want 204 (allowClientTermination)", resp.StatusCode)
		}
	})

	t.Run("the SSE transport at its paths", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, gateway+"/mcp/sse", nil)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Authorization", "Bearer "+accessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		lines := bufio.NewScanner(resp.Body)
		endpoint := ""
		for lines.Scan() && endpoint == "" {
			if data, ok := strings.CutPrefix(lines.Text(), "data: "); ok {
				endpoint = data
			}
		}
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(endpoint, "/mcp/message") {
			t.Errorf("GET /mcp/sse: %d, endpoint %q; want the message path /mcp/message", resp.StatusCode, endpoint)
		}
	})
}
