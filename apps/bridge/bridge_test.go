package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/apps/schema"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

func load(t *testing.T, file, base string, opts Options) *API {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "openapi", file))
	if err != nil {
		t.Fatal(err)
	}
	opts.BaseURL, opts.Document, opts.Location = base, data, file
	api, err := Load(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return api
}

// The Swagger Petstore (OpenAPI 3.0): every operation with a JSON body or
// none becomes a tool whose schemas the broker's JSON Schema validator
// compiles; those with form or binary bodies are refused by name until
// the operator leaves them out.
func TestPetstore(t *testing.T) {
	data, _ := os.ReadFile(filepath.Join("..", "..", "testdata", "openapi", "petstore-3.0.json"))
	_, err := Load(context.Background(), Options{BaseURL: "https://pets.example/v2", Document: data, Location: "petstore-3.0.json"})
	if err == nil || !strings.Contains(err.Error(), "petstore-3.0.json") || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("form and binary bodies: %v", err)
	}
	api := load(t, "petstore-3.0.json", "https://pets.example/v2", Options{Exclude: []string{"updatePetWithForm", "uploadFile"}})
	if n := len(api.Tools()); n < 20 {
		t.Fatalf("%d tools", n)
	}
	for _, tool := range api.Tools() {
		if _, err := schema.Compile(tool.InputSchema); err != nil {
			t.Errorf("%s: inputSchema: %v\n%s", tool.Name, err, tool.InputSchema)
		}
		if tool.OutputSchema != nil {
			if _, err := schema.Compile(tool.OutputSchema); err != nil {
				t.Errorf("%s: outputSchema: %v", tool.Name, err)
			}
		}
	}
	get := api.Tool("getPetById")
	if get == nil || get.Annotations["readOnlyHint"] != true || !strings.Contains(string(get.InputSchema), `"petId"`) {
		t.Fatalf("getPetById: %+v", get)
	}
	if del := api.Tool("deletePet"); del == nil || del.Annotations["destructiveHint"] != true {
		t.Fatalf("deletePet: %+v", del)
	}
	// Selection by tag and by method and path.
	api = load(t, "petstore-3.0.json", "https://pets.example/v2", Options{Include: []string{"tag:store", "GET /user/login"}})
	var names []string
	for _, tool := range api.Tools() {
		names = append(names, tool.Name)
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "deleteOrder,getInventory,getOrderById,loginUser,placeOrder" {
		t.Fatalf("selected %v", names)
	}
}

