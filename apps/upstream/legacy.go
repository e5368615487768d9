package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// The 2024-11-05 HTTP+SSE transport: the client opens one GET event
// stream, whose first event, "endpoint", names the URL where it POSTs its
// messages; everything the server sends, responses included, comes back
// as "message" events on that one stream. The stream is the session:
// when it ends the session is gone, and nothing resumes it.

const (
	eventEndpoint = "endpoint"

	methodProgress = "notifications/progress"

	// maxRefusals bounds the error responses to unanswerable server
	// requests that are being POSTed at once; beyond it a request is only
	// dropped, so a server that floods them cannot make the broker open
	// connections without end.
	maxRefusals = 4
	// refusalTimeout bounds one such POST.
	refusalTimeout = 10 * time.Second

	// codeMethodNotFound answers a server request no client can take.
	codeMethodNotFound = -32601
)

// errListenerReplaced ends a Listen that a later one took over from.
var errListenerReplaced = errors.New("another listener took over")

// LegacySession is one MCP session with an upstream server over the
// HTTP+SSE transport of protocol 2024-11-05. Its methods are safe for
// concurrent use; onMessage callbacks may call them too (an answer to a
// server request is sent with Send from inside the callback).
//
// One goroutine reads the event stream and hands each message to whoever
// waits for it, on that goroutine: a slow callback slows the stream down
// instead of piling messages up in memory. The goroutine ends with the
// stream, which ends at Close, when the server closes it, or when it
// breaks the transport rules.
type LegacySession struct {
	// stream builds the GET of the event stream, with the session's URL,
	// client, limits and token source; it is never used for anything else.
	stream   *Session
	client   *http.Client
	maxBytes int
	logger   *slog.Logger
	version  atomic.Pointer[string]

	// ctx is the event stream's: cancelled when the session ends, which
	// aborts the GET and whatever is being read from it.
	ctx    context.Context
	cancel context.CancelFunc

	// ready is closed once the endpoint is known, failed when the session
	// has ended (cause says why).
	ready  chan struct{}
	failed chan struct{}
	// refusals holds a token per error response being POSTed to a server
	// request that nobody can answer.
	refusals chan struct{}

	mu       sync.Mutex
	starting bool     // a caller is opening the stream
	poster   *Session // POSTs to the endpoint; nil until it is known
	exited   chan struct{}
	cause    error // why the session ended; nil while it lives
	pending  map[string]*legacyCall
	listener *legacyListener
}

var _ Transport = (*LegacySession)(nil)

// legacyCall is a request waiting for its response on the stream.
type legacyCall struct {
	onMessage func(*jsonrpc.Message)
	reply     chan *jsonrpc.Message // buffered: the reader never waits
}

// legacyListener is the handler a Listen registered.
type legacyListener struct {
	onMessage func(*jsonrpc.Message)
	replaced  chan struct{}
}

