package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// clientCapabilities is what a client declared it does for servers. The
// broker relays an upstream's request to the client only when the client
// declared what the request needs, so an upstream cannot reach past what
// the client offered. A member declared null is not declared: decoders of
// optional fields read null as absent.
type clientCapabilities struct {
	sampling, samplingTools bool
	roots                   bool
	elicitation             bool
	// elicitationModes are the declared modes; an elicitation capability
	// that names none means form mode only (MCP 2025-11-25 keeps the empty
	// object of earlier revisions meaning form).
	elicitationModes map[string]bool
}

// The capabilities whose members the broker reads, and those members.
var capabilityMembers = map[string][]string{
	"sampling":    {"tools", "context"},
	"roots":       nil,
	"elicitation": {"form", "url"},
}

// canonicalCapabilities checks the capabilities a client declared and
// returns them without the members it declared null, which is what the
// upstreams are told: every upstream reads exactly what the broker
// honours, whatever its decoder makes of null.
func canonicalCapabilities(raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return json.RawMessage("{}"), nil
	}
	caps, err := objectMembers(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: capabilities must be an object", ErrInvalidParams)
	}
	changed := false
	for name, value := range caps {
		if isNull(value) {
			delete(caps, name)
			changed = true
			continue
		}
		members, known := capabilityMembers[name]
		if !known {
			continue
		}
		inner, err := objectMembers(value)
		if err != nil {
			return nil, fmt.Errorf("%w: capabilities.%s must be an object", ErrInvalidParams, name)
		}
		innerChanged := false
		for _, member := range members {
			v, ok := inner[member]
			switch {
			case !ok:
			case isNull(v):
				delete(inner, member)
				innerChanged = true
			case bytes.TrimSpace(v)[0] != '{':
				return nil, fmt.Errorf("%w: capabilities.%s.%s must be an object", ErrInvalidParams, name, member)
			}
		}
		if innerChanged {
			if caps[name], err = jsonrpc.Marshal(inner); err != nil {
				return nil, err
			}
			changed = true
		}
	}
	if !changed {
		return raw, nil
	}
	return jsonrpc.Marshal(caps)
}

// parseClientCapabilities reads declared capabilities; what cannot be read
// is not declared.
func parseClientCapabilities(raw json.RawMessage) clientCapabilities {
	var cc clientCapabilities
	if t := bytes.TrimSpace(raw); len(t) == 0 || string(t) == "{}" {
		return cc // nothing declared: the common case of a request without a session
	}
	caps, err := objectMembers(raw)
	if err != nil {
		return cc
	}
	if sampling, ok := declaredObject(caps, "sampling"); ok {
		cc.sampling = true
		_, cc.samplingTools = declaredObject(sampling, "tools")
	}
	_, cc.roots = declaredObject(caps, "roots")
	if elicitation, ok := declaredObject(caps, "elicitation"); ok {
		cc.elicitation = true
		cc.elicitationModes = make(map[string]bool, 2)
		for _, mode := range []string{"form", "url"} {
			if _, ok := declaredObject(elicitation, mode); ok {
				cc.elicitationModes[mode] = true
			}
		}
		if len(cc.elicitationModes) == 0 {
			cc.elicitationModes["form"] = true
		}
	}
	return cc
}

// refusal says why an upstream's request cannot go to the client, in the
// error the upstream is answered with; nil when it can go.
func (cc clientCapabilities) refusal(m *jsonrpc.Message) *jsonrpc.Error {
	notOffered := jsonrpc.NewError(jsonrpc.CodeMethodNotFound, "the client does not offer "+m.Method)
	switch m.Method {
	case "ping":
		return nil
	case "roots/list":
		if !cc.roots {
			return notOffered
		}
		return nil
	case "sampling/createMessage":
		if !cc.sampling {
			return notOffered
		}
		var p struct {
			Tools      json.RawMessage `json:"tools"`
			ToolChoice json.RawMessage `json:"toolChoice"`
		}
		if err := jsonrpc.Unmarshal(m.Params, &p); err != nil {
			return jsonrpc.NewError(jsonrpc.CodeInvalidParams, "malformed sampling request")
		}
		if (!isAbsent(p.Tools) || !isAbsent(p.ToolChoice)) && !cc.samplingTools {
			return jsonrpc.NewError(jsonrpc.CodeInvalidParams, "the client does not offer tool use in sampling")
		}
		return nil
	case "elicitation/create":
		if !cc.elicitation {
			return notOffered
		}
		mode, ok := elicitationMode(m.Params)
		if !ok {
			return jsonrpc.NewError(jsonrpc.CodeInvalidParams, "malformed elicitation request")
		}
		if !cc.elicitationModes[mode] {
			return jsonrpc.NewError(jsonrpc.CodeInvalidParams, "the client does not offer this elicitation mode")
		}
		return nil
	}
	return notOffered
}

// elicitationMode is the mode of an elicitation request. Without a mode
// it is form, unless it carries a URL or an elicitation id: some clients
// infer URL mode from those, so it is taken for what they would show.
func elicitationMode(params json.RawMessage) (string, bool) {
	var p struct {
		Mode          json.RawMessage `json:"mode"`
		URL           json.RawMessage `json:"url"`
		ElicitationID json.RawMessage `json:"elicitationId"`
	}
	if err := jsonrpc.Unmarshal(params, &p); err != nil {
		return "", false
	}
	if !isAbsent(p.Mode) {
		var mode string
		if err := jsonrpc.Unmarshal(p.Mode, &mode); err != nil {
			return "", false
		}
		return mode, true
	}
	if !isAbsent(p.URL) || !isAbsent(p.ElicitationID) {
		return "url", true
	}
	return "form", true
}

// objectMembers decodes a JSON object into its members.
func objectMembers(raw json.RawMessage) (map[string]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, errNotObject
	}
	var members map[string]json.RawMessage
	if err := jsonrpc.Unmarshal(raw, &members); err != nil {
		return nil, err
	}
	return members, nil
}

var errNotObject = errors.New("not a JSON object")

// declaredObject returns a member that is an object; null, absent or any
// other value is not a declaration.
func declaredObject(members map[string]json.RawMessage, name string) (map[string]json.RawMessage, bool) {
	inner, err := objectMembers(members[name])
	return inner, err == nil
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

func isAbsent(v json.RawMessage) bool { return len(bytes.TrimSpace(v)) == 0 || isNull(v) }