// echo answers every request with what it received.
func echo(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
			_ = json.NewEncoder(w).Encode([]string{string(body)})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"method": r.Method, "path": r.URL.EscapedPath(), "query": r.URL.RawQuery,
			"trace": r.Header.Get("X-Trace"), "cookie": r.Header.Get("Cookie"), "auth": r.Header.Get("Authorization"),
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Each parameter style, the JSON body and the call's token reach the REST
// server as the document says; a 2xx JSON answer is structured content.
func TestParameterStyles(t *testing.T) {
	srv := echo(t)
	api := load(t, "styles-3.1.yaml", srv.URL+"/api", Options{})
	for _, tool := range api.Tools() {
		for _, s := range []json.RawMessage{tool.InputSchema, tool.OutputSchema} {
			if s == nil {
				continue
			}
			if _, err := schema.Compile(s); err != nil {
				t.Errorf("%s: %v\n%s", tool.Name, err, s)
			}
		}
	}
	s := NewSession(api, NewClient(nil), "styles")
	call := func(name, args string) map[string]any {
		t.Helper()
		resp, err := s.Call(context.Background(), &jsonrpc.Message{ID: jsonrpc.Int64ID(1), Method: "tools/call",
			Params: json.RawMessage(`{"name":"` + name + `","arguments":` + args + `}`)}, http.Header{"Authorization": {"Bearer exchanged"}}, nil)
		if err != nil || resp.Error != nil {
			t.Fatalf("%s: %v %+v", name, err, resp)
		}
		var r map[string]any
		_ = json.Unmarshal(resp.Result, &r)
		return r
	}
	r := call("getPart", `{"itemId":"a b/c","partId":7,"tags":["x","y z"],"ids":[1,2],"filter":{"color":"red","size":3},"X-Trace":"t-1","session":"s;1"}`)
	got, _ := r["structuredContent"].(map[string]any)
	want := map[string]any{
		"method": "GET", "path": "/api/items/a%20b%2Fc/parts/7", "query": "tags=x&tags=y+z&ids=1,2&filter%5Bcolor%5D=red&filter%5Bsize%5D=3",
		"trace": "t-1", "cookie": "session=s%3B1", "auth": "Bearer exchanged",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %v, want %v", k, got[k], v)
		}
	}
	r = call("createItem", `{"body":{"name":"n","note":null}}`)
	if sc, _ := r["structuredContent"].(map[string]any); sc == nil || !strings.Contains(sc["result"].([]any)[0].(string), `"name":"n"`) {
		t.Fatalf("createItem: %v", r)
	}
	if r := call("createItem", `{}`); r["isError"] != true {
		t.Fatalf("a required body left out: %v", r)
	}
	// The tools as listed.
	resp, _ := s.Call(context.Background(), &jsonrpc.Message{ID: jsonrpc.Int64ID(2), Method: "tools/list"}, nil, nil)
	if !strings.Contains(string(resp.Result), `"name":"deleteItem"`) || !strings.Contains(string(resp.Result), `"outputSchema"`) {
		t.Fatalf("tools/list: %s", resp.Result)
	}
}

// Hostile arguments never change the request's scheme, host or the base
// path: what would is refused as invalid arguments, the rest is escaped
// inside one path segment.
func TestHostileArguments(t *testing.T) {
	api := load(t, "styles-3.1.yaml", "https://api.example/base", Options{})
	tool := api.Tool("deleteItem")
	for _, v := range []string{"../admin", "..", ".", "%2F..%2Fadmin", "https://evil.example/x", "//evil.example", "a\r\nX-Injected: 1", "?q=1", "#frag", ""} {
		args, _ := json.Marshal(map[string]string{"itemId": v})
		req, err := api.Request(context.Background(), tool, args, nil)
		if err != nil {
			continue // refused
		}
		if req.URL.Scheme != "https" || req.URL.Host != "api.example" || !strings.HasPrefix(req.URL.EscapedPath(), "/base/items/") ||
			strings.Count(req.URL.EscapedPath(), "/") != 3 || req.URL.RawQuery != "" || req.Header.Get("X-Injected") != "" {
			t.Errorf("itemId %q made %s", v, req.URL)
		}
	}
	part := api.Tool("getPart")
	for _, header := range []string{"a\r\nX-Injected: 1", "a\nb", "a\x00"} {
		args, _ := json.Marshal(map[string]any{"itemId": "i", "partId": 1, "X-Trace": header})
		if _, err := api.Request(context.Background(), part, args, nil); err == nil {
			t.Errorf("header value %q accepted", header)
		}
	}
}

