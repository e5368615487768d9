package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// The tests in this file talk to the official Go SDK's Streamable HTTP
// server, so they check interoperability, not only our reading of the
// specification.

const testProtocolVersion = "2025-11-25"

type reportInput struct {
	Steps int `json:"steps"`
}

type askInput struct {
	Question string `json:"question"`
}

// newSDKServer serves a stateful-by-default SDK server with three tools:
// report (progress and logging before the result), ask (elicitation) and
// pause (closes its SSE stream mid-call, SEP-1699). It records the
// requests it receives.
func newSDKServer(t *testing.T, opts *mcp.StreamableHTTPOptions) (*mcp.Server, *httptest.Server, *requestLog) {
	t.Helper()
	server := mcp.NewServer(&mcp.Implementation{Name: "fixture", Version: "1.0.0"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "report", Description: "reports progress, logs, then answers"},
		func(ctx context.Context, req *mcp.CallToolRequest, in reportInput) (*mcp.CallToolResult, any, error) {
			// Notifications are best effort, as in real servers: with JSON
			// responses and no GET stream they have nowhere to go.
			if token := req.Params.GetProgressToken(); token != nil {
				for i := range in.Steps {
					_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
						ProgressToken: token, Progress: float64(i + 1), Total: float64(in.Steps),
					})
				}
			}
			_ = req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: "info", Logger: "report", Data: "done"})
			return textResult("reported"), nil, nil
		})
	mcp.AddTool(server, &mcp.Tool{Name: "ask", Description: "asks the user"},
		func(ctx context.Context, req *mcp.CallToolRequest, in askInput) (*mcp.CallToolResult, any, error) {
			res, err := req.Session.Elicit(ctx, &mcp.ElicitParams{
				Message: in.Question,
				RequestedSchema: map[string]any{
					"type":       "object",
					"properties": map[string]any{"name": map[string]any{"type": "string"}},
				},
			})
			if err != nil {
				return nil, nil, err
			}
			return textResult(fmt.Sprintf("%s %v", res.Action, res.Content["name"])), nil, nil
		})
	mcp.AddTool(server, &mcp.Tool{Name: "pause", Description: "closes its stream and answers later"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			token := req.Params.GetProgressToken()
			if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Progress: 1}); err != nil {
				return nil, nil, err
			}
			req.Extra.CloseSSEStream(mcp.CloseSSEStreamArgs{RetryAfter: 20 * time.Millisecond})
			// Answer while the client is away: the event store keeps the
			// events for the GET that resumes the stream.
			time.Sleep(5 * time.Millisecond)
			if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Progress: 2}); err != nil {
				return nil, nil, err
			}
			return textResult("resumed"), nil, nil
		})
	log := &requestLog{}
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, opts)
	ts := httptest.NewServer(log.wrap(handler))
	t.Cleanup(ts.Close)
	return server, ts, log
}

func textResult(text string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}
}

// requestLog records the method and headers of every request a test
// server receives.
type requestLog struct {
	mu       sync.Mutex
	requests []recordedRequest
}

type recordedRequest struct {
	Method string
	Header http.Header
}

func (l *requestLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.requests = append(l.requests, recordedRequest{Method: r.Method, Header: r.Header.Clone()})
		l.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func (l *requestLog) all() []recordedRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]recordedRequest(nil), l.requests...)
}

