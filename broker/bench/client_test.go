package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// The benchmark client speaks just enough Streamable HTTP to call a tool,
// so that its own cost is small and the same on every path. It reuses its
// buffers and decodes only what it checks.

const requestedProtocolVersion = "2025-11-25"

// session is one initialized MCP session. It is used by one goroutine at a
// time.
type session struct {
	client        *http.Client
	endpoint      string
	authorization string // "Bearer <token>" sent with every request; empty: none
	id            string // Mcp-Session-Id
	version       string // negotiated protocol version
	// modern: the client speaks 2026-07-28, without a session: every
	// request carries the version and capabilities in _meta and the
	// standard headers; method and name are the current request's.
	modern       bool
	method, name string
	// rest: the endpoint is a REST echo API (GET ?text=), no MCP.
	rest bool

	nextID int64
	body   []byte
	reader *bufio.Reader
	line   []byte // an SSE line longer than reader's buffer
	// echo is the text callEcho sends; echoArgs its arguments.
	echo, echoArgs string
	data           []byte // the current SSE event's data
	msg            rpcMessage
}

// rpcMessage is the part of a JSON-RPC message the client checks.
type rpcMessage struct {
	ID     *int64 `json:"id"`
	Method string `json:"method"`
	Result *struct {
		ProtocolVersion string `json:"protocolVersion"`
		IsError         bool   `json:"isError"`
		Content         []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
		Tools []listedTool `json:"tools"`
	} `json:"result"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// openSession initializes a session at endpoint, presenting token (if not
// empty) as a Bearer token on this and every later request.
func openSession(ctx context.Context, client *http.Client, endpoint, token string) (*session, error) {
	s := &session{client: client, endpoint: endpoint, reader: bufio.NewReaderSize(nil, 4096)}
	if token != "" {
		s.authorization = "Bearer " + token
	}
	s.body = append(s.body[:0], `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"`+
		requestedProtocolVersion+`","capabilities":{},"clientInfo":{"name":"mcpbroker-bench","version":"1"}}}`...)
	resp, err := s.post(ctx)
	if err != nil {
		return nil, fmt.Errorf("initialize: %w", err)
	}
	s.id = resp.Header.Get("Mcp-Session-Id")
	if err := s.readResponse(resp, 0); err != nil {
		return nil, fmt.Errorf("initialize: %w", err)
	}
	if s.id == "" {
		return nil, errors.New("initialize: no Mcp-Session-Id")
	}
	s.version = s.msg.Result.ProtocolVersion
	if s.version == "" {
		return nil, errors.New("initialize: no protocolVersion in result")
	}

	s.body = append(s.body[:0], `{"jsonrpc":"2.0","method":"notifications/initialized"}`...)
	resp, err = s.post(ctx)
	if err != nil {
		return nil, fmt.Errorf("notifications/initialized: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return nil, fmt.Errorf("notifications/initialized: status %d, want 202", resp.StatusCode)
	}
	s.nextID = 1
	return s, nil
}

// modernVersion is the protocol version without sessions.
const modernVersion = "2026-07-28"

// modernMeta is the _meta member every modern request carries.
const modernMeta = `"_meta":{"io.modelcontextprotocol/protocolVersion":"` + modernVersion +
	`","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"mcpbroker-bench","version":"1"}}`

// openModern is openSession for a client of the protocol without
// sessions: nothing to open.
func openModern(client *http.Client, endpoint, token string) *session {
	s := &session{client: client, endpoint: endpoint, reader: bufio.NewReaderSize(nil, 4096), modern: true, version: modernVersion, nextID: 1}
	if token != "" {
		s.authorization = "Bearer " + token
	}
	return s
}

// listedTool is the part of a tools/list item the client checks.
type listedTool struct {
	Name string `json:"name"`
}

