package provider

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// serveStream is the Streamable HTTP endpoint: POST sends messages, GET
// opens the standalone stream or resumes one, DELETE ends the session.
func (p *Provider) serveStream(w http.ResponseWriter, r *http.Request, id *Identity) {
	switch {
	case r.Method == http.MethodPost:
		p.servePost(w, r, id)
	case isModern(strings.TrimSpace(r.Header.Get("MCP-Protocol-Version"))) && r.Header.Get(p.opts.SessionHeader) == "":
		// The modern protocol has neither a session to end nor a stream
		// outside a request.
		w.Header().Set("Allow", "POST")
		writeHTTPError(w, httpError(http.StatusMethodNotAllowed, jsonrpc.CodeServerError, "method not allowed: protocol version "+ModernVersion+" is served by POST only"))
	case p.opts.Sessionless:
		// Nothing outlives a POST: no stream to listen on, no session to end.
		w.Header().Set("Allow", "POST")
		writeHTTPError(w, httpError(http.StatusMethodNotAllowed, jsonrpc.CodeServerError, "method not allowed: this endpoint serves without sessions (POST only)"))
	case r.Method == http.MethodGet:
		p.serveGet(w, r, id)
	case r.Method == http.MethodDelete:
		p.serveDelete(w, r, id)
	default:
		allow := "GET, POST"
		if p.opts.AllowClientTermination {
			allow += ", DELETE"
		}
		w.Header().Set("Allow", allow)
		writeHTTPError(w, httpError(http.StatusMethodNotAllowed, jsonrpc.CodeServerError, "method not allowed"))
	}
}

// readAll reads r to its end into a buffer sized for the declared length,
// when there is one within max: one allocation where io.ReadAll grows its
// buffer from 512 bytes.
func readAll(r io.Reader, declared, max int64) ([]byte, error) {
	size := int64(512)
	if declared > 0 && declared <= max {
		size = declared + 1 // room to see the end without growing
	}
	b := make([]byte, 0, size)
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

// readBody reads a capped JSON body.
func (p *Provider) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *HTTPError) {
	if contentType := r.Header.Get("Content-Type"); !strings.EqualFold(contentType, "application/json") {
		// Parameters (charset) or odd spelling: parsed in full.
		mediaType, _, err := mime.ParseMediaType(contentType)
		if err != nil || mediaType != "application/json" {
			return nil, httpError(http.StatusUnsupportedMediaType, jsonrpc.CodeInvalidRequest, "unsupported media type: want application/json")
		}
	}
	body, err := readAll(http.MaxBytesReader(w, r.Body, p.opts.MaxBodyBytes), r.ContentLength, p.opts.MaxBodyBytes)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, httpError(http.StatusRequestEntityTooLarge, jsonrpc.CodeInvalidRequest, "request body too large")
		}
		return nil, httpError(http.StatusBadRequest, jsonrpc.CodeParseError, "cannot read request body")
	}
	return body, nil
}

// session finds the session a request names, checks it belongs to the
// caller (another subject's session is reported as unknown, so ids cannot
// be probed) and that the request speaks its protocol version.
func (p *Provider) session(r *http.Request, id *Identity) (*Session, *HTTPError) {
	sid := r.Header.Get(p.opts.SessionHeader)
	if sid == "" {
		return nil, httpError(http.StatusBadRequest, jsonrpc.CodeInvalidRequest, "bad request: missing "+p.opts.SessionHeader+" header")
	}
	s, err := p.sessions.get(sid, id, p.now())
	if errors.Is(err, errTooManySessions) {
		return nil, sessionCapError(err)
	}
	if errors.Is(err, errSessionStoreDown) {
		p.log.Error("sessions: the shared store cannot be read", "error", err)
		he := httpError(http.StatusServiceUnavailable, jsonrpc.CodeServerError, "session store unavailable; retry shortly")
		he.Header = http.Header{"Retry-After": {"2"}}
		return nil, he
	}
	if err != nil || s.legacy {
		return nil, httpError(http.StatusNotFound, jsonrpc.CodeInvalidRequest, "session not found")
	}
	if herr := checkVersionHeader(r, s); herr != nil {
		return nil, herr
	}
	return s, nil
}

