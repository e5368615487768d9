package broker_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

// bridgeBroker serves the REST API at %[1]q, described by %[2]q, as the
// mcpBridge app items.
const bridgeBroker = openProvider + `apps:
  - name: items
    type: mcpBridge
    bridge:
      baseURL: %[1]q
      openapi: {file: %[2]q}
      operations: {exclude: [deleteItem]}
      tools:
        - {operationId: getPart, description: "One part of an item."}
    validation: {arguments: enforce}
    redaction: {action: mask}
`

// An mcpBridge app through the whole broker: its operations are listed as
// namespaced tools with their schemas, and a call is the REST request its
// arguments fill in.
func TestBridgeApp(t *testing.T) {
	restURL, seen := recordingREST(t, `{"id":7,"name":"wheel","key":"AKIAIOSFODNN7EXAMPLE"}`)
	doc, _ := filepath.Abs("../testdata/openapi/styles-3.1.yaml")
	base := startBroker(t, bridgeBroker, restURL+"/api", doc)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs := connectAnonymous(t, ctx, base)
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*mcp.Tool{}
	for _, tool := range tools.Tools {
		byName[tool.Name] = tool
	}
	part := byName["items_getPart"]
	if len(byName) != 3 || part == nil || byName["items_deleteItem"] != nil || part.Description != "One part of an item." || part.OutputSchema == nil {
		t.Fatalf("tools: %v", byName)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "items_getPart", Arguments: map[string]any{"itemId": "i/1", "partId": 3, "tags": []string{"a", "b"}}})
	if err != nil || res.IsError {
		t.Fatalf("call: %v %+v", err, res)
	}
	if sc, _ := res.StructuredContent.(map[string]any); sc == nil || sc["name"] != "wheel" {
		t.Fatalf("structured content: %+v", res.StructuredContent)
	}
	// The app's redaction masks what the REST API answered.
	if sc, _ := res.StructuredContent.(map[string]any); sc["key"] == "AKIAIOSFODNN7EXAMPLE" || strings.Contains(toolText(res), "AKIAIOSFODNN7EXAMPLE") {
		t.Fatalf("a credential in the answer was not masked: %+v %s", res.StructuredContent, toolText(res))
	}
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "items_createItem", Arguments: map[string]any{"body": map[string]any{"name": "n"}}})
	if err != nil || res.IsError {
		t.Fatalf("createItem: %v %+v", err, res)
	}
	// The app's validation holds arguments to the schema the document
	// gave: the REST API is not asked.
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "items_getPart", Arguments: map[string]any{"itemId": "i", "partId": "three"}})
	if err != nil || !res.IsError || !strings.Contains(toolText(res), "Invalid arguments") {
		t.Fatalf("an argument against the schema: %v %+v", err, res)
	}
	want := []string{`GET /api/items/i%2F1/parts/3?tags=a&tags=b `, `POST /api/items {"name":"n"}`}
	if got := seen(); !slices.Equal(got, want) {
		t.Fatalf("the REST server saw %q, want %q", got, want)
	}
}

// recordingREST is a REST server answering every request with the JSON
// reply; seen lists the requests it had, as "METHOD URI BODY".
func recordingREST(t *testing.T, reply string) (url string, seen func() []string) {
	t.Helper()
	var mu sync.Mutex
	var requests []string
	rest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		requests = append(requests, r.Method+" "+r.URL.RequestURI()+" "+string(body))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, reply)
	}))
	t.Cleanup(rest.Close)
	return rest.URL, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(requests)
	}
}

