package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// DefaultMaxMessageBytes caps one JSON body or one SSE event when
// Options.MaxMessageBytes is zero.
const DefaultMaxMessageBytes = 4 << 20

const (
	// maxResumeAttempts bounds reconnections of a call's stream that bring
	// no new event.
	maxResumeAttempts = 5
	defaultRetry      = time.Second
	maxRetry          = 10 * time.Second
	// minBackoff is where Listen's backoff starts growing when the server
	// asked for an immediate reconnect.
	minBackoff = 100 * time.Millisecond

	// drainLimit is how much of an unwanted body is read so that its
	// connection can be reused; beyond it the connection is dropped.
	drainLimit = 64 << 10
	// streamDrainTimeout bounds the wait for the server to end an SSE
	// stream after the response arrived.
	streamDrainTimeout = 500 * time.Millisecond
	// maxErrorBodyRead is how much of a non-2xx body is read to find a
	// JSON-RPC error in it.
	maxErrorBodyRead = 16 << 10
	// pooledBodyCap keeps one huge response from pinning memory in the pool.
	pooledBodyCap = 64 << 10
)

// Header names in canonical form, so they can be set without
// canonicalizing on every request.
const (
	headerSessionID       = "Mcp-Session-Id"
	headerProtocolVersion = "Mcp-Protocol-Version"
	headerLastEventID     = "Last-Event-Id"
	headerAccept          = "Accept"
	headerContentType     = "Content-Type"
	headerAuthorization   = "Authorization"

	mediaJSON   = "application/json"
	mediaStream = "text/event-stream"

	methodInitialize = "initialize"
)

// Header values shared by all requests; the transport only reads them.
var (
	acceptBoth      = []string{mediaJSON + ", " + mediaStream}
	acceptStream    = []string{mediaStream}
	contentTypeJSON = []string{mediaJSON}
)

// Options configure a Session.
type Options struct {
	// URL is the upstream's MCP endpoint (http or https).
	URL string
	// Client is shared by all sessions of one app; build it with
	// NewHTTPClient. Nil means a client with NewHTTPClient's defaults.
	Client *http.Client
	// MaxMessageBytes caps one JSON body or one SSE event; zero means
	// DefaultMaxMessageBytes.
	MaxMessageBytes int64
	// Logger receives reconnection events at debug level; nil discards.
	Logger *slog.Logger
	// Token, when set, supplies the bearer token of every HTTP request
	// that carries no Authorization of its own: initialize, notifications,
	// responses, the GET stream and its reconnections, the resumption of a
	// call's stream, DELETE. It is called per request, so a short-lived
	// token is fresh at every reconnection; an error fails the request
	// before anything is sent.
	Token TokenSource
}

// TokenSource returns the bearer token for one HTTP request of a session;
// ctx is the request's own.
type TokenSource func(ctx context.Context) (string, error)

var defaultClient = sync.OnceValue(func() *http.Client { return NewHTTPClient(HTTPOptions{}) })

// headerValue is a string with its header form, built once when the value
// is set instead of on every request.
type headerValue struct {
	value  string
	header []string
}

func newHeaderValue(v string) *headerValue {
	if v == "" {
		return nil
	}
	return &headerValue{value: v, header: []string{v}}
}

func (h *headerValue) String() string {
	if h == nil {
		return ""
	}
	return h.value
}

// Session is one MCP session with an upstream server over Streamable HTTP.
// A server that issues no Mcp-Session-Id gives a sessionless Session, which
// works the same way. Its methods are safe for concurrent use; onMessage
// callbacks may call them too (an elicitation answer is sent with Send
// from inside the callback).
type Session struct {
	url      *url.URL
	client   *http.Client
	maxBytes int
	logger   *slog.Logger
	token    TokenSource

	id              atomic.Pointer[headerValue]
	protocolVersion atomic.Pointer[headerValue]
	// streaming is set once the upstream answered a call with an SSE
	// stream, normally initialize: see exchange.
	streaming atomic.Bool
}

