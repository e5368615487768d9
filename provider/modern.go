package provider

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// ModernVersion is the first protocol version without sessions: no
// initialize, every request carrying the client's version and
// capabilities in its _meta, results that ask for input instead of
// server-to-client requests. The provider serves it beside the
// sessionful versions on the same endpoint, told apart by how each
// request is made.
const ModernVersion = jsonrpc.ModernVersion

// Versions lists every version the endpoint serves, newest first, as
// server/discover announces them.
func Versions() []string {
	out := []string{ModernVersion}
	for i := len(SupportedVersions) - 1; i >= 0; i-- {
		out = append(out, SupportedVersions[i])
	}
	return out
}

// Error codes of the modern protocol.
const (
	CodeHeaderMismatch              = -32020
	CodeMissingRequiredCapabilities = -32021
	CodeUnsupportedProtocolVersion  = -32022
)

// Members of a modern request's params._meta (jsonrpc has them), and of
// a result's.
const (
	MetaProtocolVersion    = jsonrpc.MetaProtocolVersion
	MetaClientCapabilities = jsonrpc.MetaClientCapabilities
	MetaClientInfo         = jsonrpc.MetaClientInfo
	MetaLogLevel           = jsonrpc.MetaLogLevel
	MetaServerInfo         = "io.modelcontextprotocol/serverInfo"
	MetaSubscriptionID     = "io.modelcontextprotocol/subscriptionId"
)

// modernMethods are the requests a modern client may send; the rest
// (initialize, ping, logging/setLevel, resources/subscribe, ...) were
// removed from the protocol and are answered as unknown.
var modernMethods = map[string]bool{
	"server/discover":          true,
	"tools/list":               true,
	"tools/call":               true,
	"prompts/list":             true,
	"prompts/get":              true,
	"resources/list":           true,
	"resources/templates/list": true,
	"resources/read":           true,
	"subscriptions/listen":     true,
	"completion/complete":      true,
}

// isModern reports whether a version string belongs to the modern
// generation: compared as strings, as the specification's dates are, so
// an unknown later version is modern too and is refused as unsupported
// rather than taken for a sessionful request.
func isModern(v string) bool { return v >= ModernVersion }

// modernPost reports whether a POST is made the modern way: its
// MCP-Protocol-Version header names a modern version, or its one request
// names one in params._meta.
func modernPost(r *http.Request, msgs []*jsonrpc.Message, batch bool) bool {
	if isModern(strings.TrimSpace(r.Header.Get("MCP-Protocol-Version"))) {
		return true
	}
	if batch || len(msgs) != 1 || msgs[0] == nil || msgs[0].Kind() != jsonrpc.KindRequest {
		return false
	}
	// Found in place: sessionful requests carry _meta too (progress
	// tokens), and pay only for a scan.
	meta, ok, err := jsonrpc.Member(msgs[0].Params, "_meta")
	if err != nil || !ok {
		return false
	}
	raw, ok, err := jsonrpc.Member(meta, MetaProtocolVersion)
	var v string
	return err == nil && ok && json.Unmarshal(raw, &v) == nil && isModern(v)
}

// requestMeta returns the members of params._meta; nil when there is no
// _meta, an error when it is not an object.
func requestMeta(params json.RawMessage) (map[string]json.RawMessage, error) {
	if len(params) == 0 {
		return nil, nil
	}
	raw, ok, err := jsonrpc.Member(params, "_meta")
	if err != nil || !ok || string(raw) == "null" {
		return nil, err
	}
	var meta map[string]json.RawMessage
	if err := json.Unmarshal(raw, &meta); err != nil {
		return nil, err
	}
	if meta == nil {
		meta = map[string]json.RawMessage{}
	}
	return meta, nil
}

// modernFacts are what a modern request says of its client.
type modernFacts struct {
	// meta is the request's params._meta, by member.
	meta         map[string]json.RawMessage
	version      string
	capabilities json.RawMessage
	clientInfo   json.RawMessage
	logLevel     string
}

// maxModernFacts bounds what one request may declare of its client.
const maxModernFacts = 8 << 10

