package provider

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// Limits on what a stream keeps for clients that reconnect.
const (
	maxStreamEvents = 256
	maxStreamBytes  = 1 << 20
	writeTimeout    = 10 * time.Second
)

// event is one SSE event kept for replay.
type event struct {
	seq  int
	data []byte
}

// stream is one server-to-client message stream of a session: the SSE
// response of a POST, or the session's GET stream. Messages are written to
// the attached connection, if any, and kept (bounded) so a client that
// reconnects with Last-Event-ID gets what it missed.
type stream struct {
	id string

	// budget is the session's budget for kept events; owner, the session,
	// makes room in it. Both are nil for streams outside a session.
	budget *keepBudget
	owner  *Session

	mu       sync.Mutex
	seq      int
	events   []event
	bytes    int
	conn     *sseConn
	final    bool
	done     chan struct{} // closed after the final message
	detached chan struct{} // signalled when the connection is lost
	// copy, once a client resumes the stream through another replica,
	// gets every event from then on.
	copy *streamCopy
}

func newStream(id string) *stream {
	return &stream{id: id, done: make(chan struct{}), detached: make(chan struct{}, 1)}
}

// sseConn is a live HTTP response carrying SSE.
type sseConn struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	// out writes through the server's own buffer of the connection: no
	// buffer of its own per response.
	out     sseWriter
	legacy  bool // legacy transport: every message has "event: message"
	started bool // the status line and headers were written
}

var (
	sseContentType  = []string{"text/event-stream"}
	sseCacheControl = []string{"no-cache, no-transform"}
	sseNoBuffering  = []string{"no"}
)

func newSSEConn(w http.ResponseWriter, legacy bool) *sseConn {
	h := w.Header()
	// Shared values: nothing on the way out changes them.
	h["Content-Type"] = sseContentType
	h["Cache-Control"] = sseCacheControl
	h["X-Accel-Buffering"] = sseNoBuffering
	delete(h, "Content-Length")
	// Nothing is written yet: the caller may still answer 409 if the stream
	// is taken. The headers go out with the first event, in one write;
	// streams that may wait for their first event call flush at once.
	out, ok := w.(sseWriter)
	if !ok {
		out = stringWriter{w}
	}
	return &sseConn{w: w, rc: http.NewResponseController(w), out: out, legacy: legacy}
}

// sseWriter is what events are written to: the response, which the
// server buffers.
type sseWriter interface {
	io.Writer
	io.StringWriter
}

// stringWriter adds WriteString to a response that lacks it.
type stringWriter struct{ http.ResponseWriter }

func (w stringWriter) WriteString(s string) (int, error) { return w.Write([]byte(s)) }

// begin writes the status line and headers before the first event.
func (c *sseConn) begin() {
	if !c.started {
		c.started = true
		c.w.WriteHeader(http.StatusOK)
	}
}

func (c *sseConn) flush() error {
	_ = c.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	c.begin()
	return c.rc.Flush()
}

func (c *sseConn) writeEvent(name, id string, data []byte) error {
	if err := c.appendEvent(name, id, data); err != nil {
		return err
	}
	return c.flush()
}

// writeLastEvent writes a stream's final event without pushing it to the
// network: the handler returns next, and the server sends it with the
// end of the response, in one write.
func (c *sseConn) writeLastEvent(id string, data []byte) error {
	_ = c.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	return c.appendEvent("", id, data)
}

func (c *sseConn) appendEvent(name, id string, data []byte) error {
	c.begin()
	w := c.out
	if name != "" {
		w.WriteString("event: ")
		w.WriteString(name)
		w.WriteString("\n")
	} else if c.legacy {
		w.WriteString("event: message\n")
	}
	if id != "" {
		w.WriteString("id: ")
		w.WriteString(id)
		w.WriteString("\n")
	}
	writeData(w, data)
	_, err := w.WriteString("\n")
	return err
}

