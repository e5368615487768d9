package apps

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// ClientSession is what one client session holds toward the upstreams:
// one upstream session per app, opened once, and the id maps that let
// messages find their way back — the client's requests in flight upstream
// (for its cancellations), the upstreams' requests to the client (for its
// answers), the progress tokens the upstreams were given, and the URL
// elicitations they started.
//
// Notifications that speak of a request reach the client only from the
// app the request belongs to: the client sees one server, and without
// this one upstream could report progress on another app's call, or
// complete another app's URL elicitation. Progress tokens are replaced on
// the way up by the upstream request id, which names the call within its
// upstream session, and mapped back on the way down only for that session.
type ClientSession struct {
	mu    sync.Mutex
	slots map[string]*connSlot
	// inflight maps a client request id to the upstream request serving it.
	inflight map[string]InflightCall
	// serverRequests maps the ids given to upstream-to-client requests
	// back to the upstream that sent them.
	serverRequests map[int64]ServerRequest
	nextServerID   int64
	progress       map[progressKey]json.RawMessage
	elicitations   map[elicitationKey]struct{}
	// replaced holds the connections to apps a reload replaced, to end
	// with the session.
	replaced []*Conn
}

// NewClientSession starts a client session's upstream side.
func NewClientSession() *ClientSession {
	return &ClientSession{
		slots:          make(map[string]*connSlot),
		inflight:       make(map[string]InflightCall),
		serverRequests: make(map[int64]ServerRequest),
		progress:       make(map[progressKey]json.RawMessage),
		elicitations:   make(map[elicitationKey]struct{}),
	}
}

// NewReplicatedClientSession is NewClientSession for a session that
// several replicas serve: its ids for upstream-to-client requests start at
// random below 2^52 instead of at 1, so that the replicas' ids do not
// meet, and a client's answer reaching another replica than the one that
// asked is not taken for the answer to a request of its own. The ids stay
// integers JavaScript holds exactly.
func NewReplicatedClientSession() *ClientSession {
	cs := NewClientSession()
	var b [8]byte
	_, _ = rand.Read(b[:])
	cs.nextServerID = int64(binary.BigEndian.Uint64(b[:]) >> 12)
	return cs
}

// Bounds on what a client session remembers of upstream requests.
const (
	// maxServerRequests bounds pending upstream-to-client requests, and
	// the URL elicitations awaiting completion.
	maxServerRequests = 1024
	// maxElicitationIDBytes bounds an elicitation id remembered.
	maxElicitationIDBytes = 256
	// codeURLElicitationRequired is MCP's error for a request that needs
	// the user to visit URLs first; its data names the elicitations.
	codeURLElicitationRequired = -32042
)

// connSlot serializes opening one app's upstream session.
type connSlot struct {
	mu   sync.Mutex
	conn *Conn
}

func (cs *ClientSession) slot(app *App) *connSlot {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	sl, ok := cs.slots[app.Name]
	if !ok {
		sl = &connSlot{}
		cs.slots[app.Name] = sl
	}
	return sl
}

// Conn returns the upstream session with app, made by open the first time
// it is needed; concurrent callers wait for that one opening. When app
// replaced the app of that name (a configuration reload), open is given
// the connection to the replaced app, whose upstream session the new one
// may go on with; that connection stays open for the calls still using it
// and ends with the client session.
func (cs *ClientSession) Conn(app *App, open func(replaced *Conn) (*Conn, error)) (*Conn, error) {
	sl := cs.slot(app)
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.conn != nil && sl.conn.App == app {
		return sl.conn, nil
	}
	replaced := sl.conn
	if replaced != nil && replaced.App.URL != app.URL {
		// The new app is elsewhere: the old upstream session is ended
		// with the client session, not continued.
		cs.mu.Lock()
		cs.replaced = append(cs.replaced, replaced)
		cs.mu.Unlock()
	}
	c, err := open(replaced)
	if err != nil {
		return nil, err
	}
	sl.conn = c
	return c, nil
}

