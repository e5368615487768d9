package provider

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// UpstreamRef names the upstream session an app holds for a client session,
// so that a replica restoring the session can reach the same upstream state.
type UpstreamRef struct {
	ID              string `json:"i,omitempty"`
	ProtocolVersion string `json:"v,omitempty"`
}

// Session is one client's MCP session. The exported facts are sealed into
// its id; the rest lives in this process only.
type Session struct {
	ID                 string
	Subject            string
	ProtocolVersion    string
	ClientCapabilities json.RawMessage
	ClientInfo         json.RawMessage
	Created            time.Time
	// Upstreams are the upstream sessions opened at initialize.
	Upstreams map[string]UpstreamRef

	legacy bool
	// modern: a request of the sessionless protocol, served on its own.
	modern bool
	// transient: the session of one POST, ended with it (a modern
	// request, or any on an endpoint without sessions).
	transient bool
	// filter, when set, edits or drops (nil) what Notify sends.
	filter func(*jsonrpc.Message) *jsonrpc.Message
	// user is what the per-user session limit counts (Identity.User);
	// address what the per-address one counts.
	user    string
	address string

	mu         sync.Mutex
	lastSeen   time.Time
	streams    map[string]*stream
	order      []string // request streams, oldest first
	standalone *stream
	listening  context.CancelFunc // set while a GET stream is attached
	ended      bool
	ctx        context.Context
	cancel     context.CancelFunc
	inflight   chan struct{} // legacy transport: bounds concurrent requests
	busy       int           // Streamable HTTP requests being served
	// budget bounds the bytes the session's streams keep for resumption;
	// set when the session is admitted.
	budget *keepBudget
	// peers links the replicas sharing the session; nil for one replica.
	peers *peerLink
	// digest names the session to the peers.
	digest string
}

// acquire counts n requests in, all or none, unless that would make more
// than max being served.
func (s *Session) acquire(n, max int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy+n > max {
		return false
	}
	s.busy += n
	return true
}

func (s *Session) release(n int) {
	s.mu.Lock()
	s.busy -= n
	s.mu.Unlock()
}

// Legacy reports whether the session uses the HTTP+SSE transport.
func (s *Session) Legacy() bool { return s.legacy }

// Transient reports whether the session is one POST's, ended with it.
func (s *Session) Transient() bool { return s.transient }

// Modern reports whether the session is one request of the sessionless
// protocol (ModernVersion).
func (s *Session) Modern() bool { return s.modern }

// standaloneStreamID names the stream of the session's GET connection.
const standaloneStreamID = "0"

func randomStreamID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// maxKeptStreams bounds the finished request streams kept for resumption.
const maxKeptStreams = 16

// newRequestStream opens a stream for one POST's responses.
func (s *Session) newRequestStream() *stream {
	// Random ids: an event id of another session's stream names nothing here.
	return s.newRequestStreamID(randomStreamID())
}

// newRequestStreamID is newRequestStream under a given id (a round
// another replica relays, named by it).
func (s *Session) newRequestStreamID(id string) *stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.newStreamLocked(id)
	if s.streams == nil {
		s.streams = make(map[string]*stream)
	}
	s.streams[st.id] = st
	s.order = append(s.order, st.id)
	s.trimLocked()
	return st
}

func (s *Session) newStreamLocked(id string) *stream {
	st := newStream(id)
	st.budget, st.owner = s.budget, s
	return st
}

// trimStreams forgets the oldest finished request streams beyond
// maxKeptStreams. Streams whose response is still coming are passed over,
// never counted out: one slow call must not keep the rest.
func (s *Session) trimStreams() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trimLocked()
}

func (s *Session) trimLocked() {
	excess := len(s.order) - maxKeptStreams
	if excess <= 0 {
		return
	}
	kept := s.order[:0]
	for _, id := range s.order {
		if st := s.streams[id]; excess > 0 && st.isFinal() {
			st.discard()
			delete(s.streams, id)
			excess--
			continue
		}
		kept = append(kept, id)
	}
	clear(s.order[len(kept):])
	s.order = kept
}