// callEcho calls the echo tool with the session's text ("hello" unless
// the path says otherwise) and checks that the result is that text.
func (s *session) callEcho(ctx context.Context) error {
	text := s.echo
	if text == "" {
		text = "hello"
	}
	if s.rest {
		return s.getEcho(ctx, text)
	}
	if s.echoArgs == "" {
		s.echoArgs = `{"text":` + strconv.Quote(text) + `}`
	}
	if err := s.callTool(ctx, "echo", s.echoArgs); err != nil {
		return err
	}
	r := s.msg.Result
	if len(r.Content) != 1 || r.Content[0].Type != "text" || r.Content[0].Text != text {
		return fmt.Errorf("tools/call echo: unexpected result (%d content items)", len(r.Content))
	}
	return nil
}

// getEcho asks the REST echo API for text.
func (s *session) getEcho(ctx context.Context, text string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.endpoint+"/echo?text="+url.QueryEscape(text), nil)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || string(body) != text {
		return fmt.Errorf("GET echo: %d %q", resp.StatusCode, body)
	}
	return nil
}

// callTool calls the tool name with arguments, a JSON object, and reads
// the result into s.msg; a result with isError set is an error.
func (s *session) callTool(ctx context.Context, name, arguments string) error {
	id := s.nextID
	s.nextID++
	s.body = append(s.body[:0], `{"jsonrpc":"2.0","id":`...)
	s.body = strconv.AppendInt(s.body, id, 10)
	s.body = append(s.body, `,"method":"tools/call","params":{"name":`...)
	s.body = strconv.AppendQuote(s.body, name)
	s.body = append(s.body, `,"arguments":`...)
	s.body = append(s.body, arguments...)
	if s.modern {
		s.body = append(s.body, ","+modernMeta...)
	}
	s.body = append(s.body, "}}"...)
	s.method, s.name = "tools/call", name
	if err := s.request(ctx, id); err != nil {
		return err
	}
	if s.msg.Result.IsError {
		return fmt.Errorf("tools/call %d (%s): result is an error: %+v", id, name, s.msg.Result.Content)
	}
	return nil
}

// listTools lists the session's tools, the first page only. The result
// is the client's until its next request.
func (s *session) listTools(ctx context.Context) ([]listedTool, error) {
	id := s.nextID
	s.nextID++
	s.body = append(s.body[:0], `{"jsonrpc":"2.0","id":`...)
	s.body = strconv.AppendInt(s.body, id, 10)
	if s.modern {
		s.body = append(s.body, `,"method":"tools/list","params":{`+modernMeta+`}}`...)
	} else {
		s.body = append(s.body, `,"method":"tools/list"}`...)
	}
	s.method, s.name = "tools/list", ""
	if err := s.request(ctx, id); err != nil {
		return nil, err
	}
	return s.msg.Result.Tools, nil
}

// request sends s.body, the request id, and reads its response into s.msg.
func (s *session) request(ctx context.Context, id int64) error {
	resp, err := s.post(ctx)
	if err != nil {
		return err
	}
	return s.readResponse(resp, id)
}

// close ends the session, as a well-behaved client does.
func (s *session) close(ctx context.Context) error {
	if s.modern || s.rest {
		return nil // nothing was opened
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.endpoint, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Mcp-Session-Id", s.id)
	req.Header.Set("Mcp-Protocol-Version", s.version)
	if s.authorization != "" {
		req.Header.Set("Authorization", s.authorization)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("delete session: status %d", resp.StatusCode)
	}
	return nil
}

// post sends s.body. The buffer can be reused once the response is read:
// a server answers only after reading the whole request.
func (s *session) post(ctx context.Context) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint, bytes.NewReader(s.body))
	if err != nil {
		return nil, err
	}
	req.Header["Content-Type"] = []string{"application/json"}
	req.Header["Accept"] = []string{"application/json, text/event-stream"}
	if s.id != "" {
		req.Header["Mcp-Session-Id"] = []string{s.id}
		req.Header["Mcp-Protocol-Version"] = []string{s.version}
	}
	if s.modern {
		req.Header["Mcp-Protocol-Version"] = []string{s.version}
		req.Header["Mcp-Method"] = []string{s.method}
		if s.name != "" {
			req.Header["Mcp-Name"] = []string{s.name}
		}
	}
	if s.authorization != "" {
		req.Header["Authorization"] = []string{s.authorization}
	}
	return s.client.Do(req)
}