// HasConn reports whether the upstream session with app is open.
func (cs *ClientSession) HasConn(app *App) bool {
	cs.mu.Lock()
	sl := cs.slots[app.Name]
	cs.mu.Unlock()
	if sl == nil {
		return false
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.conn != nil && sl.conn.App == app
}

// SetConn records an upstream session opened for app elsewhere (at the
// client's initialize).
func (cs *ClientSession) SetConn(app *App, c *Conn) {
	sl := cs.slot(app)
	sl.mu.Lock()
	sl.conn = c
	sl.mu.Unlock()
}

// OpenConns lists the upstream sessions already open.
func (cs *ClientSession) OpenConns() []*Conn {
	cs.mu.Lock()
	slots := make([]*connSlot, 0, len(cs.slots))
	for _, sl := range cs.slots {
		slots = append(slots, sl)
	}
	out := append([]*Conn(nil), cs.replaced...)
	cs.mu.Unlock()
	for _, sl := range slots {
		sl.mu.Lock()
		if sl.conn != nil {
			out = append(out, sl.conn)
		}
		sl.mu.Unlock()
	}
	return out
}

// CloseConns ends the upstream sessions.
func (cs *ClientSession) CloseConns() {
	for _, c := range cs.OpenConns() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = c.Close(ctx)
		cancel()
	}
}

// InflightCall is a client request being served upstream.
type InflightCall struct {
	Conn       *Conn
	UpstreamID jsonrpc.ID
	Cancel     context.CancelFunc // stops waiting when the client cancels
}

// StartCall records a request in flight upstream; progressToken is the
// client's, nil when it asked for no progress.
func (cs *ClientSession) StartCall(clientID jsonrpc.ID, c *Conn, upstreamID jsonrpc.ID, progressToken json.RawMessage, cancel context.CancelFunc) {
	cs.mu.Lock()
	cs.inflight[clientID.Raw()] = InflightCall{Conn: c, UpstreamID: upstreamID, Cancel: cancel}
	if progressToken != nil {
		cs.progress[progressKey{c, upstreamID.Raw()}] = progressToken
	}
	cs.mu.Unlock()
}

// EndCall forgets a request StartCall recorded.
func (cs *ClientSession) EndCall(clientID jsonrpc.ID, c *Conn, upstreamID jsonrpc.ID) {
	cs.mu.Lock()
	if call, ok := cs.inflight[clientID.Raw()]; ok && call.Conn == c && call.UpstreamID == upstreamID {
		delete(cs.inflight, clientID.Raw())
	}
	delete(cs.progress, progressKey{c, upstreamID.Raw()})
	cs.mu.Unlock()
}

// FindCall finds the request in flight under a client's request id (its
// raw JSON).
func (cs *ClientSession) FindCall(clientID string) (InflightCall, bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c, ok := cs.inflight[clientID]
	return c, ok
}

// ServerRequest is an upstream's request to the client, awaiting its answer.
type ServerRequest struct {
	Conn       *Conn
	UpstreamID jsonrpc.ID
}

// AddServerRequest gives an upstream-to-client request a client-facing
// id; false when too many are pending.
func (cs *ClientSession) AddServerRequest(c *Conn, upstreamID jsonrpc.ID) (jsonrpc.ID, bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if len(cs.serverRequests) >= maxServerRequests {
		return jsonrpc.ID{}, false
	}
	cs.nextServerID++
	cs.serverRequests[cs.nextServerID] = ServerRequest{Conn: c, UpstreamID: upstreamID}
	return jsonrpc.Int64ID(cs.nextServerID), true
}

// TakeServerRequest finds a pending upstream-to-client request by its
// client-facing id and forgets it; PeekServerRequest only finds it.
func (cs *ClientSession) TakeServerRequest(id jsonrpc.ID) (ServerRequest, bool) {
	return cs.serverRequest(id, true)
}

func (cs *ClientSession) PeekServerRequest(id jsonrpc.ID) (ServerRequest, bool) {
	return cs.serverRequest(id, false)
}