// writeData writes data as SSE data lines. JSON holds line breaks only as
// whitespace between tokens, so a pretty-printed upstream message is split
// over several data lines, which the client joins again with newlines.
func writeData(w sseWriter, data []byte) {
	for {
		i := lineBreak(data)
		if i < 0 {
			break
		}
		w.WriteString("data: ")
		w.Write(data[:i])
		w.WriteString("\n")
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	w.WriteString("data: ")
	w.Write(data)
	w.WriteString("\n")
}

// lineBreak is the index of the first CR or LF in data, or -1: two
// byte searches, which run many bytes at a time, rather than one search
// for either byte, which tests them one by one; compact JSON, what the
// broker itself writes, has neither.
func lineBreak(data []byte) int {
	i := bytes.IndexByte(data, '\n')
	before := data
	if i >= 0 {
		before = data[:i]
	}
	if j := bytes.IndexByte(before, '\r'); j >= 0 {
		return j
	}
	return i
}

func (c *sseConn) writeComment(text string) error {
	c.begin()
	c.out.WriteString(": ")
	c.out.WriteString(text)
	c.out.WriteString("\n\n")
	return c.flush()
}

func (s *stream) eventID(seq int) string { return s.id + "_" + strconv.Itoa(seq) }

// parseEventID splits an event id into its stream id and sequence number.
func parseEventID(id string) (streamID string, seq int, ok bool) {
	i := strings.LastIndexByte(id, '_')
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(id[i+1:])
	if err != nil || n < 0 {
		return "", 0, false
	}
	return id[:i], n, true
}

// send records a message and writes it to the attached connection; a nil
// message only marks the end of the stream when final.
func (s *stream) send(data []byte, final bool) { s.put(data, jsonrpc.ID{}, final) }

// sendAnswer is send for the response to the request with id: when the
// response is too large to keep for resumption, an error with its id is
// kept instead, so a client that resumes is not left waiting.
func (s *stream) sendAnswer(data []byte, id jsonrpc.ID, final bool) { s.put(data, id, final) }

func (s *stream) put(data []byte, answerTo jsonrpc.ID, final bool) {
	if s.owner != nil && data != nil {
		s.mu.Lock()
		budget := s.budget
		s.mu.Unlock()
		if budget.full(len(data)) {
			s.owner.reclaim(len(data), s)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.final {
		return
	}
	if data != nil {
		s.seq++
		s.keepLocked(data, answerTo)
		if s.conn != nil {
			var err error
			if final {
				err = s.conn.writeLastEvent(s.eventID(s.seq), data)
			} else {
				err = s.conn.writeEvent("", s.eventID(s.seq), data)
			}
			if err != nil {
				s.dropConnLocked()
			}
		}
		if n := len(s.events); s.copy != nil && n > 0 && s.events[n-1].seq == s.seq {
			s.copy.appendLocked(s, PeerEvent{Seq: s.seq, Data: s.events[n-1].data})
		}
	}
	if final {
		s.final = true
		close(s.done)
		if s.copy != nil {
			s.copy.appendLocked(s, PeerEvent{Seq: s.seq, Final: true})
			s.copy = nil
		}
	}
}

// errAnswerNotKept stands in, for a client that resumes, for an answer
// that could not be kept.
var errAnswerNotKept = jsonrpc.NewError(jsonrpc.CodeServerError, "the answer was too large to keep for resumption; send the request again")

// keepLocked keeps the newest event for replay within the stream's and
// the session's limits, dropping this stream's oldest events to make room:
// an answer matters more than the progress that came before it.
func (s *stream) keepLocked(data []byte, answerTo jsonrpc.ID) {
	kept := data
	if len(kept) > maxStreamBytes {
		kept = nil
	}
	for kept != nil && len(s.events) > 0 && (s.budget.full(len(kept)) || s.bytes+len(kept) > maxStreamBytes || len(s.events) >= maxStreamEvents) {
		s.dropOldestLocked()
	}
	if kept != nil && !s.budget.take(len(kept)) {
		kept = nil
	}
	if kept == nil && answerTo.IsValid() {
		kept = jsonrpc.NewErrorResponse(answerTo, errAnswerNotKept).Encode()
		for len(s.events) > 0 && s.budget.full(len(kept)) {
			s.dropOldestLocked()
		}
		if !s.budget.take(len(kept)) {
			kept = nil
		}
	}
	if kept == nil {
		return
	}
	s.events = append(s.events, event{seq: s.seq, data: kept})
	s.bytes += len(kept)
}

func (s *stream) dropOldestLocked() {
	n := len(s.events[0].data)
	s.events[0] = event{}
	s.events = s.events[1:]
	s.bytes -= n
	s.budget.give(n)
}

// discard forgets every kept event, giving their bytes back.
func (s *stream) discard() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.discardLocked()
}

func (s *stream) discardLocked() {
	s.budget.give(s.bytes)
	s.events, s.bytes = nil, 0
}

// keepsNothing is the budget of streams of ended sessions: calls that
// finish after their session ended keep nothing.
var keepsNothing = &keepBudget{}

// close forgets the kept events and keeps none from now on.
func (s *stream) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.discardLocked()
	s.budget = keepsNothing
}

func (s *stream) dropConnLocked() {
	s.conn = nil
	select {
	case s.detached <- struct{}{}:
	default:
	}
}

// attach makes c the stream's connection, if it has none, and replays the
// events after seq. It reports false, having written nothing, when another
// connection holds the stream.
func (s *stream) attach(c *sseConn, after int) bool {
	return s.attachConn(c, after, false)
}

// attachOpen is attach for a connection that must show it is open at once
// (a GET waiting for events): it flushes the headers, under the lock that
// orders all writes to c.
func (s *stream) attachOpen(c *sseConn, after int) bool {
	return s.attachConn(c, after, true)
}

func (s *stream) attachConn(c *sseConn, after int, open bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		return false
	}
	select { // a stale signal from an earlier connection
	case <-s.detached:
	default:
	}
	s.conn = c
	for _, e := range s.events {
		if e.seq <= after {
			continue
		}
		if err := c.writeEvent("", s.eventID(e.seq), e.data); err != nil {
			s.dropConnLocked()
			return true
		}
	}
	if open && !c.started {
		if err := c.flush(); err != nil {
			s.dropConnLocked()
		}
	}
	return true
}

// release detaches c after the final message; when c was still attached
// the client has everything, so nothing is kept for resumption.
func (s *stream) release(c *sseConn) {
	s.mu.Lock()
	if s.conn == c {
		s.conn = nil
		s.discardLocked()
	}
	s.mu.Unlock()
}

// detach removes c if it is still the attached connection.
func (s *stream) detach(c *sseConn) {
	s.mu.Lock()
	if s.conn == c {
		s.conn = nil
	}
	s.mu.Unlock()
}

// advance makes the stream's next event id follow seq.
func (s *stream) advance(seq int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq = max(s.seq, seq)
}

// lastSeq is the sequence number of the newest message.
func (s *stream) lastSeq() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq
}

// comment writes a keep-alive comment to the attached connection.
func (s *stream) comment(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		if err := s.conn.writeComment(text); err != nil {
			s.dropConnLocked()
		}
	}
}

// writeJSON writes one complete JSON response body.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
