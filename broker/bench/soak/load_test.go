//go:build linux

package soak

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The shape of the load: sessions live at once, each ending after a
// random number of requests in [minRequests, maxRequests]; request i of a
// session is requestKinds[i % 10].
const (
	liveSessions = 20
	minRequests  = 100
	maxRequests  = 400
)

// requestKinds: tools/call 70 %, tools/list 20 %, ping 10 %.
var requestKinds = [10]string{"tools/call", "tools/call", "tools/call", "tools/call", "tools/call", "tools/call", "tools/call",
	"tools/list", "tools/list", "ping"}

// requestParams are the params of each kind of request.
var requestParams = map[string]string{
	"tools/call": `{"name":"ledger_get_balance","arguments":{"account":"alice"}}`,
	"tools/list": `{}`,
	"ping":       `{}`,
}

const protocolVersion = "2025-11-25"

// A replica is one broker process of the soak, as the load sees it.
type replica struct {
	number int    // from 1
	mcp    string // its MCP endpoint
	admin  string // its admin listener's base URL
	proc   *process

	calls  atomic.Int64 // tools/call, tools/list and ping sent to it
	errors atomic.Int64 // requests to it answered wrongly or not at all
}

// load sends sessions' requests round-robin over the replicas at a fixed
// total rate.
type load struct {
	replicas []*replica
	client   *http.Client
	interval time.Duration // between two requests of one session

	opened, ended atomic.Int64 // sessions

	mu       sync.Mutex
	failures []string // the first few, for the summary
}

func newLoad(replicas []*replica, rate float64) *load {
	return &load{
		replicas: replicas,
		client: &http.Client{
			Timeout: 30 * time.Second,
			Transport: &http.Transport{
				Proxy:               nil,
				DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConns:        4 * liveSessions,
				MaxIdleConnsPerHost: 2 * liveSessions,
				IdleConnTimeout:     90 * time.Second,
			},
		},
		interval: time.Duration(float64(liveSessions) / rate * float64(time.Second)),
	}
}

// start runs liveSessions workers until the returned stop is called; stop
// waits for them, each ending its session.
func (l *load) start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for n := range liveSessions {
		wg.Go(func() { l.worker(ctx, n) })
	}
	return func() {
		cancel()
		wg.Wait()
		l.client.CloseIdleConnections()
	}
}

// worker keeps one session at a time busy at its share of the rate, each
// request on the next replica, and replaces it by a new one after a
// while.
func (l *load) worker(ctx context.Context, n int) {
	turn := n // each worker starts at a different replica
	next := func() *replica {
		turn++
		return l.replicas[turn%len(l.replicas)]
	}
	// The workers' requests are spread over the interval, not sent
	// together.
	select {
	case <-time.After(rand.N(l.interval)):
	case <-ctx.Done():
		return
	}
	ticker := time.NewTicker(l.interval)
	defer ticker.Stop()
	for ctx.Err() == nil {
		s, err := l.open(ctx, next)
		if err != nil {
			<-ticker.C // a replica that fails is not hammered
			continue
		}
		for i := 0; i < s.requests; i++ {
			select {
			case <-ticker.C:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
			l.request(ctx, next(), s, requestKinds[i%len(requestKinds)])
		}
		// Ended even when the load stops, so no session outlives it.
		endCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		l.end(endCtx, next(), next(), s)
		cancel()
	}
}

// session is one MCP session of the load.
type session struct {
	id       string // Mcp-Session-Id
	version  string // negotiated protocol version
	requests int    // to send before ending it
	nextID   int
}

// open initializes a session on one replica and sends
// notifications/initialized on the next.
func (l *load) open(ctx context.Context, next func() *replica) (*session, error) {
	s := &session{requests: minRequests + rand.IntN(maxRequests-minRequests+1)}
	r := next()
	resp, err := l.post(ctx, r, s, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"`+protocolVersion+
		`","capabilities":{},"clientInfo":{"name":"mcpbroker-soak","version":"1"}}}`)
	if err != nil {
		return nil, l.fail(ctx, r, "initialize: %w", err)
	}
	s.id = resp.Header.Get("Mcp-Session-Id")
	result, err := readResult(resp, 0)
	if err == nil && s.id == "" {
		err = errors.New("no Mcp-Session-Id")
	}
	if err == nil {
		var init struct {
			ProtocolVersion string `json:"protocolVersion"`
		}
		if err = json.Unmarshal(result, &init); err == nil && init.ProtocolVersion == "" {
			err = errors.New("no protocolVersion")
		}
		s.version = init.ProtocolVersion
	}
	if err != nil {
		return nil, l.fail(ctx, r, "initialize: %w", err)
	}
	l.opened.Add(1)

	r = next()
	resp, err = l.post(ctx, r, s, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	if err == nil {
		err = drain(resp, http.StatusAccepted)
	}
	if err != nil {
		return nil, l.fail(ctx, r, "session %.12s…: notifications/initialized: %w", s.id, err)
	}
	return s, nil
}

// request sends one request of kind method in s to r and checks its
// answer.
func (l *load) request(ctx context.Context, r *replica, s *session, method string) {
	s.nextID++
	id := s.nextID
	r.calls.Add(1)
	resp, err := l.post(ctx, r, s, `{"jsonrpc":"2.0","id":`+strconv.Itoa(id)+`,"method":"`+method+`","params":`+requestParams[method]+`}`)
	if err != nil {
		l.fail(ctx, r, "session %.12s…: %s %d: %w", s.id, method, id, err)
		return
	}
	result, err := readResult(resp, id)
	if err == nil {
		var answer struct {
			IsError bool              `json:"isError"`
			Content []json.RawMessage `json:"content"`
			Tools   []json.RawMessage `json:"tools"`
		}
		err = json.Unmarshal(result, &answer)
		switch {
		case err != nil:
		case method == "tools/call" && (answer.IsError || len(answer.Content) == 0):
			err = fmt.Errorf("tool result %s", result)
		case method == "tools/list" && len(answer.Tools) == 0:
			err = errors.New("no tools listed")
		}
	}
	if err != nil {
		l.fail(ctx, r, "session %.12s…: %s %d: %w", s.id, method, id, err)
	}
}

// end ends s with DELETE on one replica, then checks that another refuses
// it.
func (l *load) end(ctx context.Context, on, other *replica, s *session) {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, on.mcp, nil)
	if err != nil {
		l.fail(ctx, on, "session %.12s…: DELETE: %w", s.id, err)
		return
	}
	req.Header.Set("Mcp-Session-Id", s.id)
	req.Header.Set("Mcp-Protocol-Version", s.version)
	resp, err := l.client.Do(req)
	if err == nil {
		err = drain(resp, http.StatusOK, http.StatusNoContent, http.StatusAccepted)
	}
	if err != nil {
		l.fail(ctx, on, "session %.12s…: DELETE: %w", s.id, err)
		return
	}
	l.ended.Add(1)
	s.nextID++
	resp, err = l.post(ctx, other, s, `{"jsonrpc":"2.0","id":`+strconv.Itoa(s.nextID)+`,"method":"ping"}`)
	if err == nil {
		err = drain(resp, http.StatusNotFound)
	}
	if err != nil {
		l.fail(ctx, other, "session %.12s… ended on replica %d: %w", s.id, on.number, err)
	}
}

// fail counts a failed request to r, unless it failed because the load
// is stopping, and returns it.
func (l *load) fail(ctx context.Context, r *replica, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return err
	}
	r.errors.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) < 10 {
		l.failures = append(l.failures, fmt.Sprintf("%s replica %d: %v", time.Now().Format(time.TimeOnly), r.number, err))
	}
	return err
}