// checkModern applies the modern request rules in the order the
// reference implementation does, each refusal in the protocol's terms:
// unknown or removed method 404 -32601; version in _meta without the
// header 400 -32020; _meta members missing 400 -32602; header and _meta
// differing 400 -32020; a version not served 400 -32022 naming those
// that are; Mcp-Method and Mcp-Name missing or differing 400 -32020.
func checkModern(r *http.Request, m *jsonrpc.Message) (*modernFacts, *HTTPError) {
	if !modernMethods[m.Method] {
		return nil, httpError(http.StatusNotFound, jsonrpc.CodeMethodNotFound, "method not found: "+strconv.Quote(m.Method)+" is not part of protocol version "+ModernVersion)
	}
	header := strings.TrimSpace(r.Header.Get("MCP-Protocol-Version"))
	meta, err := requestMeta(m.Params)
	if err != nil {
		return nil, httpError(http.StatusBadRequest, jsonrpc.CodeInvalidParams, "invalid params: _meta must be an object")
	}
	f := modernFacts{meta: meta}
	rawVersion, hasVersion := meta[MetaProtocolVersion]
	if hasVersion && header == "" {
		return nil, httpError(http.StatusBadRequest, CodeHeaderMismatch, "MCP-Protocol-Version header is required for requests carrying "+strconv.Quote(MetaProtocolVersion))
	}
	if !hasVersion || json.Unmarshal(rawVersion, &f.version) != nil || f.version == "" {
		return nil, missingMeta(MetaProtocolVersion)
	}
	f.capabilities = meta[MetaClientCapabilities]
	if !isObject(f.capabilities) {
		return nil, missingMeta(MetaClientCapabilities)
	}
	if info, ok := meta[MetaClientInfo]; ok {
		if !isObject(info) {
			return nil, missingMeta(MetaClientInfo)
		}
		f.clientInfo = info
	}
	if level, ok := meta[MetaLogLevel]; ok {
		if json.Unmarshal(level, &f.logLevel) != nil || logSeverity(f.logLevel) < 0 {
			return nil, missingMeta(MetaLogLevel)
		}
	}
	if len(f.capabilities)+len(f.clientInfo) > maxModernFacts {
		return nil, httpError(http.StatusBadRequest, jsonrpc.CodeInvalidParams, "invalid params: clientCapabilities and clientInfo exceed "+strconv.Itoa(maxModernFacts)+" bytes")
	}
	if header != f.version {
		return nil, httpError(http.StatusBadRequest, CodeHeaderMismatch, "MCP-Protocol-Version header "+strconv.Quote(header)+" does not match "+MetaProtocolVersion+" "+strconv.Quote(f.version))
	}
	if f.version != ModernVersion {
		data, _ := json.Marshal(map[string]any{"supported": []string{ModernVersion}, "requested": f.version})
		he := httpError(http.StatusBadRequest, CodeUnsupportedProtocolVersion, "unsupported protocol version "+strconv.Quote(f.version))
		he.Data = data
		return nil, he
	}
	if herr := checkHeader(r, "Mcp-Method", m.Method); herr != nil {
		return nil, herr
	}
	if name, named := jsonrpc.RequestName(m.Method, m.Params); named {
		if herr := checkHeader(r, "Mcp-Name", name); herr != nil {
			return nil, herr
		}
	}
	return &f, nil
}

// checkHeader requires a standard header repeating a value of the body.
// Surrounding whitespace is not part of a header's value.
func checkHeader(r *http.Request, name, want string) *HTTPError {
	values, ok := r.Header[http.CanonicalHeaderKey(name)]
	if !ok || len(values) == 0 {
		return httpError(http.StatusBadRequest, CodeHeaderMismatch, "missing required "+name+" header")
	}
	if len(values) > 1 {
		return httpError(http.StatusBadRequest, CodeHeaderMismatch, "header mismatch: "+name+" sent more than once")
	}
	if got := strings.TrimSpace(values[0]); got != want {
		return httpError(http.StatusBadRequest, CodeHeaderMismatch, "header mismatch: "+name+" header value "+strconv.Quote(got)+" does not match body value "+strconv.Quote(want))
	}
	return nil
}

func missingMeta(member string) *HTTPError {
	return httpError(http.StatusBadRequest, jsonrpc.CodeInvalidParams, "missing or invalid _meta field "+strconv.Quote(member))
}

// isObject reports whether a value, which came through a JSON decoder and
// so is valid JSON, is an object.
func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{'
}

// logSeverity ranks the syslog levels MCP uses; -1 for anything else.
func logSeverity(level string) int {
	switch level {
	case "debug":
		return 0
	case "info":
		return 1
	case "notice":
		return 2
	case "warning":
		return 3
	case "error":
		return 4
	case "critical":
		return 5
	case "alert":
		return 6
	case "emergency":
		return 7
	}
	return -1
}

// withoutModernMeta removes from params._meta what a modern request says
// of its client (version, capabilities, client info, log level): the
// broker serves the request with those facts on its session, and
// upstreams are told what their own protocol version expects. Only _meta
// is rewritten; the rest of params keeps its bytes.
func withoutModernMeta(params json.RawMessage, meta map[string]json.RawMessage) json.RawMessage {
	if meta == nil {
		return params
	}
	for _, k := range []string{MetaProtocolVersion, MetaClientCapabilities, MetaClientInfo, MetaLogLevel} {
		delete(meta, k)
	}
	raw, err := jsonrpc.Marshal(meta)
	if err != nil {
		return params
	}
	out, err := jsonrpc.SetMember(params, "_meta", raw)
	if err != nil {
		return params
	}
	return out
}
