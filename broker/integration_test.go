package broker_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Two sample upstreams behind one broker with namespacing on, driven by
// the Go SDK's client: aggregation, routing, relayed elicitation and
// sampling, progress, error pass-through, and one upstream killed while
// the other keeps serving.
func TestTwoUpstreamsThroughBroker(t *testing.T) {
	bin := buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	ledgerAddr, treasuryAddr := freeAddress(t), freeAddress(t)
	startProcess(t, ledgerAddr, bin, "upstream", "sample", "--listen", ledgerAddr, "--name", "ledger")
	treasury := startProcess(t, treasuryAddr, bin, "upstream", "sample", "--listen", treasuryAddr, "--name", "treasury")

	brokerURL := startBroker(t, scenario(t, "two-upstreams-through-broker"), ledgerAddr, treasuryAddr)

	var elicitations, samplings, progress atomic.Int32
	client := mcp.NewClient(&mcp.Implementation{Name: "integration-test", Version: "1"}, &mcp.ClientOptions{
		ElicitationHandler: func(ctx context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			elicitations.Add(1)
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"confirm": true}}, nil
		},
		CreateMessageHandler: func(ctx context.Context, req *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			samplings.Add(1)
			return &mcp.CreateMessageResult{Model: "test-model", Role: "assistant", Content: &mcp.TextContent{Text: "a tidy account"}}, nil
		},
		ProgressNotificationHandler: func(ctx context.Context, req *mcp.ProgressNotificationClientRequest) {
			progress.Add(1)
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: brokerURL + "/mcp"}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer session.Close()

	t.Run("aggregated tools are namespaced", func(t *testing.T) {
		names := toolNames(t, ctx, session)
		for _, want := range []string{"ledger_list_accounts", "ledger_transfer", "treasury_list_accounts", "treasury_summarize"} {
			if !names[want] {
				t.Errorf("tools/list lacks %s; got %v", want, names)
			}
		}
		for name := range names {
			if !strings.HasPrefix(name, "ledger_") && !strings.HasPrefix(name, "treasury_") {
				t.Errorf("tool %q carries no app prefix", name)
			}
		}
		if len(names)%2 != 0 {
			t.Errorf("the two identical upstreams should contribute equally, got %d tools", len(names))
		}
	})

	t.Run("calls reach the owning app", func(t *testing.T) {
		// Move money in treasury only; ledger's balance must not change.
		res := callTool(t, ctx, session, "treasury_transfer", map[string]any{"from": "alice", "to": "bob", "amount": 100})
		if res.IsError {
			t.Fatalf("transfer failed: %v", text(res))
		}
		if got := text(callTool(t, ctx, session, "treasury_get_balance", map[string]any{"account": "bob"})); !strings.Contains(got, "1300") {
			t.Errorf("treasury bob after transfer: %s", got)
		}
		if got := text(callTool(t, ctx, session, "ledger_get_balance", map[string]any{"account": "bob"})); !strings.Contains(got, "1200") {
			t.Errorf("ledger bob must be untouched: %s", got)
		}
	})

	t.Run("elicitation is relayed", func(t *testing.T) {
		before := elicitations.Load()
		res := callTool(t, ctx, session, "ledger_transfer", map[string]any{"from": "alice", "to": "carol", "amount": 2000})
		if res.IsError {
			t.Fatalf("confirmed transfer failed: %v", text(res))
		}
		if elicitations.Load() != before+1 {
			t.Errorf("elicitation handler calls: %d, want %d", elicitations.Load(), before+1)
		}
	})

	t.Run("sampling is relayed", func(t *testing.T) {
		res := callTool(t, ctx, session, "treasury_summarize", map[string]any{"account": "alice"})
		if res.IsError || !strings.Contains(text(res), "a tidy account") {
			t.Fatalf("summarize: isError=%v %s", res.IsError, text(res))
		}
		if samplings.Load() == 0 {
			t.Error("sampling handler never called")
		}
	})

	t.Run("progress is relayed", func(t *testing.T) {
		before := progress.Load()
		params := &mcp.CallToolParams{Name: "ledger_slow_count", Arguments: map[string]any{"n": 3, "delay_ms": 10}}
		params.SetProgressToken("count-1")
		res, err := session.CallTool(ctx, params)
		if err != nil || res.IsError {
			t.Fatalf("slow_count: %v %v", err, res)
		}
		// The SDK client runs notification handlers apart from responses,
		// so only their arrival is checked here; the wire recording
		// testdata/broker/wire/progress-order.txtar checks the order.
		deadline := time.Now().Add(5 * time.Second)
		for progress.Load()-before < 3 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := progress.Load() - before; got != 3 {
			t.Errorf("progress notifications: %d, want 3", got)
		}
	})

	t.Run("tool errors pass through", func(t *testing.T) {
		res := callTool(t, ctx, session, "ledger_get_balance", map[string]any{"account": "nobody"})
		if !res.IsError {
			t.Errorf("unknown account: want an isError result, got %s", text(res))
		}
		_, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "treasury_fail_protocol"})
		if err == nil {
			t.Error("fail_protocol: want a JSON-RPC error")
		}
		_, err = session.CallTool(ctx, &mcp.CallToolParams{Name: "nowhere_tool"})
		var rpcErr *jsonrpc.Error
		if !errors.As(err, &rpcErr) || rpcErr.Code != -32602 {
			t.Errorf("unknown tool: want -32602, got %v", err)
		}
	})

	t.Run("prompts and resources", func(t *testing.T) {
		prompt, err := session.GetPrompt(ctx, &mcp.GetPromptParams{Name: "treasury_audit_account", Arguments: map[string]string{"account": "alice"}})
		if err != nil || len(prompt.Messages) == 0 {
			t.Fatalf("get prompt: %v", err)
		}
		resources, err := session.ListResources(ctx, nil)
		if err != nil || len(resources.Resources) == 0 {
			t.Fatalf("list resources: %v", err)
		}
		read, err := session.ReadResource(ctx, &mcp.ReadResourceParams{URI: resources.Resources[0].URI})
		if err != nil || len(read.Contents) == 0 {
			t.Fatalf("read resource: %v", err)
		}
	})

	t.Run("a killed upstream does not affect the other app", func(t *testing.T) {
		_ = treasury.Process.Kill()
		_ = treasury.Wait()
		start := time.Now()
		_, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "treasury_list_accounts"})
		if err == nil {
			t.Fatal("call to a killed upstream succeeded")
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("the error took %v; the app's timeout is 3s", took)
		}
		res := callTool(t, ctx, session, "ledger_list_accounts", nil)
		if res.IsError {
			t.Errorf("ledger failed after treasury died: %s", text(res))
		}
		names := toolNames(t, ctx, session)
		if !names["ledger_list_accounts"] || names["treasury_list_accounts"] {
			t.Errorf("tools/list after treasury died: %v", names)
		}
	})
}

