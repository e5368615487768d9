package broker_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// scriptUpstream is a hand-written MCP server over Streamable HTTP. It
// keeps every body it receives as it came, refuses bodies over 4 MiB with
// 413 as common SDK servers do, and answers a tools/call of "script" with
// an event stream carrying the messages in arguments.messages, then the
// result (or arguments.error): a test makes it send any request or
// notification it likes.
type scriptUpstream struct {
	// capabilities are the server's own, as JSON.
	capabilities string
	// tools is the JSON array tools/list answers; toolsFunc, when set,
	// makes a new one for every listing.
	tools     string
	toolsFunc func() string

	mu     sync.Mutex
	bodies [][]byte
}

const scriptBodyCap = 4 << 20

func newScriptUpstream(t *testing.T, u *scriptUpstream) string {
	t.Helper()
	if u.capabilities == "" {
		u.capabilities = `{"tools":{},"prompts":{},"completions":{}}`
	}
	if u.tools == "" {
		u.tools = `[{"name":"script","inputSchema":{"type":"object"}}]`
	}
	srv := httptest.NewServer(u)
	t.Cleanup(srv.Close)
	return srv.URL + "/mcp"
}

func (u *scriptUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, scriptBodyCap))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	u.mu.Lock()
	u.bodies = append(u.bodies, body)
	u.mu.Unlock()
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params json.RawMessage `json:"params"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if m.ID == nil || m.Method == "" {
		w.WriteHeader(http.StatusAccepted) // notifications and responses
		return
	}
	result := `{}`
	switch m.Method {
	case "initialize":
		w.Header().Set("Mcp-Session-Id", "script-1")
		result = `{"protocolVersion":"2025-11-25","capabilities":` + u.capabilities + `,"serverInfo":{"name":"script","version":"1"}}`
	case "tools/list":
		tools := u.tools
		if u.toolsFunc != nil {
			tools = u.toolsFunc()
		}
		result = `{"tools":` + tools + `}`
	case "prompts/get":
		result = `{"messages":[]}`
	case "completion/complete":
		result = `{"completion":{"values":[]}}`
	case "tools/call":
		var p struct {
			Name      string `json:"name"`
			Arguments struct {
				Messages []json.RawMessage `json:"messages"`
				Error    json.RawMessage   `json:"error"`
			} `json:"arguments"`
		}
		_ = json.Unmarshal(m.Params, &p)
		result = `{"content":[{"type":"text","text":"ok"}]}`
		if p.Name == "script" {
			w.Header().Set("Content-Type", "text/event-stream")
			for _, msg := range p.Arguments.Messages {
				fmt.Fprintf(w, "data: %s\n\n", msg)
			}
			if p.Arguments.Error != nil {
				fmt.Fprintf(w, "data: {\"jsonrpc\":\"2.0\",\"id\":%s,\"error\":%s}\n\n", m.ID, p.Arguments.Error)
				return
			}
			fmt.Fprintf(w, "data: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":%s}\n\n", m.ID, result)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":%s}`, m.ID, result)
}

// received returns the bodies of the messages with method, as they came.
func (u *scriptUpstream) received(method string) [][]byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out [][]byte
	for _, b := range u.bodies {
		var m struct {
			Method string `json:"method"`
		}
		if json.Unmarshal(b, &m) == nil && m.Method == method {
			out = append(out, b)
		}
	}
	return out
}

// responseTo returns the response the upstream received to its own
// request id, nil when none came.
func (u *scriptUpstream) responseTo(id string) map[string]any {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, b := range u.bodies {
		var m map[string]any
		if json.Unmarshal(b, &m) == nil && m["method"] == nil && m["id"] == id {
			return m
		}
	}
	return nil
}

// rawParams returns the params of a message exactly as they were written.
func rawParams(t *testing.T, body []byte) string {
	t.Helper()
	var m struct {
		Params json.RawMessage `json:"params"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body %.200q: %v", body, err)
	}
	return string(m.Params)
}

func scriptApps(nameURL ...string) string {
	var out string
	for i := 0; i+1 < len(nameURL); i += 2 {
		out += fmt.Sprintf("  - {name: %s, type: mcpProxy, toolNamespace: {name: %s_}, upstream: {transport: stream, stream: {url: %q}}}\n",
			nameURL[i], nameURL[i], nameURL[i+1])
	}
	return out
}