// transientSession is the session of one POST when the endpoint serves
// without sessions: it speaks the version the request's header names
// (2025-03-26 when there is none, as the specification says) and knows
// nothing of the client's capabilities, so the broker asks nothing of it
// that needs them.
func (p *Provider) transientSession(r *http.Request, id *Identity) (*Session, *HTTPError) {
	if herr := checkVersionHeader(r, nil); herr != nil {
		return nil, herr
	}
	s := newSession(id, p.now())
	s.transient = true
	s.ProtocolVersion = r.Header.Get("MCP-Protocol-Version")
	if s.ProtocolVersion == "" {
		s.ProtocolVersion = "2025-03-26"
	}
	s.ClientCapabilities = json.RawMessage("{}")
	return s, nil
}

// endTransient ends a POST's session: its calls' contexts and whatever
// the dispatcher opened for it.
func (p *Provider) endTransient(s *Session) {
	s.cancel()
	p.dispatcher.Closed(s)
}

// checkVersionHeader applies the MCP-Protocol-Version rules to a request
// within a session: an unsupported or malformed value is refused. A
// supported version other than the one the session negotiated is served
// (the specification says the header SHOULD match, and the reference SDK
// serves it); the session goes on speaking what it negotiated.
func checkVersionHeader(r *http.Request, _ *Session) *HTTPError {
	v := r.Header.Get("MCP-Protocol-Version")
	if v == "" {
		return nil // the client predates the header: 2025-03-26
	}
	if !IsSupportedVersion(v) {
		return httpError(http.StatusBadRequest, jsonrpc.CodeInvalidRequest, "bad request: unsupported MCP-Protocol-Version "+strconv.Quote(v))
	}
	return nil
}

func (p *Provider) servePost(w http.ResponseWriter, r *http.Request, id *Identity) {
	accept := r.Header.Get("Accept")
	jsonOK, sseOK := acceptsType(accept, "application/json"), acceptsType(accept, "text/event-stream")
	if accept == "" {
		jsonOK = true
	}
	if !jsonOK && !sseOK {
		writeHTTPError(w, httpError(http.StatusNotAcceptable, jsonrpc.CodeInvalidRequest, "not acceptable: accept application/json and text/event-stream"))
		return
	}
	msgs, errs, batch, ok := p.readMessages(w, r)
	if !ok {
		return
	}
	if modernPost(r, msgs, batch) {
		p.servePostModern(w, r, id, msgs, errs, batch, sseOK)
		return
	}
	if !batch && msgs[0] != nil && msgs[0].Method == "initialize" {
		p.initialize(w, r, id, msgs[0], jsonOK)
		return
	}
	var s *Session
	var herr *HTTPError
	if p.opts.Sessionless {
		s, herr = p.transientSession(r, id)
		if s != nil {
			defer p.endTransient(s)
		}
	} else {
		s, herr = p.session(r, id)
	}
	if herr != nil {
		writeHTTPError(w, herr)
		return
	}
	if batch && s.ProtocolVersion >= "2025-06-18" {
		writeHTTPError(w, httpError(http.StatusBadRequest, jsonrpc.CodeInvalidRequest, "invalid request: batches are not supported in protocol version "+s.ProtocolVersion))
		return
	}

	// Notifications and responses only: serve them and answer 202.
	needsResponse := false
	for i, m := range msgs {
		if errs[i] != nil || m.Kind() == jsonrpc.KindRequest {
			needsResponse = true
		}
	}
	ctx := s.context()
	if !needsResponse {
		for _, m := range msgs {
			p.dispatcher.Dispatch(ctx, &Request{Message: m, Session: s, HTTP: r, Identity: id})
		}
		w.WriteHeader(http.StatusAccepted)
		return
	}

	out := &postStream{w: w, r: r, sseOK: sseOK, st: s.newRequestStream(), batch: batch, maxBatchBytes: p.opts.MaxBatchAnswerBytes}
	// Work goes on after a client hangs up, so a session's requests are
	// bounded here, not by its connections; a batch holds a slot for each
	// of its requests for as long as it is served.
	requests := countRequests(msgs, errs)
	admitted := s.acquire(requests, p.opts.MaxInFlight)
	for i, m := range msgs {
		switch {
		case errs[i] != nil:
			out.answer(decodeErrorResponse(errs[i]))
		case m.Method == "initialize":
			out.answer(jsonrpc.NewErrorResponse(m.ID, jsonrpc.NewError(jsonrpc.CodeInvalidRequest, "invalid request: initialize must be sent alone, without a session")))
		case m.Kind() == jsonrpc.KindRequest:
			if !admitted {
				out.answer(jsonrpc.NewErrorResponse(m.ID, jsonrpc.NewError(jsonrpc.CodeServerError, "too many requests in flight")))
				break
			}
			reply := p.dispatcher.Dispatch(ctx, &Request{Message: m, Session: s, HTTP: r, Identity: id, Out: out})
			if reply.Refusal != nil && !batch && out.refuse(reply.Refusal, m.ID) {
				s.release(requests)
				return
			}
			if reply.Message != nil {
				out.answer(reply.Message)
			}
		default:
			p.dispatcher.Dispatch(ctx, &Request{Message: m, Session: s, HTTP: r, Identity: id})
		}
	}
	if admitted {
		s.release(requests)
	}
	out.finish()
	s.trimStreams()
}

