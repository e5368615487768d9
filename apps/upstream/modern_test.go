package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// modernServer answers every POST with what reply says for that round,
// after checking the request is made the modern way.
func modernServer(t *testing.T, reply func(round int, req *jsonrpc.Message, h http.Header) (status int, body string)) (string, *atomic.Int32) {
	t.Helper()
	var rounds atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf [1 << 16]byte
		n, _ := r.Body.Read(buf[:])
		m, err := jsonrpc.Decode(buf[:n])
		if err != nil {
			t.Errorf("undecodable request: %v", err)
			return
		}
		if got := r.Header.Get("MCP-Protocol-Version"); got != ModernVersion || r.Header.Get("Mcp-Method") != m.Method || r.Header.Get("Mcp-Session-Id") != "" {
			t.Errorf("request headers: version %q, method %q for %s, session %q", got, r.Header.Get("Mcp-Method"), m.Method, r.Header.Get("Mcp-Session-Id"))
		}
		var p struct {
			Meta map[string]json.RawMessage `json:"_meta"`
		}
		_ = json.Unmarshal(m.Params, &p)
		if string(p.Meta[jsonrpc.MetaProtocolVersion]) != `"`+ModernVersion+`"` || p.Meta[jsonrpc.MetaClientCapabilities] == nil {
			t.Errorf("request _meta: %s", m.Params)
		}
		status, body := reply(int(rounds.Add(1)), m, r.Header)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, strings.ReplaceAll(body, "ID", m.ID.Raw()))
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &rounds
}