// NewLegacySession returns a session for the upstream whose event stream
// is at opts.URL (an absolute http or https URL). It sends nothing: the
// stream opens at the first Call or Send, normally initialize.
func NewLegacySession(opts *Options) (*LegacySession, error) {
	stream, err := NewSession(opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &LegacySession{
		stream:   stream,
		client:   stream.client,
		maxBytes: stream.maxBytes,
		logger:   stream.logger,
		ctx:      ctx,
		cancel:   cancel,
		ready:    make(chan struct{}),
		failed:   make(chan struct{}),
		refusals: make(chan struct{}, maxRefusals),
		pending:  make(map[string]*legacyCall),
	}, nil
}

// ID is empty: the session lives on an event stream this process holds,
// and no other process can go on with it.
func (s *LegacySession) ID() string { return "" }

// SetID does nothing (see ID).
func (s *LegacySession) SetID(string) {}

// ProtocolVersion returns the negotiated protocol version, "" before
// initialize. The transport sends it in no header.
func (s *LegacySession) ProtocolVersion() string {
	if v := s.version.Load(); v != nil {
		return *v
	}
	return ""
}

// SetProtocolVersion records the negotiated protocol version. Call sets it
// from a successful initialize result.
func (s *LegacySession) SetProtocolVersion(v string) { s.version.Store(&v) }

// Call POSTs the request msg to the endpoint and waits for its response on
// the event stream; the response may be a JSON-RPC error response, the
// error is for transport and HTTP failures. The first Call or Send opens
// the stream and waits, within ctx, for its endpoint event.
//
// header holds extra headers for the POST only; it may be nil. An
// Authorization in it (a per-call token) is sent instead of the session's
// (Options.Token). When the call opens the stream, the GET carries header
// too, with the session's token instead of the call's when the session has
// a token source.
//
// onMessage, if not nil, receives the messages the server relates to the
// request, on the stream's goroutine: progress whose token is the request
// id, and, while no other call waits, every other notification and server
// request. All of them have been delivered when the response returns; a
// delivery under way when ctx ends may finish after Call returned.
//
// When ctx ends first, Call returns its error (the caller tells the server
// with notifications/cancelled). When the stream ends first, the error
// wraps ErrStreamEnded: the request may have been served, and the session
// is gone, so every later Call and Send fails at once with
// ErrSessionNotFound.
func (s *LegacySession) Call(ctx context.Context, msg *jsonrpc.Message, header http.Header, onMessage func(*jsonrpc.Message)) (*jsonrpc.Message, error) {
	reply, err := s.call(ctx, msg, header, onMessage)
	if err != nil {
		return nil, fmt.Errorf("upstream: call %s: %w", msg.Method, err)
	}
	return reply, nil
}

func (s *LegacySession) call(ctx context.Context, msg *jsonrpc.Message, header http.Header, onMessage func(*jsonrpc.Message)) (*jsonrpc.Message, error) {
	if msg.Kind() != jsonrpc.KindRequest {
		return nil, fmt.Errorf("message is a %s, not a request", msg.Kind())
	}
	poster, err := s.connect(ctx, header)
	if err != nil {
		return nil, err
	}
	key := idKey(msg.ID.Raw())
	c := &legacyCall{onMessage: onMessage, reply: make(chan *jsonrpc.Message, 1)}
	s.mu.Lock()
	if s.cause != nil {
		s.mu.Unlock()
		return nil, s.deadError()
	}
	if _, taken := s.pending[key]; taken {
		s.mu.Unlock()
		return nil, fmt.Errorf("request id %s already in flight", sanitize(msg.ID.String(), 64))
	}
	s.pending[key] = c
	s.mu.Unlock()
	forget := func() {
		s.mu.Lock()
		if s.pending[key] == c {
			delete(s.pending, key)
		}
		s.mu.Unlock()
	}

	if err := s.post(ctx, poster, msg, header); err != nil {
		forget()
		return nil, err
	}

	var reply *jsonrpc.Message
	select {
	case reply = <-c.reply:
	case <-ctx.Done():
		forget()
		select {
		case reply = <-c.reply: // answered just before the end
		default:
			return nil, ctx.Err()
		}
	case <-s.failed:
		select {
		case reply = <-c.reply:
		default:
			// cause was set before failed was closed.
			return nil, fmt.Errorf("%w: %w", ErrStreamEnded, s.cause)
		}
	}
	if msg.Method == methodInitialize && reply.Error == nil {
		var result struct {
			ProtocolVersion string `json:"protocolVersion"`
		}
		if err := json.Unmarshal(reply.Result, &result); err == nil && result.ProtocolVersion != "" {
			s.SetProtocolVersion(result.ProtocolVersion)
		}
	}
	return reply, nil
}

// Send POSTs a notification, or a response to a server request. The
// server must accept it with a 2xx status; whatever body it sends is
// ignored. The first Call or Send opens the stream (see Call).
func (s *LegacySession) Send(ctx context.Context, msg *jsonrpc.Message, header http.Header) error {
	return sendError(msg, s.send(ctx, msg, header))
}

func (s *LegacySession) send(ctx context.Context, msg *jsonrpc.Message, header http.Header) error {
	if err := sendable(msg); err != nil {
		return err
	}
	poster, err := s.connect(ctx, header)
	if err != nil {
		return err
	}
	return s.post(ctx, poster, msg, header)
}

// Listen passes to onMessage, on the stream's goroutine, what the server
// sends outside any call: notifications and server requests that arrive
// while no call, or more than one, waits. It returns ctx's error when ctx
// ends, the stream's when the stream ends first, and at once with
// ErrSessionNotFound when the session is already gone. A later Listen
// takes over from an earlier one, which then returns. Listen does not open
// the stream: a session is listened to once initialized.
func (s *LegacySession) Listen(ctx context.Context, _ http.Header, onMessage func(*jsonrpc.Message)) error {
	l := &legacyListener{onMessage: onMessage, replaced: make(chan struct{})}
	s.mu.Lock()
	if s.cause != nil {
		s.mu.Unlock()
		return fmt.Errorf("upstream: listen: %w", s.deadError())
	}
	if s.listener != nil {
		close(s.listener.replaced)
	}
	s.listener = l
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.listener == l {
			s.listener = nil
		}
		s.mu.Unlock()
	}()
	select {
	case <-ctx.Done():
		return fmt.Errorf("upstream: listen: %w", ctx.Err())
	case <-s.failed:
		return fmt.Errorf("upstream: listen: %w: %w", ErrStreamEnded, s.cause)
	case <-l.replaced:
		return fmt.Errorf("upstream: listen: %w", errListenerReplaced)
	}
}

