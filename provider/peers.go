package provider

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// Peers connects replicas that serve the same sessions. A session's
// requests may reach any replica, but some state stays where it was made:
// the call an upstream's request to the client belongs to, a call a client
// cancels, the events of a request stream whose client went away. Through
// Peers, a replica hands another what reached it for state it does not
// hold, and copies a stream's events out for a client that resumes it
// elsewhere.
type Peers interface {
	// Publish tells the other replicas m.
	Publish(ctx context.Context, m PeerMessage) error
	// Run gives deliver what the other replicas publish, until ctx ends;
	// it survives the connection coming and going meanwhile. It calls
	// ready once it receives (or has given up waiting to).
	Run(ctx context.Context, deliver func(PeerMessage), ready func())
	// Append adds events to the shared copy of a session's stream and
	// tells the replicas waiting for it.
	Append(ctx context.Context, session, stream string, events []PeerEvent) error
	// Events reads the shared copy of a stream; none when nothing copied
	// it out.
	Events(ctx context.Context, session, stream string) ([]PeerEvent, error)
}

// Kinds of PeerMessage.
const (
	// PeerClientMessage carries a client's answer or notification that
	// reached a replica holding nothing it belongs to.
	PeerClientMessage = "message"
	// PeerResume asks the replica holding a stream to copy its events out
	// from After on.
	PeerResume = "resume"
	// PeerEvents says a stream's shared copy grew.
	PeerEvents = "events"
	// PeerHeldRound hands the replica holding a modern client's held
	// call the client's next round (modern_relay.go).
	PeerHeldRound = "held"
)

// PeerMessage is what one replica tells the others about a session, which
// it names by digest, never by id.
type PeerMessage struct {
	Kind    string          `json:"k"`
	From    string          `json:"f"`
	Session string          `json:"s"`
	Stream  string          `json:"t,omitempty"`
	After   int             `json:"a,omitempty"`
	Message json.RawMessage `json:"m,omitempty"`
}

// PeerEvent is one event of a stream's shared copy. An event with Final
// and no Data only ends the stream; the first event a copy gets, with
// neither, says the stream exists.
type PeerEvent struct {
	Seq   int
	Data  []byte
	Final bool
}

const (
	// peerResumeWait is how long a replica waits for the stream a client
	// resumes to be copied out by the replica holding it, before answering
	// that it is not found.
	peerResumeWait = 3 * time.Second
	// peerReadyWait bounds how long a provider waits at start for its
	// subscription to the peers, so that it hears them before it serves.
	peerReadyWait = 2 * time.Second
	// peerPoll rereads a shared copy now and then, in case a notice that
	// it grew was lost while the connection to the peers was down.
	peerPoll = time.Second
	// maxPeerDeliveries bounds the peer messages served at once; more are
	// dropped, and their senders' clients see what a lost message means
	// (a call waiting for an answer until it times out).
	maxPeerDeliveries = 64
	// maxPeerMessageBytes bounds a client's message handed to the peers;
	// a larger answer reaches only the replica it was sent to.
	maxPeerMessageBytes = 1 << 20
)

// errPeerMessageTooLarge refuses to hand the peers a message over
// maxPeerMessageBytes.
var errPeerMessageTooLarge = fmt.Errorf("provider: a message over %d bytes is not handed to other replicas", maxPeerMessageBytes)

// sessionDigest names a session to the peers.
func sessionDigest(id string) string { return hex.EncodeToString(endedKey(id)) }

// peerLink is a provider's side of its Peers.
type peerLink struct {
	peers Peers
	self  string // this replica's name among the peers
	slots chan struct{}
	note  func(event string)

	mu      sync.Mutex
	waiters map[string]map[chan struct{}]struct{} // session digest + stream → resumers here
}

func newPeerLink(peers Peers, note func(string)) *peerLink {
	if note == nil {
		note = func(string) {}
	}
	return &peerLink{peers: peers, self: randomStreamID() + randomStreamID(), note: note,
		slots: make(chan struct{}, maxPeerDeliveries), waiters: make(map[string]map[chan struct{}]struct{})}
}

func (l *peerLink) wait(key string) (chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	l.mu.Lock()
	if l.waiters[key] == nil {
		l.waiters[key] = make(map[chan struct{}]struct{})
	}
	l.waiters[key][ch] = struct{}{}
	l.mu.Unlock()
	return ch, func() {
		l.mu.Lock()
		delete(l.waiters[key], ch)
		if len(l.waiters[key]) == 0 {
			delete(l.waiters, key)
		}
		l.mu.Unlock()
	}
}