func newModern(t *testing.T, url string) *ModernSession {
	t.Helper()
	m, err := NewModernSession(&Options{URL: url}, json.RawMessage(`{"elicitation":{}}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func call(t *testing.T, m *ModernSession, onMessage func(*jsonrpc.Message)) (*jsonrpc.Message, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return m.Call(ctx, &jsonrpc.Message{ID: jsonrpc.Int64ID(1), Method: "tools/call", Params: json.RawMessage(`{"name":"t","arguments":{}}`)}, nil, onMessage)
}

// answer answers every question ModernSession puts, as a client would.
func answer(m *ModernSession, result string) func(*jsonrpc.Message) {
	return func(q *jsonrpc.Message) {
		if q.Kind() == jsonrpc.KindRequest {
			go func() {
				_ = m.Send(context.Background(), &jsonrpc.Message{ID: q.ID, Result: json.RawMessage(result)}, nil)
			}()
		}
	}
}

// A question is put to the client under the server's name, and the
// request goes again with the answer and the server's state.
func TestModernSessionAsksAndRetries(t *testing.T) {
	var sawAnswer atomic.Bool
	url, rounds := modernServer(t, func(round int, req *jsonrpc.Message, _ http.Header) (int, string) {
		if round == 1 {
			return 200, `{"jsonrpc":"2.0","id":ID,"result":{"resultType":"input_required","requestState":"s1","inputRequests":{"confirm":{"method":"elicitation/create","params":{"message":"ok?"}}}}}`
		}
		var p struct {
			InputResponses map[string]json.RawMessage `json:"inputResponses"`
			RequestState   string                     `json:"requestState"`
		}
		_ = json.Unmarshal(req.Params, &p)
		sawAnswer.Store(p.RequestState == "s1" && strings.Contains(string(p.InputResponses["confirm"]), "accept"))
		return 200, `{"jsonrpc":"2.0","id":ID,"result":{"resultType":"complete","content":[]}}`
	})
	m := newModern(t, url)
	var asked []*jsonrpc.Message
	resp, err := call(t, m, func(q *jsonrpc.Message) {
		asked = append(asked, q)
		answer(m, `{"action":"accept","content":{}}`)(q)
	})
	if err != nil || resp.Error != nil {
		t.Fatalf("call: %v %+v", err, resp)
	}
	if rounds.Load() != 2 || !sawAnswer.Load() || len(asked) != 1 || asked[0].Method != "elicitation/create" {
		t.Fatalf("rounds %d, answer seen %v, asked %+v", rounds.Load(), sawAnswer.Load(), asked)
	}
	if key, _ := jsonrpc.TakeInputKey(asked[0].Params); key != "confirm" {
		t.Fatalf("question named %q, want the server's name", key)
	}
}

// A hostile or broken modern server cannot keep the broker asking.
func TestModernSessionHostileServers(t *testing.T) {
	manyQuestions := func() string {
		var b strings.Builder
		for i := range maxInputRequests + 1 {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `"q%d":{"method":"roots/list","params":{}}`, i)
		}
		return b.String()
	}()
	cases := []struct {
		name   string
		body   func(round int) (int, string)
		rounds int32
		want   string
	}{
		{"asks without end", func(int) (int, string) {
			return 200, `{"jsonrpc":"2.0","id":ID,"result":{"resultType":"input_required","requestState":"x","inputRequests":{"q":{"method":"roots/list","params":{}}}}}`
		}, maxInputRounds + 1, "still asks for input"},
		{"too many questions", func(int) (int, string) {
			return 200, `{"jsonrpc":"2.0","id":ID,"result":{"resultType":"input_required","inputRequests":{` + manyQuestions + `}}}`
		}, 1, "at most 16"},
		{"busy without end", func(int) (int, string) {
			return 200, `{"jsonrpc":"2.0","id":ID,"result":{"resultType":"input_required","inputRequests":{}}}`
		}, maxBusyRetries + 1, "stays busy"},
		{"malformed question", func(int) (int, string) {
			return 200, `{"jsonrpc":"2.0","id":ID,"result":{"resultType":"input_required","inputRequests":{"q":{"params":{}}}}}`
		}, 1, "malformed input request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url, rounds := modernServer(t, func(round int, _ *jsonrpc.Message, _ http.Header) (int, string) { return tc.body(round) })
			m := newModern(t, url)
			_, err := call(t, m, answer(m, `{"roots":[]}`))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if rounds.Load() != tc.rounds {
				t.Fatalf("%d requests, want %d", rounds.Load(), tc.rounds)
			}
			m.mu.Lock()
			pending := len(m.pending)
			m.mu.Unlock()
			if pending != 0 {
				t.Fatalf("%d questions left pending", pending)
			}
		})
	}
}

// The protocol's refusals come as 4xx with a JSON-RPC error: they are the
// request's answer, not a transport failure.
func TestModernSessionRefusalIsAnAnswer(t *testing.T) {
	url, _ := modernServer(t, func(int, *jsonrpc.Message, http.Header) (int, string) {
		return 400, `{"jsonrpc":"2.0","id":ID,"error":{"code":-32021,"message":"needs sampling","data":{"requiredCapabilities":{"sampling":{}}}}}`
	})
	resp, err := call(t, newModern(t, url), nil)
	if err != nil || resp.Error == nil || resp.Error.Code != -32021 || !strings.Contains(string(resp.Error.Data), "sampling") {
		t.Fatalf("got %v %+v", err, resp)
	}
}

func TestParamHeaders(t *testing.T) {
	tool := json.RawMessage(`{"name":"t","inputSchema":{"type":"object","properties":{
		"region":{"type":"string","x-mcp-header":"Region"},
		"n":{"type":"integer","x-mcp-header":"N"},
		"deep":{"type":"object","properties":{"flag":{"type":"boolean","x-mcp-header":"Flag"}}},
		"other":{"type":"string"}}}}`)
	annotations := ParamHeaders(tool)
	if len(annotations) != 3 {
		t.Fatalf("annotations %+v", annotations)
	}
	params := json.RawMessage(`{"name":"t","arguments":{"region":"Zürich","n":42,"deep":{"flag":true},"other":"x"}}`)
	h := http.Header{}
	SetParamHeaders(h, annotations, params)
	if h.Get("Mcp-Param-Region") != "=?base64?WsO8cmljaA==?=" || h.Get("Mcp-Param-N") != "42" || h.Get("Mcp-Param-Flag") != "true" {
		t.Fatalf("headers %v", h)
	}
	if err := CheckParamHeaders(h, annotations, params); err != nil {
		t.Fatalf("own headers refused: %v", err)
	}
	for name, edit := range map[string]func(http.Header){
		"missing":         func(h http.Header) { h.Del("Mcp-Param-N") },
		"different":       func(h http.Header) { h.Set("Mcp-Param-N", "43") },
		"bad base64":      func(h http.Header) { h.Set("Mcp-Param-Region", "=?base64?!!!?=") },
		"twice":           func(h http.Header) { h.Add("Mcp-Param-Flag", "true") },
		"for no argument": func(h http.Header) { h.Set("Mcp-Param-Region", "x") },
	} {
		h := h.Clone()
		edit(h)
		p := params
		if name == "for no argument" {
			p = json.RawMessage(`{"name":"t","arguments":{"n":42,"deep":{"flag":true}}}`)
			h.Del("Mcp-Param-Region")
			h.Set("Mcp-Param-Region", "x")
		}
		if err := CheckParamHeaders(h, annotations, p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Annotations the specification does not allow are not used.
	for _, bad := range []string{
		`{"inputSchema":{"properties":{"a":{"type":"object","x-mcp-header":"A"}}}}`,
		`{"inputSchema":{"properties":{"a":{"type":"string","x-mcp-header":"A B"}}}}`,
		`{"inputSchema":{"properties":{"a":{"type":"string","x-mcp-header":"A"},"b":{"type":"string","x-mcp-header":"a"}}}}`,
	} {
		if got := ParamHeaders(json.RawMessage(bad)); got != nil {
			t.Errorf("%s: annotations %+v", bad, got)
		}
	}
}