// Close ends the session: the event stream is closed, which ends the
// session on the server too, and the calls still waiting fail with
// ErrStreamEnded. It waits, within ctx, for the stream's goroutine to end.
// Closing again does nothing.
func (s *LegacySession) Close(ctx context.Context, _ http.Header) error {
	s.fail(errors.New("the session was closed"))
	s.mu.Lock()
	exited := s.exited
	s.mu.Unlock()
	if exited == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("upstream: close: %w", ctx.Err())
	}
}

// fail ends the session for cause, unless it has ended already, and
// reports whether it did: the stream is cancelled, and the calls and
// listeners waiting see failed closed.
func (s *LegacySession) fail(cause error) bool {
	s.mu.Lock()
	if s.cause != nil {
		s.mu.Unlock()
		return false
	}
	s.cause = cause
	s.pending = nil
	s.mu.Unlock()
	s.cancel()
	close(s.failed)
	return true
}

// deadError is what a call to an ended session gets: the broker opens a
// new session, as for an HTTP upstream that forgot its session. s.cause
// must be set.
func (s *LegacySession) deadError() error {
	return fmt.Errorf("%w: the event stream is gone: %v", ErrSessionNotFound, s.cause)
}

// connect returns the poster of the session's endpoint, opening the event
// stream if nobody did yet. Callers that find it being opened wait for
// it, within their own ctx.
func (s *LegacySession) connect(ctx context.Context, header http.Header) (*Session, error) {
	for {
		s.mu.Lock()
		switch {
		case s.cause != nil:
			s.mu.Unlock()
			return nil, s.deadError()
		case s.poster != nil:
			p := s.poster
			s.mu.Unlock()
			return p, nil
		case !s.starting:
			s.starting = true
			s.mu.Unlock()
			return s.start(ctx, header)
		}
		s.mu.Unlock()
		select {
		case <-s.ready:
		case <-s.failed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// start opens the event stream, waits for the endpoint and hands the
// stream to its reader goroutine. The stream lives under the session's
// context, but until the endpoint arrives the caller's ctx bounds it too:
// a server that never names its endpoint fails the session when ctx ends.
func (s *LegacySession) start(ctx context.Context, header http.Header) (*Session, error) {
	stop := context.AfterFunc(ctx, s.cancel)
	poster, r, body, err := s.open(ctx, header)
	if err == nil && !stop() {
		// ctx ended just as the endpoint arrived: the stream is cancelled.
		body.Close()
		r.put()
		err = fmt.Errorf("waiting for the endpoint event: %w", ctx.Err())
	}
	if err != nil {
		if !s.fail(err) {
			// Close came first, and the stream broke because of it.
			return nil, s.deadError()
		}
		return nil, err
	}
	s.mu.Lock()
	if s.cause != nil {
		s.mu.Unlock()
		body.Close()
		r.put()
		return nil, s.deadError()
	}
	s.poster = poster
	exited := make(chan struct{})
	s.exited = exited
	close(s.ready)
	s.mu.Unlock()
	go s.read(r, body, poster, exited)
	return poster, nil
}

// open GETs the event stream and reads it up to its endpoint event. It
// returns the reader positioned after that event and the body it reads,
// or an error, having then closed the body.
func (s *LegacySession) open(ctx context.Context, header http.Header) (*Session, *sseReader, io.ReadCloser, error) {
	req, err := s.stream.newRequest(s.ctx, http.MethodGet, nil, s.stream.streamHeader(header), acceptStream, identity{}, "")
	if err != nil {
		return nil, nil, nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("opening the event stream: %w", s.openError(ctx, err))
	}
	if err := checkStatus(resp, nil, jsonrpc.ID{}, true); err != nil {
		return nil, nil, nil, err
	}
	if resp.StatusCode != http.StatusOK || mediaType(resp.Header) != mediaStream {
		drainClose(resp.Body)
		return nil, nil, nil, fmt.Errorf("%w: GET answered HTTP %d with content type %q; want 200 and %s",
			ErrProtocol, resp.StatusCode, sanitize(resp.Header.Get(headerContentType), 64), mediaStream)
	}
	r := getSSEReader(resp.Body, s.maxBytes)
	for {
		typ, data, err := r.next()
		if err != nil {
			resp.Body.Close()
			r.put()
			switch {
			case errors.Is(err, ErrMessageTooLarge):
				return nil, nil, nil, err
			case err == io.EOF:
				return nil, nil, nil, fmt.Errorf("%w: the event stream ended before the endpoint event", ErrProtocol)
			}
			return nil, nil, nil, fmt.Errorf("waiting for the endpoint event: %w", s.openError(ctx, err))
		}
		switch string(typ) {
		case eventEndpoint:
			poster, err := s.endpoint(data)
			if err != nil {
				resp.Body.Close()
				r.put()
				return nil, nil, nil, err
			}
			return poster, r, resp.Body, nil
		case "", "message":
			resp.Body.Close()
			r.put()
			return nil, nil, nil, fmt.Errorf("%w: a message before the endpoint event", ErrProtocol)
		}
		// Other event types carry nothing for this transport.
	}
}

// openError explains a failure while the stream opens: the caller's
// context error when it ended, else the network error without the URL.
func (s *LegacySession) openError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return transportError(s.ctx, err)
}

// endpoint resolves the endpoint event's URI reference against the
// stream's URL and returns the session that POSTs to it. The endpoint must
// have the stream's origin: a server must not send the broker's messages,
// and the credentials they carry, somewhere else.
func (s *LegacySession) endpoint(data []byte) (*Session, error) {
	ref := strings.TrimSpace(string(data))
	if ref == "" {
		return nil, fmt.Errorf("%w: empty endpoint event", ErrProtocol)
	}
	u, err := s.stream.url.Parse(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: endpoint %q: %w", ErrProtocol, sanitize(ref, 256), errors.Unwrap(err))
	}
	if origin(u) != origin(s.stream.url) {
		return nil, fmt.Errorf("%w: endpoint %q is not on the origin of the event stream", ErrProtocol, sanitize(u.Redacted(), 256))
	}
	u.Fragment, u.RawFragment = "", ""
	// Credentials in the URL are the configured ones, never the server's.
	u.User = s.stream.url.User
	return &Session{
		url:      u,
		client:   s.client,
		maxBytes: s.maxBytes,
		logger:   s.logger,
		token:    s.stream.token,
	}, nil
}

// origin is a URL's scheme, host and port, the port spelled out when it
// is the scheme's default.
func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		switch strings.ToLower(u.Scheme) {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Hostname()) + ":" + port
}

// post sends one message to the endpoint. The server accepts it with a
// 2xx status (202 normally) and answers, if at all, on the event stream;
// the body is drained. A 404 means the server forgot the session: the
// session ends, and the error wraps ErrSessionNotFound.
func (s *LegacySession) post(ctx context.Context, poster *Session, msg *jsonrpc.Message, header http.Header) error {
	req, err := poster.newRequest(ctx, http.MethodPost, msg.Encode(), header, acceptBoth, identity{}, "")
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return transportError(ctx, err)
	}
	if err := checkStatus(resp, nil, jsonrpc.ID{}, false); err != nil {
		if resp.StatusCode == http.StatusNotFound {
			err = fmt.Errorf("%w: %w", ErrSessionNotFound, err)
			s.fail(err)
		}
		return err
	}
	drainClose(resp.Body)
	return nil
}