// NewSession returns a session for the upstream at opts.URL. It sends
// nothing: the first Call is normally initialize, or the caller restores an
// earlier session with SetID and SetProtocolVersion.
func NewSession(opts *Options) (*Session, error) {
	if opts == nil {
		return nil, errors.New("upstream: no options")
	}
	u, err := url.Parse(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("upstream: url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upstream: url %q: want an absolute http or https url", u.Redacted())
	}
	s := &Session{
		url:      u,
		client:   opts.Client,
		maxBytes: DefaultMaxMessageBytes,
		logger:   opts.Logger,
		token:    opts.Token,
	}
	if s.client == nil {
		s.client = defaultClient()
	}
	if opts.MaxMessageBytes > 0 {
		s.maxBytes = int(min(opts.MaxMessageBytes, 1<<30))
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// SetID sets the Mcp-Session-Id sent with every request; "" makes the
// session sessionless.
func (s *Session) SetID(id string) { s.id.Store(newHeaderValue(id)) }

// ID returns the Mcp-Session-Id, "" when the server issued none.
func (s *Session) ID() string { return s.id.Load().String() }

// SetProtocolVersion sets the MCP-Protocol-Version sent with every request
// except initialize. Call sets it from a successful initialize result.
func (s *Session) SetProtocolVersion(v string) { s.protocolVersion.Store(newHeaderValue(v)) }

// ProtocolVersion returns the negotiated protocol version, "" before
// initialize.
func (s *Session) ProtocolVersion() string { return s.protocolVersion.Load().String() }

// identity is what one exchange sends to name its session.
type identity struct {
	sessionID       *headerValue
	protocolVersion *headerValue
}

func (s *Session) identity() identity {
	return identity{sessionID: s.id.Load(), protocolVersion: s.protocolVersion.Load()}
}

// Call POSTs the request msg and returns its response, which may be a
// JSON-RPC error response; the error is for transport and HTTP failures.
//
// header holds extra headers for this HTTP exchange only; it may be nil
// and must not be changed during the call. An Authorization in it (a
// per-call token) is sent instead of the session's (Options.Token).
// onMessage, if not nil, receives in order every other message the server
// sends on the request's stream (progress, logging, server-to-client
// requests) before Call returns, on the calling goroutine.
//
// For initialize, Call sends no session id or protocol version, and
// records the Mcp-Session-Id the server issues (none makes the session
// sessionless) and the protocolVersion of the result.
//
// If the event stream ends early and its events carried ids, Call resumes
// it with GET and Last-Event-ID (SEP-1699), waiting the server's retry
// delay between attempts and giving up after five attempts that bring no
// new event.
func (s *Session) Call(ctx context.Context, msg *jsonrpc.Message, header http.Header, onMessage func(*jsonrpc.Message)) (*jsonrpc.Message, error) {
	reply, err := s.call(ctx, msg, header, onMessage)
	if err != nil {
		return nil, fmt.Errorf("upstream: call %s: %w", msg.Method, err)
	}
	return reply, nil
}

func (s *Session) call(ctx context.Context, msg *jsonrpc.Message, header http.Header, onMessage func(*jsonrpc.Message)) (*jsonrpc.Message, error) {
	if msg.Kind() != jsonrpc.KindRequest {
		return nil, fmt.Errorf("message is a %s, not a request", msg.Kind())
	}
	initialize := msg.Method == methodInitialize
	var who identity
	if !initialize {
		who = s.identity()
	}
	ex := s.newExchange(ctx)
	handedOff := false
	defer func() {
		if !handedOff {
			ex.end()
		}
	}()
	req, err := s.newRequest(ex.ctx, http.MethodPost, msg.Encode(), header, acceptBoth, who, "")
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, transportError(ctx, err)
	}
	if err := checkStatus(resp, who.sessionID, msg.ID, false); err != nil {
		return nil, err
	}
	if initialize {
		id := resp.Header.Get(headerSessionID)
		if !validSessionID(id) {
			resp.Body.Close()
			return nil, fmt.Errorf("%w: invalid %s %q", ErrProtocol, headerSessionID, sanitize(id, 64))
		}
		who.sessionID = newHeaderValue(id)
		s.id.Store(who.sessionID)
	}

	var reply *jsonrpc.Message
	switch mediaType(resp.Header) {
	case mediaJSON:
		reply, err = s.readJSONReply(resp, msg.ID)
	case mediaStream:
		if !s.streaming.Load() {
			s.streaming.Store(true)
		}
		var body io.ReadCloser
		reply, body, err = s.readStreamReply(ctx, ex.ctx, resp.Body, msg.ID, header, who, onMessage)
		if err == nil && body != nil {
			handedOff = ex.finish(body)
		}
	default:
		drainClose(resp.Body)
		err = fmt.Errorf("%w: HTTP %d with content type %q", ErrProtocol, resp.StatusCode, sanitize(resp.Header.Get(headerContentType), 64))
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	if initialize && reply.Error == nil {
		var result struct {
			ProtocolVersion string `json:"protocolVersion"`
		}
		if err := json.Unmarshal(reply.Result, &result); err == nil && result.ProtocolVersion != "" {
			s.SetProtocolVersion(result.ProtocolVersion)
		}
	}
	return reply, nil
}

// exchange is the context one call's HTTP requests run under.
//
// The end of an SSE stream usually arrives just after the response: if
// the caller's context ends before it is read, the transport drops the
// connection instead of pooling it. So when the upstream answers with
// streams, the call runs under a context of its own that ends with the
// caller's until the response arrives, and then lives on for finishStream.
// The session learns from its first streamed answer, normally initialize's;
// an upstream that answers with JSON, whose bodies are read to the end,
// never pays for the extra contexts. Errors always report the caller's
// context.
type exchange struct {
	ctx    context.Context
	cancel context.CancelFunc // nil: ctx is the caller's own
	stop   func() bool
}

func (s *Session) newExchange(ctx context.Context) exchange {
	if !s.streaming.Load() {
		return exchange{ctx: ctx}
	}
	detached, cancel := context.WithCancel(context.WithoutCancel(ctx))
	return exchange{ctx: detached, cancel: cancel, stop: context.AfterFunc(ctx, cancel)}
}

func (e exchange) end() {
	if e.cancel != nil {
		e.stop()
		e.cancel()
	}
}

// finish hands the stream that carried the response to finishStream and
// reports whether the exchange went with it.
func (e exchange) finish(body io.ReadCloser) bool {
	if e.cancel == nil {
		finishStream(body, func() {})
		return false
	}
	if !e.stop() {
		// The caller's context already ended: the connection is lost anyway.
		body.Close()
		return false
	}
	finishStream(body, e.cancel)
	return true
}

// Send POSTs a notification, or a response to a server-to-client request.
// The server must accept it with 202 (200 or 204 with an empty body are
// taken as the same).
func (s *Session) Send(ctx context.Context, msg *jsonrpc.Message, header http.Header) error {
	return sendError(msg, s.send(ctx, msg, header))
}

// sendable refuses to Send a message that is not a notification or a
// response; every transport's Send checks it.
func sendable(msg *jsonrpc.Message) error {
	if kind := msg.Kind(); kind != jsonrpc.KindNotification && kind != jsonrpc.KindResponse {
		return fmt.Errorf("message is a %s; send takes notifications and responses", kind)
	}
	return nil
}

// sendError names the message a transport's Send failed to deliver.
func sendError(msg *jsonrpc.Message, err error) error {
	if err == nil {
		return nil
	}
	name := msg.Method
	if name == "" {
		name = "response " + msg.ID.String()
	}
	return fmt.Errorf("upstream: send %s: %w", name, err)
}

func (s *Session) send(ctx context.Context, msg *jsonrpc.Message, header http.Header) error {
	if err := sendable(msg); err != nil {
		return err
	}
	who := s.identity()
	req, err := s.newRequest(ctx, http.MethodPost, msg.Encode(), header, acceptBoth, who, "")
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return transportError(ctx, err)
	}
	if err := checkStatus(resp, who.sessionID, jsonrpc.ID{}, false); err != nil {
		return err
	}
	if resp.StatusCode == http.StatusAccepted {
		drainClose(resp.Body)
		return nil
	}
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNoContent {
		if resp.ContentLength == 0 {
			drainClose(resp.Body)
			return nil
		}
		if mediaType(resp.Header) != mediaStream {
			var one [1]byte
			n, _ := io.ReadFull(resp.Body, one[:])
			drainClose(resp.Body)
			if n == 0 {
				return nil
			}
		} else {
			// Reading might wait for a stream that never ends.
			resp.Body.Close()
		}
	} else {
		drainClose(resp.Body)
	}
	return fmt.Errorf("%w: HTTP %d with a body; want 202 Accepted", ErrProtocol, resp.StatusCode)
}

// Listen opens the GET event stream and passes each message to onMessage,
// on the calling goroutine, until ctx ends; it then returns ctx's error,
// wrapped. After a drop it reconnects, with Last-Event-ID when the events
// carried ids, waiting the server's retry delay and backing off up to ten
// seconds while attempts fail. It returns at once with ErrNoStream when
// the server answers 405, with ErrSessionNotFound when it forgot the
// session, and with the error when the server answers another 4xx or sends
// an event that cannot be read.
func (s *Session) Listen(ctx context.Context, header http.Header, onMessage func(*jsonrpc.Message)) error {
	if err := s.listen(ctx, header, onMessage); err != nil {
		return fmt.Errorf("upstream: listen: %w", err)
	}
	return nil
}

func (s *Session) listen(ctx context.Context, header http.Header, onMessage func(*jsonrpc.Message)) error {
	who := s.identity()
	r := getSSEReader(nil, s.maxBytes)
	defer r.put()
	failures := 0
	for {
		if failures > 0 || r.src != nil {
			delay := reconnectDelay(r, failures)
			s.logger.LogAttrs(ctx, slog.LevelDebug, "upstream: reconnecting event stream",
				slog.Duration("delay", delay), slog.Int("failures", failures))
			if err := sleep(ctx, delay); err != nil {
				return err
			}
		}
		body, err := s.openStream(ctx, header, who, string(r.lastID))
		if err != nil {
			var status *StatusError
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case errors.Is(err, ErrNoStream), errors.Is(err, ErrSessionNotFound), errors.Is(err, ErrProtocol), errors.Is(err, ErrCredentials):
				return err
			case errors.As(err, &status) && !transientStatus(status.StatusCode):
				return err
			}
			failures++
			s.logger.LogAttrs(ctx, slog.LevelDebug, "upstream: event stream connect failed", slog.String("error", err.Error()))
			continue
		}
		r.reset(body)
		resumedFrom := string(r.lastID)
		delivered := false
		for {
			typ, data, err := r.next()
			if err != nil {
				body.Close()
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if errors.Is(err, ErrMessageTooLarge) {
					return err
				}
				break
			}
			if !isMessageEvent(typ, data) {
				continue
			}
			m, err := jsonrpc.Decode(data)
			if err != nil {
				body.Close()
				return fmt.Errorf("%w: event: %w", ErrProtocol, err)
			}
			delivered = true
			if onMessage != nil {
				onMessage(m)
			}
		}
		if delivered || string(r.lastID) != resumedFrom {
			failures = 0
		} else {
			failures++
		}
	}
}

