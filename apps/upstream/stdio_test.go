package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// stdioServerEnv makes the test binary a stdio MCP server of the kind it
// names instead of running tests.
const stdioServerEnv = "MCPBROKER_TEST_STDIO_SERVER"

func TestMain(m *testing.M) {
	switch os.Getenv(stdioServerEnv) {
	case "":
		os.Exit(m.Run())
	case "sdk":
		runSDKStdioServer()
	case "flood":
		// One line far over any limit, then silence.
		_, _ = os.Stdout.Write(bytes.Repeat([]byte("x"), 2<<20))
		time.Sleep(time.Minute)
	case "deaf":
		// Never reads its input.
		time.Sleep(time.Minute)
	}
	os.Exit(0)
}

type metaInput struct{}

// runSDKStdioServer serves the official Go SDK server on standard streams
// with tools that show what reached it, crash, or start a child.
func runSDKStdioServer() {
	fmt.Fprintln(os.Stderr, "fixture server ready")
	server := mcp.NewServer(&mcp.Implementation{Name: "stdio-fixture", Version: "1.0.0"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "meta", Description: "returns the request's _meta and the environment variable TOKEN"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ metaInput) (*mcp.CallToolResult, any, error) {
			meta, _ := json.Marshal(req.Params.Meta)
			return textResult(string(meta) + " token=" + os.Getenv("TOKEN")), nil, nil
		})
	mcp.AddTool(server, &mcp.Tool{Name: "report", Description: "reports progress"},
		func(ctx context.Context, req *mcp.CallToolRequest, in reportInput) (*mcp.CallToolResult, any, error) {
			if token := req.Params.GetProgressToken(); token != nil {
				for i := range in.Steps {
					_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Progress: float64(i + 1), Total: float64(in.Steps)})
				}
			}
			return textResult("reported"), nil, nil
		})
	mcp.AddTool(server, &mcp.Tool{Name: "crash", Description: "exits mid-call"},
		func(context.Context, *mcp.CallToolRequest, metaInput) (*mcp.CallToolResult, any, error) {
			os.Exit(3)
			return nil, nil, nil
		})
	mcp.AddTool(server, &mcp.Tool{Name: "spawn", Description: "starts a child that outlives nothing, returns its pid"},
		func(context.Context, *mcp.CallToolRequest, metaInput) (*mcp.CallToolResult, any, error) {
			child := exec.Command("sleep", "300")
			if err := child.Start(); err != nil {
				return nil, nil, err
			}
			return textResult(strconv.Itoa(child.Process.Pid)), nil, nil
		})
	mcp.AddTool(server, &mcp.Tool{Name: "ask", Description: "asks the client"},
		func(ctx context.Context, req *mcp.CallToolRequest, in askInput) (*mcp.CallToolResult, any, error) {
			res, err := req.Session.Elicit(ctx, &mcp.ElicitParams{Message: in.Question,
				RequestedSchema: map[string]any{"type": "object", "properties": map[string]any{"ok": map[string]any{"type": "boolean"}}}})
			if err != nil {
				return nil, nil, err
			}
			return textResult(res.Action), nil, nil
		})
	_ = server.Run(context.Background(), &mcp.StdioTransport{})
}

func startFixture(t *testing.T, kind string, env ...string) *Process {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := StartProcess(StdioOptions{Command: self, Env: append([]string{stdioServerEnv + "=" + kind, "PATH=" + os.Getenv("PATH")}, env...), MaxMessageBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.Stop(ctx)
	})
	return p
}

func initialized(t *testing.T, ctx context.Context, s *StdioSession) *jsonrpc.Message {
	t.Helper()
	msg, _ := jsonrpc.NewRequest(jsonrpc.Int64ID(s.NextID()), "initialize", map[string]any{
		"protocolVersion": testProtocolVersion, "capabilities": map[string]any{"elicitation": map[string]any{}},
		"clientInfo": map[string]any{"name": "t", "version": "1"}})
	resp, err := s.Call(ctx, msg, nil, nil)
	if err != nil || resp.Error != nil {
		t.Fatalf("initialize: %v %v", resp, err)
	}
	note, _ := jsonrpc.NewNotification("notifications/initialized", nil)
	if err := s.Send(ctx, note, nil); err != nil {
		t.Fatal(err)
	}
	return resp
}

func callStdioTool(ctx context.Context, s *StdioSession, tool string, args any, onMessage func(*jsonrpc.Message)) (*jsonrpc.Message, error) {
	id := s.NextID()
	params := map[string]any{"name": tool, "arguments": args}
	if onMessage != nil {
		params["_meta"] = map[string]any{"progressToken": id}
	}
	msg, _ := jsonrpc.NewRequest(jsonrpc.Int64ID(id), "tools/call", params)
	return s.Call(ctx, msg, nil, onMessage)
}

func resultText(t *testing.T, m *jsonrpc.Message) string {
	t.Helper()
	var r struct {
		Content []struct{ Text string } `json:"content"`
	}
	if m.Error != nil || json.Unmarshal(m.Result, &r) != nil || len(r.Content) == 0 {
		t.Fatalf("not a text result: %s %v", m.Result, m.Error)
	}
	return r.Content[0].Text
}

