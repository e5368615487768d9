package broker

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpbroker/mcpbroker/apps"
	"github.com/mcpbroker/mcpbroker/provider"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// sessionState is the broker's part of a client session: the upstream
// sessions opened for it, and the id maps that let messages find their way
// back.
type sessionState struct {
	mu    sync.Mutex
	slots map[string]*connSlot

	// inflight maps a client request id to the upstream request serving it,
	// so the client's cancellation reaches the right upstream.
	inflight map[string]inflightCall

	// serverRequests maps the ids the broker gave upstream-to-client
	// requests back to the upstream that sent them.
	serverRequests map[int64]serverRequest
	nextServerID   int64

	// progress maps the progress token an upstream was given for a call
	// back to the client's; elicitations are the URL elicitations
	// upstreams started and have not completed (relay_origin.go).
	progress     map[progressKey]json.RawMessage
	elicitations map[elicitationKey]struct{}

	// initializing and initialized gate a legacy session, whose requests
	// run concurrently: one initialize, and nothing else before it ends.
	initializing, initialized bool

	// digest names the session in logs; its id is a bearer of the session.
	digest string

	// capabilities are the client's, parsed once.
	capabilities clientCapabilities

	// agent is the latest authenticated agent of the session: upstream
	// requests outside any call (the GET stream, DELETE) are made for it.
	agent atomic.Pointer[oauth.Principal]

	// shortened maps the shortened names an app's latest listing showed
	// back to the upstream's names, per app and kind; each listing of an
	// app's first page replaces its map, so it holds what is listed now.
	shortened map[shortenedKey]map[string]string

	// Routes learned from lists, for names and URIs that carry no prefix.
	// Resource URIs and template beginnings are folded (apps.FoldURI);
	// templates are grouped by app in configuration order (uri_routes.go).
	tools     map[string]*apps.App
	prompts   map[string]*apps.App
	resources map[string]*apps.App
	templates []templateRoute
	// urisListed records, for resources/list and resources/templates/list,
	// that every app answered its first page in this session (uri_routes.go).
	urisListed [2]bool
}

type shortenedKey struct {
	app  *apps.App
	kind listKind
}

// upstreamName is the upstream's name of a shortened name an app listed
// in this session.
func (st *sessionState) upstreamName(app *apps.App, k listKind, exposed string) (string, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	name, ok := st.shortened[shortenedKey{app, k}][exposed]
	return name, ok
}

// connSlot serializes opening one app's upstream session.
type connSlot struct {
	mu   sync.Mutex
	conn *apps.Conn
}

type inflightCall struct {
	conn       *apps.Conn
	upstreamID jsonrpc.ID
	cancel     context.CancelFunc // stops waiting when the client cancels
}

type serverRequest struct {
	conn       *apps.Conn
	upstreamID jsonrpc.ID
}

type templateRoute struct {
	prefix string // literal part before the first expression
	app    *apps.App
}

// maxServerRequests bounds pending upstream-to-client requests per session.
const maxServerRequests = 1024

func newSessionState() *sessionState {
	return &sessionState{
		slots:          make(map[string]*connSlot),
		inflight:       make(map[string]inflightCall),
		serverRequests: make(map[int64]serverRequest),
		progress:       make(map[progressKey]json.RawMessage),
		elicitations:   make(map[elicitationKey]struct{}),
		tools:          make(map[string]*apps.App),
		prompts:        make(map[string]*apps.App),
		resources:      make(map[string]*apps.App),
	}
}

// stateOf returns the broker's state of a session, creating it on first
// use (a new session, or one restored from its id); Closed forgets it.
func (b *Broker) stateOf(s *provider.Session) *sessionState {
	if st, ok := b.sessions.Load(s); ok {
		return st.(*sessionState)
	}
	st := newSessionState()
	st.setClientCapabilities(s.ClientCapabilities)
	actual, _ := b.sessions.LoadOrStore(s, st)
	return actual.(*sessionState)
}

func (st *sessionState) slot(app string) *connSlot {
	st.mu.Lock()
	defer st.mu.Unlock()
	sl, ok := st.slots[app]
	if !ok {
		sl = &connSlot{}
		st.slots[app] = sl
	}
	return sl
}

// conn returns the session's upstream session with app, restoring it from
// the session id or opening it when needed.
func (b *Broker) conn(ctx context.Context, s *provider.Session, app *apps.App) (*apps.Conn, error) {
	sl := b.stateOf(s).slot(app.Name)
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.conn != nil {
		return sl.conn, nil
	}
	init := initParams(s)
	token := b.exchanger.sessionToken(b.stateOf(s), app)
	if ref, ok := s.Upstreams[app.Name]; ok && ref.ID != "" {
		sl.conn = app.Restore(ref.ID, ref.ProtocolVersion, init, token)
		return sl.conn, nil
	}
	c, err := app.Open(ctx, init, token)
	if err != nil {
		return nil, err
	}
	sl.conn = c
	return c, nil
}