// Close ends the session with DELETE, bounded by ctx. A server that does
// not let clients end sessions (405) or already forgot it (404) is not an
// error. The session keeps its id for logging.
func (s *Session) Close(ctx context.Context, header http.Header) error {
	who := s.identity()
	if who.sessionID == nil {
		return nil
	}
	req, err := s.newRequest(ctx, http.MethodDelete, nil, header, acceptBoth, who, "")
	if err != nil {
		return fmt.Errorf("upstream: delete session: %w", err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("upstream: delete session: %w", transportError(ctx, err))
	}
	switch resp.StatusCode {
	case http.StatusMethodNotAllowed, http.StatusNotFound:
		drainClose(resp.Body)
		return nil
	}
	if err := checkStatus(resp, nil, jsonrpc.ID{}, false); err != nil {
		return fmt.Errorf("upstream: delete session: %w", err)
	}
	drainClose(resp.Body)
	return nil
}

// newRequest builds one HTTP exchange. The URL is parsed once per session
// and shared: the client only reads it.
func (s *Session) newRequest(ctx context.Context, method string, body []byte, extra http.Header, accept []string, who identity, lastEventID string) (*http.Request, error) {
	h := make(http.Header, len(extra)+6)
	for k, v := range extra {
		h[k] = v
	}
	if _, own := extra[headerAuthorization]; !own && s.token != nil {
		token, err := s.token(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCredentials, err)
		}
		h[headerAuthorization] = []string{"Bearer " + token}
	}
	h[headerAccept] = accept
	if who.sessionID != nil {
		h[headerSessionID] = who.sessionID.header
	}
	if who.protocolVersion != nil {
		h[headerProtocolVersion] = who.protocolVersion.header
	}
	if lastEventID != "" {
		h[headerLastEventID] = []string{lastEventID}
	}
	req := &http.Request{
		Method:     method,
		URL:        s.url,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Host:       s.url.Host,
	}
	if body != nil {
		h[headerContentType] = contentTypeJSON
		req.Body = newRequestBody(body)
		req.ContentLength = int64(len(body))
		// The transport replays the body on a fresh connection when a
		// pooled one turns out closed.
		req.GetBody = func() (io.ReadCloser, error) { return newRequestBody(body), nil }
	}
	return req.WithContext(ctx), nil
}