// countRequests counts the messages of a POST that will be served as
// requests.
// sessionCapError answers a session refused for a cap: 429 for one
// client's (it can end sessions of its own), 503 for the broker's.
func sessionCapError(err error) *HTTPError {
	status := http.StatusTooManyRequests
	if !errors.Is(err, errTooManyForSubject) && !errors.Is(err, errTooManyForAddress) {
		status = http.StatusServiceUnavailable
	}
	return httpError(status, jsonrpc.CodeServerError, err.Error())
}

func countRequests(msgs []*jsonrpc.Message, errs []error) int {
	n := 0
	for i, m := range msgs {
		if errs[i] == nil && m.Kind() == jsonrpc.KindRequest && m.Method != "initialize" {
			n++
		}
	}
	return n
}

// initialize opens a new session. The dispatcher fills in its facts; the
// id is sealed only after a successful result, so it carries them.
func (p *Provider) initialize(w http.ResponseWriter, r *http.Request, id *Identity, m *jsonrpc.Message, jsonOK bool) {
	if m.Kind() != jsonrpc.KindRequest {
		writeHTTPError(w, httpError(http.StatusBadRequest, jsonrpc.CodeInvalidRequest, "invalid request: initialize must be a request"))
		return
	}
	now := p.now()
	s := newSession(id, now)
	if err := p.sessions.admits(s); err != nil {
		// Refused before the dispatcher opens anything upstream for it.
		s.cancel()
		writeHTTPError(w, sessionCapError(err))
		return
	}
	resp := p.dispatcher.Dispatch(s.context(), &Request{Message: m, Session: s, HTTP: r, Identity: id}).Message
	if resp == nil {
		resp = jsonrpc.NewErrorResponse(m.ID, jsonrpc.NewError(jsonrpc.CodeInternalError, "internal error"))
	}
	switch {
	case p.opts.Sessionless:
		// Answered, and nothing kept: the next request stands alone.
		p.endTransient(s)
	case resp.Error == nil:
		if err := p.sessions.add(s, now); err != nil {
			s.cancel()
			p.dispatcher.Closed(s)
			if errors.Is(err, errTooManySessions) {
				writeHTTPError(w, sessionCapError(err))
				return
			}
			writeHTTPError(w, httpError(http.StatusInternalServerError, jsonrpc.CodeServerError, "cannot open session"))
			return
		}
		w.Header().Set(p.opts.SessionHeader, s.ID)
	default:
		s.cancel()
		p.dispatcher.Closed(s)
	}
	if !jsonOK {
		conn := newSSEConn(w, false)
		_ = conn.writeEvent("", "", resp.Encode())
		return
	}
	writeJSON(w, http.StatusOK, resp.Encode())
}

// postStream is the response of one POST: an SSE stream when the client
// accepts one, plain JSON otherwise (then related messages cannot be sent).
type postStream struct {
	w     http.ResponseWriter
	r     *http.Request
	sseOK bool
	st    *stream
	// batch answers are streamed as they come when the client accepts
	// SSE; as JSON they are held, within maxBatchBytes.
	batch         bool
	maxBatchBytes int

	mu       sync.Mutex
	conn     *sseConn
	done     bool
	unwatch  func() bool // stops watching for the client going away
	pending  []answer    // answers not sent yet
	bytes    int         // of pending
	streamed int         // answers sent on the stream already
}

// answer is one encoded response.
type answer struct {
	id   jsonrpc.ID
	data []byte
}

// gone reports whether the client hung up. A client that did so before
// any event reached it holds no event id and cannot resume: nothing is
// kept for it.
func (o *postStream) gone() bool { return o.r.Context().Err() != nil }

// openSSE switches the response to SSE. A client that goes away detaches
// at once, so the rest is kept for it to resume.
func (o *postStream) openSSE() {
	o.conn = newSSEConn(o.w, false)
	o.st.attach(o.conn, 0)
	conn := o.conn
	o.unwatch = context.AfterFunc(o.r.Context(), func() { o.st.detach(conn) })
}

