package opa_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/opa"
)

// strataItems is the inbound policy of Strata's "Protect MCP Servers"
// guide, verbatim: pre-1.0 syntax.
const strataItems = `package orchestrator

default result["allowed"] := false

result["allowed"] := true {
  input.request.mcp.tool.params.name == "listItems"
}

result["allowed"] := true {
  input.request.mcp.tool.params.name == "getItem"
}
`

// strataBearer is a policy in the pre-1.0 idiom of Strata's policy guide:
// it decodes the bearer token from input.request.http.headers.Authorization
// itself and reads the tool's arguments.
const strataBearer = `package orchestrator

default result["allowed"] := false

jwt_payload := payload {
  auth_header := input.request.http.headers.Authorization
  startswith(auth_header, "Bearer ")
  [_, payload, _] := io.jwt.decode(substring(auth_header, 7, -1))
}

result["allowed"] := true {
  input.request.mcp.tool.params.name == "listItems"
  jwt_payload.scope == "items:read"
}

result["allowed"] := true {
  input.request.mcp.tool.params.name == "deleteItem"
  jwt_payload.sub == "admin"
  not input.request.mcp.tool.params.arguments.force
}

result["external_message"] := "deleting with force is not allowed" {
  input.request.mcp.tool.params.arguments.force == true
}
`

// groupsAndTools is a Rego v1 policy like the ones the broker ships.
const groupsAndTools = `package orchestrator

default result := {"allowed": false, "external_message": "not allowed"}

readers := {"support", "warehouse-ops"}

read_only := {"get_order", "list_orders", "search_inventory"}

result := {"allowed": true, "scopes": ["orders:read"]} if {
	input.request.mcp.tool.params.name in read_only
	some g in input.subject.groups
	g in readers
}

result := {"allowed": true, "scopes": ["orders:write"]} if {
	input.request.mcp.tool.params.name == "refund_order"
	"finance" in input.subject.groups
	input.request.mcp.tool.params.arguments.amount <= 500
}
`

var quiet = slog.New(slog.DiscardHandler)