// Documents the bridge cannot serve are refused, naming where.
func TestBadDocuments(t *testing.T) {
	for name, doc := range map[string]string{
		"unresolvable $ref":     `{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{"/a":{"get":{"operationId":"a","responses":{"200":{"description":"d","content":{"application/json":{"schema":{"$ref":"#/components/schemas/Missing"}}}}}}}}}`,
		"duplicate operationId": `{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{"/a":{"get":{"operationId":"x","responses":{"200":{"description":"d"}}}},"/b":{"get":{"operationId":"x","responses":{"200":{"description":"d"}}}}}}`,
		"unsupported content":   `{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{"/a":{"post":{"operationId":"a","requestBody":{"content":{"text/csv":{}}},"responses":{"200":{"description":"d"}}}}}}`,
		"remote $ref":           `{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{"/a":{"get":{"operationId":"a","responses":{"200":{"description":"d","content":{"application/json":{"schema":{"$ref":"http://169.254.169.254/x.json"}}}}}}}}}`,
	} {
		_, err := Load(context.Background(), Options{BaseURL: "https://api.example", Document: []byte(doc), Location: "doc.json"})
		if err == nil || !strings.Contains(err.Error(), "doc.json") {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, base := range []string{"", "ftp://x", "https://", "https://a.example/?q=1", "https://u:p@a.example"} {
		if _, err := Load(context.Background(), Options{BaseURL: base, Document: []byte(`{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{}}`)}); err == nil {
			t.Errorf("baseURL %q accepted", base)
		}
	}
}

// A non-2xx answer is an error result with its status and the start of
// its body; a redirect is not followed; an answer too large is refused.
func TestFailedCalls(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/gone"):
			http.Error(w, strings.Repeat("x", 5000), http.StatusNotFound)
		case strings.HasSuffix(r.URL.Path, "/moved"):
			http.Redirect(w, r, "https://elsewhere.example/", http.StatusFound)
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`"` + strings.Repeat("y", MaxResponseBytes) + `"`))
		}
	}))
	defer srv.Close()
	api := load(t, "styles-3.1.yaml", srv.URL, Options{})
	for id, want := range map[string]string{"gone": "HTTP 404 Not Found: xxx", "moved": "redirects are not followed", "big": "more than"} {
		args, _ := json.Marshal(map[string]string{"itemId": id})
		res, err := api.Call(context.Background(), NewClient(nil), api.Tool("deleteItem"), args, nil)
		if err != nil || !res.IsError || !strings.Contains(res.Content[0]["text"].(string), want) || len(res.Content[0]["text"].(string)) > 2*maxErrorExcerpt {
			t.Errorf("%s: %v %+v", id, err, res)
		}
	}
}

// A hostile or broken REST API costs bounded memory and time: a huge body
// is read no further than the cap, whatever many calls ask for it at
// once; a slow one is cut by the call's deadline; a body that says it is
// JSON and is not is text only.
func TestHostileREST(t *testing.T) {
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = 'x'
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/slow"):
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		case strings.HasSuffix(r.URL.Path, "/lies"):
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"not json`)
		default:
			w.Header().Set("Content-Type", "application/json")
			for range 64 { // 64 MiB
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}
	}))
	defer srv.Close()
	api := load(t, "styles-3.1.yaml", srv.URL, Options{})
	tool := api.Tool("deleteItem")
	client := NewClient(nil)
	call := func(ctx context.Context, id string) (*Result, error) {
		args, _ := json.Marshal(map[string]string{"itemId": id})
		return api.Call(ctx, client, tool, args, nil)
	}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	const parallel = 16
	var wg sync.WaitGroup
	errs := make(chan string, parallel)
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := call(context.Background(), "huge")
			if err != nil || !res.IsError || !strings.Contains(res.Content[0]["text"].(string), "more than") {
				errs <- fmt.Sprintf("%v %+v", err, res)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error("huge body:", e)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 8<<20 {
		t.Errorf("%d calls for 64 MiB bodies left the heap %d MiB larger", parallel, grown>>20)
	}
	t.Logf("%d parallel calls for 64 MiB bodies: total allocated %d MiB (cap %d MiB a call)", parallel, (after.TotalAlloc-before.TotalAlloc)>>20, MaxResponseBytes>>20)
	if total := after.TotalAlloc - before.TotalAlloc; total > uint64(parallel)*3*MaxResponseBytes {
		t.Errorf("reading %d capped bodies allocated %d MiB", parallel, total>>20)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := call(ctx, "slow"); err == nil {
		t.Error("a call past its deadline returned a result")
	}
	res, err := call(context.Background(), "lies")
	if err != nil || res.StructuredContent != nil || res.Content[0]["text"] != `{"not json` {
		t.Errorf("a body that is not the JSON it says: %v %+v", err, res)
	}
}