// readResponse reads the response with the given id into s.msg from an
// application/json or text/event-stream body, then drains and closes the
// body so the connection is reused.
func (s *session) readResponse(resp *http.Response, id int64) error {
	defer func() {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return &statusError{code: resp.StatusCode, challenge: resp.Header.Get("WWW-Authenticate"), body: string(bytes.TrimSpace(msg))}
	}
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch mediaType {
	case "application/json":
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		matched, err := s.match(raw, id)
		if err == nil && !matched {
			err = fmt.Errorf("JSON body is not the response to %d: %s", id, raw)
		}
		return err
	case "text/event-stream":
		return s.readEvents(resp.Body, id)
	default:
		return fmt.Errorf("unexpected Content-Type %q", resp.Header.Get("Content-Type"))
	}
}

// statusError is a response other than 200 OK.
type statusError struct {
	code      int
	challenge string // WWW-Authenticate
	body      string // its start
}

func (e *statusError) Error() string {
	if e.challenge != "" {
		return fmt.Sprintf("status %d (WWW-Authenticate: %s): %s", e.code, e.challenge, e.body)
	}
	return fmt.Sprintf("status %d: %s", e.code, e.body)
}

// rpcError is a JSON-RPC error response.
type rpcError struct {
	id      int64
	code    int
	message string
}

func (e *rpcError) Error() string {
	return fmt.Sprintf("response %d: error %d: %s", e.id, e.code, e.message)
}

// readEvents reads SSE events until one carries the response to id;
// notifications and other events before it are skipped.
func (s *session) readEvents(body io.Reader, id int64) error {
	s.reader.Reset(body)
	s.data = s.data[:0]
	hasData := false
	for {
		line, err := s.readLine()
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		if len(line) == 0 && err == nil { // end of event
			if len(s.data) > 0 { // a priming event has an id and empty data
				matched, merr := s.match(s.data, id)
				if matched || merr != nil {
					return merr
				}
			}
			s.data, hasData = s.data[:0], false
			continue
		}
		if value, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			if hasData {
				s.data = append(s.data, '\n')
			}
			s.data = append(s.data, bytes.TrimPrefix(value, []byte(" "))...)
			hasData = true
		}
		if err == io.EOF {
			return fmt.Errorf("event stream ended without the response to %d", id)
		}
		if err != nil {
			return err
		}
	}
}

// readLine reads one line of the event stream. A line longer than the
// reader's buffer, such as a long list's data, is gathered in s.line.
func (s *session) readLine() ([]byte, error) {
	line, err := s.reader.ReadSlice('\n')
	if !errors.Is(err, bufio.ErrBufferFull) {
		return line, err
	}
	s.line = append(s.line[:0], line...)
	for errors.Is(err, bufio.ErrBufferFull) {
		line, err = s.reader.ReadSlice('\n')
		s.line = append(s.line, line...)
	}
	return s.line, err
}

// match decodes one JSON-RPC message into s.msg and reports whether it is
// the response to id; an error response to id is an error.
func (s *session) match(raw []byte, id int64) (bool, error) {
	s.msg = rpcMessage{}
	if err := json.Unmarshal(raw, &s.msg); err != nil {
		return false, fmt.Errorf("decode %q: %w", raw, err)
	}
	if s.msg.Method != "" || s.msg.ID == nil || *s.msg.ID != id {
		return false, nil // a notification, a server request, or another response
	}
	if s.msg.Error != nil {
		return true, &rpcError{id: id, code: s.msg.Error.Code, message: s.msg.Error.Message}
	}
	if s.msg.Result == nil {
		return true, fmt.Errorf("response %d has neither result nor error", id)
	}
	return true, nil
}

