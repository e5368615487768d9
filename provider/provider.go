package provider

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// Protocol versions the provider speaks, oldest first.
var SupportedVersions = []string{"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"}

// LatestVersion is offered to clients asking for a version we do not speak.
const LatestVersion = "2025-11-25"

// defaultHeaderVersion is assumed when a client sends no MCP-Protocol-Version.
const defaultHeaderVersion = "2025-03-26"

// IsSupportedVersion reports whether v is a version the provider speaks.
func IsSupportedVersion(v string) bool {
	for _, s := range SupportedVersions {
		if s == v {
			return true
		}
	}
	return false
}

// Identity is who sent an HTTP request, as authentication established
// it: what the provider needs to bind sessions, nothing more. Sessions are
// bound to the Subject that opened them.
type Identity struct {
	Subject string
	// User is whom Subject acts for, whatever client it uses: one user's
	// sessions count against one limit (MaxSessionsPerSubject), so minting
	// client ids gains no slots. Empty means Subject.
	User string
	// Address is the client's address (the request's, after the trusted
	// proxies' word): MaxSessionsPerAddress counts by it. The provider
	// sets it.
	Address string
}

type identityKey struct{}

// WithIdentity returns ctx carrying id; an authentication middleware
// (Options.Authenticate) sets it on the requests it lets through.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the identity ctx carries; the zero Identity, an
// anonymous client, when none.
func IdentityFrom(ctx context.Context) Identity {
	id, _ := ctx.Value(identityKey{}).(Identity)
	return id
}

// Request is one client-to-server message to serve.
type Request struct {
	Message  *jsonrpc.Message
	Session  *Session
	HTTP     *http.Request
	Identity *Identity
	// Out carries the messages related to a request (progress, logging,
	// server-to-client requests) to the client; nil for notifications and
	// responses.
	Out Sender
	// Relayed marks a client's message that reached another replica, which
	// admitted it and handed it here through Peers (Session.Relay): it
	// belongs to state this replica holds. HTTP and Identity are nil.
	Relayed bool
}

// Reply is the dispatcher's answer to one message.
type Reply struct {
	// Message is the JSON-RPC response to a request; nil otherwise.
	Message *jsonrpc.Message
	// Refusal, when set, refuses the request the way an HTTP resource
	// server does (403 insufficient_scope with a WWW-Authenticate
	// challenge, for a step-up). It is sent instead of Message where the
	// status can still be chosen: a POST of that one request whose answer
	// has not begun. Elsewhere Message, the JSON-RPC error, is sent.
	Refusal *HTTPError
}

// Sender delivers messages to a client.
type Sender interface {
	Send(*jsonrpc.Message) error
}

// ErrNoStream means a message cannot reach the client: it accepts no event
// stream for this request.
var ErrNoStream = errors.New("provider: client accepts no event stream for this request")

// Dispatcher serves messages. The broker's pipeline implements it.
type Dispatcher interface {
	// Dispatch serves one message. For a request it returns the response;
	// for notifications and responses, an empty Reply. For "initialize" the
	// session is new and the dispatcher fills in its facts.
	Dispatch(ctx context.Context, req *Request) Reply
	// Listen is told that the client opened its standalone stream; messages
	// sent with Session.Notify reach it until ctx ends.
	Listen(ctx context.Context, s *Session)
	// Closed is told that a session ended.
	Closed(s *Session)
}

// HTTPError ends an HTTP request with a status and a JSON-RPC error body.
type HTTPError struct {
	Status  int
	Header  http.Header
	Code    int64
	Message string
	// Data is the JSON-RPC error's data, when it has any.
	Data json.RawMessage
}

func (e *HTTPError) Error() string { return e.Message }