// reclaim makes room for need bytes in the session's budget for kept
// events, taking from other streams than for: first the finished request
// streams, oldest first, then the GET stream's replay, then what calls
// still in flight kept.
func (s *Session) reclaim(need int, asking *stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.order[:0]
	for _, id := range s.order {
		if st := s.streams[id]; st != asking && s.budget.full(need) && st.isFinal() {
			st.discard()
			delete(s.streams, id)
			continue
		}
		kept = append(kept, id)
	}
	clear(s.order[len(kept):])
	s.order = kept
	if s.standalone != nil && s.standalone != asking && s.budget.full(need) {
		s.standalone.discard()
	}
	for _, id := range s.order {
		if !s.budget.full(need) {
			return
		}
		if st := s.streams[id]; st != asking {
			st.discard()
		}
	}
}

// dropStreams forgets every stream of an ended session, giving their kept
// bytes back to the process.
func (s *Session) dropStreams() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.streams {
		st.close()
	}
	if s.standalone != nil {
		s.standalone.close()
	}
	s.streams, s.order = nil, nil
}

func (st *stream) isFinal() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.final
}

// standaloneStream is the stream of the session's GET connection.
func (s *Session) standaloneStream() *stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.standalone == nil {
		s.standalone = s.newStreamLocked(standaloneStreamID)
	}
	return s.standalone
}

func (s *Session) findStream(id string) *stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id == standaloneStreamID {
		return s.standalone
	}
	return s.streams[id]
}

// Notify sends a message that belongs to no client request (list changes,
// resource updates, server-to-client requests from an idle upstream) on the
// session's GET stream. It reports false when no client is listening.
func (s *Session) Notify(m *jsonrpc.Message) bool {
	s.mu.Lock()
	filter := s.filter
	s.mu.Unlock()
	if filter != nil {
		if m = filter(m); m == nil {
			return true
		}
	}
	st := s.standaloneStream()
	st.mu.Lock()
	listening := st.conn != nil
	st.mu.Unlock()
	if !listening {
		return false
	}
	st.send(m.Encode(), false)
	return true
}

func (s *Session) touch(now time.Time) {
	s.mu.Lock()
	s.lastSeen = now
	s.mu.Unlock()
}

func (s *Session) idleSince() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSeen
}

// Errors of session lookup.
var (
	errSessionNotFound = errors.New("session not found")
	// errSessionStoreDown: whether the session ended cannot be told now.
	errSessionStoreDown = errors.New("session store unavailable")
	errTooManySessions  = errors.New("too many sessions")
	// errTooManyForSubject and errTooManyForAddress are the per-client
	// caps; both are errTooManySessions too.
	errTooManyForSubject = fmt.Errorf("%w for this user", errTooManySessions)
	errTooManyForAddress = fmt.Errorf("%w from this address", errTooManySessions)
)

// registry holds this process's sessions and restores sealed ones.
type registry struct {
	sealer  *sealer
	timeout time.Duration
	max     int
	closed  func(*Session)

	mu   sync.Mutex
	live map[string]*Session
	// perSubject counts live sessions per user, so one user cannot take
	// every slot.
	perSubject    map[string]int
	maxPerSubject int
	// perAddress counts live sessions per client address.
	perAddress    map[string]int
	maxPerAddress int
	// refused is told of sessions refused for a cap.
	refused func(cap string)
	// ended holds terminated ids until they would have expired anyway.
	ended Revocations
	// onStoreError is told when an ended id could not be stored.
	onStoreError func(error)
	// kept is the process's budget for events kept for resumption; each
	// session gets keptPerSession of it at most.
	kept           *keepBudget
	keptPerSession int64
	// peers, when replicas share sessions, and the live sessions by the
	// digest peers name them by.
	peers   *peerLink
	digests map[string]*Session
}

