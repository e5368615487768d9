package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/mcpbroker/mcpbroker/apps/upstream"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// Session serves a bridged API as an MCP server in process, so that the
// broker reaches it as it reaches any upstream: initialize, tools/list
// (every tool, one page), tools/call (the REST request, its call's
// Authorization passed on), ping. There is nothing to listen to and
// nothing to end.
type Session struct {
	api    *API
	client *http.Client
	name   string
}

var _ upstream.Transport = (*Session)(nil)

// NewSession serves api as the server name, making its requests with
// client (see NewClient).
func NewSession(api *API, client *http.Client, name string) *Session {
	return &Session{api: api, client: client, name: name}
}

// Call answers a request.
func (s *Session) Call(ctx context.Context, msg *jsonrpc.Message, header http.Header, _ func(*jsonrpc.Message)) (*jsonrpc.Message, error) {
	switch msg.Method {
	case "initialize":
		var p struct {
			ProtocolVersion string `json:"protocolVersion"`
		}
		_ = json.Unmarshal(msg.Params, &p)
		if p.ProtocolVersion == "" {
			p.ProtocolVersion = "2025-11-25"
		}
		return jsonrpc.NewResult(msg.ID, map[string]any{
			"protocolVersion": p.ProtocolVersion,
			"capabilities":    map[string]any{"tools": map[string]any{}},
			"serverInfo":      map[string]string{"name": s.name, "version": "bridge"},
		})
	case "ping":
		return &jsonrpc.Message{ID: msg.ID, Result: json.RawMessage("{}")}, nil
	case "tools/list":
		tools := make([]map[string]any, 0, len(s.api.tools))
		for _, t := range s.api.tools {
			item := map[string]any{"name": t.Name, "inputSchema": t.InputSchema, "annotations": t.Annotations}
			if t.Description != "" {
				item["description"] = t.Description
			}
			if t.OutputSchema != nil {
				item["outputSchema"] = t.OutputSchema
			}
			tools = append(tools, item)
		}
		return jsonrpc.NewResult(msg.ID, map[string]any{"tools": tools})
	case "tools/call":
		var p struct {
			Name      string          `json:"name"`
			Arguments json.RawMessage `json:"arguments"`
		}
		if err := json.Unmarshal(msg.Params, &p); err != nil || p.Name == "" {
			return jsonrpc.NewErrorResponse(msg.ID, jsonrpc.NewError(jsonrpc.CodeInvalidParams, "invalid params: name is required")), nil
		}
		t := s.api.Tool(p.Name)
		if t == nil {
			return jsonrpc.NewErrorResponse(msg.ID, jsonrpc.Errorf(jsonrpc.CodeInvalidParams, "unknown tool: %s", p.Name)), nil
		}
		res, err := s.api.Call(ctx, s.client, t, p.Arguments, header)
		if err != nil {
			return nil, fmt.Errorf("upstream: %w", err)
		}
		return jsonrpc.NewResult(msg.ID, res)
	}
	return jsonrpc.NewErrorResponse(msg.ID, jsonrpc.Errorf(jsonrpc.CodeMethodNotFound, "method not found: %s", msg.Method)), nil
}

// Send takes notifications and answers; a bridged API asks nothing.
func (s *Session) Send(context.Context, *jsonrpc.Message, http.Header) error { return nil }

// Listen: a REST API sends nothing of its own.
func (s *Session) Listen(context.Context, http.Header, func(*jsonrpc.Message)) error {
	return upstream.ErrNoStream
}

// Close has nothing to end.
func (s *Session) Close(context.Context, http.Header) error { return nil }

func (s *Session) ID() string                { return "" }
func (s *Session) SetID(string)              {}
func (s *Session) ProtocolVersion() string   { return "2025-11-25" }
func (s *Session) SetProtocolVersion(string) {}
