package broker_test

import (
	"context"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// legacyBroker fronts three apps: the official everything server in its
// 2024-11-05 HTTP+SSE mode (%[1]q, its /sse endpoint), the Go SDK's SSE
// handler (%[2]q) and the sample ledger over Streamable HTTP (%[3]q).
const legacyBroker = `
version: 1
mcpProvider:
  enabled: true
  authorization: {unauthenticated: {enabled: true}}
  transports:
    stream: {enabled: true, path: /mcp, session: {enabled: true, allowClientTermination: true}}
apps:
  - name: everything
    type: mcpProxy
    upstream: {transport: sse, sse: {url: %[1]q}}
  - name: waiter
    type: mcpProxy
    upstream: {transport: sse, sse: {url: %[2]q}}
  - name: ledger
    type: mcpProxy
    upstream: {transport: stream, stream: {url: %[3]q}}
`

type waitInput struct{}

// Legacy SSE upstreams behind the broker: their tools are aggregated with
// a Streamable HTTP app's, progress, elicitation and sampling requests
// are relayed both ways during a call, and a client's cancellation
// reaches the upstream's tool.
func TestLegacySSEUpstreams(t *testing.T) {
	nodeBin, modules := nodeTools(t)
	bin := buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	ledger := freeAddress(t)
	startProcess(t, ledger, bin, "upstream", "sample", "--listen", ledger)

	// The TypeScript SDK's SSE server, as the everything server ships it.
	everything := freeAddress(t)
	_, port, _ := net.SplitHostPort(everything)
	cmd := exec.Command(filepath.Join(nodeBin, "node"), filepath.Join(modules, "@modelcontextprotocol", "server-everything", "dist", "index.js"), "sse")
	cmd.Env = append(cmd.Environ(), "PORT="+port)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitListening(t, everything)

	// The Go SDK's SSE handler, with a tool that waits for cancellation.
	var cancelled atomic.Int32
	started := make(chan struct{}, 1)
	server := mcp.NewServer(&mcp.Implementation{Name: "waiter", Version: "1"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "wait", Description: "waits until cancelled"},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ waitInput) (*mcp.CallToolResult, any, error) {
			started <- struct{}{}
			select {
			case <-ctx.Done():
				cancelled.Add(1)
				return nil, nil, ctx.Err()
			case <-time.After(30 * time.Second):
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "not cancelled"}}}, nil, nil
			}
		})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sdk := &http.Server{Handler: mcp.NewSSEHandler(func(*http.Request) *mcp.Server { return server }, nil)}
	go func() { _ = sdk.Serve(ln) }()
	t.Cleanup(func() { _ = sdk.Close() })

	base := startBroker(t, legacyBroker, "http://"+everything+"/sse", "http://"+ln.Addr().String()+"/", "http://"+ledger+"/mcp")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var elicited, sampled, progress atomic.Int32
	client := mcp.NewClient(&mcp.Implementation{Name: "legacy-test", Version: "1"}, &mcp.ClientOptions{
		ElicitationHandler: func(ctx context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			elicited.Add(1)
			return &mcp.ElicitResult{Action: "decline"}, nil
		},
		CreateMessageHandler: func(ctx context.Context, req *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			sampled.Add(1)
			return &mcp.CreateMessageResult{Model: "test-model", Role: "assistant", Content: &mcp.TextContent{Text: "sampled through two transports"}}, nil
		},
		ProgressNotificationHandler: func(ctx context.Context, req *mcp.ProgressNotificationClientRequest) {
			progress.Add(1)
		},
	})
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: base + "/mcp"}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer session.Close()

	t.Run("aggregation", func(t *testing.T) {
		names := toolNames(t, ctx, session)
		for _, want := range []string{"everything_echo", "everything_trigger-elicitation-request", "everything_trigger-sampling-request", "waiter_wait", "ledger_get_balance"} {
			if !names[want] {
				t.Errorf("tools/list lacks %s: %v", want, names)
			}
		}
		if res := callTool(t, ctx, session, "everything_echo", map[string]any{"message": "over SSE"}); !strings.Contains(text(res), "over SSE") {
			t.Errorf("echo: %s", text(res))
		}
		if res := callTool(t, ctx, session, "ledger_get_balance", map[string]any{"account": "alice"}); res.IsError {
			t.Errorf("ledger beside SSE apps: %s", text(res))
		}
	})

	t.Run("relay", func(t *testing.T) {
		res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "everything_trigger-long-running-operation",
			Arguments: map[string]any{"duration": 1, "steps": 4}, Meta: mcp.Meta{"progressToken": "p1"}})
		if err != nil || res.IsError {
			t.Fatalf("long operation: %v %v", res, err)
		}
		if progress.Load() < 4 {
			t.Errorf("progress notifications relayed: %d, want 4", progress.Load())
		}
		if res := callTool(t, ctx, session, "everything_trigger-sampling-request", map[string]any{"prompt": "summarize", "maxTokens": 20}); res.IsError || !strings.Contains(text(res), "sampled through two transports") || sampled.Load() != 1 {
			t.Errorf("sampling: %d requests, result %s", sampled.Load(), text(res))
		}
		if res := callTool(t, ctx, session, "everything_trigger-elicitation-request", map[string]any{}); res.IsError || elicited.Load() != 1 {
			t.Errorf("elicitation: %d requests, result %s", elicited.Load(), text(res))
		}
	})

	t.Run("cancellation", func(t *testing.T) {
		callCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			_, err := session.CallTool(callCtx, &mcp.CallToolParams{Name: "waiter_wait", Arguments: map[string]any{}})
			done <- err
		}()
		select {
		case <-started:
		case <-time.After(20 * time.Second):
			t.Fatal("the tool did not start")
		}
		stop()
		if err := <-done; err == nil {
			t.Error("a cancelled call returned a result")
		}
		eventually(t, "the upstream tool to see the cancellation", func() bool { return cancelled.Load() == 1 })
		// The session goes on.
		if res := callTool(t, ctx, session, "everything_echo", map[string]any{"message": "after " + strconv.Itoa(1)}); !strings.Contains(text(res), "after 1") {
			t.Errorf("echo after the cancellation: %s", text(res))
		}
	})
}