// read is the stream's goroutine: it decodes every message event and
// routes it, until the stream ends or breaks the rules, which ends the
// session.
func (s *LegacySession) read(r *sseReader, body io.ReadCloser, poster *Session, exited chan struct{}) {
	defer close(exited)
	defer r.put()
	defer body.Close()
	for {
		typ, data, err := r.next()
		if err != nil {
			switch {
			case s.ctx.Err() != nil:
				// Closed: fail has run, or runs now with the same effect.
				s.fail(errors.New("the session was closed"))
			case err == io.EOF:
				s.fail(errors.New("the server closed the event stream"))
			default:
				s.fail(err)
			}
			return
		}
		if !isMessageEvent(typ, data) {
			if string(typ) == eventEndpoint {
				s.logger.LogAttrs(s.ctx, slog.LevelDebug, "upstream: second endpoint event ignored")
			}
			continue
		}
		m, err := jsonrpc.Decode(data)
		if err != nil {
			s.fail(fmt.Errorf("%w: event: %w", ErrProtocol, err))
			return
		}
		s.route(m, poster)
	}
}

// route delivers one message from the stream: a response to the call that
// waits for it; progress to the call whose request id is its token; any
// other message to the one call waiting, if only one does, else to the
// listener. A server request that reaches nobody is refused, so that the
// server does not wait for ever.
func (s *LegacySession) route(m *jsonrpc.Message, poster *Session) {
	switch m.Kind() {
	case jsonrpc.KindResponse:
		if !m.ID.IsValid() {
			s.logger.LogAttrs(s.ctx, slog.LevelDebug, "upstream: error response without an id dropped",
				slog.String("error", sanitize(m.Error.Message, 256)))
			return
		}
		key := idKey(m.ID.Raw())
		s.mu.Lock()
		c := s.pending[key]
		if c != nil {
			delete(s.pending, key)
		}
		s.mu.Unlock()
		if c == nil {
			s.logger.LogAttrs(s.ctx, slog.LevelDebug, "upstream: response to no pending request dropped",
				slog.String("id", sanitize(m.ID.String(), 64)))
			return
		}
		c.reply <- m
		return
	case jsonrpc.KindInvalid:
		return
	}

	var token string
	if m.Method == methodProgress {
		if raw, ok, err := jsonrpc.Member(m.Params, "progressToken"); err == nil && ok {
			token = idKey(string(raw))
		}
	}
	var deliver func(*jsonrpc.Message)
	s.mu.Lock()
	if c := s.pending[token]; token != "" && c != nil {
		// Progress of a call goes to it alone, even if it takes none.
		s.mu.Unlock()
		if c.onMessage != nil {
			c.onMessage(m)
		}
		return
	}
	if len(s.pending) == 1 {
		for _, c := range s.pending {
			deliver = c.onMessage
		}
	}
	if deliver == nil && s.listener != nil {
		deliver = s.listener.onMessage
	}
	s.mu.Unlock()
	switch {
	case deliver != nil:
		deliver(m)
	case m.Kind() == jsonrpc.KindRequest:
		s.refuse(m, poster)
	default:
		s.logger.LogAttrs(s.ctx, slog.LevelDebug, "upstream: notification nobody listens to dropped",
			slog.String("method", sanitize(m.Method, 64)))
	}
}