func newRegistry(s *sealer, timeout time.Duration, max int, ended Revocations, closed func(*Session)) *registry {
	if ended == nil {
		ended = NewMemoryRevocations(maxEndedSessions)
	}
	return &registry{sealer: s, timeout: timeout, max: max, closed: closed,
		live: make(map[string]*Session), ended: ended, perSubject: make(map[string]int), perAddress: make(map[string]int)}
}

// maxEndedSessions bounds the terminated ids remembered.
const maxEndedSessions = 100000

// maxLifetime bounds how old a sealed id may be when restored without local
// state, so a leaked id does not live forever.
func (r *registry) maxLifetime() time.Duration {
	if r.timeout > 24*time.Hour {
		return r.timeout
	}
	return 24 * time.Hour
}

// admitLocked registers s if the limits allow; r.mu is held.
func (r *registry) admitLocked(s *Session) error {
	if err := r.capLocked(s); err != nil {
		return err
	}
	if s.budget == nil && r.kept != nil {
		s.budget = &keepBudget{max: r.keptPerSession, parent: r.kept}
	}
	r.live[s.ID] = s
	if r.peers != nil && !s.legacy {
		s.peers, s.digest = r.peers, sessionDigest(s.ID)
		if r.digests == nil {
			r.digests = make(map[string]*Session)
		}
		r.digests[s.digest] = s
	}
	if s.user != "" {
		r.perSubject[s.user]++
	}
	if s.address != "" {
		r.perAddress[s.address]++
	}
	return nil
}

// capLocked is the cap s would break if admitted, as its error; nil when
// none. r.mu is held.
func (r *registry) capLocked(s *Session) error {
	cap, err := "", error(nil)
	switch {
	case len(r.live) >= r.max:
		cap, err = "total", errTooManySessions
	case s.user != "" && r.maxPerSubject > 0 && r.perSubject[s.user] >= r.maxPerSubject:
		cap, err = "subject", errTooManyForSubject
	case s.address != "" && r.maxPerAddress > 0 && r.perAddress[s.address] >= r.maxPerAddress:
		cap, err = "address", errTooManyForAddress
	default:
		return nil
	}
	if r.refused != nil {
		r.refused(cap)
	}
	return err
}

// admits reports whether s could be admitted now, so that a session the
// caps refuse costs no upstream work; add decides for good.
func (r *registry) admits(s *Session) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.capLocked(s)
}

// add seals and registers a new session.
func (r *registry) add(s *Session, now time.Time) error {
	id, err := r.sealer.seal(&sealed{
		Subject: s.Subject, ProtocolVersion: s.ProtocolVersion, ClientCapabilities: s.ClientCapabilities,
		ClientInfo: s.ClientInfo, Created: unixTime(s.Created), Upstreams: s.Upstreams,
	})
	if err != nil {
		return err
	}
	s.ID = id
	s.lastSeen = now
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.admitLocked(s)
}

// get finds a session by id, restoring it from its sealed id when this
// process has not seen it.
func (r *registry) get(id string, who *Identity, now time.Time) (*Session, error) {
	subject := who.Subject
	r.mu.Lock()
	s, ok := r.live[id]
	r.mu.Unlock()
	switch revoked, err := r.ended.Revoked(id); {
	case err != nil:
		return nil, fmt.Errorf("%w: %v", errSessionStoreDown, err)
	case revoked:
		if ok {
			// Ended through another replica: this one lets go of it too,
			// rather than holding it until it idles out.
			r.close(s, false)
		}
		return nil, errSessionNotFound
	}
	if ok {
		// The owner is checked before anything else: another subject's
		// requests neither see the session nor keep it alive.
		if s.Subject != subject {
			return nil, errSessionNotFound
		}
		if now.Sub(s.idleSince()) > r.timeout && !s.hasListener() {
			r.end(s)
			return nil, errSessionNotFound
		}
		s.touch(now)
		return s, nil
	}
	v, err := r.sealer.open(id)
	if err != nil || v.Subject != subject {
		return nil, errSessionNotFound
	}
	created := time.Unix(v.Created, 0)
	if now.Sub(created) > r.maxLifetime() {
		return nil, errSessionNotFound
	}
	s = &Session{ID: id, Subject: v.Subject, ProtocolVersion: v.ProtocolVersion,
		ClientCapabilities: v.ClientCapabilities, ClientInfo: v.ClientInfo, Created: created,
		Upstreams: v.Upstreams, lastSeen: now, user: who.user(), address: who.Address}
	r.mu.Lock()
	defer r.mu.Unlock()
	if existing, ok := r.live[id]; ok {
		return existing, nil
	}
	if err := r.admitLocked(s); err != nil {
		return nil, err
	}
	return s, nil
}