// check refuses an mcpBridge app whose document cannot be served, naming
// the document and the operation.
func TestBridgeCheck(t *testing.T) {
	bin := buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	dir := t.TempDir()
	doc := filepath.Join(dir, "bad.json")
	writeFile(t, doc, `{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{"/a":{"post":{"operationId":"upload","requestBody":{"content":{"text/csv":{}}},"responses":{"200":{"description":"d"}}}}}}`)
	cfg := filepath.Join(dir, "broker.yaml")
	writeFile(t, cfg, strings.ReplaceAll(strings.ReplaceAll(bridgeBroker, "%[1]q", `"http://127.0.0.1:9/api"`), "%[2]q", `"bad.json"`))
	out, err := exec.Command(bin, "check", "--config", cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "bad.json") || !strings.Contains(string(out), `paths["/a"].post`) || !strings.Contains(string(out), "text/csv") {
		t.Fatalf("check: %v\n%s", err, out)
	}
	_ = os.Remove(doc)

	// The tools an app would serve, for an operator to review.
	styles, _ := filepath.Abs("../testdata/openapi/styles-3.1.yaml")
	writeFile(t, cfg, strings.ReplaceAll(strings.ReplaceAll(bridgeBroker, "%[1]q", `"http://127.0.0.1:9/api"`), "%[2]q", strconv.Quote(styles)))
	out, err = exec.Command(bin, "bridge", "preview", "--config", cfg, "--app", "items").Output()
	var preview struct {
		App   string `json:"app"`
		Tools []struct {
			Name        string          `json:"name"`
			Operation   string          `json:"operation"`
			Description string          `json:"description"`
			InputSchema json.RawMessage `json:"inputSchema"`
		} `json:"tools"`
	}
	if err != nil || json.Unmarshal(out, &preview) != nil || len(preview.Tools) != 3 {
		t.Fatalf("bridge preview: %v\n%s", err, out)
	}
	first := preview.Tools[0]
	for _, tool := range preview.Tools {
		if tool.Name == "items_getPart" {
			first = tool
		}
	}
	if first.Name != "items_getPart" || first.Operation != "GET /items/{itemId}/parts/{partId}" || first.Description != "One part of an item." || !strings.Contains(string(first.InputSchema), `"partId"`) {
		t.Fatalf("first tool: %+v", first)
	}
	if out, err := exec.Command(bin, "bridge", "preview", "--config", cfg, "--app", "nothing").CombinedOutput(); err == nil || !strings.Contains(string(out), `no app is named "nothing"`) {
		t.Fatalf("preview of an unknown app: %v %s", err, out)
	}

	// A document fetched from a URL: on loopback it is read; a link-local
	// address (cloud metadata) is refused whatever the configuration.
	served, _ := os.ReadFile(styles)
	docServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(served) }))
	defer docServer.Close()
	byURL := func(u string) string {
		return strings.ReplaceAll(strings.ReplaceAll(bridgeBroker, "%[1]q", `"http://127.0.0.1:9/api"`), "openapi: {file: %[2]q}", "openapi: {url: "+strconv.Quote(u)+"}")
	}
	writeFile(t, cfg, byURL(docServer.URL+"/styles.yaml"))
	if out, err := exec.Command(bin, "bridge", "preview", "--config", cfg, "--app", "items").Output(); err != nil || !strings.Contains(string(out), "items_getPart") {
		t.Fatalf("preview of a document fetched from a URL: %v %s", err, out)
	}
	writeFile(t, cfg, byURL("http://169.254.169.254/openapi.json"))
	if out, err := exec.Command(bin, "check", "--config", cfg).CombinedOutput(); err == nil || !strings.Contains(string(out), "openapi.url") {
		t.Fatalf("check of a document at a link-local address: %v %s", err, out)
	}
}

// restCall is what the REST services saw of one call.
type restCall struct {
	method, uri, body string
	audience, scope   string
	subject           string
}

