package broker_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpbroker/mcpbroker/apps/sample"
	"github.com/mcpbroker/mcpbroker/broker"
	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

// upstreamRequest is one HTTP request an upstream received.
type upstreamRequest struct {
	method        string // HTTP method
	rpc           string // JSON-RPC method of a POST
	authorization string
}

// recordingUpstream records every request before its handler sees it, so
// that requests the handler refuses are recorded too.
type recordingUpstream struct {
	handler http.Handler
	mu      sync.Mutex
	seen    []upstreamRequest
}

func (u *recordingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	seen := upstreamRequest{method: r.Method, authorization: r.Header.Get("Authorization")}
	if r.Method == http.MethodPost {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var m struct{ Method string }
		_ = json.Unmarshal(body, &m)
		seen.rpc = m.Method
	}
	u.mu.Lock()
	u.seen = append(u.seen, seen)
	u.mu.Unlock()
	u.handler.ServeHTTP(w, r)
}

func (u *recordingUpstream) requests() []upstreamRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]upstreamRequest(nil), u.seen...)
}

// calls counts the tools/call requests that reached the upstream.
func (u *recordingUpstream) calls() int {
	n := 0
	for _, r := range u.requests() {
		if r.rpc == "tools/call" {
			n++
		}
	}
	return n
}

func startRecordingUpstream(t *testing.T, handler http.Handler) (*recordingUpstream, string) {
	t.Helper()
	u := &recordingUpstream{handler: handler}
	srv := httptest.NewServer(u)
	t.Cleanup(srv.Close)
	return u, srv.URL + "/mcp"
}

// protectedUpstream is the sample ledger accepting only tokens the broker
// at issuer minted for audience.
func protectedUpstream(t *testing.T, issuer, audience string) (*recordingUpstream, string) {
	t.Helper()
	h, err := sample.ProtectedHandler(nil, sample.TokenOptions{Issuer: issuer, Audience: audience})
	if err != nil {
		t.Fatal(err)
	}
	return startRecordingUpstream(t, h)
}