// requestBody is a request body in one allocation.
type requestBody struct{ bytes.Reader }

func newRequestBody(b []byte) *requestBody {
	r := new(requestBody)
	r.Reset(b)
	return r
}

func (*requestBody) Close() error { return nil }

// openStream GETs the event stream, resuming after lastEventID if set.
func (s *Session) openStream(ctx context.Context, header http.Header, who identity, lastEventID string) (io.ReadCloser, error) {
	req, err := s.newRequest(ctx, http.MethodGet, nil, header, acceptStream, who, lastEventID)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, transportError(ctx, err)
	}
	if err := checkStatus(resp, who.sessionID, jsonrpc.ID{}, true); err != nil {
		return nil, err
	}
	if mediaType(resp.Header) != mediaStream {
		drainClose(resp.Body)
		return nil, fmt.Errorf("%w: GET answered with content type %q", ErrProtocol, sanitize(resp.Header.Get(headerContentType), 64))
	}
	return resp.Body, nil
}

var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// readJSONReply reads an application/json answer to the request with id.
func (s *Session) readJSONReply(resp *http.Response, id jsonrpc.ID) (*jsonrpc.Message, error) {
	if resp.ContentLength > int64(s.maxBytes) {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: body of %d bytes", ErrMessageTooLarge, resp.ContentLength)
	}
	bp := bodyPool.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= pooledBodyCap {
			bodyPool.Put(bp)
		}
	}()
	data, err := readCapped(resp.Body, (*bp)[:0], s.maxBytes)
	*bp = data[:0]
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	m, err := jsonrpc.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%w: body: %w", ErrProtocol, err)
	}
	if err := checkReply(m, id); err != nil {
		return nil, err
	}
	return m, nil
}