func newTestSession(t *testing.T, url string, maxBytes int64) *Session {
	t.Helper()
	s, err := NewSession(&Options{URL: url, Client: NewHTTPClient(HTTPOptions{DialTimeout: time.Second}), MaxMessageBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var nextTestID atomic.Int64

func request(t testing.TB, method string, params any) *jsonrpc.Message {
	t.Helper()
	m, err := jsonrpc.NewRequest(jsonrpc.Int64ID(nextTestID.Add(1)), method, params)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// initialize opens an MCP session the way the broker does: initialize,
// then notifications/initialized.
func initialize(t *testing.T, ctx context.Context, s *Session, header http.Header) {
	t.Helper()
	msg := request(t, "initialize", map[string]any{
		"protocolVersion": testProtocolVersion,
		"capabilities":    map[string]any{"elicitation": map[string]any{}},
		"clientInfo":      map[string]any{"name": "mcpbroker-test", "version": "0"},
	})
	reply, err := s.Call(ctx, msg, header, nil)
	if err != nil {
		t.Fatalf("initialize: %v", err)
	}
	if reply.Error != nil {
		t.Fatalf("initialize: %v", reply.Error)
	}
	if got := s.ProtocolVersion(); got != testProtocolVersion {
		t.Fatalf("protocol version after initialize = %q, want %q", got, testProtocolVersion)
	}
	note, err := jsonrpc.NewNotification("notifications/initialized", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(ctx, note, header); err != nil {
		t.Fatalf("notifications/initialized: %v", err)
	}
}

func toolText(t *testing.T, reply *jsonrpc.Message) string {
	t.Helper()
	if reply.Error != nil {
		t.Fatalf("tool call failed: %v", reply.Error)
	}
	var result struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
		IsError bool `json:"isError"`
	}
	if err := json.Unmarshal(reply.Result, &result); err != nil {
		t.Fatalf("decode tool result %s: %v", reply.Result, err)
	}
	if result.IsError || len(result.Content) != 1 {
		t.Fatalf("tool result = %s", reply.Result)
	}
	return result.Content[0].Text
}

func TestSDKServerModes(t *testing.T) {
	tests := []struct {
		name        string
		opts        *mcp.StreamableHTTPOptions
		wantSession bool
		// wantOnStream are the methods the report tool's stream delivers
		// before the response.
		wantOnStream []string
	}{
		{
			name:         "stateful SSE",
			wantSession:  true,
			wantOnStream: []string{"notifications/progress", "notifications/progress", "notifications/message"},
		},
		{
			// JSON responses carry only the response; the notifications go
			// to the GET stream, which this test does not open.
			name:        "stateful JSON",
			opts:        &mcp.StreamableHTTPOptions{JSONResponse: true},
			wantSession: true,
		},
		{
			name:         "stateless",
			opts:         &mcp.StreamableHTTPOptions{Stateless: true},
			wantOnStream: []string{"notifications/progress", "notifications/progress", "notifications/message"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			_, ts, log := newSDKServer(t, tt.opts)
			s := newTestSession(t, ts.URL, 0)
			auth := http.Header{"Authorization": {"Bearer per-call"}}
			initialize(t, ctx, s, auth)
			if got := s.ID() != ""; got != tt.wantSession {
				t.Fatalf("session id %q, want one: %v", s.ID(), tt.wantSession)
			}

			reply, err := s.Call(ctx, request(t, "tools/list", nil), auth, nil)
			if err != nil {
				t.Fatal(err)
			}
			var list struct {
				Tools []struct{ Name string } `json:"tools"`
			}
			if err := json.Unmarshal(reply.Result, &list); err != nil || len(list.Tools) != 3 {
				t.Fatalf("tools/list = %s (%v), want 3 tools", reply.Result, err)
			}

			if _, err := s.Call(ctx, request(t, "logging/setLevel", map[string]any{"level": "debug"}), auth, nil); err != nil {
				t.Fatal(err)
			}
			var onStream []string
			call := request(t, "tools/call", map[string]any{
				"name":      "report",
				"arguments": map[string]any{"steps": 2},
				"_meta":     map[string]any{"progressToken": "p1"},
			})
			reply, err = s.Call(ctx, call, auth, func(m *jsonrpc.Message) { onStream = append(onStream, m.Method) })
			if err != nil {
				t.Fatal(err)
			}
			// onStream was filled before Call returned: the order of
			// notifications and response is what the broker relays.
			if strings.Join(onStream, ",") != strings.Join(tt.wantOnStream, ",") {
				t.Errorf("messages before the response = %q, want %q", onStream, tt.wantOnStream)
			}
			if got := toolText(t, reply); got != "reported" {
				t.Errorf("tool text = %q", got)
			}

			for i, r := range log.all() {
				if r.Header.Get("Authorization") != "Bearer per-call" {
					t.Errorf("request %d (%s) lost the per-call header", i, r.Method)
				}
				if i == 0 {
					if r.Header.Get(headerProtocolVersion) != "" || r.Header.Get(headerSessionID) != "" {
						t.Errorf("initialize carried session headers: %v", r.Header)
					}
					continue
				}
				if got := r.Header.Get(headerProtocolVersion); got != testProtocolVersion {
					t.Errorf("request %d: %s = %q", i, headerProtocolVersion, got)
				}
				if got := r.Header.Get(headerSessionID); got != s.ID() {
					t.Errorf("request %d: %s = %q, want %q", i, headerSessionID, got, s.ID())
				}
			}
		})
	}
}

func TestSDKServerElicitation(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, ts, _ := newSDKServer(t, nil)
	s := newTestSession(t, ts.URL, 0)
	initialize(t, ctx, s, nil)

	var asked []string
	var answerErr error
	call := request(t, "tools/call", map[string]any{"name": "ask", "arguments": map[string]any{"question": "name?"}})
	reply, err := s.Call(ctx, call, nil, func(m *jsonrpc.Message) {
		if m.Kind() != jsonrpc.KindRequest || m.Method != "elicitation/create" {
			t.Errorf("unexpected message %s %s", m.Kind(), m.Method)
			return
		}
		var params struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(m.Params, &params)
		asked = append(asked, params.Message)
		// The broker answers from inside the callback; the tool result can
		// only come after the answer, on this same stream.
		answer, err := jsonrpc.NewResult(m.ID, map[string]any{"action": "accept", "content": map[string]any{"name": "Ada"}})
		if err != nil {
			answerErr = err
			return
		}
		answerErr = s.Send(ctx, answer, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	if answerErr != nil {
		t.Fatalf("answering the elicitation: %v", answerErr)
	}
	if len(asked) != 1 || asked[0] != "name?" {
		t.Errorf("elicitations = %q, want one asking %q", asked, "name?")
	}
	if got := toolText(t, reply); got != "accept Ada" {
		t.Errorf("tool text = %q, want %q", got, "accept Ada")
	}
}

func TestSDKServerListen(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	server, ts, _ := newSDKServer(t, nil)
	s := newTestSession(t, ts.URL, 0)
	initialize(t, ctx, s, nil)

	listenCtx, stopListen := context.WithCancel(ctx)
	got := make(chan string, 16)
	done := make(chan error, 1)
	go func() {
		done <- s.Listen(listenCtx, nil, func(m *jsonrpc.Message) { got <- m.Method })
	}()
	// The server drops notifications while no GET stream is connected, and
	// nothing tells the test when it is: change the tool list until the
	// notification arrives.
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	for i := 0; ; i++ {
		select {
		case method := <-got:
			if method != "notifications/tools/list_changed" {
				t.Fatalf("listen got %q", method)
			}
			stopListen()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("Listen returned %v, want context.Canceled", err)
			}
			return
		case err := <-done:
			t.Fatalf("Listen returned early: %v", err)
		case <-ticker.C:
			mcp.AddTool(server, &mcp.Tool{Name: fmt.Sprintf("extra_%d", i)},
				func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
					return textResult("extra"), nil, nil
				})
		case <-ctx.Done():
			t.Fatal("no tools/list_changed on the GET stream")
		}
	}
}

func TestSDKServerResumesClosedStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, ts, log := newSDKServer(t, &mcp.StreamableHTTPOptions{EventStore: mcp.NewMemoryEventStore(nil)})
	s := newTestSession(t, ts.URL, 0)
	initialize(t, ctx, s, nil)

	var progress []string
	call := request(t, "tools/call", map[string]any{"name": "pause", "arguments": map[string]any{}, "_meta": map[string]any{"progressToken": 9}})
	reply, err := s.Call(ctx, call, nil, func(m *jsonrpc.Message) { progress = append(progress, string(m.Params)) })
	if err != nil {
		t.Fatal(err)
	}
	if got := toolText(t, reply); got != "resumed" {
		t.Errorf("tool text = %q", got)
	}
	if len(progress) != 2 {
		t.Errorf("progress notifications = %q, want 2", progress)
	}
	var resumed bool
	for _, r := range log.all() {
		if r.Method == http.MethodGet && r.Header.Get(headerLastEventID) != "" {
			resumed = true
		}
	}
	if !resumed {
		t.Error("the call did not resume with GET and Last-Event-ID")
	}
}

func TestSDKServerDeletedSession(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, ts, _ := newSDKServer(t, nil)
	s := newTestSession(t, ts.URL, 0)
	initialize(t, ctx, s, nil)

	if err := s.Close(ctx, nil); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, err := s.Call(ctx, request(t, "tools/list", nil), nil, nil)
	if !errors.Is(err, ErrSessionNotFound) {
		t.Fatalf("call after DELETE: %v, want ErrSessionNotFound", err)
	}
	var status *StatusError
	if !errors.As(err, &status) || status.StatusCode != http.StatusNotFound {
		t.Errorf("call after DELETE: %v, want a 404 StatusError inside", err)
	}
	// A second Close finds the session gone, which is what it wanted.
	if err := s.Close(ctx, nil); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// Re-initializing the same Session must not send the stale id.
	initialize(t, ctx, s, nil)
	if _, err := s.Call(ctx, request(t, "tools/list", nil), nil, nil); err != nil {
		t.Errorf("after re-initialize: %v", err)
	}
}