// listen opens the session's GET stream until tb ends. The channel
// receives the method of every notification on it (those that do not
// fit its buffer are dropped) and is closed when the stream ends.
func (s *session) listen(tb testing.TB) <-chan string {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.endpoint, nil)
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	req.Header["Accept"] = []string{"text/event-stream"}
	req.Header["Mcp-Session-Id"] = []string{s.id}
	req.Header["Mcp-Protocol-Version"] = []string{s.version}
	if s.authorization != "" {
		req.Header["Authorization"] = []string{s.authorization}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		cancel()
		tb.Fatalf("GET stream of session %s: %v", s.id, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		tb.Fatalf("GET stream of session %s: status %d", s.id, resp.StatusCode)
	}
	tb.Cleanup(func() {
		cancel()
		resp.Body.Close()
	})
	methods := make(chan string, 64)
	go func() {
		defer close(methods)
		lines := bufio.NewScanner(resp.Body)
		for lines.Scan() {
			data, ok := bytes.CutPrefix(lines.Bytes(), []byte("data:"))
			var m struct {
				Method string `json:"method"`
			}
			if !ok || json.Unmarshal(data, &m) != nil || m.Method == "" {
				continue
			}
			select {
			case methods <- m.Method:
			default:
			}
		}
	}()
	return methods
}

// openSessions opens n sessions at the target with one shared client, each
// with its own token if the target wants one, and closes them when tb ends.
func openSessions(tb testing.TB, t target, n int) []*session {
	tb.Helper()
	transport := newTransport()
	client := &http.Client{Transport: transport}
	sessions := make([]*session, n)
	for i := range sessions {
		var token string
		if t.token != nil {
			token = t.token(i)
		}
		var s *session
		var err error
		if t.rest {
			s = &session{client: client, endpoint: t.endpoint, rest: true}
		} else if t.modern {
			s = openModern(client, t.endpoint, token)
		} else if s, err = openSession(context.Background(), client, t.endpoint, token); err != nil {
			tb.Fatalf("session %d at %s: %v", i, t.endpoint, err)
		}
		s.echo = t.echo
		sessions[i] = s
	}
	tb.Cleanup(func() {
		for _, s := range sessions {
			if err := s.close(context.Background()); err != nil {
				tb.Errorf("session %s: %v", s.id, err)
			}
		}
		transport.CloseIdleConnections()
	})
	return sessions
}

func TestReadEvents(t *testing.T) {
	const result = `{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"hello"}]}}`
	tests := []struct {
		name    string
		stream  string
		wantErr string // empty: the response to 3 is found
	}{
		{"one event", "event: message\ndata: " + result + "\n\n", ""},
		{"CRLF and no space", "data:" + result + "\r\n\r\n", ""},
		{"priming event first", "id: 0\ndata: \n\nid: 1\ndata: " + result + "\n\n", ""},
		{"data split over lines", "data: {\"jsonrpc\":\"2.0\",\"id\":3,\ndata: \"result\":{}}\n\n", ""},
		{"notification and other response first",
			`data: {"jsonrpc":"2.0","method":"notifications/progress","params":{}}` + "\n\n" +
				`data: {"jsonrpc":"2.0","id":2,"result":{}}` + "\n\n" +
				": comment\ndata: " + result + "\n\n", ""},
		{"error response", `data: {"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"bad"}}` + "\n\n", "error -32602: bad"},
		{"ends early", `data: {"jsonrpc":"2.0","id":2,"result":{}}` + "\n\n", "ended without the response to 3"},
		{"unterminated event", "data: " + result + "\n", "ended without the response to 3"},
		{"not JSON", "data: nope\n\n", "decode"},
		{"line longer than the buffer", "data: " + `{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"` +
			strings.Repeat("x", 10000) + `"}]}}` + "\n\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &session{reader: bufio.NewReaderSize(nil, 4096)}
			err := s.readEvents(strings.NewReader(tt.stream), 3)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			case tt.wantErr == "" && (s.msg.ID == nil || *s.msg.ID != 3 || s.msg.Result == nil):
				t.Fatalf("message %+v, want the result for 3", s.msg)
			}
		})
	}
}