// post sends one JSON-RPC message in s (if it has an id yet) to r.
func (l *load) post(ctx context.Context, r *replica, s *session, body string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.mcp, bytes.NewReader([]byte(body)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if s.id != "" {
		req.Header.Set("Mcp-Session-Id", s.id)
		req.Header.Set("Mcp-Protocol-Version", s.version)
	}
	return l.client.Do(req)
}

// drain reads and closes the body of a response whose status must be one
// of want.
func drain(resp *http.Response, want ...int) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for _, status := range want {
		if resp.StatusCode == status {
			return nil
		}
	}
	return fmt.Errorf("status %d, want %v: %s", resp.StatusCode, want, bytes.TrimSpace(body))
}

// maxBody bounds an answer; the largest, tools/list, is a few KiB.
const maxBody = 1 << 20

// readResult reads the JSON-RPC response to id, from an application/json
// or text/event-stream body, and returns its result; an error response is
// an error.
func readResult(resp *http.Response, id int) (json.RawMessage, error) {
	defer func() {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	body := io.LimitReader(resp.Body, maxBody)
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch mediaType {
	case "application/json":
		data, err := io.ReadAll(body)
		if err != nil {
			return nil, err
		}
		result, matched, err := match(data, id)
		if err == nil && !matched {
			err = fmt.Errorf("not the response to %d: %.200s", id, data)
		}
		return result, err
	case "text/event-stream":
		scanner := bufio.NewScanner(body)
		scanner.Buffer(make([]byte, 64<<10), maxBody)
		for scanner.Scan() {
			data, ok := bytes.CutPrefix(scanner.Bytes(), []byte("data:"))
			if !ok || len(bytes.TrimSpace(data)) == 0 {
				continue
			}
			if result, matched, err := match(data, id); matched || err != nil {
				return result, err
			}
		}
		if err := scanner.Err(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("event stream ended without the response to %d", id)
	default:
		return nil, fmt.Errorf("unexpected Content-Type %q", resp.Header.Get("Content-Type"))
	}
}

// match decodes one JSON-RPC message and reports whether it is the
// response to id, with its result.
func match(data []byte, id int) (json.RawMessage, bool, error) {
	var msg struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(data, &msg); err != nil {
		return nil, false, fmt.Errorf("decode %.200q: %w", data, err)
	}
	if msg.Method != "" || string(msg.ID) != strconv.Itoa(id) {
		return nil, false, nil // a notification, a server request, or another response
	}
	if msg.Error != nil {
		return nil, true, fmt.Errorf("error %d: %s", msg.Error.Code, msg.Error.Message)
	}
	if msg.Result == nil {
		return nil, true, errors.New("neither result nor error")
	}
	return msg.Result, true, nil
}