// refuse answers a server request nobody can take with an error, off the
// stream's goroutine: the server may not read the POST before the stream
// moves on.
func (s *LegacySession) refuse(m *jsonrpc.Message, poster *Session) {
	select {
	case s.refusals <- struct{}{}:
	default:
		s.logger.LogAttrs(s.ctx, slog.LevelDebug, "upstream: server request dropped unanswered",
			slog.String("method", sanitize(m.Method, 64)))
		return
	}
	go func() {
		defer func() { <-s.refusals }()
		ctx, cancel := context.WithTimeout(s.ctx, refusalTimeout)
		defer cancel()
		resp := jsonrpc.NewErrorResponse(m.ID, jsonrpc.NewError(codeMethodNotFound, "no client is listening"))
		if err := s.post(ctx, poster, resp, nil); err != nil {
			s.logger.LogAttrs(ctx, slog.LevelDebug, "upstream: refusing a server request failed",
				slog.String("method", sanitize(m.Method, 64)), slog.String("error", err.Error()))
		}
	}()
}

// idKey is the form in which request ids and progress tokens are
// compared: integers in decimal, strings as encoding/json writes them, so
// that a server that re-encodes an id still matches.
func idKey(raw string) string {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return ""
	}
	if raw[0] == '"' {
		var v string
		if json.Unmarshal([]byte(raw), &v) != nil {
			return raw
		}
		return jsonrpc.StringID(v).Raw()
	}
	if n, err := strconv.ParseInt(raw, 10, 64); err == nil {
		return jsonrpc.Int64ID(n).Raw()
	}
	// A server that decoded an integer token as a float may write 5.0.
	if f, err := strconv.ParseFloat(raw, 64); err == nil && f == float64(int64(f)) {
		return jsonrpc.Int64ID(int64(f)).Raw()
	}
	return raw
}