// Kong's recipe, with REST services: each group lists exactly its tools,
// its allowed calls reach the right service with the right path, query
// and body and a token exchanged for that service's audience with the
// tool's scope; the rest are denied before any service hears of them.
func TestKongRecipeBridged(t *testing.T) {
	var mu sync.Mutex
	var calls []restCall
	rest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		c := restCall{method: r.Method, uri: r.URL.RequestURI(), body: string(body)}
		if token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			var claims struct {
				Aud   any    `json:"aud"`
				Scope string `json:"scope"`
				Sub   string `json:"sub"`
			}
			parts := strings.Split(token, ".")
			if len(parts) == 3 {
				payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
				_ = json.Unmarshal(payload, &claims)
			}
			c.audience, c.scope, c.subject = fmt.Sprint(claims.Aud), claims.Scope, claims.Sub
		}
		mu.Lock()
		calls = append(calls, c)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"x","status":"ok"}`))
	}))
	defer rest.Close()

	as := oauthtest.NewIssuer(t, nil)
	addr := freeAddress(t)
	brokerURL := "http://" + addr
	resource := brokerURL + "/mcp"
	docs, _ := filepath.Abs("../testdata/openapi/kong")
	policy, _ := filepath.Abs("../policies/group_matrix.rego")
	startBrokerAt(t, addr, scenario(t, "kong-recipe-bridged"), brokerURL, as.ID, resource,
		filepath.Join(t.TempDir(), "broker.db"), rest.URL, docs, policy)

	type want struct {
		args            map[string]any
		uri, body       string
		audience, scope string
	}
	all := map[string]want{
		"list-orders":             {map[string]any{"status": "open", "limit": 5}, "/orders-api/orders?status=open&limit=5", "", "https://orders.example/", "orders:read"},
		"get-order":               {map[string]any{"orderId": "o/1"}, "/orders-api/orders/o%2F1", "", "https://orders.example/", "orders:read"},
		"cancel-order":            {map[string]any{"orderId": "o1", "body": map[string]any{"reason": "late"}}, "/orders-api/orders/o1/cancel", `{"reason":"late"}`, "https://orders.example/", "orders:write"},
		"list-inventory":          {map[string]any{}, "/inventory-api/items", "", "https://inventory.example/", "inventory:read"},
		"check-inventory":         {map[string]any{"sku": "w-1"}, "/inventory-api/items/w-1", "", "https://inventory.example/", "inventory:read"},
		"restock-item":            {map[string]any{"sku": "w-1", "body": map[string]any{"quantity": 3}}, "/inventory-api/items/w-1/restock", `{"quantity":3}`, "https://inventory.example/", "inventory:write"},
		"get-customer":            {map[string]any{"customerId": "c1"}, "/customers-api/customers/c1", "", "https://customers.example/", "customers:read"},
		"update-customer-contact": {map[string]any{"customerId": "c1", "body": map[string]any{"email": "a@b.example"}}, "/customers-api/customers/c1/contact", `{"email":"a@b.example"}`, "https://customers.example/", "customers:write"},
	}
	groups := map[string][]string{
		"warehouse-ops":    {"check-inventory", "get-order", "list-inventory", "list-orders", "restock-item"},
		"customer-support": {"cancel-order", "check-inventory", "get-customer", "get-order", "list-inventory", "list-orders", "update-customer-contact"},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for group, allowed := range groups {
		t.Run(group, func(t *testing.T) {
			claims := agentClaims(as, resource, "user-"+group, "agent-1")
			claims["groups"] = []string{group}
			claims["scope"] = "orders:read orders:write inventory:read inventory:write customers:read customers:write"
			session := connectWithToken(t, ctx, resource, as.Mint(t, claims))
			var listed []string
			for name := range toolNames(t, ctx, session) {
				listed = append(listed, name)
			}
			sort.Strings(listed)
			if strings.Join(listed, ",") != strings.Join(allowed, ",") {
				t.Errorf("tools/list: %v, want %v", listed, allowed)
			}
			for name, w := range all {
				mu.Lock()
				before := len(calls)
				mu.Unlock()
				res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: w.args})
				mu.Lock()
				got := calls[before:]
				mu.Unlock()
				if !slices.Contains(allowed, name) {
					// Refused by the policy (-32010), or, since three apps
					// share unprefixed names and the policy hides it from
					// this caller's lists, unknown to it (-32602).
					var rpcErr *jsonrpc.Error
					if err == nil || !errors.As(err, &rpcErr) || (rpcErr.Code != -32010 && rpcErr.Code != -32602) || len(got) != 0 {
						t.Errorf("%s may not call %s: %v, %d REST calls", group, name, err, len(got))
					}
					continue
				}
				if err != nil || res.IsError || len(got) != 1 {
					t.Errorf("%s calling %s: %v %+v, %d REST calls", group, name, err, res, len(got))
					continue
				}
				c := got[0]
				if c.uri != w.uri || c.body != w.body || c.audience != w.audience || c.scope != w.scope || c.subject != "user-"+group {
					t.Errorf("%s calling %s: the service saw %+v, want %s %s aud %s scope %s", group, name, c, w.uri, w.body, w.audience, w.scope)
				}
			}
		})
	}
}

// declaredBridge serves the REST API at %[1]q through tools declared in
// the configuration, for an API without an OpenAPI document.
const declaredBridge = openProvider + `apps:
  - name: stock
    type: mcpBridge
    bridge:
      baseURL: %[1]q
      tools:
        - name: get-stock
          description: Stock of one item.
          method: GET
          path: /stock/{sku}
          parameters:
            - {name: sku, in: path, schema: {type: string}}
            - {name: warehouse, in: query, schema: {type: array, items: {type: string}}, explode: false}
        - name: add-note
          method: POST
          path: /notes
          body: {required: true, schema: {type: object, required: [text], properties: {text: {type: string}}}}
          annotations: {destructiveHint: false}
