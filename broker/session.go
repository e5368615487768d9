package broker

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpbroker/mcpbroker/apps"
	"github.com/mcpbroker/mcpbroker/exchange"
	"github.com/mcpbroker/mcpbroker/provider"
	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// sessionState is the broker's part of a client session: the upstream side
// (apps.ClientSession: upstream sessions and the id maps that let
// messages find their way back), and what the broker learned of the
// client and from the lists.
type sessionState struct {
	*apps.ClientSession

	mu sync.Mutex

	// initializing and initialized gate a legacy session, whose requests
	// run concurrently: one initialize, and nothing else before it ends.
	initializing, initialized bool

	// digest names the session in logs; its id is a bearer of the session.
	digest string
	// historyKey names the session's history (governance.go).
	historyKey string

	// capabilities are the client's, parsed once.
	capabilities clientCapabilities

	// agent is the latest authenticated agent of the session: upstream
	// requests outside any call (the GET stream, DELETE) are made for it.
	agent atomic.Pointer[oauth.Principal]

	// opened is set once initialize succeeded: the session is counted
	// and its end recorded.
	opened atomic.Bool

	// holder names, for a sessionless request, whose kept upstream
	// sessions it takes and leaves.
	holder string
	// noReuse: the session's upstream sessions end with it (a listen's).
	noReuse bool

	// reusedTokens are the tool tokens kept for the tools whose grant
	// allows reuse (tokenExchange.tools[].reuse).
	reusedTokens exchange.ReusedTokens

	// listening is the context of the client's GET stream while it is
	// open; listened the apps whose upstream streams are relayed to it.
	listening context.Context
	listened  map[*apps.App]bool

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
	// scopesUsed are the scopes the tool tokens of the session's calls
	// carried: a step-up challenge asks for them too, so a client that
	// replaces its scopes with the challenge's keeps what it uses.
	scopesUsed []string
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

type templateRoute struct {
	prefix string // literal part before the first expression
	app    *apps.App
}

// newSessionState starts the state of a session; replicated when other
// replicas may serve the session too.
func newSessionState(replicated bool) *sessionState {
	cs := apps.NewClientSession()
	if replicated {
		cs = apps.NewReplicatedClientSession()
	}
	return &sessionState{ClientSession: cs}
}

// stateOf returns the broker's state of a session, creating it on first
// use (a new session, or one restored from its id); Closed forgets it.
func (b *Broker) stateOf(s *provider.Session) *sessionState {
	if st, ok := b.sessions.Load(s); ok {
		return st.(*sessionState)
	}
	st := newSessionState(b.redis != nil)
	st.setClientCapabilities(s.ClientCapabilities)
	actual, _ := b.sessions.LoadOrStore(s, st)
	return actual.(*sessionState)
}

// conn returns the session's upstream session with app: the one it holds,
// else the one sealed into its id at initialize or recorded by another
// replica, else a new one, opened now, the session's first need of the
// app. A session listening on its GET stream hears the new one's stream
// too.
func (b *Broker) conn(ctx context.Context, s *provider.Session, app *apps.App) (*apps.Conn, error) {
	st := b.stateOf(s)
	opened := false
	conn, err := st.Conn(app, func(replaced *apps.Conn) (*apps.Conn, error) {
		init, token := initParams(s), b.sessionToken(st, app)
		if holder := st.holderFor(s, ctx); holder != "" && replaced == nil {
			if conn := b.idle.take(idleKey{app, holder}); conn != nil {
				return conn, nil
			}
		}
		if replaced != nil && replaced.App.URL == app.URL {
			// The app was reconfigured in place: its upstream session goes on.
			if id, version := replaced.Ref(); id != "" {
				return app.Restore(id, version, init, token), nil
			}
		}
		sameURL := replaced == nil || replaced.App.URL == app.URL
		if ref, ok := s.Upstreams[app.Name]; ok && ref.ID != "" && sameURL {
			return app.Restore(ref.ID, ref.ProtocolVersion, init, token), nil
		}
		refs := b.upstreamRefs
		if refs != nil && sameURL && s.ID != "" {
			ref, ok, err := refs.get(ctx, s.ID, app.Name)
			if err != nil {
				b.log.Warn("the upstream sessions other replicas opened cannot be read from Redis; opening one here", "app", app.Name, "error", err)
			} else if ok {
				return app.Restore(ref.ID, ref.ProtocolVersion, init, token), nil
			}
		}
		conn, err := app.Open(ctx, init, token)
		if err != nil {
			return nil, err
		}
		opened = true
		if id, version := conn.Ref(); refs != nil && s.ID != "" && id != "" {
			// Only upstream sessions with an id can be shared; a process
			// or a held stream is this replica's own.
			theirs, won, err := refs.claim(ctx, s.ID, app.Name, provider.UpstreamRef{ID: id, ProtocolVersion: version})
			switch {
			case err != nil:
				b.log.Warn("an upstream session opened here cannot be recorded in Redis; other replicas will open their own", "app", app.Name, "error", err)
			case !won:
				// Another replica opened one first: go on with it.
				go closeConn(conn)
				opened = false
				return app.Restore(theirs.ID, theirs.ProtocolVersion, init, token), nil
			}
		}
		return conn, nil
	})
	if err == nil && opened {
		b.listenIfListening(s, st, app)
	}
	return conn, err
}

// closeConn ends an upstream session no client session holds.
func closeConn(c *apps.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

// knowsConn reports whether the session has, or can restore without a
// request, an upstream session with app.
func (st *sessionState) knowsConn(s *provider.Session, app *apps.App) bool {
	if st.HasConn(app) {
		return true
	}
	ref, ok := s.Upstreams[app.Name]
	return ok && ref.ID != ""
}

// holderFor names whose kept upstream sessions a sessionless request may
// take and leave (idle_conns.go): fixed by the session's first request
// that needs one; "" for a session of its own.
func (st *sessionState) holderFor(s *provider.Session, ctx context.Context) string {
	if !s.Transient() {
		return ""
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.noReuse {
		return ""
	}
	if st.holder == "" {
		st.holder = holderOf(s, callFrom(ctx))
	}
	return st.holder
}

func initParams(s *provider.Session) apps.InitParams {
	version := s.ProtocolVersion
	if s.Modern() {
		// Upstream sessions speak the newest sessionful version; what a
		// modern client asks of them is put to them that way.
		version = provider.LatestVersion
	}
	return apps.InitParams{ProtocolVersion: version, Capabilities: s.ClientCapabilities, ClientInfo: s.ClientInfo, Subject: s.Subject, Stateless: s.Transient()}
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

// maxScopesUsed bounds the scopes a session remembers using.
const maxScopesUsed = 64

// useScopes remembers scopes a call of the session was granted.
func (st *sessionState) useScopes(scopes []string) {
	if st == nil || len(scopes) == 0 {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, s := range scopes {
		if !slices.Contains(st.scopesUsed, s) && len(st.scopesUsed) < maxScopesUsed {
			st.scopesUsed = append(st.scopesUsed, s)
		}
	}
}

// scopesInUse are the scopes the session used that held still grants.
func (st *sessionState) scopesInUse(held []string) []string {
	if st == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	var keep []string
	for _, s := range st.scopesUsed {
		if slices.Contains(held, s) {
			keep = append(keep, s)
		}
	}
	return keep
}