// Send delivers a related message, switching the response to SSE.
func (o *postStream) Send(m *jsonrpc.Message) error {
	if !o.sseOK {
		return ErrNoStream
	}
	o.mu.Lock()
	if o.done || (o.conn == nil && o.gone()) {
		o.mu.Unlock()
		return ErrNoStream
	}
	if o.conn == nil {
		o.openSSE()
	}
	o.mu.Unlock()
	o.st.send(m.Encode(), false)
	return nil
}

// answer takes the response to one message of the POST.
func (o *postStream) answer(m *jsonrpc.Message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	data := m.Encode()
	if o.batch && o.sseOK {
		if o.conn == nil {
			if o.gone() {
				return
			}
			o.openSSE()
		}
		o.st.sendAnswer(data, m.ID, false)
		o.streamed++
		return
	}
	if o.batch && o.bytes+len(data) > o.maxBatchBytes {
		data = jsonrpc.NewErrorResponse(m.ID, jsonrpc.Errorf(jsonrpc.CodeServerError,
			"the answer to the batch would exceed %d bytes; send this request on its own", o.maxBatchBytes)).Encode()
	}
	o.pending = append(o.pending, answer{id: m.ID, data: data})
	o.bytes += len(data)
}

// refuse answers the POST with an HTTP error instead of a JSON-RPC
// response, unless its answer has begun as an event stream.
func (o *postStream) refuse(he *HTTPError, id jsonrpc.ID) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.conn != nil || o.batch {
		return false
	}
	o.done = true
	o.st.send(nil, true) // nothing to resume: mark the stream complete
	writeHTTPErrorFor(o.w, he, id)
	return true
}

// refusable: refuse would send the refusal.
func (o *postStream) refusable() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.conn == nil && !o.batch && !o.done
}

// finish writes the answers not sent yet and ends the stream.
func (o *postStream) finish() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.done = true
	if len(o.pending) == 0 && o.streamed == 0 {
		// Every request was cancelled by the client: it expects no answer.
		o.st.send(nil, true)
		if o.conn != nil {
			o.unwatch()
			o.st.detach(o.conn)
		} else {
			o.w.WriteHeader(http.StatusAccepted)
		}
		return
	}
	if o.conn == nil && o.sseOK && !o.gone() {
		// Clients that accept both get SSE, as from the SDKs' servers: the
		// response is then resumable like any other stream.
		o.openSSE()
	}
	if o.conn == nil {
		o.st.send(nil, true) // nothing to resume: mark the stream complete
		if o.gone() {
			return
		}
		if !o.batch && len(o.pending) == 1 {
			writeJSON(o.w, http.StatusOK, o.pending[0].data)
			return
		}
		buf := make([]byte, 0, o.bytes+len(o.pending)+1)
		buf = append(buf, '[')
		for i, a := range o.pending {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, a.data...)
		}
		writeJSON(o.w, http.StatusOK, append(buf, ']'))
		return
	}
	for i, a := range o.pending {
		o.st.sendAnswer(a.data, a.id, i == len(o.pending)-1)
	}
	if len(o.pending) == 0 {
		o.st.send(nil, true)
	}
	o.pending = nil
	o.unwatch()
	if !o.gone() {
		o.st.release(o.conn) // delivered: nothing to keep
	} else {
		o.st.detach(o.conn) // kept for the client to resume
	}
}

// readMessages reads and decodes a POST body, answering the request itself
// when it cannot.
func (p *Provider) readMessages(w http.ResponseWriter, r *http.Request) (msgs []*jsonrpc.Message, errs []error, batch, ok bool) {
	body, herr := p.readBody(w, r)
	if herr != nil {
		writeHTTPError(w, herr)
		return nil, nil, false, false
	}
	msgs, errs, batch, err := jsonrpc.DecodeBatch(body, p.opts.MaxInFlight)
	if err != nil {
		writeDecodeError(w, err)
		return nil, nil, false, false
	}
	return msgs, errs, batch, true
}

func writeDecodeError(w http.ResponseWriter, err error) {
	writeJSON(w, http.StatusBadRequest, decodeErrorResponse(err).Encode())
}