func toolNames(t *testing.T, ctx context.Context, s *mcp.ClientSession) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	for tool, err := range s.Tools(ctx, nil) {
		if err != nil {
			t.Fatalf("tools/list: %v", err)
		}
		if len(tool.Name) > 64 {
			t.Errorf("tool name over 64 characters: %s", tool.Name)
		}
		names[tool.Name] = true
	}
	return names
}

func callTool(t *testing.T, ctx context.Context, s *mcp.ClientSession, name string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return res
}

func text(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// An upstream that accepts connections and never answers costs a call its
// app's timeout, not more, and the other app keeps serving.
func TestHungUpstreamTimesOut(t *testing.T) {
	bin := buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	ledgerAddr := freeAddress(t)
	startProcess(t, ledgerAddr, bin, "upstream", "sample", "--listen", ledgerAddr)
	hung := hangingListener(t)

	brokerURL := startBroker(t, scenario(t, "hung-upstream-times-out"), ledgerAddr, hung, ledgerAddr)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "hung-test", Version: "1"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: brokerURL + "/mcp"}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer session.Close()

	start := time.Now()
	_, err = session.CallTool(ctx, &mcp.CallToolParams{Name: "stuck_anything"})
	took := time.Since(start)
	var rpcErr *jsonrpc.Error
	if !errors.As(err, &rpcErr) || rpcErr.Code != -32000 {
		t.Fatalf("call to a hung upstream: want JSON-RPC error -32000, got %v", err)
	}
	if took > 8*time.Second {
		t.Errorf("the error took %v; the app's timeout is 1s", took)
	}
	if res := callTool(t, ctx, session, "ledger_list_accounts", nil); res.IsError {
		t.Errorf("ledger failed beside a hung app: %s", text(res))
	}

	// A healthy upstream that takes longer than its app allows.
	start = time.Now()
	_, err = session.CallTool(ctx, &mcp.CallToolParams{Name: "slow_slow_count", Arguments: map[string]any{"n": 3, "delay_ms": 2000}})
	took = time.Since(start)
	if !errors.As(err, &rpcErr) || rpcErr.Code != -32000 || !strings.Contains(rpcErr.Message, "timed out") {
		t.Fatalf("slow call: want JSON-RPC error -32000 (timed out), got %v", err)
	}
	if took > 8*time.Second {
		t.Errorf("the timeout took %v; the app's timeout is 1s", took)
	}
	if names := toolNames(t, ctx, session); !names["ledger_get_balance"] {
		t.Errorf("tools/list beside a hung app: %v", names)
	}
}