// The agent's token never reaches an upstream: each upstream request
// carries a token the broker minted for that upstream, which the upstream
// verifies against the broker's published keys. A tool's token has the
// app's audience, exactly the tool's scopes (narrowed by the policy), the
// tool's lifetime, the user as subject and, for delegation, the agent as
// actor with the agent's own actors nested inside; the session's other
// requests carry identity-only tokens. A tool the agent's scopes do not
// cover is refused with a step-up challenge and never reaches the upstream.
func TestNoPassthroughEmbeddedExchange(t *testing.T) {
	as := oauthtest.NewIssuer(t, nil)
	addr := freeAddress(t)
	brokerURL := "http://" + addr
	resource := brokerURL + "/mcp"
	ledger, ledgerURL := protectedUpstream(t, brokerURL, "https://ledger.example/")
	// One upstream is the command's: its flags make it verify tokens too.
	bin := buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	impAddr := freeAddress(t)
	startProcess(t, impAddr, bin, "upstream", "sample", "--listen", impAddr,
		"--issuer", brokerURL, "--audience", "https://imp.example/")
	imp, impURL := startRecordingUpstream(t, &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(&url.URL{Scheme: "http", Host: impAddr}) },
		FlushInterval: -1,
	})
	open, openURL := startRecordingUpstream(t, sample.Handler(nil))
	narrow, narrowURL := protectedUpstream(t, brokerURL, "https://narrow.example/")
	startBrokerAt(t, addr, scenario(t, "exchange"), brokerURL, as.ID, resource,
		filepath.Join(t.TempDir(), "broker.db"), ledgerURL, impURL, openURL, narrowURL)

	claims := agentClaims(as, resource, "alice", "agent-1")
	claims["act"] = map[string]any{"sub": "orchestrator"}
	agentToken := as.Mint(t, claims)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	session := connectWithToken(t, ctx, resource, agentToken)
	if names := toolNames(t, ctx, session); !names["ledger_whoami"] || !names["imp_whoami"] || !names["open_whoami"] || !names["narrow_whoami"] {
		t.Fatalf("tools/list through the upstreams that verify every request: %v", names)
	}

	delegated := map[string]any{"sub": "agent-1", "client_id": "agent-1", "act": map[string]any{"sub": "orchestrator"}}
	tests := []struct {
		tool     string
		audience string
		scope    string
		ttl      int64
		act      map[string]any
	}{
		{"ledger_whoami", "https://ledger.example/", "ledger:read", 7, delegated},
		{"imp_whoami", "https://imp.example/", "ledger:read", 3, nil},
		// The policy's scopes narrow the tool's; a scope only the policy
		// names is not added.
		{"narrow_whoami", "https://narrow.example/", "ledger:read", 5, delegated},
	}
	for _, tt := range tests {
		t.Run(tt.tool, func(t *testing.T) {
			got := whoami(t, ctx, session, tt.tool)
			c := got.VerifiedClaims
			if !got.Verified || c == nil {
				t.Fatalf("the upstream verified no token: %+v", got)
			}
			if c.Issuer != brokerURL || c.Subject != "alice" || c.ClientID != "agent-1" {
				t.Errorf("iss %q sub %q client_id %q, want %q alice agent-1", c.Issuer, c.Subject, c.ClientID, brokerURL)
			}
			if !reflect.DeepEqual(c.Audience, []string{tt.audience}) {
				t.Errorf("aud %v, want [%s]", c.Audience, tt.audience)
			}
			if c.Scope != tt.scope {
				t.Errorf("scope %q, want %q", c.Scope, tt.scope)
			}
			if c.ExpiresAt-c.IssuedAt != tt.ttl {
				t.Errorf("exp - iat = %d, want the tool's ttl %d", c.ExpiresAt-c.IssuedAt, tt.ttl)
			}
			if !reflect.DeepEqual(c.Actor, tt.act) {
				t.Errorf("act %v, want %v", c.Actor, tt.act)
			}
			if c.TokenID == "" {
				t.Error("no jti")
			}
		})
	}

	t.Run("a tool without an entry gets no token", func(t *testing.T) {
		if got := whoami(t, ctx, session, "open_whoami"); got.AuthorizationPresent {
			t.Errorf("whoami of an app with no entry for it saw %+v", got)
		}
		if res := callTool(t, ctx, session, "open_list_accounts", nil); res.IsError {
			t.Errorf("list_accounts: %s", text(res))
		}
		var calls []string // the Authorization of each tools/call: whoami, list_accounts
		for _, r := range open.requests() {
			if r.rpc == "tools/call" {
				calls = append(calls, r.authorization)
			}
		}
		if len(calls) != 2 || calls[0] != "" || !strings.HasPrefix(calls[1], "Bearer ") {
			t.Errorf("tools/call Authorization %q, want none for whoami, a token for list_accounts", calls)
		}
	})

	t.Run("a tool whose scopes the agent lacks", func(t *testing.T) {
		before := ledger.calls()
		c := newWireClient(t, resource)
		c.header = http.Header{"Authorization": {"Bearer " + agentToken}}
		c.initialize(`{}`)
		resp := c.post(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"ledger_get_balance","arguments":{"account":"alice"}}}`)
		resp.Body.Close()
		challenge := resp.Header.Get("WWW-Authenticate")
		for _, part := range []string{`Bearer `, `error="insufficient_scope"`, `scope="ledger:read ledger:admin"`, `resource_metadata="` + brokerURL + `/.well-known/oauth-protected-resource/mcp"`} {
			if !strings.Contains(challenge, part) {
				t.Errorf("WWW-Authenticate %q lacks %s", challenge, part)
			}
		}
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("status %d, want 403", resp.StatusCode)
		}
		// The legacy transport has sent its status already: a JSON-RPC
		// error says the same.
		legacy := connectLegacyWithToken(t, ctx, brokerURL+"/mcp/sse", agentToken)
		_, err := legacy.CallTool(ctx, &mcp.CallToolParams{Name: "ledger_get_balance", Arguments: map[string]any{"account": "alice"}})
		var rpcErr *jsonrpc.Error
		if !errors.As(err, &rpcErr) || rpcErr.Code != broker.CodeForbidden || !strings.Contains(rpcErr.Message, "ledger:admin") {
			t.Errorf("over legacy SSE: %v, want JSON-RPC error %d naming the scope", err, broker.CodeForbidden)
		}
		if got := ledger.calls(); got != before {
			t.Errorf("the refused call reached the upstream (%d calls)", got-before)
		}
	})

	t.Run("no upstream request carries the agent's token", func(t *testing.T) {
		for name, u := range map[string]*recordingUpstream{"ledger": ledger, "imp": imp, "open": open, "narrow": narrow} {
			if len(u.requests()) == 0 {
				t.Errorf("%s: no requests recorded", name)
			}
			for _, r := range u.requests() {
				if strings.Contains(r.authorization, agentToken) {
					t.Errorf("%s: %s %s carried the agent's token", name, r.method, r.rpc)
				}
			}
		}
	})

	t.Run("session requests carry identity-only tokens", func(t *testing.T) {
		audiences := map[string]string{"ledger": "https://ledger.example/", "imp": "https://imp.example/", "open": "https://open.example/", "narrow": "https://narrow.example/"}
		for name, u := range map[string]*recordingUpstream{"ledger": ledger, "imp": imp, "open": open, "narrow": narrow} {
			seen := map[string]bool{}
			for _, r := range u.requests() {
				if r.rpc == "tools/call" {
					continue
				}
				key := r.method + " " + r.rpc
				seen[key] = true
				token, ok := strings.CutPrefix(r.authorization, "Bearer ")
				if !ok {
					t.Errorf("%s: %s carried no token", name, key)
					continue
				}
				_, c := oauthtest.Decode(t, token)
				if c["aud"] != audiences[name] || c["sub"] != "alice" || c["scope"] != nil || c["exp"].(float64)-c["iat"].(float64) != 5 {
					t.Errorf("%s: %s carried aud %v sub %v scope %v, lifetime %vs; want the app's audience, alice, no scope, 5s",
						name, key, c["aud"], c["sub"], c["scope"], c["exp"].(float64)-c["iat"].(float64))
				}
			}
			for _, want := range []string{"POST initialize", "POST notifications/initialized", "POST tools/list"} {
				if !seen[want] {
					t.Errorf("%s: no %s recorded (saw %v)", name, want, seen)
				}
			}
		}
	})
}

// whoami calls a whoami tool and returns what the upstream saw.
func whoami(t *testing.T, ctx context.Context, session *mcp.ClientSession, tool string) sample.Identity {
	t.Helper()
	res := callTool(t, ctx, session, tool, nil)
	if res.IsError {
		t.Fatalf("%s: %s", tool, text(res))
	}
	raw, _ := json.Marshal(res.StructuredContent)
	var id sample.Identity
	if err := json.Unmarshal(raw, &id); err != nil {
		t.Fatalf("%s: %s: %v", tool, raw, err)
	}
	return id
}

func connectLegacyWithToken(t *testing.T, ctx context.Context, endpoint, token string) *mcp.ClientSession {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "legacy-test", Version: "1"}, nil)
	session, err := client.Connect(ctx, &mcp.SSEClientTransport{Endpoint: endpoint,
		HTTPClient: &http.Client{Transport: bearerTransport{token: token, base: http.DefaultTransport}}}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { session.Close() })
	return session
}

// exchangeIDP is an identity provider's token endpoint for tests: RFC 8693
// reduced to what the broker sends, recording each request's form, issuing
// opaque tokens, and refusing the audience it is told to.
type exchangeIDP struct {
	issuer  string
	refused string // an audience answered with invalid_target
	mu      sync.Mutex
	forms   []exchangeForm
}

type exchangeForm struct {
	form   map[string]string
	user   string
	secret string
	issued string
}

const (
	idpClientID     = "mcpbroker"
	idpClientSecret = "connector-secret-0123456789"
)

func startExchangeIDP(t *testing.T, refused string) *exchangeIDP {
	t.Helper()
	idp := &exchangeIDP{refused: refused}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	idp.issuer = srv.URL
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"issuer": idp.issuer, "token_endpoint": idp.issuer + "/token"})
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		user, secret, _ := r.BasicAuth()
		f := exchangeForm{form: map[string]string{}, user: user, secret: secret}
		for k, v := range r.PostForm {
			f.form[k] = strings.Join(v, "|")
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if f.form["audience"] == idp.refused {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"invalid_target","error_description":"audience refused"}`)
		} else {
			f.issued = "exchanged-" + base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprint(len(idp.recorded()), f.form["audience"], f.form["scope"])))
			json.NewEncoder(w).Encode(map[string]any{
				"access_token": f.issued, "token_type": "Bearer", "expires_in": 60,
				"issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
			})
		}
		idp.mu.Lock()
		idp.forms = append(idp.forms, f)
		idp.mu.Unlock()
	})
	return idp
}