`

// Tools declared by hand are made and called as a document's are.
func TestBridgeDeclaredTools(t *testing.T) {
	restURL, seen := recordingREST(t, `{"ok":true}`)
	base := startBroker(t, declaredBridge, restURL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs := connectAnonymous(t, ctx, base)
	tools, err := cs.ListTools(ctx, nil)
	if err != nil || len(tools.Tools) != 2 {
		t.Fatalf("tools: %v %+v", err, tools)
	}
	for _, tool := range tools.Tools {
		if tool.Name == "stock_add-note" && (tool.Annotations == nil || tool.Annotations.DestructiveHint == nil || *tool.Annotations.DestructiveHint) {
			t.Errorf("add-note annotations: %+v", tool.Annotations)
		}
	}
	if res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "stock_get-stock", Arguments: map[string]any{"sku": "a b", "warehouse": []string{"n", "s"}}}); err != nil || res.IsError {
		t.Fatalf("get-stock: %v %+v", err, res)
	}
	if res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "stock_add-note", Arguments: map[string]any{"body": map[string]any{"text": "hi"}}}); err != nil || res.IsError {
		t.Fatalf("add-note: %v %+v", err, res)
	}
	want := []string{"GET /stock/a%20b?warehouse=n,s ", `POST /notes {"text":"hi"}`}
	if got := seen(); !slices.Equal(got, want) {
		t.Fatalf("the REST server saw %q, want %q", got, want)
	}
}

// restSampleBroker serves the sample REST services (%[1]s) described by
// the documents in %[2]s as three mcpBridge apps.
const restSampleBroker = openProvider + `apps:
  - {name: orders, type: mcpBridge, toolNamespace: {disabled: true}, bridge: {baseURL: "%[1]s/orders-api", openapi: {file: "%[2]s/orders.yaml"}}}
  - {name: inventory, type: mcpBridge, toolNamespace: {disabled: true}, bridge: {baseURL: "%[1]s/inventory-api", openapi: {file: "%[2]s/inventory.yaml"}}}
  - {name: customers, type: mcpBridge, toolNamespace: {disabled: true}, bridge: {baseURL: "%[1]s/customers-api", openapi: {file: "%[2]s/customers.yaml"}}}