// Options configure the provider. Zero values take the defaults noted.
type Options struct {
	// ListenAddress decides whether loopback-only Host checks apply.
	ListenAddress  string
	AllowedHosts   []string
	AllowedOrigins []string
	// MaxBodyBytes caps a request body (4 MiB).
	MaxBodyBytes int64

	StreamEnabled bool
	StreamPath    string // "/mcp"
	// SessionHeader is the session id header ("Mcp-Session-Id").
	SessionHeader          string
	AllowClientTermination bool
	// Sessionless serves Streamable HTTP without sessions: no session id
	// is issued or required, each POST is served on its own (its upstream
	// sessions end with it), and there is no GET stream and no DELETE.
	Sessionless    bool
	SessionTimeout time.Duration // 1h
	SessionKey     []byte        // random when empty
	MaxSessions    int           // 10000
	// MaxSessionsPerSubject bounds one user's live sessions (100), counted
	// by Identity.User.
	MaxSessionsPerSubject int
	// MaxSessionsPerAddress bounds the live sessions of one client address
	// (1000), authenticated or not: without authentication it is the only
	// bound on one client.
	MaxSessionsPerAddress int
	// OnSessionRefused, when set, is told of each session refused for a
	// cap: "total", "subject" or "address".
	OnSessionRefused func(cap string)
	// OnHeld, when set, is told of each event of a call held for a
	// modern client's answers: "held", "resumed", "refused", "expired",
	// "cancelled", "unknown".
	OnHeld func(event string)
	// Revocations records ended sessions; share one between replicas.
	// Nil: this process's memory.
	Revocations Revocations
	// Peers connects the replicas serving the same sessions, so that
	// answers, cancellations and resumed streams reach the replica holding
	// what they belong to. Nil: one replica.
	Peers Peers
	// OnHandoff, when set, is told of each thing handed to or from the
	// peers: "relayed", "relay_failed", "delivered", "dropped" (too many
	// at once), "copied_out", "copy_failed", "resumed_elsewhere",
	// "resume_not_found".
	OnHandoff func(event string)

	SSEEnabled      bool
	SSEPath         string        // "/mcp/sse"
	MessagePath     string        // "/mcp/message"
	KeepAlive       time.Duration // 0: none on the legacy stream
	StreamKeepAlive time.Duration // keep-alive comments on GET streams (30s)

	// ResourceMetadata, when set, serves Protected Resource Metadata.
	ResourceMetadata *ResourceMetadata

	// Authenticate runs for every request to a transport endpoint, every
	// method, after the Host and Origin checks and CORS preflights: it
	// answers the requests it refuses itself, and passes on the others
	// with their Identity in the context (WithIdentity). Nil: every
	// request is anonymous.
	Authenticate func(http.Handler) http.Handler

	// MaxInFlight bounds the requests one session has in flight (64); a
	// batch holds one for each of its requests, and may be no longer.
	MaxInFlight int
	// MaxBatchAnswerBytes bounds a batch's answer sent as one JSON array
	// (8 MiB); answers beyond it are replaced by errors.
	MaxBatchAnswerBytes int
	// MaxKeptBytesPerSession bounds what one session keeps for clients that
	// resume a stream (4 MiB); MaxKeptBytes bounds it for all sessions
	// together (256 MiB).
	MaxKeptBytesPerSession int64
	MaxKeptBytes           int64
	Logger                 *slog.Logger
	// ServerName and ServerVersion name the server in modern results'
	// _meta ("mcpbroker", "").
	ServerName    string
	ServerVersion string
	// Now is the clock (time.Now).
	Now func() time.Time
}

