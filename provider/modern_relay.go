package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// A modern client's next round may reach another replica than the one
// holding its call. That replica hands the round to the others by the
// requestState's digest (the state itself is a bearer of the call and
// never leaves the replica it reached); the one holding the call serves
// it on a stream whose events it copies out through the peers, and the
// first relays them to its client, as a resumed stream is relayed.

// heldRelayFind bounds the wait for a replica to take up a relayed
// round; heldRelayMax the whole round.
const (
	heldRelayFind = 3 * time.Second
	heldRelayMax  = heldIdleTimeout
)

// heldDigest names a held call to the peers.
func heldDigest(state string) string {
	sum := sha256.Sum256([]byte("mcpbroker held call\x00" + state))
	return hex.EncodeToString(sum[:])
}

// heldRound is what a replica hands the others of a round.
type heldRound struct {
	Subject string          `json:"s"`
	User    string          `json:"u"`
	Message json.RawMessage `json:"m"`
}

// relayHeldRound hands a round this replica holds nothing for to the
// peers, and answers the client with what the replica holding its call
// answers; a requestState no replica takes up is refused as unknown.
func (p *Provider) relayHeldRound(w http.ResponseWriter, r *http.Request, id *Identity, m *jsonrpc.Message, state string, sseOK bool) {
	digest, round := heldDigest(state), randomStreamID()
	payload, _ := json.Marshal(heldRound{Subject: id.Subject, User: heldUser(id), Message: m.Encode()})
	if len(payload) > maxPeerMessageBytes {
		writeHTTPErrorFor(w, httpError(http.StatusRequestEntityTooLarge, jsonrpc.CodeInvalidParams, "invalid params: the answers are too large to hand to the replica holding the request"), m.ID)
		return
	}
	wake, done := p.peers.wait(digest + "/" + round)
	defer done()
	ctx := r.Context()
	if err := p.peers.peers.Publish(ctx, PeerMessage{Kind: PeerHeldRound, From: p.peers.self, Session: digest, Stream: round, Message: payload}); err != nil {
		p.peers.note("relay_failed")
		writeHTTPErrorFor(w, httpError(http.StatusServiceUnavailable, jsonrpc.CodeServerError, "session store unavailable: the request awaiting input cannot be reached now; retry shortly"), m.ID)
		return
	}
	p.peers.note("relayed")
	find := time.NewTimer(heldRelayFind)
	defer find.Stop()
	give := time.NewTimer(heldRelayMax)
	defer give.Stop()
	poll := time.NewTicker(peerPoll)
	defer poll.Stop()
	var conn *sseConn
	found, last := false, 0
	var answer []byte // the last event, for a client that takes JSON only
	for {
		events, err := p.peers.peers.Events(ctx, digest, round)
		if err != nil && !found {
			writeHTTPErrorFor(w, httpError(http.StatusServiceUnavailable, jsonrpc.CodeServerError, "session store unavailable: the request awaiting input cannot be reached now; retry shortly"), m.ID)
			return
		}
		for _, e := range events {
			found = true
			switch {
			case e.Final:
				if conn == nil {
					if answer == nil {
						writeHTTPErrorFor(w, errUnknownState, m.ID)
						return
					}
					writeJSON(w, http.StatusOK, answer)
				}
				return
			case e.Data == nil || e.Seq <= last:
				continue
			}
			last = e.Seq
			if !sseOK {
				answer = e.Data
				continue
			}
			if conn == nil {
				conn = newSSEConn(w, false)
			}
			if conn.writeEvent("", "", e.Data) != nil {
				return
			}
		}
		select {
		case <-wake:
		case <-poll.C:
		case <-find.C:
			if !found {
				p.opts.OnHeld("unknown")
				writeHTTPErrorFor(w, errUnknownState, m.ID)
				return
			}
		case <-give.C:
			if conn == nil {
				writeHTTPErrorFor(w, httpError(http.StatusGatewayTimeout, jsonrpc.CodeServerError, "the request awaiting input did not answer in time"), m.ID)
			}
			return
		case <-ctx.Done():
			return
		}
	}
}

// serveHeldRound serves a round another replica handed here, if this
// replica holds its call and the round's caller made it: the answer's
// events are copied out for that replica to relay.
func (p *Provider) serveHeldRound(pm PeerMessage) {
	var round heldRound
	if json.Unmarshal(pm.Message, &round) != nil {
		return
	}
	m, err := jsonrpc.Decode(round.Message)
	if err != nil || m.Kind() != jsonrpc.KindRequest {
		return
	}
	p.heldMu.Lock()
	key, ok := p.heldByDigest[pm.Session]
	p.heldMu.Unlock()
	if !ok {
		return // another replica's, or none
	}
	h := p.unholdFor(key, round.Subject, round.User)
	if h == nil {
		return
	}
	facts := &modernFacts{}
	if meta, _ := requestMeta(m.Params); meta != nil {
		_ = json.Unmarshal(meta[MetaLogLevel], &facts.logLevel)
	}
	r, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "/", nil)
	st := h.s.newRequestStreamID(pm.Stream)
	if !st.copyOut(p.peers.peers, pm.Session, 0, p.log) {
		p.opts.OnHeld("expired")
		p.endTransient(h.s)
		return
	}
	h.mu.Lock()
	h.out = &postStream{w: discardWriter{}, r: r, sseOK: true, st: st}
	h.mu.Unlock()
	p.continueHeld(r, &Identity{Subject: round.Subject}, m, facts, h)
}

// unholdFor is unhold for a caller known by its subject and held-call
// user name, as a round relayed from another replica names it.
func (p *Provider) unholdFor(key, subject, user string) *heldCall {
	p.heldMu.Lock()
	h := p.held[key]
	ok := h != nil && h.subject == subject && h.user == user
	p.heldMu.Unlock()
	if !ok {
		return nil
	}
	return p.unhold(key, nil)
}

// discardWriter is the response of a round served for another replica:
// its events reach the client through the stream's shared copy.
type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (discardWriter) WriteHeader(int)             {}
