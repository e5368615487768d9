package broker_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// bridgeBroker serves the REST API at %[1]q, described by %[2]q, as the
// mcpBridge app items.
const bridgeBroker = `
version: 1
mcpProvider:
  enabled: true
  authorization: {unauthenticated: {enabled: true}}
  transports:
    stream: {enabled: true, path: /mcp, session: {enabled: true}}
apps:
  - name: items
    type: mcpBridge
    bridge:
      baseURL: %[1]q
      openapi: {file: %[2]q}
      operations: {exclude: [deleteItem]}
      tools:
        - {operationId: getPart, description: "One part of an item."}
`

// An mcpBridge app through the whole broker: its operations are listed as
// namespaced tools with their schemas, and a call is the REST request its
// arguments fill in.
func TestBridgeApp(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	rest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.RequestURI()+" "+string(body))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"id": 7, "name": "wheel"})
	}))
	defer rest.Close()
	doc, _ := filepath.Abs("../testdata/openapi/styles-3.1.yaml")
	base := startBroker(t, bridgeBroker, rest.URL+"/api", doc)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "bridge-test", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: base + "/mcp"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
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
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "items_createItem", Arguments: map[string]any{"body": map[string]any{"name": "n"}}})
	if err != nil || res.IsError {
		t.Fatalf("createItem: %v %+v", err, res)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{`GET /api/items/i%2F1/parts/3?tags=a&tags=b `, `POST /api/items {"name":"n"}`}
	if len(seen) != 2 || seen[0] != want[0] || seen[1] != want[1] {
		t.Fatalf("the REST server saw %q, want %q", seen, want)
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
}