// addLocal registers a session that lives in this process only (the
// legacy transport's): its id is random, not sealed, so no other replica
// can restore it.
func (r *registry) addLocal(s *Session, now time.Time) error {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	s.ID = base64.RawURLEncoding.EncodeToString(b[:])
	s.lastSeen = now
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.admitLocked(s)
}

// end terminates a session: its id is refused from now on.
func (r *registry) end(s *Session) { r.close(s, true) }

// close releases a session's state in this process; with revoke, its id is
// refused from now on. A shutdown does not revoke: another replica, or
// this one restarted with the same key, serves the session on.
func (r *registry) close(s *Session, revoke bool) {
	r.mu.Lock()
	if _, ok := r.live[s.ID]; ok {
		if s.user != "" {
			if r.perSubject[s.user]--; r.perSubject[s.user] <= 0 {
				delete(r.perSubject, s.user)
			}
		}
		if s.address != "" {
			if r.perAddress[s.address]--; r.perAddress[s.address] <= 0 {
				delete(r.perAddress, s.address)
			}
		}
	}
	delete(r.live, s.ID)
	if s.digest != "" && r.digests[s.digest] == s {
		delete(r.digests, s.digest)
	}
	if revoke && s.ID != "" {
		if err := r.ended.Revoke(s.ID, s.Created.Add(r.maxLifetime())); err != nil && r.onStoreError != nil {
			r.onStoreError(err)
		}
	}
	r.mu.Unlock()
	s.mu.Lock()
	already := s.ended
	s.ended = true
	cancel := s.listening
	s.mu.Unlock()
	if already {
		return
	}
	if cancel != nil {
		cancel()
	}
	s.context() // make sure there is a context to cancel
	s.cancel()
	s.dropStreams()
	if r.closed != nil {
		r.closed(s)
	}
}

// sweep ends idle sessions and forgets terminated ids past their lifetime.
func (r *registry) sweep(now time.Time) {
	var idle []*Session
	r.mu.Lock()
	for _, s := range r.live {
		if now.Sub(s.idleSince()) > r.timeout && !s.hasListener() {
			idle = append(idle, s)
		}
	}
	r.mu.Unlock()
	r.ended.Forget(now)
	for _, s := range idle {
		r.end(s)
	}
}

// user is what one user's sessions are counted by.
func (id *Identity) user() string {
	if id.User != "" {
		return id.User
	}
	return id.Subject
}

func (s *Session) hasListener() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listening != nil
}

// byDigest finds a live session by the digest peers name it by.
func (r *registry) byDigest(digest string) *Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.digests[digest]
}

// all returns the live sessions.
func (r *registry) all() []*Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Session, 0, len(r.live))
	for _, s := range r.live {
		out = append(out, s)
	}
	return out
}

// newSession starts an unregistered session of who.
func newSession(who *Identity, now time.Time) *Session {
	s := &Session{Subject: who.Subject, user: who.user(), address: who.Address, Created: now, lastSeen: now}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// context is cancelled when the session ends; calls in flight end with it.
func (s *Session) context() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		s.ctx, s.cancel = context.WithCancel(context.Background())
	}
	return s.ctx
}