func decodeErrorResponse(err error) *jsonrpc.Message {
	var de *jsonrpc.DecodeError
	if errors.As(err, &de) {
		return jsonrpc.NewErrorResponse(de.ID, jsonrpc.NewError(de.Code, de.Message))
	}
	return jsonrpc.NewErrorResponse(jsonrpc.ID{}, jsonrpc.NewError(jsonrpc.CodeParseError, "parse error"))
}

func (p *Provider) serveGet(w http.ResponseWriter, r *http.Request, id *Identity) {
	if !acceptsType(r.Header.Get("Accept"), "text/event-stream") {
		writeHTTPError(w, httpError(http.StatusNotAcceptable, jsonrpc.CodeInvalidRequest, "not acceptable: a GET stream is text/event-stream"))
		return
	}
	s, herr := p.session(r, id)
	if herr != nil {
		writeHTTPError(w, herr)
		return
	}
	after := -1
	if last := r.Header.Get("Last-Event-ID"); last != "" {
		streamID, seq, ok := parseEventID(last)
		if !ok {
			writeHTTPError(w, httpError(http.StatusBadRequest, jsonrpc.CodeInvalidRequest, "bad request: malformed Last-Event-ID"))
			return
		}
		if streamID != standaloneStreamID {
			p.resume(w, r, s, streamID, seq)
			return
		}
		after = seq
	}
	st := s.standaloneStream()
	if after > st.lastSeq() && p.peers != nil {
		// The GET stream was held by another replica: it goes on here, its
		// ids after the last the client saw. What that replica had not sent
		// yet is not carried over.
		st.advance(after)
	}
	if after < 0 {
		after = st.lastSeq()
	} else if after > st.lastSeq() {
		writeHTTPError(w, httpError(http.StatusNotFound, jsonrpc.CodeInvalidRequest, "event not found"))
		return
	}
	conn := newSSEConn(w, false)
	if !st.attachOpen(conn, after) {
		writeHTTPError(w, httpError(http.StatusConflict, jsonrpc.CodeInvalidRequest, "conflict: the session already has a GET stream"))
		return
	}
	ctx, cancel := context.WithCancel(s.context())
	s.mu.Lock()
	s.listening = cancel
	s.mu.Unlock()
	p.dispatcher.Listen(ctx, s)
	p.hold(r, st, conn, ctx, p.opts.StreamKeepAlive)
	s.mu.Lock()
	s.listening = nil
	s.mu.Unlock()
	cancel()
}

// resume reattaches a client to the request stream its Last-Event-ID
// names, replaying what it missed. A stream is only ever resumed by its own
// ids, within its own session.
func (p *Provider) resume(w http.ResponseWriter, r *http.Request, s *Session, streamID string, seq int) {
	st := s.findStream(streamID)
	if st == nil && p.peers != nil {
		p.resumeElsewhere(w, r, s, streamID, seq)
		return
	}
	if st == nil || seq > st.lastSeq() {
		writeHTTPError(w, httpError(http.StatusNotFound, jsonrpc.CodeInvalidRequest, "stream not found"))
		return
	}
	conn := newSSEConn(w, false)
	if !st.attachOpen(conn, seq) {
		writeHTTPError(w, httpError(http.StatusConflict, jsonrpc.CodeInvalidRequest, "conflict: the stream is already attached"))
		return
	}
	p.hold(r, st, conn, s.context(), p.opts.StreamKeepAlive)
}

// hold keeps a GET response open until its stream ends, the client leaves,
// the session ends or a write fails, sending keep-alive comments every
// keepAlive meanwhile (none when it is 0).
func (p *Provider) hold(r *http.Request, st *stream, conn *sseConn, ctx context.Context, keepAlive time.Duration) {
	defer st.detach(conn)
	var tick <-chan time.Time
	if keepAlive > 0 {
		t := time.NewTicker(keepAlive)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-st.done:
			return
		case <-st.detached:
			return
		case <-r.Context().Done():
			return
		case <-ctx.Done():
			return
		case <-tick:
			st.comment("keep-alive")
		}
	}
}

func (p *Provider) serveDelete(w http.ResponseWriter, r *http.Request, id *Identity) {
	if !p.opts.AllowClientTermination {
		w.Header().Set("Allow", "GET, POST")
		writeHTTPError(w, httpError(http.StatusMethodNotAllowed, jsonrpc.CodeServerError, "method not allowed: sessions cannot be ended by clients"))
		return
	}
	s, herr := p.session(r, id)
	if herr != nil {
		writeHTTPError(w, herr)
		return
	}
	p.sessions.end(s)
	w.WriteHeader(http.StatusNoContent)
}
