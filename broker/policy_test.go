package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// kongTools are the tools of Kong's secure MCP gateway recipe.
var kongTools = []string{"list-orders", "get-order", "cancel-order", "list-inventory", "check-inventory",
	"restock-item", "get-customer", "update-customer-contact"}

// ecommerceUpstream serves the recipe's tools; each answers its own name.
func ecommerceUpstream(t *testing.T) (url string, calls *atomic.Int32) {
	t.Helper()
	calls = &atomic.Int32{}
	server := mcp.NewServer(&mcp.Implementation{Name: "ecommerce", Version: "1"}, nil)
	for _, name := range kongTools {
		server.AddTool(&mcp.Tool{Name: name, InputSchema: json.RawMessage(`{"type":"object"}`)},
			func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				calls.Add(1)
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name}}}, nil
			})
	}
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil))
	t.Cleanup(srv.Close)
	return srv.URL, calls
}

// policyBroker starts a broker with authentication and one app governed
// by the policy file, and returns its endpoint, the resource and the AS.
func policyBroker(t *testing.T, upstreamURL, policyFile string, namespaced bool) (endpoint string, as *oauthtest.Issuer, resource string) {
	t.Helper()
	as = oauthtest.NewIssuer(t, nil)
	addr := freeAddress(t)
	resource = "http://" + addr + "/mcp"
	namespace := "{disabled: true}"
	if namespaced {
		namespace = "{name: shop_}"
	}
	url := startBrokerAt(t, addr, scenario(t, "policy-broker"), as.ID, resource, namespace, upstreamURL, policyFile)
	return url + "/mcp", as, resource
}

func tokenFor(t *testing.T, as *oauthtest.Issuer, resource, subject string, groups ...string) string {
	claims := agentClaims(as, resource, subject, "agent-1")
	claims["groups"] = groups
	return as.Mint(t, claims)
}

// The shipped group matrix policy shapes tools/list exactly as Kong's
// recipe says, and refuses the calls it hides, before they reach the
// upstream.
func TestGroupMatrixPolicy(t *testing.T) {
	upstreamURL, calls := ecommerceUpstream(t)
	policy, _ := filepath.Abs("../policies/group_matrix.rego")
	endpoint, as, resource := policyBroker(t, upstreamURL, policy, false)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	want := map[string][]string{
		"warehouse-ops":    {"check-inventory", "get-order", "list-inventory", "list-orders", "restock-item"},
		"customer-support": {"cancel-order", "check-inventory", "get-customer", "get-order", "list-inventory", "list-orders", "update-customer-contact"},
		"interns":          {},
	}
	for group, tools := range want {
		t.Run(group, func(t *testing.T) {
			session := connectWithToken(t, ctx, endpoint, tokenFor(t, as, resource, "user-"+group, group))
			got := []string{}
			for name := range toolNames(t, ctx, session) {
				got = append(got, name)
			}
			sort.Strings(got)
			if strings.Join(got, ",") != strings.Join(tools, ",") {
				t.Errorf("tools/list for %s: %v, want %v", group, got, tools)
			}
			for _, name := range kongTools {
				allowed := false
				for _, n := range tools {
					allowed = allowed || n == name
				}
				before := calls.Load()
				res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: name})
				switch {
				case allowed && (err != nil || text(res) != name):
					t.Errorf("%s may call %s: %v", group, name, err)
				case allowed && calls.Load() != before+1:
					t.Errorf("%s's call to %s did not reach the upstream", group, name)
				case !allowed:
					var rpcErr *jsonrpc.Error
					if err == nil {
						t.Errorf("%s called %s, which the policy forbids", group, name)
					} else if !errors.As(err, &rpcErr) || rpcErr.Code != -32010 {
						t.Errorf("%s calling %s: want JSON-RPC error -32010, got %v", group, name, err)
					}
					if calls.Load() != before {
						t.Errorf("a forbidden call to %s reached the upstream", name)
					}
				}
			}
		})
	}
}

// An argument rule tells one value from another, and a denial carries the
// policy's external message and nothing else.
func TestArgumentRulePolicy(t *testing.T) {
	upstreamURL, hits := countingUpstream(t)
	policy, _ := filepath.Abs("../policies/argument_rule.rego")
	endpoint, as, resource := policyBroker(t, upstreamURL, policy, true)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	session := connectWithToken(t, ctx, endpoint, tokenFor(t, as, resource, "alice", "finance"))

	if res := callTool(t, ctx, session, "shop_transfer", map[string]any{"from": "alice", "to": "bob", "amount": 500}); res.IsError {
		t.Fatalf("a transfer within the limit: %s", text(res))
	}
	before := hits.Load()
	_, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "shop_transfer", Arguments: map[string]any{"from": "alice", "to": "bob", "amount": 5000}})
	var rpcErr *jsonrpc.Error
	if !errors.As(err, &rpcErr) || rpcErr.Code != -32010 || !strings.Contains(rpcErr.Message, "1000") {
		t.Fatalf("a transfer over the limit: want -32010 with the policy's message, got %v", err)
	}
	if hits.Load() != before {
		t.Error("a refused transfer reached the upstream")
	}
	if names := toolNames(t, ctx, session); !names["shop_transfer"] {
		t.Errorf("transfer is allowed for some amounts, so it is listed: %v", names)
	}
}