func (l *peerLink) wake(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ch := range l.waiters[key] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Relay hands a client's message that this replica holds nothing for to
// the replicas sharing the session: a response to a request another
// replica sent the client, or a cancellation of a call another replica
// serves. Without peers it does nothing.
func (s *Session) Relay(ctx context.Context, m *jsonrpc.Message) error {
	l := s.peers
	if l == nil {
		return nil
	}
	data := m.Encode()
	if len(data) > maxPeerMessageBytes {
		l.note("relay_failed")
		return errPeerMessageTooLarge
	}
	err := l.peers.Publish(ctx, PeerMessage{Kind: PeerClientMessage, From: l.self, Session: s.digest, Message: data})
	if err != nil {
		l.note("relay_failed")
		return err
	}
	l.note("relayed")
	return nil
}

// runPeers serves what the other replicas publish until the provider
// closes.
func (p *Provider) runPeers(ctx context.Context, ready func()) {
	defer p.wg.Done()
	p.peers.peers.Run(ctx, func(m PeerMessage) {
		if m.From == p.peers.self {
			return
		}
		switch m.Kind {
		case PeerEvents:
			p.peers.wake(m.Session + "/" + m.Stream)
		case PeerResume:
			if s := p.sessions.byDigest(m.Session); s != nil {
				if st := s.findStream(m.Stream); st != nil && st.id != standaloneStreamID {
					if st.copyOut(p.peers.peers, m.Session, m.After, p.log) {
						p.peers.note("copied_out")
					} else {
						p.peers.note("copy_failed")
					}
				}
			}
		case PeerHeldRound:
			select {
			case p.peers.slots <- struct{}{}:
			default:
				p.peers.note("dropped")
				return
			}
			go func() {
				defer func() { <-p.peers.slots }()
				p.serveHeldRound(m)
			}()
		case PeerClientMessage:
			s := p.sessions.byDigest(m.Session)
			if s == nil {
				return
			}
			msg, err := jsonrpc.Decode(m.Message)
			if err != nil || msg.Kind() == jsonrpc.KindRequest {
				return
			}
			select {
			case p.peers.slots <- struct{}{}:
			default:
				p.peers.note("dropped")
				p.log.Warn("peers: too many messages from other replicas at once; one dropped", "method", msg.Method)
				return
			}
			p.peers.note("delivered")
			go func() {
				defer func() { <-p.peers.slots }()
				p.dispatcher.Dispatch(s.context(), &Request{Message: msg, Session: s, Relayed: true})
			}()
		}
	}, ready)
}

// copyOut copies the stream's events after seq to its shared copy, and
// every event from now on, for a client resuming it through another
// replica.
func (s *stream) copyOut(peers Peers, session string, after int, log *slog.Logger) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	events := []PeerEvent{{Seq: after}}
	for _, e := range s.events {
		if e.seq > after {
			events = append(events, PeerEvent{Seq: e.seq, Data: e.data})
		}
	}
	if s.final {
		events = append(events, PeerEvent{Seq: s.seq, Final: true})
	}
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	if err := peers.Append(ctx, session, s.id, events); err != nil {
		log.Warn("peers: a stream could not be copied out for a client resuming it elsewhere", "error", err)
		return false
	}
	if !s.final {
		s.copy = &streamCopy{peers: peers, session: session}
	}
	return true
}

// streamCopy is where a stream copies its events once a client resumes it
// through another replica.
type streamCopy struct {
	peers   Peers
	session string
}

// appendLocked adds one event to the shared copy; s.mu is held, so the
// copy has the events in order.
func (c *streamCopy) appendLocked(s *stream, e PeerEvent) {
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	_ = c.peers.Append(ctx, c.session, s.id, []PeerEvent{e})
}

// resumeElsewhere serves a client resuming a request stream this replica
// does not hold: it asks the peers for it, then relays its shared copy
// from after on until the stream ends, the client leaves or the session
// ends.
func (p *Provider) resumeElsewhere(w http.ResponseWriter, r *http.Request, s *Session, streamID string, after int) {
	digest := sessionDigest(s.ID)
	wake, done := p.peers.wait(digest + "/" + streamID)
	defer done()
	ctx := r.Context()
	if err := p.peers.peers.Publish(ctx, PeerMessage{Kind: PeerResume, From: p.peers.self, Session: digest, Stream: streamID, After: after}); err != nil {
		writeHTTPError(w, httpError(http.StatusServiceUnavailable, jsonrpc.CodeServerError, "session store unavailable: the stream cannot be resumed now"))
		return
	}
	var conn *sseConn
	deadline := time.NewTimer(peerResumeWait)
	defer deadline.Stop()
	poll := time.NewTicker(peerPoll)
	defer poll.Stop()
	keepAlive := time.NewTicker(p.opts.StreamKeepAlive)
	defer keepAlive.Stop()
	last := after
	for {
		events, err := p.peers.peers.Events(ctx, digest, streamID)
		if err != nil && conn == nil {
			writeHTTPError(w, httpError(http.StatusServiceUnavailable, jsonrpc.CodeServerError, "session store unavailable: the stream cannot be resumed now"))
			return
		}
		if len(events) > 0 && conn == nil {
			p.peers.note("resumed_elsewhere")
			conn = newSSEConn(w, false)
			if conn.flush() != nil {
				return
			}
		}
		for _, e := range events {
			switch {
			case e.Final:
				return
			case e.Data == nil || e.Seq <= last:
				continue
			}
			if conn.writeEvent("", streamID+"_"+strconv.Itoa(e.Seq), e.Data) != nil {
				return
			}
			last = e.Seq
		}
		select {
		case <-wake:
		case <-poll.C:
		case <-keepAlive.C:
			if conn != nil && conn.writeComment("keep-alive") != nil {
				return
			}
		case <-deadline.C:
			if conn == nil {
				p.peers.note("resume_not_found")
				writeHTTPError(w, httpError(http.StatusNotFound, jsonrpc.CodeInvalidRequest, "stream not found"))
				return
			}
		case <-ctx.Done():
			return
		case <-s.context().Done():
			return
		}
	}
}