// openConns lists the upstream sessions already open.
func (st *sessionState) openConns() []*apps.Conn {
	st.mu.Lock()
	slots := make([]*connSlot, 0, len(st.slots))
	for _, sl := range st.slots {
		slots = append(slots, sl)
	}
	st.mu.Unlock()
	var out []*apps.Conn
	for _, sl := range slots {
		sl.mu.Lock()
		if sl.conn != nil {
			out = append(out, sl.conn)
		}
		sl.mu.Unlock()
	}
	return out
}

func initParams(s *provider.Session) apps.InitParams {
	return apps.InitParams{ProtocolVersion: s.ProtocolVersion, Capabilities: s.ClientCapabilities, ClientInfo: s.ClientInfo}
}

// startCall records a request in flight upstream; progressToken is the
// client's, nil when it asked for no progress.
func (st *sessionState) startCall(clientID jsonrpc.ID, c *apps.Conn, upstreamID jsonrpc.ID, progressToken json.RawMessage, cancel context.CancelFunc) {
	st.mu.Lock()
	st.inflight[clientID.Raw()] = inflightCall{conn: c, upstreamID: upstreamID, cancel: cancel}
	if progressToken != nil {
		st.progress[progressKey{c, upstreamID.Raw()}] = progressToken
	}
	st.mu.Unlock()
}

func (st *sessionState) endCall(clientID jsonrpc.ID, c *apps.Conn, upstreamID jsonrpc.ID) {
	st.mu.Lock()
	if call, ok := st.inflight[clientID.Raw()]; ok && call.conn == c && call.upstreamID == upstreamID {
		delete(st.inflight, clientID.Raw())
	}
	delete(st.progress, progressKey{c, upstreamID.Raw()})
	st.mu.Unlock()
}

func (st *sessionState) findCall(clientID string) (inflightCall, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	c, ok := st.inflight[clientID]
	return c, ok
}

// addServerRequest gives an upstream-to-client request a client-facing id.
func (st *sessionState) addServerRequest(c *apps.Conn, upstreamID jsonrpc.ID) (jsonrpc.ID, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.serverRequests) >= maxServerRequests {
		return jsonrpc.ID{}, false
	}
	st.nextServerID++
	st.serverRequests[st.nextServerID] = serverRequest{conn: c, upstreamID: upstreamID}
	return jsonrpc.Int64ID(st.nextServerID), true
}

func (st *sessionState) takeServerRequest(id jsonrpc.ID) (serverRequest, bool) {
	return st.serverRequest(id, true)
}

// serverRequest finds a pending upstream-to-client request by its
// client-facing id, and forgets it when take is set.
func (st *sessionState) serverRequest(id jsonrpc.ID, take bool) (serverRequest, bool) {
	n, ok := id.Int64()
	if !ok {
		return serverRequest{}, false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	r, ok := st.serverRequests[n]
	if take {
		delete(st.serverRequests, n)
	}
	return r, ok
}

// clientIDFor finds the client-facing id of a pending upstream-to-client
// request, for the upstream's cancellation of it.
func (st *sessionState) clientIDFor(c *apps.Conn, upstreamID string) (jsonrpc.ID, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for id, r := range st.serverRequests {
		if r.conn == c && r.upstreamID.Raw() == upstreamID {
			return jsonrpc.Int64ID(id), true
		}
	}
	return jsonrpc.ID{}, false
}

// beginInitialize claims the session's one initialize.
func (st *sessionState) beginInitialize() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.initializing || st.initialized {
		return false
	}
	st.initializing = true
	return true
}

func (st *sessionState) endInitialize() {
	st.mu.Lock()
	st.initializing, st.initialized = false, true
	st.mu.Unlock()
}

// isInitialized reports whether the session's initialize has completed.
func (st *sessionState) isInitialized() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.initialized
}

// clientCapabilities returns the client's declared capabilities.
func (st *sessionState) clientCapabilities() clientCapabilities {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.capabilities
}

// setClientCapabilities records what the client declared at initialize or
// what its restored session id carried.
func (st *sessionState) setClientCapabilities(raw json.RawMessage) {
	caps := parseClientCapabilities(raw)
	st.mu.Lock()
	st.capabilities = caps
	st.mu.Unlock()
}

// closeConns ends the session's upstream sessions.
func (st *sessionState) closeConns() {
	for _, c := range st.openConns() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = c.Close(ctx)
		cancel()
	}
}