// Provider serves MCP transports over HTTP.
type Provider struct {
	opts       Options
	dispatcher Dispatcher
	guard      *hostGuard
	sessions   *registry
	log        *slog.Logger
	now        func() time.Time

	// peers is the link to other replicas; nil without Options.Peers.
	peers     *peerLink
	stopPeers context.CancelFunc

	// held are the modern requests awaiting the client's input, by
	// requestState; heldPerUser counts them by user.
	heldMu      sync.Mutex
	held        map[string]*heldCall
	heldPerUser map[string]int
	// heldByDigest finds a held call's requestState by its digest, the
	// name replicas give it to each other.
	heldByDigest map[string]string
	// listening counts the open subscriptions/listen streams, listens
	// them by user (under heldMu).
	listening int
	listens   map[string]int
	// serverInfo is the server's name and version, as modern results
	// carry it in _meta.
	serverInfo json.RawMessage

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// New builds a provider.
func New(opts Options, d Dispatcher) (*Provider, error) {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 4 << 20
	}
	if opts.StreamPath == "" {
		opts.StreamPath = "/mcp"
	}
	if opts.SessionHeader == "" {
		opts.SessionHeader = "Mcp-Session-Id"
	}
	if opts.SessionTimeout <= 0 {
		opts.SessionTimeout = time.Hour
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = 10000
	}
	if opts.MaxSessionsPerSubject <= 0 {
		opts.MaxSessionsPerSubject = 100
	}
	if opts.MaxSessionsPerAddress <= 0 {
		opts.MaxSessionsPerAddress = 1000
	}
	if opts.SSEPath == "" {
		opts.SSEPath = "/mcp/sse"
	}
	if opts.MessagePath == "" {
		opts.MessagePath = "/mcp/message"
	}
	if opts.StreamKeepAlive <= 0 {
		opts.StreamKeepAlive = 30 * time.Second
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 64
	}
	if opts.MaxBatchAnswerBytes <= 0 {
		opts.MaxBatchAnswerBytes = 8 << 20
	}
	if opts.MaxKeptBytesPerSession <= 0 {
		opts.MaxKeptBytesPerSession = 4 << 20
	}
	if opts.MaxKeptBytes <= 0 {
		opts.MaxKeptBytes = 256 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s, err := newSealer(opts.SessionKey)
	if err != nil {
		return nil, err
	}
	p := &Provider{opts: opts, dispatcher: d, log: opts.Logger, now: opts.Now, stop: make(chan struct{})}
	if opts.OnHeld == nil {
		p.opts.OnHeld = func(string) {}
	}
	if opts.ServerName == "" {
		opts.ServerName = "mcpbroker"
	}
	p.serverInfo, _ = json.Marshal(map[string]string{"name": opts.ServerName, "version": opts.ServerVersion})
	p.guard = newHostGuard(opts.ListenAddress, opts.AllowedHosts, opts.AllowedOrigins)
	p.sessions = newRegistry(s, opts.SessionTimeout, opts.MaxSessions, opts.Revocations, d.Closed)
	p.sessions.onStoreError = func(err error) {
		p.log.Error("sessions: an ended session could not be recorded in the shared store; other replicas may still serve it", "error", err)
	}
	p.sessions.maxPerSubject = opts.MaxSessionsPerSubject
	p.sessions.maxPerAddress = opts.MaxSessionsPerAddress
	p.sessions.refused = opts.OnSessionRefused
	p.sessions.kept = &keepBudget{max: opts.MaxKeptBytes}
	p.sessions.keptPerSession = opts.MaxKeptBytesPerSession
	p.wg.Add(1)
	go p.sweepLoop()
	if opts.Peers != nil {
		p.peers = newPeerLink(opts.Peers, opts.OnHandoff)
		p.sessions.peers = p.peers
		ctx, cancel := context.WithCancel(context.Background())
		p.stopPeers = cancel
		p.wg.Add(1)
		ready := make(chan struct{})
		go p.runPeers(ctx, sync.OnceFunc(func() { close(ready) }))
		select {
		case <-ready:
		case <-time.After(peerReadyWait):
			p.log.Warn("peers: not yet subscribed to the other replicas; what they hand over until then is lost")
		}
	}
	return p, nil
}

func (p *Provider) sweepLoop() {
	defer p.wg.Done()
	interval := p.opts.SessionTimeout / 4
	if interval > time.Minute {
		interval = time.Minute
	}
	if interval < time.Second {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.sessions.sweep(p.now())
		}
	}
}

// Close ends every session in this process and stops background work.
// Their ids are not revoked: a replica sharing the key, or this broker
// restarted with it, serves them on.
func (p *Provider) Close() {
	p.stopOnce.Do(func() {
		close(p.stop)
		if p.stopPeers != nil {
			p.stopPeers()
		}
		p.wg.Wait()
		for _, s := range p.sessions.all() {
			p.sessions.close(s, false)
		}
	})
}

// SessionHeader is the header that carries session ids.
func (p *Provider) SessionHeader() string { return p.opts.SessionHeader }

// Register adds the provider's endpoints to mux.
func (p *Provider) Register(mux *http.ServeMux) {
	p.registerResourceMetadata(mux)
	if p.opts.StreamEnabled {
		mux.Handle(p.opts.StreamPath, p.guarded(p.serveStream))
	}
	if p.opts.SSEEnabled {
		mux.Handle(p.opts.SSEPath, p.guarded(p.serveLegacyStream))
		mux.Handle(p.opts.MessagePath, p.guarded(p.serveLegacyMessage))
	}
}