`

// The sample REST services (mcpbroker upstream rest-sample) answer what
// their documents promise, through the broker.
func TestRESTSampleBridged(t *testing.T) {
	bin := buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	addr := freeAddress(t)
	startProcess(t, addr, bin, "upstream", "rest-sample", "--listen", addr)
	docs, _ := filepath.Abs("../testdata/openapi/kong")
	base := startBroker(t, restSampleBroker, "http://"+addr, docs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs := connectAnonymous(t, ctx, base)
	calls := []struct {
		tool    string
		args    map[string]any
		isError bool
		want    string
	}{
		{"list-orders", map[string]any{"status": "open", "limit": 1}, false, `"o-1003"`},
		{"get-order", map[string]any{"orderId": "o-1002"}, false, `"shipped"`},
		{"cancel-order", map[string]any{"orderId": "o-1002", "body": map[string]any{"reason": "late"}}, true, "HTTP 409"},
		{"cancel-order", map[string]any{"orderId": "o-1001", "body": map[string]any{"reason": "late"}}, false, `"cancelled"`},
		{"check-inventory", map[string]any{"sku": "gadget"}, false, `"quantity":0`},
		{"restock-item", map[string]any{"sku": "gadget", "body": map[string]any{"quantity": 5}}, false, `"quantity":5`},
		{"get-customer", map[string]any{"customerId": "c-9"}, true, "HTTP 404"},
		{"update-customer-contact", map[string]any{"customerId": "c-1", "body": map[string]any{"phone": "+1 555 0100"}}, false, `"phone":"+1 555 0100"`},
	}
	for _, c := range calls {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: c.tool, Arguments: c.args})
		if err != nil || res.IsError != c.isError || !strings.Contains(toolText(res), c.want) {
			t.Errorf("%s %v: %v isError=%v %s", c.tool, c.args, err, res != nil && res.IsError, func() string {
				if res == nil {
					return ""
				}
				return toolText(res)
			}())
		}
	}
}

// The shipped recipe (testdata/kong-recipe.yaml) as a user runs it: the
// sample REST services, the broker as its own authorization server, and
// two agents with client credentials in the recipe's two groups, each
// listing exactly its tools and calling them through to the services.
func TestShippedKongRecipe(t *testing.T) {
	bin := buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	rest := freeAddress(t)
	startProcess(t, rest, bin, "upstream", "rest-sample", "--listen", rest)
	raw, err := os.ReadFile("../testdata/kong-recipe.yaml")
	if err != nil {
		t.Fatal(err)
	}
	testdata, _ := filepath.Abs("../testdata")
	addr := freeAddress(t)
	dir := t.TempDir()
	cfg := strings.NewReplacer(
		"127.0.0.1:8081", addr, "127.0.0.1:9200", rest, "127.0.0.1:9465", freeAddress(t),
		"openapi/kong/", testdata+"/openapi/kong/", "../policies/", filepath.Dir(testdata)+"/policies/",
		"../data/", dir+"/",
	).Replace(string(raw))
	base := startBrokerAt(t, addr, "%s", cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for agent, want := range map[string][]string{
		"warehouse-agent": {"check-inventory", "get-order", "list-inventory", "list-orders", "restock-item"},
		"support-agent":   {"cancel-order", "check-inventory", "get-customer", "get-order", "list-inventory", "list-orders", "update-customer-contact"},
	} {
		token := clientCredentialsToken(t, http.DefaultClient, base+"/token", url.Values{
			"client_id": {agent}, "client_secret": {agent + "-secret-not-for-production"},
			"scope": {"orders:read orders:write inventory:read inventory:write customers:read customers:write"}, "resource": {base + "/mcp"},
		})
		session := connectWithToken(t, ctx, base+"/mcp", token)
		var listed []string
		for name := range toolNames(t, ctx, session) {
			listed = append(listed, name)
		}
		sort.Strings(listed)
		if !slices.Equal(listed, want) {
			t.Errorf("%s lists %v, want %v", agent, listed, want)
		}
		res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "check-inventory", Arguments: map[string]any{"sku": "widget"}})
		if err != nil || res.IsError || !strings.Contains(toolText(res), `"sku":"widget"`) {
			t.Errorf("%s check-inventory: %v %+v", agent, err, res)
		}
	}
}

// pinnedBridge is bridgeBroker with tool pinning that trusts nothing
// unseen; %[3]q is the store.
const pinnedBridge = `
version: 1
storage: {bolt: {path: %[3]q}}
mcpProvider:
  enabled: true
  authorization: {unauthenticated: {enabled: true}}
  transports:
    stream: {enabled: true, path: /mcp, session: {enabled: true}}
apps:
  - name: items
    type: mcpBridge
    bridge: {baseURL: %[1]q, openapi: {file: %[2]q}}
    toolPinning: {mode: enforce, trustOnFirstUse: false}
`

// Tool pinning holds a bridged API's tools as any app's: none is listed
// or called before an operator approves it.
func TestBridgePinning(t *testing.T) {
	restURL, seen := recordingREST(t, `{}`)
	doc, _ := filepath.Abs("../testdata/openapi/styles-3.1.yaml")
	base := startBroker(t, pinnedBridge, restURL, doc, filepath.Join(t.TempDir(), "pins.db"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs := connectAnonymous(t, ctx, base)
	tools, err := cs.ListTools(ctx, nil)
	if err != nil || len(tools.Tools) != 0 {
		t.Fatalf("unapproved tools listed: %v %+v", err, tools)
	}
	_, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "items_deleteItem", Arguments: map[string]any{"itemId": "x"}})
	if err == nil || len(seen()) != 0 {
		t.Fatalf("an unapproved tool was called: %v, REST requests %v", err, seen())
	}
}

// connectAnonymous connects a Go SDK client, without credentials, to the
// broker at base; the session ends with the test.
func connectAnonymous(t *testing.T, ctx context.Context, base string) *mcp.ClientSession {
	t.Helper()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "bridge-test", Version: "1"}, nil).Connect(ctx, &mcp.StreamableClientTransport{Endpoint: base + "/mcp"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}