// A policy file that changes is reloaded; one that no longer compiles is
// reported and the previous policy keeps serving.
func TestPolicyHotReload(t *testing.T) {
	upstreamURL, _ := ecommerceUpstream(t)
	dir := t.TempDir()
	policy := filepath.Join(dir, "shop.rego")
	write := func(body string) {
		t.Helper()
		tmp := policy + ".tmp"
		if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, policy); err != nil {
			t.Fatal(err)
		}
	}
	allowOnly := func(tool string) string {
		return "package orchestrator\n\nresult := {\"allowed\": input.request.mcp.tool.params.name == \"" + tool + "\"}\n"
	}
	write(allowOnly("list-orders"))
	endpoint, as, resource := policyBroker(t, upstreamURL, policy, false)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	session := connectWithToken(t, ctx, endpoint, tokenFor(t, as, resource, "alice"))
	allowed := func(tool string) bool {
		_, err := session.CallTool(ctx, &mcp.CallToolParams{Name: tool})
		return err == nil
	}
	if !allowed("list-orders") || allowed("get-order") {
		t.Fatal("the first policy is not in force")
	}
	write(allowOnly("get-order"))
	eventually(t, "the changed policy file to take effect", func() bool { return allowed("get-order") })
	if allowed("list-orders") {
		t.Error("the old policy still allows list-orders after the reload")
	}
	write("package orchestrator\n\nresult := {\"allowed\": true\n") // broken
	time.Sleep(3 * time.Second)                                     // more than a poll interval
	if !allowed("get-order") || allowed("list-orders") {
		t.Error("a broken policy file changed what is served; the previous policy must keep serving")
	}
}

// Prompts and resources are governed like tools: listed only when allowed,
// refused when not.
func TestPolicyGovernsPromptsAndResources(t *testing.T) {
	upstreamURL, hits := countingUpstream(t)
	policy := filepath.Join(t.TempDir(), "ledger.rego")
	if err := os.WriteFile(policy, []byte(`package orchestrator

default result := {"allowed": false, "external_message": "not for you"}

result := {"allowed": true} if input.request.mcp.tool.params.name == "list_accounts"

result := {"allowed": true} if input.request.mcp.resource.params.uri == "ledger://accounts"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	endpoint, as, resource := policyBroker(t, upstreamURL, policy, true)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	session := connectWithToken(t, ctx, endpoint, tokenFor(t, as, resource, "alice"))

	prompts, err := session.ListPrompts(ctx, nil)
	if err != nil || len(prompts.Prompts) != 0 {
		t.Errorf("prompts/list: %v %v, want none", err, prompts)
	}
	before := hits.Load()
	_, err = session.GetPrompt(ctx, &mcp.GetPromptParams{Name: "shop_audit_account", Arguments: map[string]string{"account": "alice"}})
	var rpcErr *jsonrpc.Error
	if !errors.As(err, &rpcErr) || rpcErr.Code != -32010 || rpcErr.Message != "not for you" {
		t.Errorf("prompts/get: want -32010 with the policy's message, got %v", err)
	}
	if hits.Load() != before {
		t.Error("a refused prompt reached the upstream")
	}
	resources, err := session.ListResources(ctx, nil)
	if err != nil || len(resources.Resources) != 1 || resources.Resources[0].URI != "ledger://accounts" {
		t.Errorf("resources/list: %v %+v, want only ledger://accounts", err, resources)
	}
	if _, err := session.ReadResource(ctx, &mcp.ReadResourceParams{URI: "ledger://accounts"}); err != nil {
		t.Errorf("allowed resource: %v", err)
	}
	if _, err := session.ReadResource(ctx, &mcp.ReadResourceParams{URI: "ledger://accounts/alice"}); !errors.As(err, &rpcErr) || rpcErr.Code != -32010 {
		t.Errorf("refused resource: want -32010, got %v", err)
	}
}

// A policy that does not decide in time refuses the call, but says so: a
// server error to try again, not the policy's denial (-32010), and the
// call does not reach the upstream.
func TestPolicyTimeoutIsNotADenial(t *testing.T) {
	upstreamURL, hits := countingUpstream(t)
	policy := filepath.Join(t.TempDir(), "slow.rego")
	writeFile(t, policy, `package orchestrator

default result := {"allowed": false}

# Lists are decided at once; a call searches 16 million pairs.
result := {"allowed": true} if input.request.mcp.method != "tools/call"

result := {"allowed": true} if {
	some i in numbers.range(1, 4000)
	some j in numbers.range(1, 4000)
	i * j == -1
}
`)
	endpoint, as, resource := policyBroker(t, upstreamURL, policy, true)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	session := connectWithToken(t, ctx, endpoint, tokenFor(t, as, resource, "alice", "finance"))
	before := hits.Load()
	_, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "shop_get_balance", Arguments: map[string]any{"account": "alice"}})
	var rpcErr *jsonrpc.Error
	if !errors.As(err, &rpcErr) || rpcErr.Code != -32000 || !strings.Contains(rpcErr.Message, "did not decide in time") {
		t.Fatalf("a call whose policy takes too long: want -32000 saying so, got %v", err)
	}
	if hits.Load() != before {
		t.Error("a call the policy did not decide reached the upstream")
	}
}