// checkReply reports whether m, the message that ends an application/json
// exchange, is the response to the request with id.
func checkReply(m *jsonrpc.Message, id jsonrpc.ID) error {
	switch {
	case m.Kind() != jsonrpc.KindResponse:
		return fmt.Errorf("%w: got a %s, want the response", ErrProtocol, m.Kind())
	case !m.ID.IsValid():
		return fmt.Errorf("%w: error response without an id: %w", ErrProtocol, m.Error)
	case m.ID != id:
		return fmt.Errorf("%w: response to id %s, want %s", ErrProtocol, sanitize(m.ID.String(), 64), id)
	}
	return nil
}

// readStreamReply reads the event stream of one request until its response
// arrives, resuming the stream if it breaks. It returns the body of the
// stream that carried the response, for the caller to finish (nil when the
// server ended it with the response); on error it
// has closed every body. Reconnections use the exchange context, waits and
// errors the caller's.
func (s *Session) readStreamReply(ctx, exchange context.Context, body io.ReadCloser, id jsonrpc.ID, header http.Header, who identity, onMessage func(*jsonrpc.Message)) (*jsonrpc.Message, io.ReadCloser, error) {
	r := getSSEReader(body, s.maxBytes)
	defer r.put()
	var resume resumeState
	for {
		typ, data, err := r.next()
		if err == nil {
			if !isMessageEvent(typ, data) {
				continue
			}
			m, err := jsonrpc.Decode(data)
			if err != nil {
				body.Close()
				return nil, nil, fmt.Errorf("%w: event: %w", ErrProtocol, err)
			}
			if m.Kind() == jsonrpc.KindResponse {
				if m.ID == id {
					if r.ended() {
						// The server ended the stream with the response:
						// nothing is left to wait for.
						body.Close()
						return m, nil, nil
					}
					return m, body, nil
				}
				if !m.ID.IsValid() {
					body.Close()
					return nil, nil, fmt.Errorf("%w: error response without an id: %w", ErrProtocol, m.Error)
				}
			}
			if onMessage != nil {
				onMessage(m)
			}
			continue
		}
		body.Close()
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		if errors.Is(err, ErrMessageTooLarge) {
			return nil, nil, err
		}
		if !r.resumable() {
			if err == io.EOF {
				return nil, nil, fmt.Errorf("%w: the stream carried no event ids to resume from", ErrStreamEnded)
			}
			return nil, nil, fmt.Errorf("%w: %w", ErrStreamEnded, err)
		}
		if err != io.EOF {
			resume.lastErr = err
		}
		body, err = s.resume(ctx, exchange, r, &resume, header, who)
		if err != nil {
			return nil, nil, err
		}
		r.reset(body)
	}
}