// Two sessions share one process: it is initialized once, the second
// session gets the first's answer, and concurrent calls and progress
// find their own session.
func TestStdioSharedProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := startFixture(t, "sdk")
	a, b := p.NewSession(nil), p.NewSession(nil)
	first := initialized(t, ctx, a)
	second := initialized(t, ctx, b)
	if !bytes.Equal(first.Result, second.Result) {
		t.Errorf("the second session's initialize differs:\n%s\n%s", first.Result, second.Result)
	}
	var wg sync.WaitGroup
	for i, s := range []*StdioSession{a, b, a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var progress int
			resp, err := callStdioTool(ctx, s, "report", map[string]any{"steps": 3 + i}, func(m *jsonrpc.Message) {
				if m.Method == "notifications/progress" {
					progress++
				}
			})
			if err != nil || resultText(t, resp) != "reported" {
				t.Errorf("call %d: %v %v", i, resp, err)
			}
			if progress != 3+i {
				t.Errorf("call %d heard %d progress notifications, want %d", i, progress, 3+i)
			}
		}()
	}
	wg.Wait()
}

// A server's request to the client during a call reaches that call, and
// the answer sent back completes it.
func TestStdioServerRequest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := startFixture(t, "sdk").NewSession(nil)
	initialized(t, ctx, s)
	resp, err := callStdioTool(ctx, s, "ask", map[string]any{"question": "go on?"}, func(m *jsonrpc.Message) {
		if m.Method != "elicitation/create" {
			return
		}
		answer, _ := jsonrpc.NewResult(m.ID, map[string]any{"action": "accept", "content": map[string]any{"ok": true}})
		if err := s.Send(ctx, answer, nil); err != nil {
			t.Error(err)
		}
	})
	if err != nil || resultText(t, resp) != "accept" {
		t.Fatalf("ask: %v %v", resp, err)
	}
}

// A server that dies mid-call fails that call with ErrProcessExited; the
// session then says it is gone (ErrSessionNotFound), so the broker opens
// another.
func TestStdioCrash(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := startFixture(t, "sdk")
	s := p.NewSession(nil)
	initialized(t, ctx, s)
	_, err := callStdioTool(ctx, s, "crash", map[string]any{}, nil)
	if !errors.Is(err, ErrProcessExited) || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("call to a crashing server: %v", err)
	}
	if p.Stopped() {
		t.Error("a crash counts as a stop")
	}
	if _, err := callStdioTool(ctx, s, "meta", map[string]any{}, nil); !errors.Is(err, ErrSessionNotFound) {
		t.Errorf("call after the crash: want ErrSessionNotFound, got %v", err)
	}
}

// Stop ends the server and whatever it started, and reaps them.
func TestStdioStopKillsTheGroup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := startFixture(t, "sdk")
	s := p.NewSession(nil)
	initialized(t, ctx, s)
	resp, err := callStdioTool(ctx, s, "spawn", map[string]any{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(resultText(t, resp))
	if child == 0 || syscall.Kill(child, 0) != nil {
		t.Fatalf("the child %q is not running", resultText(t, resp))
	}
	p.Stop(ctx)
	if !p.Stopped() || !errors.Is(p.Err(), ErrProcessExited) {
		t.Fatalf("after Stop: stopped %v, err %v", p.Stopped(), p.Err())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The child was the server's, not ours: once killed, init reaps it.
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(child) + "/stat")
		if err != nil || bytes.Contains(stat, []byte(") Z ")) && time.Now().After(deadline) {
			if err == nil {
				t.Errorf("the child %d is a zombie", child)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server's child %d outlived it", child)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := syscall.Kill(p.Pid(), 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the server %d is still there (or unreaped): %v", p.Pid(), err)
	}
}

// A line over the size limit stops the server: the call fails at once
// instead of waiting for an answer that cannot be read.
func TestStdioOversizedMessage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := startFixture(t, "flood")
	s := p.NewSession(nil)
	msg, _ := jsonrpc.NewRequest(jsonrpc.Int64ID(s.NextID()), "ping", nil)
	if _, err := s.Call(ctx, msg, nil, nil); !errors.Is(err, ErrProcessExited) {
		t.Fatalf("want ErrProcessExited, got %v", err)
	}
}

// A server that does not read its input cannot hold a call past its
// deadline.
func TestStdioDeafServer(t *testing.T) {
	p := startFixture(t, "deaf")
	s := p.NewSession(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	big := strings.Repeat("a", 1<<20) // more than a pipe holds
	msg, _ := jsonrpc.NewRequest(jsonrpc.Int64ID(s.NextID()), "tools/call", map[string]any{"name": "x", "arguments": map[string]any{"blob": big}})
	_, err := s.Call(ctx, msg, nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the deadline, got %v", err)
	}
}

// The server's standard error reaches the log, line by line, with
// control characters made harmless.
func TestStdioStderrLogged(t *testing.T) {
	var buf lockedBuffer
	self, _ := os.Executable()
	p, err := StartProcess(StdioOptions{Command: self, Env: []string{stdioServerEnv + "=sdk"},
		Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), "fixture server ready") {
		if time.Now().After(deadline) {
			t.Fatalf("stderr not logged: %s", buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.Stop(ctx)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