func (cs *ClientSession) serverRequest(id jsonrpc.ID, take bool) (ServerRequest, bool) {
	n, ok := id.Int64()
	if !ok {
		return ServerRequest{}, false
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	r, ok := cs.serverRequests[n]
	if take {
		delete(cs.serverRequests, n)
	}
	return r, ok
}

// RemapServerCancel rewrites an upstream's cancellation of its own request
// to the id the client knows, forgetting the request; nil when c has no
// such request pending.
func (cs *ClientSession) RemapServerCancel(c *Conn, m *jsonrpc.Message) *jsonrpc.Message {
	requestID, ok, err := jsonrpc.Member(m.Params, "requestId")
	if err != nil || !ok {
		return nil
	}
	id, ok := cs.clientIDFor(c, string(bytes.TrimSpace(requestID)))
	if !ok {
		return nil
	}
	cs.TakeServerRequest(id)
	params, err := jsonrpc.SetMember(m.Params, "requestId", []byte(id.Raw()))
	if err != nil {
		return nil
	}
	return &jsonrpc.Message{Method: m.Method, Params: params}
}

func (cs *ClientSession) clientIDFor(c *Conn, upstreamID string) (jsonrpc.ID, bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for id, r := range cs.serverRequests {
		if r.Conn == c && r.UpstreamID.Raw() == upstreamID {
			return jsonrpc.Int64ID(id), true
		}
	}
	return jsonrpc.ID{}, false
}

// progressKey names a call's progress as its upstream knows it.
type progressKey struct {
	conn  *Conn
	token string // the upstream request id, as an integer
}

// WithProgressToken gives the upstream the request's own id as its
// progress token, in place of the client's; params must hold _meta.
func WithProgressToken(params json.RawMessage, upstreamID jsonrpc.ID) (json.RawMessage, error) {
	meta, ok, err := jsonrpc.Member(params, "_meta")
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, jsonrpc.ErrMalformedObject
	}
	if meta, err = jsonrpc.SetMember(meta, "progressToken", []byte(upstreamID.Raw())); err != nil {
		return nil, err
	}
	return jsonrpc.SetMember(params, "_meta", meta)
}

// RemapProgress returns an upstream's progress notification under the
// client's token, or nil when it reports on no call c serves.
func (cs *ClientSession) RemapProgress(c *Conn, m *jsonrpc.Message) *jsonrpc.Message {
	token, ok, err := jsonrpc.Member(m.Params, "progressToken")
	if err != nil || !ok {
		return nil
	}
	key, ok := integerToken(token)
	if !ok {
		return nil
	}
	cs.mu.Lock()
	clientToken, ok := cs.progress[progressKey{c, key}]
	cs.mu.Unlock()
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

// elicitationKey names a URL elicitation an upstream asked for.
type elicitationKey struct {
	conn *Conn
	id   string
}

// NoteElicitation remembers a URL elicitation c started, so that its
// completion can be relayed; false when it cannot be (no id, too long an
// id, a known one, too many pending).
func (cs *ClientSession) NoteElicitation(c *Conn, id string) bool {
	if id == "" || len(id) > maxElicitationIDBytes {
		return false
	}
	k := elicitationKey{c, id}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if _, known := cs.elicitations[k]; known || len(cs.elicitations) >= maxServerRequests {
		return false
	}
	cs.elicitations[k] = struct{}{}
	return true
}

// ForgetElicitation forgets a URL elicitation of c; it reports whether it
// was remembered.
func (cs *ClientSession) ForgetElicitation(c *Conn, id string) bool {
	k := elicitationKey{c, id}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	_, ok := cs.elicitations[k]
	delete(cs.elicitations, k)
	return ok
}

// CompleteElicitation passes on c's completion of a URL elicitation it
// started, once; nil for any other.
func (cs *ClientSession) CompleteElicitation(c *Conn, m *jsonrpc.Message) *jsonrpc.Message {
	var p struct {
		ElicitationID string `json:"elicitationId"`
	}
	if jsonrpc.Unmarshal(m.Params, &p) != nil || !cs.ForgetElicitation(c, p.ElicitationID) {
		return nil
	}
	return m
}

// NoteRequiredElicitations remembers the URL elicitations an upstream's
// error response asks the client to complete.
func (cs *ClientSession) NoteRequiredElicitations(c *Conn, resp *jsonrpc.Message) {
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
		cs.NoteElicitation(c, e.ElicitationID)
	}
}