// resumeState counts reconnections of one stream since it last brought a
// new event.
type resumeState struct {
	from     []byte // last event id when progress was last measured
	attempts int
	lastErr  error
}

// resume reconnects a call's broken stream with GET and Last-Event-ID.
func (s *Session) resume(ctx, exchange context.Context, r *sseReader, state *resumeState, header http.Header, who identity) (io.ReadCloser, error) {
	header = s.streamHeader(header)
	for {
		if !bytes.Equal(r.lastID, state.from) {
			state.from = append(state.from[:0], r.lastID...)
			state.attempts = 0
		}
		state.attempts++
		if state.attempts > maxResumeAttempts {
			if state.lastErr != nil {
				return nil, fmt.Errorf("%w: %d reconnections brought no event: %w", ErrStreamEnded, maxResumeAttempts, state.lastErr)
			}
			return nil, fmt.Errorf("%w: %d reconnections brought no event", ErrStreamEnded, maxResumeAttempts)
		}
		delay := reconnectDelay(r, 0)
		s.logger.LogAttrs(ctx, slog.LevelDebug, "upstream: resuming call stream",
			slog.Int("attempt", state.attempts), slog.Duration("delay", delay))
		if err := sleep(ctx, delay); err != nil {
			return nil, err
		}
		body, err := s.openStream(exchange, header, who, string(r.lastID))
		if err == nil {
			return body, nil
		}
		var status *StatusError
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, ErrNoStream), errors.Is(err, ErrSessionNotFound), errors.Is(err, ErrProtocol), errors.Is(err, ErrCredentials):
			return nil, fmt.Errorf("resume: %w", err)
		case errors.As(err, &status) && !transientStatus(status.StatusCode):
			return nil, fmt.Errorf("resume: %w", err)
		}
		state.lastErr = err
	}
}

// streamHeader is the header of a call's resumed stream: with a token
// source, the session's token instead of the call's own, which may be
// shorter-lived than the tool it was issued for.
func (s *Session) streamHeader(header http.Header) http.Header {
	if _, own := header[headerAuthorization]; !own || s.token == nil {
		return header
	}
	h := header.Clone()
	delete(h, headerAuthorization)
	return h
}