func compile(t testing.TB, rego string, opts opa.Options) *opa.Policy {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	p, err := opa.Compile(context.Background(), opa.Source{Name: "test", Rego: rego}, opts)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

// bearer is an unsigned JWT carrying claims; io.jwt.decode does not verify.
func bearer(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return "Bearer " + enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc([]byte(claims)) + "."
}

func call(tool, arguments string) *opa.Input {
	in := &opa.Input{Method: "tools/call", ToolName: tool, Purpose: opa.PurposeCall}
	if arguments != "" {
		in.Arguments = json.RawMessage(arguments)
	}
	return in
}

func withHeader(in *opa.Input, name, value string) *opa.Input {
	in.Headers = http.Header{name: {value}}
	return in
}

func withGroups(in *opa.Input, groups ...string) *opa.Input {
	in.Identity = &opa.Identity{Subject: "alice", Groups: groups}
	return in
}

func TestCompile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "inbound.rego")
	if err := os.WriteFile(file, []byte(strataItems), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		src     opa.Source
		wantErr error    // errors.Is
		want    []string // substrings of the error
	}{
		{name: "strata pre-1.0", src: opa.Source{Name: "items", Rego: strataItems}},
		{name: "strata bearer pre-1.0", src: opa.Source{Name: "bearer", Rego: strataBearer}},
		{name: "rego v1", src: opa.Source{Name: "v1", Rego: groupsAndTools}},
		{name: "file", src: opa.Source{Name: "file", File: file}},
		{name: "rego.v1 import", src: opa.Source{Name: "v1", Rego: "package orchestrator\nimport rego.v1\nresult := {\"allowed\": true} if input.purpose == \"call\"\n"}},
		{name: "future keywords", src: opa.Source{Name: "fk", Rego: "package orchestrator\nimport future.keywords.if\nresult := {\"allowed\": true} if { input.purpose == \"call\" }\n"}},
		{
			// Parses as v1, compiles only as v0: any() left with v1.
			name: "builtin removed in v1",
			src:  opa.Source{Name: "any", Rego: "package orchestrator\n\nresult := {\"allowed\": any([input.purpose == \"call\"])}\n"},
		},
		{name: "no source", src: opa.Source{Name: "none"}, wantErr: opa.ErrSource},
		{name: "both sources", src: opa.Source{Name: "both", Rego: strataItems, File: file}, wantErr: opa.ErrSource},
		{name: "missing file", src: opa.Source{Name: "gone", File: filepath.Join(dir, "gone.rego")}, wantErr: os.ErrNotExist, want: []string{`"gone"`}},
		{
			name:    "package not orchestrator",
			src:     opa.Source{Name: "pkg", Rego: "package authz\n\nresult := {\"allowed\": true}\n"},
			wantErr: opa.ErrPackage,
			want:    []string{`"pkg"`, "pkg:1", "package authz"},
		},
		{
			name:    "pre-1.0 package not orchestrator",
			src:     opa.Source{Name: "pkg", Rego: strings.Replace(strataItems, "orchestrator", "strata", 1)},
			wantErr: opa.ErrPackage,
		},
		{
			name:    "no result rule",
			src:     opa.Source{Name: "nores", Rego: "package orchestrator\n\nallow := true\n"},
			wantErr: opa.ErrNoResult,
		},
		{
			name: "syntax error",
			src:  opa.Source{Name: "syntax", Rego: "package orchestrator\n\nresult := {\"allowed\": true\n\nx := 1\n"},
			want: []string{`"syntax"`, "syntax:5", "rego_parse_error", "non-terminated object"},
		},
		{
			name: "syntax error in file",
			src:  opa.Source{Name: "broken", File: writeFile(t, dir, "broken.rego", "package orchestrator\n\nresult := {\n")},
			want: []string{filepath.Join(dir, "broken.rego") + ":4", "rego_parse_error"},
		},
		{
			// A pre-1.0 policy with a mistake is reported as pre-1.0, not
			// as a v1 policy missing ifs.
			name: "pre-1.0 compile error",
			src:  opa.Source{Name: "v0", Rego: "package orchestrator\n\nresult[\"allowed\"] := true {\n  x == 1\n}\n"},
			want: []string{"pre-1.0 Rego", "v0:4", "var x is unsafe"},
		},
		{
			name: "v1 compile error",
			src:  opa.Source{Name: "v1", Rego: "package orchestrator\n\nresult := {\"allowed\": true} if {\n  x == 1\n}\n"},
			want: []string{"v1:4", "var x is unsafe"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := opa.Compile(context.Background(), tt.src, opa.Options{})
			if tt.wantErr == nil && tt.want == nil {
				if err != nil {
					t.Fatalf("Compile: %v", err)
				}
				if p.Version() != 1 {
					t.Errorf("Version = %d, want 1", p.Version())
				}
				return
			}
			if err == nil {
				t.Fatal("Compile succeeded, want an error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v is not %v", err, tt.wantErr)
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

// writeFile replaces a file whole, as editors and deployments do, so a
// poll never sees it half written.
func writeFile(t testing.TB, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// panicky is a claim whose JSON encoding panics, standing in for any bug
// reached during evaluation.
type panicky struct{}

func (panicky) MarshalJSON() ([]byte, error) { panic("boom") }

func TestDecide(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		opts   opa.Options
		in     *opa.Input
		want   opa.Decision
	}{
		{"strata listItems", strataItems, opa.Options{}, call("listItems", ""), opa.Decision{Allowed: true, Reason: "allowed"}},
		{"strata getItem", strataItems, opa.Options{}, call("getItem", `{"id":"7"}`), opa.Decision{Allowed: true, Reason: "allowed"}},
		{"strata createItem", strataItems, opa.Options{}, call("createItem", ""), opa.Decision{Reason: "denied by policy"}},
		{"strata no tool", strataItems, opa.Options{}, &opa.Input{Method: "resources/read", ResourceURI: "file:///x"}, opa.Decision{Reason: "denied by policy"}},

		{"bearer scope", strataBearer, opa.Options{},
			withHeader(call("listItems", ""), "Authorization", bearer(`{"sub":"bob","scope":"items:read"}`)),
			opa.Decision{Allowed: true, Reason: "allowed"}},
		{"bearer wrong scope", strataBearer, opa.Options{},
			withHeader(call("listItems", ""), "Authorization", bearer(`{"sub":"bob","scope":"items:write"}`)),
			opa.Decision{Reason: "denied by policy"}},
		{"bearer no header", strataBearer, opa.Options{}, call("listItems", ""), opa.Decision{Reason: "denied by policy"}},
		{"bearer admin delete", strataBearer, opa.Options{},
			withHeader(call("deleteItem", `{"id":"7"}`), "Authorization", bearer(`{"sub":"admin"}`)),
			opa.Decision{Allowed: true, Reason: "allowed"}},
		{"bearer forced delete", strataBearer, opa.Options{},
			withHeader(call("deleteItem", `{"id":"7","force":true}`), "Authorization", bearer(`{"sub":"admin"}`)),
			opa.Decision{ExternalMessage: "deleting with force is not allowed", Reason: "denied by policy"}},

		{"v1 reader", groupsAndTools, opa.Options{}, withGroups(call("get_order", `{"id":1}`), "support"),
			opa.Decision{Allowed: true, Scopes: []string{"orders:read"}, Reason: "allowed"}},
		{"v1 reader refund", groupsAndTools, opa.Options{}, withGroups(call("refund_order", `{"amount":20}`), "support"),
			opa.Decision{ExternalMessage: "not allowed", Reason: "denied by policy"}},
		{"v1 finance refund", groupsAndTools, opa.Options{}, withGroups(call("refund_order", `{"amount":20}`), "finance"),
			opa.Decision{Allowed: true, Scopes: []string{"orders:write"}, Reason: "allowed"}},
		{"v1 finance big refund", groupsAndTools, opa.Options{}, withGroups(call("refund_order", `{"amount":5000}`), "finance"),
			opa.Decision{ExternalMessage: "not allowed", Reason: "denied by policy"}},
		{"v1 anonymous", groupsAndTools, opa.Options{}, call("get_order", ""),
			opa.Decision{ExternalMessage: "not allowed", Reason: "denied by policy"}},

		{"undefined result", `package orchestrator
result := {"allowed": true} if input.purpose == "never"`, opa.Options{}, call("x", ""), opa.Decision{Reason: "undefined"}},
		{"undefined allowed", `package orchestrator
result := {"external_message": "no verdict"}`, opa.Options{}, call("x", ""), opa.Decision{ExternalMessage: "no verdict", Reason: "undefined"}},
		{"allowed is a string", `package orchestrator
result := {"allowed": "true"}`, opa.Options{}, call("x", ""), opa.Decision{Reason: "not a boolean"}},
		{"allowed is 1", `package orchestrator
result := {"allowed": 1}`, opa.Options{}, call("x", ""), opa.Decision{Reason: "not a boolean"}},
		{"result not an object", `package orchestrator
result := true`, opa.Options{}, call("x", ""), opa.Decision{Reason: "not an object"}},
		{"external message not a string", `package orchestrator
result := {"allowed": true, "external_message": 42}`, opa.Options{}, call("x", ""), opa.Decision{Allowed: true, Reason: "allowed"}},
		{"external message on allow", `package orchestrator
result := {"allowed": true, "external_message": "audited"}`, opa.Options{}, call("x", ""), opa.Decision{Allowed: true, ExternalMessage: "audited", Reason: "allowed"}},
		{"scopes set", `package orchestrator
result := {"allowed": true, "scopes": {"b", "a"}}`, opa.Options{}, call("x", ""), opa.Decision{Allowed: true, Scopes: []string{"a", "b"}, Reason: "allowed"}},
		{"scopes empty", `package orchestrator
result := {"allowed": true, "scopes": []}`, opa.Options{}, call("x", ""), opa.Decision{Allowed: true, Scopes: []string{}, Reason: "allowed"}},
		{"scopes not strings", `package orchestrator
result := {"allowed": true, "scopes": ["a", 1]}`, opa.Options{}, call("x", ""), opa.Decision{Reason: "scopes not an array of strings"}},
		{"scopes a string", `package orchestrator
result := {"allowed": true, "scopes": "a b"}`, opa.Options{}, call("x", ""), opa.Decision{Reason: "scopes not an array of strings"}},

		{"division by zero, strict", `package orchestrator
result := {"allowed": 10 / count(input.subject.groups) > 1}`, opa.Options{StrictBuiltinErrors: true},
			withGroups(call("x", "")), opa.Decision{Reason: "evaluation error: "}},
		{"division by zero, lenient", `package orchestrator
result := {"allowed": 10 / count(input.subject.groups) > 1}`, opa.Options{},
			withGroups(call("x", "")), opa.Decision{Reason: "undefined"}},
		{"limit budget left", `package orchestrator
result := {"allowed": input.limit.remaining >= 2, "external_message": input.limit.name}`, opa.Options{},
			&opa.Input{Method: "tools/call", ToolName: "x", Limit: &opa.Limit{Name: "balances", Remaining: 5}}, opa.Decision{Allowed: true, Reason: "allowed", ExternalMessage: "balances"}},
		{"limit budget low", `package orchestrator
result := {"allowed": input.limit.remaining >= 2, "external_message": input.limit.name}`, opa.Options{},
			&opa.Input{Method: "tools/call", ToolName: "x", Limit: &opa.Limit{Name: "balances", Remaining: 1}}, opa.Decision{Reason: "denied by policy", ExternalMessage: "balances"}},
		{"no limit, no input.limit", `package orchestrator
result := {"allowed": true} if not input.limit`, opa.Options{},
			&opa.Input{Method: "tools/call", ToolName: "x"}, opa.Decision{Allowed: true, Reason: "allowed"}},
		{"panic", `package orchestrator
result := {"allowed": input.token.claims.x == 1}`, opa.Options{},
			&opa.Input{Identity: &opa.Identity{Claims: map[string]any{"x": panicky{}}}}, opa.Decision{Reason: "evaluation error: panic: boom"}},
		{"policy timeout", `package orchestrator
result := {"allowed": count([1 | some i in numbers.range(1, 100000); some j in numbers.range(1, 100000); i * j < 0]) == 0}`,
			opa.Options{Timeout: 20 * time.Millisecond}, call("x", ""), opa.Decision{Reason: "policy timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := compile(t, tt.policy, tt.opts)
			got := p.Decide(context.Background(), tt.in)
			tt.want.Version = 1
			tt.want.Policy, tt.want.Hash = "test", sha256.Sum256([]byte(tt.policy))
			if strings.HasSuffix(tt.want.Reason, ": ") && strings.HasPrefix(got.Reason, tt.want.Reason) {
				tt.want.Reason = got.Reason // the error text is OPA's
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decide =\n %#v\nwant\n %#v", got, tt.want)
			}
		})
	}
}

func TestDecideEvaluationErrors(t *testing.T) {
	tests := []struct {
		name, policy, want string
	}{
		{"conflict", `package orchestrator
result := {"allowed": true} if input.purpose == "call"
result := {"allowed": false} if input.app.name == "orders"`, "eval_conflict_error"},
		{"pre-1.0 conflict", `package orchestrator
result["allowed"] := true { input.purpose == "call" }
result["allowed"] := false { input.app.name == "orders" }`, "eval_conflict_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := compile(t, tt.policy, opa.Options{})
			d := p.Decide(context.Background(), &opa.Input{Purpose: "call", App: "orders"})
			if d.Allowed || !strings.HasPrefix(d.Reason, "evaluation error: ") || !strings.Contains(d.Reason, tt.want) {
				t.Errorf("Decide = %+v, want a denial for %q", d, tt.want)
			}
		})
	}
}

func TestDecideContextDeadline(t *testing.T) {
	p := compile(t, `package orchestrator
result := {"allowed": count([1 | some i in numbers.range(1, 100000); some j in numbers.range(1, 100000); i * j < 0]) == 0}`,
		opa.Options{Timeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if d := p.Decide(ctx, call("x", "")); d.Allowed || d.Reason != "policy timeout" {
		t.Errorf("Decide = %+v, want a policy timeout", d)
	}
}

// fullInput sets every field of the input.
func fullInput() *opa.Input {
	return &opa.Input{
		Method:      "tools/call",
		ToolName:    "get_order",
		Arguments:   json.RawMessage(`{"id": 42, "tags": ["a", "b"], "note": "caf\u00e9"}`),
		ResourceURI: "file:///orders/42",
		PromptName:  "summarize",
		HTTPMethod:  "POST",
		Path:        "/mcp",
		Headers: http.Header{
			"Authorization": {"Bearer abc"},
			"Accept":        {"application/json", "text/event-stream"},
		},
		SourceIP: "203.0.113.7",
		App:      "orders",
		Purpose:  opa.PurposeCall,
		Identity: &opa.Identity{
			Claims:     map[string]any{"sub": "alice", "scope": "orders:read", "amount": json.Number("12.50"), "act": map[string]any{"sub": "agent-1"}},
			Subject:    "alice",
			Issuer:     "https://idp.example",
			Groups:     []string{"support", "finance"},
			Scopes:     []string{"orders:read"},
			ClientID:   "agent-app",
			ActorChain: []string{"agent-1", "agent-0"},
		},
	}
}

// TestInputShape pins the whole input document a policy sees.
func TestInputShape(t *testing.T) {
	p := compile(t, `package orchestrator
result := {"allowed": false, "external_message": json.marshal(input)}`, opa.Options{})
	tests := []struct {
		name string
		in   *opa.Input
		want string
	}{
		{"full", fullInput(), `{
			"request": {
				"mcp": {
					"method": "tools/call",
					"tool": {"params": {"name": "get_order", "arguments": {"id": 42, "tags": ["a", "b"], "note": "café"}}},
					"resource": {"params": {"uri": "file:///orders/42"}},
					"prompt": {"params": {"name": "summarize", "arguments": {"id": 42, "tags": ["a", "b"], "note": "café"}}}
				},
				"http": {
					"method": "POST",
					"path": "/mcp",
					"headers": {"Authorization": "Bearer abc", "Accept": "application/json, text/event-stream"}
				}
			},
			"source": {"ip": "203.0.113.7"},
			"app": {"name": "orders"},
			"purpose": "call",
			"token": {"claims": {"sub": "alice", "scope": "orders:read", "amount": 12.50, "act": {"sub": "agent-1"}}},
			"subject": {"sub": "alice", "iss": "https://idp.example", "groups": ["support", "finance"], "scopes": ["orders:read"]},
			"actor": {"client_id": "agent-app", "sub": "agent-1", "chain": ["agent-1", "agent-0"]}
		}`},
		{"anonymous list", &opa.Input{Method: "tools/call", ToolName: "get_order", App: "orders", Purpose: opa.PurposeList},
			`{"request": {"mcp": {"method": "tools/call", "tool": {"params": {"name": "get_order"}}}}, "app": {"name": "orders"}, "purpose": "list"}`},
		{"client credentials", &opa.Input{Identity: &opa.Identity{ClientID: "batch"}},
			`{"token": {"claims": {}}, "subject": {"groups": [], "scopes": []}, "actor": {"client_id": "batch", "sub": "batch", "chain": []}}`},
		{"empty", &opa.Input{}, `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(context.Background(), tt.in)
			var got, want any
			if err := json.Unmarshal([]byte(d.ExternalMessage), &got); err != nil {
				t.Fatalf("decision %+v: %v", d, err)
			}
			if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("input =\n %s\nwant\n %s", d.ExternalMessage, tt.want)
			}
		})
	}
}

// TestInputPaths checks each path on its own: the policy names only that
// path, so only that part of the input is built for it.
func TestInputPaths(t *testing.T) {
	tests := []struct {
		name, condition string
	}{
		{"method", `input.request.mcp.method == "tools/call"`},
		{"tool name", `input.request.mcp.tool.params.name == "get_order"`},
		{"argument", `input.request.mcp.tool.params.arguments.id == 42`},
		{"argument list", `"b" in input.request.mcp.tool.params.arguments.tags`},
		{"resource uri", `startswith(input.request.mcp.resource.params.uri, "file:///orders/")`},
		{"prompt name", `input.request.mcp.prompt.params.name == "summarize"`},
		{"prompt argument", `input.request.mcp.prompt.params.arguments.note == "café"`},
		{"http method", `input.request.http.method == "POST"`},
		{"http path", `input.request.http.path == "/mcp"`},
		{"header", `input.request.http.headers.Authorization == "Bearer abc"`},
		{"joined header", `input.request.http.headers.Accept == "application/json, text/event-stream"`},
		{"source ip", `net.cidr_contains("203.0.113.0/24", input.source.ip)`},
		{"app name", `input.app.name == "orders"`},
		{"purpose", `input.purpose == "call"`},
		{"token claim", `input.token.claims.scope == "orders:read"`},
		{"token number claim", `input.token.claims.amount == 12.5`},
		{"subject", `input.subject.sub == "alice"`},
		{"issuer", `input.subject.iss == "https://idp.example"`},
		{"subject groups", `"finance" in input.subject.groups`},
		{"subject scopes", `"orders:read" in input.subject.scopes`},
		{"actor client", `input.actor.client_id == "agent-app"`},
		{"actor sub", `input.actor.sub == "agent-1"`},
		{"actor chain", `input.actor.chain == ["agent-1", "agent-0"]`},
		{"dynamic key", `some k; input.request.mcp[k].params.name == "summarize"`},
		{"walk", `some path, v; walk(input, [path, v]); v == "203.0.113.7"`},
		{"whole input", `x := input; x.app.name == "orders"`},
		{"import alias", `http.headers.Authorization == "Bearer abc"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := compile(t, "package orchestrator\n\nimport input.request.http\n\ndefault result := {\"allowed\": false}\n\nresult := {\"allowed\": true} if {\n\t"+tt.condition+"\n}\n", opa.Options{})
			if d := p.Decide(context.Background(), fullInput()); !d.Allowed {
				t.Errorf("with the full input: %+v, want allowed", d)
			}
			if d := p.Decide(context.Background(), &opa.Input{Identity: &opa.Identity{}}); d.Allowed {
				t.Errorf("with an empty input: %+v, want denied", d)
			}
		})
	}
}

func TestInvalidArguments(t *testing.T) {
	p := compile(t, `package orchestrator
result := {"allowed": input.request.mcp.tool.params.arguments != null}`, opa.Options{})
	if d := p.Decide(context.Background(), call("x", `{"a":`)); d.Allowed || !strings.HasPrefix(d.Reason, "evaluation error: arguments:") {
		t.Errorf("Decide = %+v, want an arguments error", d)
	}
	// A policy that never reads the arguments does not parse them.
	p = compile(t, `package orchestrator
result := {"allowed": input.request.mcp.tool.params.name == "x"}`, opa.Options{})
	if d := p.Decide(context.Background(), call("x", `{"a":`)); !d.Allowed {
		t.Errorf("Decide = %+v, want allowed", d)
	}
}

// TestListCache: lists are cached per identity, app, item, source address
// and version; calls never are.
func TestListCache(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "list.rego", `package orchestrator
result := {"allowed": input.source.ip == "192.0.2.1"}`)
	p, err := opa.Compile(context.Background(), opa.Source{Name: "list", File: file}, opa.Options{})
	if err != nil {
		t.Fatal(err)
	}
	alice := &opa.Identity{Subject: "alice"}
	list := func(ip, tool string, id *opa.Identity) *opa.Input {
		return &opa.Input{Method: "tools/call", ToolName: tool, App: "orders", Purpose: opa.PurposeList, SourceIP: ip, Identity: id}
	}
	ctx := context.Background()
	if d := p.Decide(ctx, list("192.0.2.1", "a", alice)); !d.Allowed {
		t.Fatalf("first list decision: %+v", d)
	}
	// The address is part of the key: another network is asked afresh.
	if d := p.Decide(ctx, list("198.51.100.9", "a", alice)); d.Allowed {
		t.Errorf("list decision from another address: %+v, want denied", d)
	}
	// Another tool, another identity, a call: evaluated afresh.
	if d := p.Decide(ctx, list("198.51.100.9", "b", alice)); d.Allowed {
		t.Errorf("other tool: %+v, want denied", d)
	}
	if d := p.Decide(ctx, list("198.51.100.9", "a", &opa.Identity{Subject: "alice"})); d.Allowed {
		t.Errorf("other identity: %+v, want denied", d)
	}
	in := list("198.51.100.9", "a", alice)
	in.Purpose = opa.PurposeCall
	if d := p.Decide(ctx, in); d.Allowed {
		t.Errorf("call: %+v, want denied", d)
	}
	// A new version does not see the old version's answers.
	writeFile(t, dir, "list.rego", `package orchestrator
result := {"allowed": false, "external_message": "v2"}`)
	reloaded := make(chan error, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go p.Watch(wctx, 5*time.Millisecond, func(err error) { reloaded <- err })
	if err := <-reloaded; err != nil {
		t.Fatal(err)
	}
	if d := p.Decide(ctx, list("192.0.2.1", "a", alice)); d.Allowed || d.Version != 2 {
		t.Errorf("after reload: %+v, want a denial from version 2", d)
	}

	// A disabled cache evaluates every time.
	q, err := opa.Compile(ctx, opa.Source{Name: "nocache", File: writeFile(t, dir, "nocache.rego", `package orchestrator
result := {"allowed": input.source.ip == "192.0.2.1"}`)}, opa.Options{CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	q.Decide(ctx, list("192.0.2.1", "a", alice))
	if d := q.Decide(ctx, list("198.51.100.9", "a", alice)); d.Allowed {
		t.Errorf("without a cache: %+v, want denied", d)
	}
}

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "inbound.rego", strataItems)
	p, err := opa.Compile(context.Background(), opa.Source{Name: "inbound", File: file}, opa.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	reloads := make(chan error)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Watch(ctx, 5*time.Millisecond, func(err error) {
			select {
			case reloads <- err:
			case <-ctx.Done():
			}
		})
	}()
	next := func() error {
		t.Helper()
		select {
		case err := <-reloads:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("no reload within 10s")
			return nil
		}
	}
	decide := func(tool string) opa.Decision { return p.Decide(context.Background(), call(tool, "")) }

	if d := decide("createItem"); d.Allowed || d.Version != 1 {
		t.Fatalf("version 1: %+v", d)
	}

	// A change serves the new policy.
	writeFile(t, dir, "inbound.rego", strings.Replace(strataItems, "getItem", "createItem", 1))
	if err := next(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if d := decide("createItem"); !d.Allowed || d.Version != 2 || p.Version() != 2 {
		t.Errorf("after the change: %+v (Version %d), want createItem allowed by version 2", d, p.Version())
	}

	// A broken file is reported and the previous policy keeps serving.
	writeFile(t, dir, "inbound.rego", "package orchestrator\n\nresult[\"allowed\"] := true {\n")
	err = next()
	if err == nil || !strings.Contains(err.Error(), "inbound.rego:") {
		t.Errorf("broken file: onReload(%v), want an error with the file and line", err)
	}
	if d := decide("createItem"); !d.Allowed || d.Version != 2 {
		t.Errorf("after the broken file: %+v, want version 2 still serving", d)
	}

	// Fixing it serves the fix.
	writeFile(t, dir, "inbound.rego", strataItems)
	if err := next(); err != nil {
		t.Fatalf("reload after the fix: %v", err)
	}
	if d := decide("createItem"); d.Allowed || d.Version != 3 {
		t.Errorf("after the fix: %+v, want createItem denied by version 3", d)
	}

	// A vanished file is reported once; the policy keeps serving.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if err := next(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("removed file: onReload(%v), want ErrNotExist", err)
	}
	select {
	case err := <-reloads:
		t.Errorf("second report for the same missing file: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if d := decide("getItem"); !d.Allowed || d.Version != 3 {
		t.Errorf("with the file gone: %+v, want version 3 still serving", d)
	}

	cancel()
	<-done
}

func TestWatchInline(t *testing.T) {
	p := compile(t, strataItems, opa.Options{})
	done := make(chan struct{})
	go func() {
		p.Watch(context.Background(), time.Millisecond, func(err error) { t.Errorf("onReload(%v) for an inline policy", err) })
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return for an inline policy")
	}
}

// TestConcurrentReload decides from many goroutines while the policy is
// swapped underneath; run with -race.
func TestConcurrentReload(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "p.rego", groupsAndTools)
	p, err := opa.Compile(context.Background(), opa.Source{Name: "p", File: file}, opa.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var reloads sync.WaitGroup
	reloads.Add(1)
	go func() {
		defer reloads.Done()
		p.Watch(ctx, time.Millisecond, nil)
	}()
	ids := []*opa.Identity{{Subject: "a", Groups: []string{"support"}}, {Subject: "b", Groups: []string{"finance"}}}
	var workers sync.WaitGroup
	for w := range 8 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for i := range 300 {
				in := call("get_order", `{"id": 1}`)
				in.Identity = ids[(w+i)%2]
				if i%2 == 0 {
					in.Purpose = opa.PurposeList
				}
				d := p.Decide(context.Background(), in)
				if d.Version == 0 || strings.HasPrefix(d.Reason, "evaluation error") {
					t.Errorf("Decide = %+v", d)
					return
				}
			}
		}()
	}
	for i := range 20 {
		writeFile(t, dir, "p.rego", groupsAndTools+strings.Repeat("\n", i+1))
		time.Sleep(2 * time.Millisecond)
	}
	workers.Wait()
	cancel()
	reloads.Wait()
}

// A policy can govern on the definition the broker holds for a tool: its
// annotations, its hash and its pin.
func TestToolDefinitionInput(t *testing.T) {
	p := compile(t, `package orchestrator
default result := {"allowed": false}
result := {"allowed": true} if {
	input.tool.pin == "approved"
	not input.tool.definition.annotations.destructiveHint
}
result := {"allowed": true} if {
	input.tool.definition.annotations.destructiveHint
	"admins" in input.subject.groups
}
`, opa.Options{})
	readOnly := &opa.Tool{Definition: json.RawMessage(`{"name":"get","annotations":{"readOnlyHint":true}}`), Hash: "ab", Pin: "approved"}
	destructive := &opa.Tool{Definition: json.RawMessage(`{"name":"drop","annotations":{"destructiveHint":true}}`), Hash: "cd", Pin: "approved"}
	changed := &opa.Tool{Definition: json.RawMessage(`{"name":"get"}`), Hash: "ef", Pin: "changed"}
	user := &opa.Identity{Subject: "u", Groups: []string{"staff"}}
	admin := &opa.Identity{Subject: "a", Groups: []string{"admins"}}
	tests := []struct {
		name string
		tool *opa.Tool
		who  *opa.Identity
		want bool
	}{
		{"read-only tool", readOnly, user, true},
		{"destructive tool, user", destructive, user, false},
		{"destructive tool, admin", destructive, admin, true},
		{"changed pin", changed, admin, false},
		{"no definition", nil, admin, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 2 { // the second answer may come from the kept decisions
				in := &opa.Input{Method: "tools/call", ToolName: "x", Purpose: opa.PurposeCall, Tool: tt.tool, Identity: tt.who}
				if got := p.Decide(context.Background(), in).Allowed; got != tt.want {
					t.Fatalf("allowed = %v, want %v", got, tt.want)
				}
			}
		})
	}
}

// result.redact asks for redaction: true for every detector, or a list of
// them; anything else fails closed.
func TestDecisionRedact(t *testing.T) {
	tests := []struct {
		result  string
		allowed bool
		redact  []string
	}{
		{`{"allowed": true}`, true, nil},
		{`{"allowed": true, "redact": true}`, true, []string{opa.RedactAll}},
		{`{"allowed": true, "redact": false}`, true, nil},
		{`{"allowed": true, "redact": ["email", "iban"]}`, true, []string{"email", "iban"}},
		{`{"allowed": true, "redact": "email"}`, false, nil},
		{`{"allowed": true, "redact": [1]}`, false, nil},
	}
	for _, tt := range tests {
		p := compile(t, "package orchestrator\nresult := "+tt.result, opa.Options{})
		d := p.Decide(context.Background(), &opa.Input{Method: "tools/call", ToolName: "x", Purpose: opa.PurposeCall})
		if d.Allowed != tt.allowed || fmt.Sprint(d.Redact) != fmt.Sprint(tt.redact) {
			t.Errorf("%s: allowed %v redact %v (%s), want %v %v", tt.result, d.Allowed, d.Redact, d.Reason, tt.allowed, tt.redact)
		}
	}
}

// result.labels and result.approval are read strictly: anything malformed
// denies, and an approval is kept only on a denial.
func TestDecisionLabelsAndApproval(t *testing.T) {
	tests := []struct {
		result   string
		allowed  bool
		labels   []string
		approval *opa.Approval
		reason   string
	}{
		{`{"allowed": true, "labels": ["pii", "confidential"]}`, true, []string{"pii", "confidential"}, nil, opa.ReasonAllowed},
		{`{"allowed": true, "labels": "pii"}`, false, nil, nil, opa.ReasonBadLabels},
		{`{"allowed": true, "labels": [1]}`, false, nil, nil, opa.ReasonBadLabels},
		{`{"allowed": true, "approval": {"approvers": "treasury"}}`, true, nil, nil, opa.ReasonAllowed},
		{`{"allowed": false, "approval": {}}`, false, nil, &opa.Approval{Approvers: "self"}, opa.ReasonDenied},
		{`{"allowed": false, "approval": {"reason": "big", "approvers": "treasury", "ttl": "15m"}}`, false, nil, &opa.Approval{Reason: "big", Approvers: "treasury", TTL: 15 * time.Minute}, opa.ReasonDenied},
		{`{"allowed": false, "approval": {"ttl": 90}}`, false, nil, &opa.Approval{Approvers: "self", TTL: 90 * time.Second}, opa.ReasonDenied},
		{`{"allowed": false, "approval": {"ttl": "48h"}}`, false, nil, nil, opa.ReasonBadApprove},
		{`{"allowed": false, "approval": {"ttl": "-1s"}}`, false, nil, nil, opa.ReasonBadApprove},
		{`{"allowed": false, "approval": {"ttl": 1.5}}`, false, nil, nil, opa.ReasonBadApprove},
		{`{"allowed": false, "approval": {"approvers": ""}}`, false, nil, nil, opa.ReasonBadApprove},
		{`{"allowed": false, "approval": {"approvers": ["a"]}}`, false, nil, nil, opa.ReasonBadApprove},
		{`{"allowed": false, "approval": {"who": "me"}}`, false, nil, nil, opa.ReasonBadApprove},
		{`{"allowed": false, "approval": true}`, false, nil, nil, opa.ReasonBadApprove},
	}
	for _, tt := range tests {
		p := compile(t, "package orchestrator\nresult := "+tt.result, opa.Options{})
		d := p.Decide(context.Background(), &opa.Input{Method: "tools/call", ToolName: "x", Purpose: opa.PurposeCall})
		if d.Allowed != tt.allowed || fmt.Sprint(d.Labels) != fmt.Sprint(tt.labels) || fmt.Sprint(d.Approval) != fmt.Sprint(tt.approval) || d.Reason != tt.reason {
			t.Errorf("%s: allowed %v labels %v approval %+v (%s), want %v %v %+v (%s)", tt.result, d.Allowed, d.Labels, d.Approval, d.Reason, tt.allowed, tt.labels, tt.approval, tt.reason)
		}
	}
}

// input.labels and input.session reach the policy as documented; a policy
// that reads the session is asked every time, its decisions not kept.
func TestSessionInput(t *testing.T) {
	p := compile(t, `package orchestrator
default result := {"allowed": true}
result := {"allowed": false, "external_message": sprintf("%d calls before", [count(input.session.calls)])} if {
	"external" in input.labels
	"confidential" in input.session.labels
	input.session.calls[0].app == "records"
	input.session.calls[0].decision == "allowed"
	input.session.calls[0].time > 0
}`, opa.Options{})
	if !p.ReadsSession() {
		t.Fatal("ReadsSession is false for a policy that reads input.session")
	}
	read := opa.SessionCall{Method: "tools/call", App: "records", Name: "read", Decision: "allowed", Time: 1700000000, Labels: []string{"confidential"}}
	ask := func(labels []string, s *opa.Session) opa.Decision {
		return p.Decide(context.Background(), &opa.Input{Method: "tools/call", ToolName: "send", Purpose: opa.PurposeCall, Labels: labels, Session: s})
	}
	if d := ask([]string{"external"}, &opa.Session{}); !d.Allowed {
		t.Errorf("send in a clean session: %s", d.Reason)
	}
	if d := ask([]string{"external"}, &opa.Session{Calls: []opa.SessionCall{read}, Labels: []string{"confidential"}}); d.Allowed || d.ExternalMessage != "1 calls before" {
		t.Errorf("send after a confidential read: %+v", d)
	}
	if d := ask(nil, &opa.Session{Calls: []opa.SessionCall{read}, Labels: []string{"confidential"}}); !d.Allowed {
		t.Errorf("a call without the external label: %s", d.Reason)
	}
	// Not kept: the same input with another history is decided afresh.
	if d := ask([]string{"external"}, &opa.Session{}); !d.Allowed {
		t.Errorf("a decision on one history was kept for another")
	}
	if compile(t, "package orchestrator\nresult := {\"allowed\": true}", opa.Options{}).ReadsSession() {
		t.Error("ReadsSession is true for a policy that does not read input.session")
	}
}

// EvalRaw evaluates a JSON input as policy eval does, with the engine's
// reading of the result.
func TestEvalRaw(t *testing.T) {
	p := compile(t, `package orchestrator
result := {"allowed": false, "external_message": "no", "approval": {"approvers": "treasury"}} if input.amount > 10
default result := {"allowed": true}`, opa.Options{})
	result, d := p.EvalRaw(context.Background(), map[string]any{"amount": 11})
	if d.Allowed || d.ExternalMessage != "no" || d.Approval == nil || d.Approval.Approvers != "treasury" || fmt.Sprint(result) != "map[allowed:false approval:map[approvers:treasury] external_message:no]" {
		t.Errorf("EvalRaw: %v %+v", result, d)
	}
	if _, d := p.EvalRaw(context.Background(), map[string]any{"amount": 1}); !d.Allowed {
		t.Errorf("EvalRaw of a small amount: %+v", d)
	}
}
