package opa_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/mcpbroker/mcpbroker/opa"
)

// benchPolicy is what an app's inbound policy looks like: groups pick the
// tools, arguments bound what a tool may do, the address narrows admins.
const benchPolicy = `package orchestrator

default result := {"allowed": false, "external_message": "not allowed"}

read_tools := {"get_order", "list_orders", "search_inventory"}

write_groups := {"finance", "warehouse-ops"}

result := {"allowed": true} if {
	input.request.mcp.tool.params.name in read_tools
	"support" in input.subject.groups
}

result := {"allowed": true, "scopes": ["orders:write"]} if {
	input.request.mcp.tool.params.name == "refund_order"
	some g in input.subject.groups
	g in write_groups
	input.request.mcp.tool.params.arguments.amount <= 500
	input.request.mcp.tool.params.arguments.currency in {"EUR", "USD"}
}

result := {"allowed": true} if {
	"admin" in input.subject.groups
	net.cidr_contains("10.0.0.0/8", input.source.ip)
	input.actor.client_id == "ops-console"
}
`

func benchInput() *opa.Input {
	return &opa.Input{
		Method:     "tools/call",
		ToolName:   "refund_order",
		Arguments:  json.RawMessage(`{"order_id":"A-1042","amount":120,"currency":"EUR","reason":"damaged in transit"}`),
		HTTPMethod: http.MethodPost,
		Path:       "/mcp",
		Headers: http.Header{
			"Authorization":        {"Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"},
			"Content-Type":         {"application/json"},
			"Accept":               {"application/json, text/event-stream"},
			"Mcp-Session-Id":       {"9f0c6f9e-6a5e-4f1c-9d59-2f8d6c1b7a10"},
			"Mcp-Protocol-Version": {"2025-06-18"},
			"User-Agent":           {"claude-code/1.0"},
		},
		SourceIP: "10.1.2.3",
		App:      "orders",
		Purpose:  opa.PurposeCall,
		Identity: &opa.Identity{
			Claims: map[string]any{
				"sub": "alice", "iss": "https://idp.example", "aud": "https://broker.example/",
				"client_id": "claude-code", "scope": "orders:read orders:write",
				"groups": []any{"support", "finance"}, "exp": json.Number("1893456000"),
				"act": map[string]any{"sub": "claude-code"},
			},
			Subject: "alice", Issuer: "https://idp.example",
			Groups: []string{"support", "finance"}, Scopes: []string{"orders:read", "orders:write"},
			ClientID: "claude-code", ActorChain: []string{"claude-code"},
		},
	}
}

// BenchmarkDecide is one tools/call decision evaluated, with a warm
// identity cache: what a call whose decision is not kept costs (every
// call's arguments differ, or the policy is not deterministic).
func BenchmarkDecide(b *testing.B) {
	p := compile(b, benchPolicy, opa.Options{CacheSize: -1})
	in := benchInput()
	ctx := context.Background()
	if d := p.Decide(ctx, in); !d.Allowed {
		b.Fatalf("Decide = %+v, want allowed", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Decide(ctx, in)
	}
}

// BenchmarkDecideList is one list item's decision, answered by the cache
// after the first list.
func BenchmarkDecideList(b *testing.B) {
	p := compile(b, benchPolicy, opa.Options{})
	in := benchInput()
	in.Purpose, in.Arguments = opa.PurposeList, nil
	in.ToolName = "get_order"
	ctx := context.Background()
	if d := p.Decide(ctx, in); !d.Allowed {
		b.Fatalf("Decide = %+v, want allowed", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Decide(ctx, in)
	}
}

// BenchmarkDecideKept is one tools/call decision answered from the kept
// call decisions: the same caller asking the same thing again.
func BenchmarkDecideKept(b *testing.B) {
	p := compile(b, benchPolicy, opa.Options{})
	in := benchInput()
	ctx := context.Background()
	if d := p.Decide(ctx, in); !d.Allowed {
		b.Fatalf("Decide = %+v, want allowed", d)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Decide(ctx, in)
	}
}

// BenchmarkDecideParallel is BenchmarkDecide from every core at once.
func BenchmarkDecideParallel(b *testing.B) {
	p := compile(b, benchPolicy, opa.Options{CacheSize: -1})
	in := benchInput()
	ctx := context.Background()
	p.Decide(ctx, in)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.Decide(ctx, in)
		}
	})
}