func (idp *exchangeIDP) recorded() []exchangeForm {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	return append([]exchangeForm(nil), idp.forms...)
}

// With a connector as idp, the broker exchanges the agent's token at the
// connector's token endpoint, authenticated as its client: subject_token
// is the agent's token, delegation sends it as actor_token too, audience
// is the app's, scope the tool's (none for identity-only tokens), and the
// upstream receives the issued token, never the agent's. A refused
// exchange is a JSON-RPC error naming the OAuth error, and the upstream is
// not contacted.
func TestConnectorExchange(t *testing.T) {
	as := oauthtest.NewIssuer(t, nil)
	idp := startExchangeIDP(t, "https://refused.example/")
	addr := freeAddress(t)
	resource := "http://" + addr + "/mcp"
	deleg, delegURL := startRecordingUpstream(t, sample.Handler(nil))
	imp, impURL := startRecordingUpstream(t, sample.Handler(nil))
	refused, refusedURL := startRecordingUpstream(t, sample.Handler(nil))
	app := func(name, kind, audience, url string) string {
		return fmt.Sprintf(`
  - name: %s
    type: mcpProxy
    upstream: {transport: stream, stream: {url: %q}}
    authorization:
      outbound:
        type: tokenExchange
        tokenExchange:
          type: %s
          idp: corp-idp
          audience: %s
          tools: [{name: whoami, scopes: [{name: ledger:read}]}]`, name, url, kind, audience)
	}
	startBrokerAt(t, addr, scenario(t, "connector-exchange")+app("deleg", "delegation", "https://deleg.example/", delegURL)+app("imp", "impersonation", "https://imp.example/", impURL)+
		app("refused", "delegation", "https://refused.example/", refusedURL)+"\n",
		idp.issuer, idpClientID, idpClientSecret, as.ID, resource)

	agentToken := as.Mint(t, agentClaims(as, resource, "alice", "agent-1"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	session := connectWithToken(t, ctx, resource, agentToken)

	for _, tt := range []struct {
		app      string
		upstream *recordingUpstream
		audience string
		actor    bool
	}{
		{"deleg", deleg, "https://deleg.example/", true},
		{"imp", imp, "https://imp.example/", false},
	} {
		t.Run(tt.app, func(t *testing.T) {
			if got := whoami(t, ctx, session, tt.app+"_whoami"); !got.AuthorizationPresent || got.TokenFormat != "opaque" {
				t.Errorf("whoami saw %+v, want the opaque exchanged token", got)
			}
			issued := map[string]exchangeForm{} // by the token it issued
			forms := 0
			for _, f := range idp.recorded() {
				if f.form["audience"] != tt.audience {
					continue
				}
				forms++
				issued[f.issued] = f
				want := map[string]string{
					"grant_type":         "urn:ietf:params:oauth:grant-type:token-exchange",
					"subject_token":      agentToken,
					"subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
					"audience":           tt.audience,
					// The tools' ttl and the session tokens' lifetime, 5 s both.
					"requested_lifetime": "5",
				}
				if tt.actor {
					want["actor_token"] = agentToken
					want["actor_token_type"] = "urn:ietf:params:oauth:token-type:access_token"
				}
				if s, ok := f.form["scope"]; ok {
					want["scope"] = s
				}
				if !reflect.DeepEqual(f.form, want) {
					t.Errorf("exchange form %v\nwant %v", f.form, want)
				}
				if f.user != idpClientID || f.secret != idpClientSecret {
					t.Errorf("client authentication %q:%q, want the connector's client in Basic", f.user, f.secret)
				}
			}
			if forms == 0 {
				t.Fatal("no exchange for the app")
			}
			for _, r := range tt.upstream.requests() {
				token, _ := strings.CutPrefix(r.authorization, "Bearer ")
				f, ok := issued[token]
				switch {
				case !ok:
					t.Errorf("%s %s carried %q, not a token the connector issued for the app", r.method, r.rpc, r.authorization)
				case r.rpc == "tools/call" && f.form["scope"] != "ledger:read":
					t.Errorf("tools/call carried a token exchanged for scope %q, want ledger:read", f.form["scope"])
				case r.rpc != "tools/call" && f.form["scope"] != "":
					t.Errorf("%s %s carried a token exchanged for scope %q, want an identity-only one", r.method, r.rpc, f.form["scope"])
				}
			}
			if tt.upstream.calls() != 1 {
				t.Errorf("%d tools/call reached the upstream, want 1", tt.upstream.calls())
			}
		})
	}

	t.Run("refused exchange", func(t *testing.T) {
		_, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "refused_whoami"})
		var rpcErr *jsonrpc.Error
		if !errors.As(err, &rpcErr) || rpcErr.Code != -32000 || rpcErr.Message != "token exchange failed: invalid_target" {
			t.Errorf("call: %v, want JSON-RPC error -32000 %q", err, "token exchange failed: invalid_target")
		}
		if n := len(refused.requests()); n != 0 {
			t.Errorf("the upstream was contacted %d times", n)
		}
	})
}