// reconnectDelay is the server's retry value (default 1s, at most 10s);
// after failures it grows exponentially, with jitter, up to 10s.
func reconnectDelay(r *sseReader, failures int) time.Duration {
	d := defaultRetry
	if r.hasRetry {
		d = r.retry
	}
	d = min(d, maxRetry)
	if failures > 1 {
		d = max(d, minBackoff)
		d = min(d<<min(failures-1, 8), maxRetry)
		d = d/2 + rand.N(d/2+1)
	}
	return d
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// transientStatus lists answers worth retrying on a stream reconnection.
func transientStatus(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// checkStatus turns a non-2xx answer into an error, consuming its body. A
// 404 while we sent a session id is ErrSessionNotFound, unless the body is
// the JSON-RPC answer to our request (a method-not-found error of a later
// protocol revision); a 405 to a GET is ErrNoStream.
func checkStatus(resp *http.Response, sessionID *headerValue, requestID jsonrpc.ID, get bool) error {
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	var buf [maxErrorBodyRead]byte
	n, _ := io.ReadFull(resp.Body, buf[:])
	drainClose(resp.Body)
	body := buf[:n]
	statusErr := &StatusError{
		StatusCode:      resp.StatusCode,
		Body:            sanitize(string(body), maxErrorBodyBytes),
		WWWAuthenticate: sanitize(resp.Header.Get("WWW-Authenticate"), maxChallengeBytes),
	}
	var answersRequest bool
	if trimmed := bytes.TrimSpace(body); len(trimmed) > 0 && trimmed[0] == '{' {
		if m, err := jsonrpc.Decode(trimmed); err == nil && m.Error != nil {
			statusErr.RPCError = m.Error
			answersRequest = requestID.IsValid() && m.ID == requestID
		}
	}
	switch {
	case resp.StatusCode == http.StatusNotFound && sessionID != nil && !answersRequest:
		return fmt.Errorf("%w: %w", ErrSessionNotFound, statusErr)
	case resp.StatusCode == http.StatusMethodNotAllowed && get:
		return fmt.Errorf("%w: %w", ErrNoStream, statusErr)
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return fmt.Errorf("redirect to %q refused: %w", sanitize(resp.Header.Get("Location"), 256), statusErr)
	}
	return statusErr
}

// transportError explains a failed exchange: the context's error when it
// ended, else the network error without the URL, which may carry secrets
// in its query.
func transportError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		return urlErr.Err
	}
	return err
}

// readCapped appends the body to buf, failing once it exceeds limit bytes.
func readCapped(body io.Reader, buf []byte, limit int) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			if len(buf) > limit {
				return buf, fmt.Errorf("%w: body over %d bytes", ErrMessageTooLarge, limit)
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):min(cap(buf), limit+1)])
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			return buf, fmt.Errorf("%w: body over %d bytes", ErrMessageTooLarge, limit)
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// drainClose reads a little of an unwanted body so that its connection can
// be reused, then closes it.
func drainClose(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, drainLimit))
	body.Close()
}

// finishStream waits briefly, off the caller's path, for the server to end
// an SSE stream whose response arrived, so that the connection returns to
// the pool; a server that keeps the stream open loses the connection. It
// then ends the exchange's context.
func finishStream(body io.ReadCloser, cancel func()) {
	go func() {
		timer := time.AfterFunc(streamDrainTimeout, func() { body.Close() })
		_, _ = io.Copy(io.Discard, io.LimitReader(body, drainLimit))
		timer.Stop()
		body.Close()
		cancel()
	}()
}

// mediaType returns the Content-Type without parameters, lower-cased only
// when it is one of the two types the transport uses.
func mediaType(h http.Header) string {
	v := h.Get(headerContentType)
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	v = strings.TrimSpace(v)
	switch {
	case strings.EqualFold(v, mediaJSON):
		return mediaJSON
	case strings.EqualFold(v, mediaStream):
		return mediaStream
	}
	return v
}

// isMessageEvent reports whether an SSE event carries a JSON-RPC message:
// its type is "message" or none, and its data is not empty (a SEP-1699
// priming event has an id and an empty data line).
func isMessageEvent(eventType, data []byte) bool {
	return (len(eventType) == 0 || string(eventType) == "message") && len(bytes.TrimSpace(data)) > 0
}

// validSessionID accepts the visible ASCII the specification allows; the
// empty id means the server runs sessionless.
func validSessionID(id string) bool {
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return len(id) <= 1024
}