// hangingListener accepts connections and never answers.
func hangingListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

// A legacy HTTP+SSE client (protocol 2024-11-05) gets the same service as a
// Streamable HTTP one, elicitation included.
func TestLegacySSEClient(t *testing.T) {
	brokerURL, _, _ := sampleBroker(t, "")
	var elicitations atomic.Int32
	client := mcp.NewClient(&mcp.Implementation{Name: "legacy-test", Version: "1"}, &mcp.ClientOptions{
		ElicitationHandler: func(ctx context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			elicitations.Add(1)
			return &mcp.ElicitResult{Action: "decline"}, nil
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	session, err := client.Connect(ctx, &mcp.SSEClientTransport{Endpoint: brokerURL + "/mcp/sse"}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer session.Close()
	if names := toolNames(t, ctx, session); !names["ledger_transfer"] {
		t.Fatalf("tools over legacy SSE: %v", names)
	}
	if got := text(callTool(t, ctx, session, "ledger_get_balance", map[string]any{"account": "carol"})); !strings.Contains(got, "300") {
		t.Errorf("get_balance over legacy SSE: %s", got)
	}
	res := callTool(t, ctx, session, "ledger_transfer", map[string]any{"from": "alice", "to": "bob", "amount": 1500})
	if !res.IsError || elicitations.Load() != 1 {
		t.Errorf("declined transfer over legacy SSE: isError=%v elicitations=%d (%s)", res.IsError, elicitations.Load(), text(res))
	}
}

// Names never collide in what clients see: of two unprefixed apps offering
// the same tool, the first in configuration order keeps it, and an
// unprefixed tool that reads like another app's prefix is left out, since
// calls by that name would reach the other app.
func TestListedNamesNeverCollide(t *testing.T) {
	first, firstHits := countingUpstream(t)
	second, _ := countingUpstream(t)
	third, _ := countingUpstream(t)
	brokerURL := startBroker(t, scenario(t, "listed-names-never-collide"), first, second, third)
	c := newWireClient(t, brokerURL+"/mcp")
	c.initialize(`{}`)
	msgs := readMessages(t, c.post(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	if len(msgs) != 1 {
		t.Fatalf("tools/list: %v", msgs)
	}
	count := map[string]int{}
	for _, tool := range msgs[0]["result"].(map[string]any)["tools"].([]any) {
		count[tool.(map[string]any)["name"].(string)]++
	}
	for name, n := range count {
		if n != 1 {
			t.Errorf("%s listed %d times", name, n)
		}
	}
	if count["get_balance"] != 1 || count["list_get_balance"] != 1 {
		t.Errorf("expected tools missing: %v", count)
	}
	if count["list_accounts"] != 0 {
		t.Error("an unprefixed list_accounts is listed, but calls by that name go to app third")
	}
	before := firstHits.Load()
	msgs = readMessages(t, c.post(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_balance","arguments":{"account":"alice"}}}`))
	if len(msgs) != 1 || msgs[0]["result"] == nil || firstHits.Load() != before+1 {
		t.Errorf("get_balance should be served by the first app: %v", msgs)
	}
}