// GuardHost serves next only to requests whose Host is allowed, as the
// transports are: endpoints served beside them on loopback (the
// authorization server's) must not answer a DNS-rebound page either.
// Origin is not checked: sign-in pages post to themselves, and clients
// in browsers call token endpoints cross-origin.
//
// open names path prefixes whose answers any origin may read (CORS with
// "*", never with credentials): metadata, keys and the token-style
// endpoints a client in a browser calls with its own credentials. The
// sign-in pages are not among them.
func (p *Provider) GuardHost(next http.Handler, open func(path string) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !p.guard.hostAllowed(r.Host) {
			writeHTTPError(w, &HTTPError{Status: http.StatusForbidden, Code: -32000, Message: "forbidden: host not allowed"})
			return
		}
		if open != nil && r.Header.Get("Origin") != "" && open(r.URL.Path) {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", "*")
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Set("Access-Control-Allow-Methods", "GET, POST")
				h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// guarded is the request chain of a transport endpoint, for every method:
// Host and Origin checks, CORS, authentication, then the transport with
// the identity authentication established.
func (p *Provider) guarded(next func(http.ResponseWriter, *http.Request, *Identity)) http.Handler {
	var transport http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := IdentityFrom(r.Context())
		id.Address = r.RemoteAddr
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			id.Address = host
		}
		next(w, r, &id)
	})
	if p.opts.Authenticate != nil {
		transport = p.opts.Authenticate(transport)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := p.guard.check(r); err != nil {
			writeHTTPError(w, err)
			return
		}
		// Browser clients: an allowed origin may read the answers, and its
		// preflight is answered before authentication, which a preflight
		// never carries (Fetch standard, CORS protocol).
		if origin := r.Header.Get("Origin"); origin != "" {
			allowCORS(w.Header(), origin, p.opts.SessionHeader)
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				writePreflight(w.Header(), p.opts.SessionHeader)
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		transport.ServeHTTP(w, r)
	})
}

// allowCORS lets origin, already checked against the allowed origins,
// read the answer and the headers a client needs from it.
func allowCORS(h http.Header, origin, sessionHeader string) {
	if sessionHeader == "" {
		sessionHeader = "Mcp-Session-Id"
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", sessionHeader+", WWW-Authenticate, MCP-Protocol-Version")
}

// writePreflight answers a CORS preflight for the transport endpoints.
func writePreflight(h http.Header, sessionHeader string) {
	if sessionHeader == "" {
		sessionHeader = "Mcp-Session-Id"
	}
	h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept, Last-Event-ID, MCP-Protocol-Version, "+sessionHeader)
	h.Set("Access-Control-Max-Age", "600")
}

// WriteError answers an HTTP request with err: an *HTTPError as it says
// (status, headers, JSON-RPC error body), anything else as a 500.
func WriteError(w http.ResponseWriter, err error) { writeHTTPError(w, err) }

// writeHTTPError renders a transport-level failure.
func writeHTTPError(w http.ResponseWriter, err error) {
	writeHTTPErrorFor(w, err, jsonrpc.ID{})
}

// writeHTTPErrorFor is writeHTTPError answering the request with id.
func writeHTTPErrorFor(w http.ResponseWriter, err error, id jsonrpc.ID) {
	var he *HTTPError
	if !errors.As(err, &he) {
		he = &HTTPError{Status: http.StatusInternalServerError, Code: jsonrpc.CodeInternalError, Message: "internal error"}
	}
	for k, vs := range he.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	writeJSON(w, he.Status, he.Body(id))
}

// Body is the JSON-RPC error response an HTTPError answering request id is
// written as.
func (e *HTTPError) Body(id jsonrpc.ID) []byte {
	code := e.Code
	if code == 0 {
		code = jsonrpc.CodeServerError
	}
	return jsonrpc.NewErrorResponse(id, &jsonrpc.Error{Code: code, Message: e.Message, Data: e.Data}).Encode()
}

// Refusable reports whether a Refusal in the dispatcher's reply to r is
// sent as r's HTTP answer: r is a POST of that one request on the
// streamable transport, and nothing of its answer has been sent yet.
func (r *Request) Refusable() bool {
	o, ok := r.Out.(interface{ refusable() bool })
	return ok && o.refusable()
}

func httpError(status int, code int64, message string) *HTTPError {
	return &HTTPError{Status: status, Code: code, Message: message}
}

// acceptsType reports whether an Accept header admits the media type.
func acceptsType(accept, mediaType string) bool {
	if accept == "" {
		return false
	}
	major := mediaType[:strings.IndexByte(mediaType, '/')+1]
	for rest := accept; rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, ",")
		t := strings.TrimSpace(part)
		if i := strings.IndexByte(t, ';'); i >= 0 {
			t = strings.TrimSpace(t[:i])
		}
		if strings.EqualFold(t, mediaType) || t == "*/*" || (len(t) == len(major)+1 && t[len(t)-1] == '*' && strings.EqualFold(t[:len(major)], major)) {
			return true
		}
	}
	return false
}
