package broker

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"

	"github.com/mcpbroker/mcpbroker/apps"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// Notifications that speak of a request reach the client only from the
// app the request belongs to. The client sees one server; without this,
// one upstream could report progress on another app's call, or complete
// another app's URL elicitation, and the client would take it as said by
// that app. Progress tokens are replaced on the way up by the upstream
// request id, which names the call within its upstream session, and
// mapped back on the way down only for that session.

// codeURLElicitationRequired is MCP's error for a request that needs the
// user to visit URLs first; its data names the elicitations.
const codeURLElicitationRequired = -32042

// maxElicitationIDBytes bounds an elicitation id the session remembers.
const maxElicitationIDBytes = 256

// progressKey names a call's progress as its upstream knows it.
type progressKey struct {
	conn  *apps.Conn
	token string // the upstream request id, as an integer
}

// elicitationKey names a URL elicitation an upstream asked for.
type elicitationKey struct {
	conn *apps.Conn
	id   string
}

// withProgressToken gives the upstream the request's own id as its
// progress token, in place of the client's.
func withProgressToken(params json.RawMessage, upstreamID jsonrpc.ID) (json.RawMessage, error) {
	meta, ok, err := jsonrpc.Member(params, "_meta")
	if err != nil || !ok {
		return nil, ErrInvalidParams
	}
	if meta, err = jsonrpc.SetMember(meta, "progressToken", []byte(upstreamID.Raw())); err != nil {
		return nil, ErrInvalidParams
	}
	return setParam(params, "_meta", meta)
}

// remapProgress returns an upstream's progress notification under the
// client's token, or nil when it reports on no call this upstream serves.
func (st *sessionState) remapProgress(conn *apps.Conn, m *jsonrpc.Message) *jsonrpc.Message {
	token, ok, err := jsonrpc.Member(m.Params, "progressToken")
	if err != nil || !ok {
		return nil
	}
	key, ok := integerToken(token)
	if !ok {
		return nil
	}
	clientToken, ok := st.progressToken(progressKey{conn, key})
	if !ok {
		return nil
	}
	params, err := jsonrpc.SetMember(m.Params, "progressToken", clientToken)
	if err != nil {
		return nil
	}
	return &jsonrpc.Message{Method: m.Method, Params: params}
}

// integerToken reads a progress token the broker issued: an integer, which
// some SDKs echo as a float.
func integerToken(raw []byte) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return strconv.FormatInt(n, 10), true
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return "", false
	}
	return strconv.FormatInt(int64(f), 10), true
}

// checkElicitationComplete passes on an upstream's completion of a URL
// elicitation it asked for, once; nil for any other.
func (st *sessionState) checkElicitationComplete(conn *apps.Conn, m *jsonrpc.Message) *jsonrpc.Message {
	var p struct {
		ElicitationID string `json:"elicitationId"`
	}
	if jsonrpc.Unmarshal(m.Params, &p) != nil || !st.takeElicitation(elicitationKey{conn, p.ElicitationID}) {
		return nil
	}
	return m
}

// noteURLElicitation remembers the URL elicitation an upstream's request
// to the client starts, so its completion can be relayed.
func (st *sessionState) noteURLElicitation(conn *apps.Conn, m *jsonrpc.Message) (elicitationKey, bool) {
	if m.Method != "elicitation/create" {
		return elicitationKey{}, false
	}
	var p struct {
		ElicitationID string `json:"elicitationId"`
	}
	if mode, _ := elicitationMode(m.Params); mode != "url" || jsonrpc.Unmarshal(m.Params, &p) != nil {
		return elicitationKey{}, false
	}
	k := elicitationKey{conn, p.ElicitationID}
	return k, st.addElicitation(k)
}

// noteRequiredElicitations remembers the URL elicitations an upstream's
// error response asks the client to complete.
func (st *sessionState) noteRequiredElicitations(conn *apps.Conn, resp *jsonrpc.Message) {
	if resp.Error == nil || resp.Error.Code != codeURLElicitationRequired {
		return
	}
	var data struct {
		Elicitations []struct {
			ElicitationID string `json:"elicitationId"`
		} `json:"elicitations"`
	}
	if jsonrpc.Unmarshal(resp.Error.Data, &data) != nil {
		return
	}
	for _, e := range data.Elicitations {
		st.addElicitation(elicitationKey{conn, e.ElicitationID})
	}
}

// addElicitation remembers an elicitation, as far as the bounds allow.
func (st *sessionState) addElicitation(k elicitationKey) bool {
	if k.id == "" || len(k.id) > maxElicitationIDBytes {
		return false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, known := st.elicitations[k]; known || len(st.elicitations) >= maxServerRequests {
		return false
	}
	st.elicitations[k] = struct{}{}
	return true
}

func (st *sessionState) takeElicitation(k elicitationKey) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	_, ok := st.elicitations[k]
	delete(st.elicitations, k)
	return ok
}

func (st *sessionState) progressToken(k progressKey) (json.RawMessage, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	token, ok := st.progress[k]
	return token, ok
}
