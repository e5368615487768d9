package provider

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// A modern request is served on a session of its own, made from what its
// _meta says and ended with it. Where the broker's protocol has a server
// ask the client something mid-request (an upstream's elicitation,
// sampling or roots request), the modern protocol answers the request
// with an input_required result instead and the client sends the request
// again with its answers: the call stays open here, held, between the
// rounds, and the requestState the client echoes names it.

// Bounds on held calls: how long one waits for the client's next round,
// how many are held in all and for one user.
const (
	heldIdleTimeout = 10 * time.Minute
	maxHeldCalls    = 1000
	maxHeldPerUser  = 64
	// heldResultKept is how long the result of a call that ended while
	// held (its upstream gave up waiting, or answered) waits for the
	// client's next round.
	heldResultKept = 30 * time.Second
	// heldCancelWait bounds the wait for a cancelled call to end.
	heldCancelWait = 5 * time.Second
	// inputSettle is how long a question waits for others asked with
	// it, up to maxInputSettle, before the client is asked them all.
	inputSettle    = 25 * time.Millisecond
	maxInputSettle = 250 * time.Millisecond
)

// servePostModern serves a POST made the modern way (modernPost).
func (p *Provider) servePostModern(w http.ResponseWriter, r *http.Request, id *Identity, msgs []*jsonrpc.Message, errs []error, batch, sseOK bool) {
	if batch {
		writeHTTPError(w, httpError(http.StatusBadRequest, jsonrpc.CodeInvalidRequest, "invalid request: batches are not supported in protocol version "+ModernVersion))
		return
	}
	if errs[0] != nil {
		writeDecodeError(w, errs[0])
		return
	}
	m := msgs[0]
	switch m.Kind() {
	case jsonrpc.KindNotification:
		// Only notifications/cancelled is defined, and without a session
		// it relates to nothing: a request is cancelled by closing its
		// response.
		w.WriteHeader(http.StatusAccepted)
		return
	case jsonrpc.KindResponse:
		writeHTTPError(w, httpError(http.StatusBadRequest, jsonrpc.CodeInvalidRequest, "invalid request: protocol version "+ModernVersion+" has no server-to-client requests to answer"))
		return
	}
	facts, herr := checkModern(r, m)
	if herr != nil {
		writeHTTPErrorFor(w, herr, m.ID)
		return
	}
	if state, ok := requestState(m.Params); ok {
		p.resumeHeld(w, r, id, m, facts, state, sseOK)
		return
	}
	s := newSession(id, p.now())
	s.ProtocolVersion = ModernVersion
	s.ClientCapabilities = facts.capabilities
	s.ClientInfo = facts.clientInfo
	s.modern, s.transient = true, true
	req := &jsonrpc.Message{ID: m.ID, Method: m.Method, Params: withoutModernMeta(m.Params, facts.meta)}
	if m.Method == "subscriptions/listen" {
		p.listenModern(w, r, id, s, req)
		return
	}
	h := &heldCall{
		p: p, s: s, method: m.Method, name: modernName(m),
		subject: id.Subject, user: heldUser(id),
		reply: make(chan Reply, 1), asked: make(chan struct{}, 1),
		logLevel: logSeverity(facts.logLevel),
	}
	// The round's answer is ready before the call starts, so nothing it
	// sends early (progress) is lost.
	h.out = &postStream{w: w, r: r, sseOK: sseOK, st: s.newRequestStream()}
	go func() {
		h.reply <- p.dispatcher.Dispatch(s.context(), &Request{Message: req, Session: s, HTTP: r, Identity: id, Out: h})
		p.endedWhileHeld(h)
	}()
	p.awaitHeld(w, r, h, m.ID, sseOK)
}

// heldUser is whom a held call counts against: the user, or for an
// anonymous caller its address.
func heldUser(id *Identity) string {
	if u := id.user(); u != "" {
		return u
	}
	return "address " + id.Address
}

// EndHeld ends every call held for a client's input, as the server
// stops: it waits on people, not on upstreams. It reports how many.
func (p *Provider) EndHeld() int {
	p.heldMu.Lock()
	held := make([]*heldCall, 0, len(p.held))
	for _, h := range p.held {
		held = append(held, h)
	}
	p.heldMu.Unlock()
	n := 0
	for _, h := range held {
		if p.unhold(h.key, nil) != nil {
			p.endTransient(h.s)
			n++
		}
	}
	return n
}

// endedWhileHeld shortens the wait of a call whose result came while it
// was held: the client has heldResultKept to come for it.
func (p *Provider) endedWhileHeld(h *heldCall) {
	p.heldMu.Lock()
	defer p.heldMu.Unlock()
	if h.key != "" && p.held[h.key] == h {
		h.expiry.Reset(heldResultKept)
	}
}

// modernName is the tool or prompt name, or the URI, a request is about.
func modernName(m *jsonrpc.Message) string {
	name, _ := jsonrpc.RequestName(m.Method, m.Params)
	return name
}

// requestState returns a retried request's requestState.
func requestState(params json.RawMessage) (string, bool) {
	raw, ok, err := jsonrpc.Member(params, "requestState")
	if err != nil || !ok {
		return "", false
	}
	var state string
	if json.Unmarshal(raw, &state) != nil {
		return "", true // present but not a string: refused as unknown
	}
	return state, true
}

// heldCall is a modern request being served: its session, the questions
// the server put to the client that await answers, and the POST of the
// current round, if any.
type heldCall struct {
	p        *Provider
	s        *Session
	key      string // its requestState while held
	method   string
	name     string
	subject  string
	user     string
	reply    chan Reply
	asked    chan struct{} // a question arrived
	logLevel int           // lowest log severity passed on; -1: none

	mu     sync.Mutex
	out    *postStream // the round being answered; nil between rounds
	asks   []heldAsk   // questions not answered yet
	seq    int
	expiry *time.Timer
}

// heldAsk is one question to the client: the request a server sent,
// under the key the input_required result names it by.
type heldAsk struct {
	key    string
	id     jsonrpc.ID
	method string
	params json.RawMessage
}

// Send takes what the server relates to the call: its questions are kept
// for the next input_required result; notifications go to the round's
// stream, log messages only at the level the client asked for.
func (h *heldCall) Send(m *jsonrpc.Message) error {
	h.mu.Lock()
	if m.Kind() == jsonrpc.KindRequest {
		key, params := jsonrpc.TakeInputKey(m.Params)
		if key == "" || h.asking(key) {
			h.seq++
			key = "input-" + strconv.Itoa(h.seq)
		}
		h.asks = append(h.asks, heldAsk{key: key, id: m.ID, method: m.Method, params: params})
		h.mu.Unlock()
		select {
		case h.asked <- struct{}{}:
		default:
		}
		return nil
	}
	out := h.out
	h.mu.Unlock()
	if m.Method == "notifications/message" && !h.logged(m.Params) {
		return nil
	}
	if out == nil {
		return ErrNoStream
	}
	return out.Send(m)
}

// hasAsks reports whether questions await answers.
func (h *heldCall) hasAsks() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.asks) > 0
}

// asking reports whether a question is asked under key already; h.mu is
// held.
func (h *heldCall) asking(key string) bool {
	for _, a := range h.asks {
		if a.key == key {
			return true
		}
	}
	return false
}

// logged reports whether a log message is at the level the client asked
// for, or above it.
func (h *heldCall) logged(params json.RawMessage) bool {
	if h.logLevel < 0 {
		return false
	}
	var p struct {
		Level string `json:"level"`
	}
	_ = json.Unmarshal(params, &p)
	return logSeverity(p.Level) >= h.logLevel
}

// refusable: a refusal can still be the round's HTTP answer.
func (h *heldCall) refusable() bool {
	h.mu.Lock()
	out := h.out
	h.mu.Unlock()
	return out != nil && out.refusable()
}

// awaitHeld answers one round: with the call's result when it ends, with
// an input_required result when the server asks the client something, or
// not at all when the client goes away, which cancels the call.
func (p *Provider) awaitHeld(w http.ResponseWriter, r *http.Request, h *heldCall, id jsonrpc.ID, sseOK bool) {
	h.mu.Lock()
	out := h.out
	if out == nil {
		out = &postStream{w: w, r: r, sseOK: sseOK, st: h.s.newRequestStream()}
		h.out = out
	}
	h.mu.Unlock()
	detach := func() {
		h.mu.Lock()
		h.out = nil
		h.mu.Unlock()
	}
	var reply Reply
wait:
	for {
		select {
		case reply = <-h.reply:
			break wait
		case <-h.asked:
			if !h.hasAsks() {
				continue // a signal for questions answered already
			}
			// Questions asked together go in one result: more are
			// waited for while they keep coming, briefly.
			settle := time.NewTimer(inputSettle)
			deadline := time.Now().Add(maxInputSettle)
			for collecting := true; collecting; {
				select {
				case reply = <-h.reply:
					settle.Stop()
					break wait
				case <-h.asked:
					settle.Reset(min(inputSettle, time.Until(deadline)))
				case <-settle.C:
					collecting = false
				}
			}
			detach()
			p.askClient(out, h, id)
			return
		case <-r.Context().Done():
			// Closing the request cancels it: the call ends, telling its
			// upstream, before its upstream sessions do.
			detach()
			if h.key != "" {
				p.opts.OnHeld("cancelled")
			}
			h.s.cancel()
			select {
			case <-h.reply:
			case <-time.After(heldCancelWait):
			}
			p.endTransient(h.s)
			return
		}
	}
	detach()
	p.endTransient(h.s)
	if reply.Refusal != nil && out.refuse(reply.Refusal, id) {
		return
	}
	resp := reply.Message
	if resp == nil {
		resp = jsonrpc.NewErrorResponse(id, jsonrpc.NewError(jsonrpc.CodeInternalError, "internal error"))
	}
	resp = &jsonrpc.Message{ID: id, Result: resp.Result, Error: resp.Error}
	if resp.Error != nil {
		if status := modernErrorStatus(resp.Error.Code); status != 0 {
			if out.refuse(&HTTPError{Status: status, Code: resp.Error.Code, Message: resp.Error.Message, Data: resp.Error.Data}, id) {
				return
			}
		}
	} else {
		resp.Result = p.modernResult(h.method, resp.Result, "complete")
	}
	out.answer(resp)
	out.finish()
}

// modernErrorStatus is the HTTP status a modern request's error is sent
// with when its answer has not begun: 0 for the errors a 200 carries.
func modernErrorStatus(code int64) int {
	switch code {
	case jsonrpc.CodeMethodNotFound:
		return http.StatusNotFound
	case jsonrpc.CodeInvalidParams, CodeHeaderMismatch, CodeMissingRequiredCapabilities, CodeUnsupportedProtocolVersion:
		return http.StatusBadRequest
	}
	return 0
}

// askClient answers a round with the questions awaiting answers, and
// holds the call for the next round.
func (p *Provider) askClient(out *postStream, h *heldCall, id jsonrpc.ID) {
	if err := p.park(h); err != nil {
		p.endTransient(h.s)
		if !out.refuse(err, id) {
			out.answer(jsonrpc.NewErrorResponse(id, jsonrpc.NewError(err.Code, err.Message)))
			out.finish()
		}
		return
	}
	h.mu.Lock()
	requests := make(map[string]any, len(h.asks))
	for _, a := range h.asks {
		requests[a.key] = map[string]json.RawMessage{"method": json.RawMessage(strconv.Quote(a.method)), "params": a.params}
	}
	h.mu.Unlock()
	result, err := jsonrpc.Marshal(map[string]any{"inputRequests": requests, "requestState": h.key})
	if err != nil {
		result = []byte(`{}`)
	}
	out.answer(&jsonrpc.Message{ID: id, Result: p.modernResult(h.method, result, "input_required")})
	out.finish()
}

// park parks a call between rounds under a new requestState, within the
// bounds; it ends when the client does not come back in time.
func (p *Provider) park(h *heldCall) *HTTPError {
	var b [16]byte
	_, _ = rand.Read(b[:])
	key := hex.EncodeToString(b[:])
	p.heldMu.Lock()
	defer p.heldMu.Unlock()
	if p.held == nil {
		p.held = make(map[string]*heldCall)
		p.heldByDigest = make(map[string]string)
		p.heldPerUser = make(map[string]int)
	}
	if len(p.held) >= maxHeldCalls {
		p.opts.OnHeld("refused")
		return httpError(http.StatusServiceUnavailable, jsonrpc.CodeServerError, "too many requests awaiting client input; retry later")
	}
	if p.heldPerUser[h.user] >= maxHeldPerUser {
		p.opts.OnHeld("refused")
		return httpError(http.StatusTooManyRequests, jsonrpc.CodeServerError, "too many of this user's requests await input; answer or abandon them first")
	}
	h.key = key
	p.held[key] = h
	p.heldByDigest[heldDigest(key)] = key
	p.heldPerUser[h.user]++
	h.expiry = time.AfterFunc(heldIdleTimeout, func() {
		if p.unhold(key, nil) != nil {
			p.opts.OnHeld("expired")
			p.endTransient(h.s)
		}
	})
	p.opts.OnHeld("held")
	return nil
}

// unhold takes a held call back by its requestState, for the caller
// (nil: whoever); nil when there is none, or it is another's.
func (p *Provider) unhold(key string, who *Identity) *heldCall {
	p.heldMu.Lock()
	defer p.heldMu.Unlock()
	h := p.held[key]
	if h == nil || (who != nil && (h.subject != who.Subject || h.user != heldUser(who))) {
		return nil
	}
	delete(p.held, key)
	delete(p.heldByDigest, heldDigest(key))
	if p.heldPerUser[h.user]--; p.heldPerUser[h.user] <= 0 {
		delete(p.heldPerUser, h.user)
	}
	h.expiry.Stop()
	return h
}

// resumeHeld serves a round after the first: the client's answers go to
// the server's questions, and the call goes on.
func (p *Provider) resumeHeld(w http.ResponseWriter, r *http.Request, id *Identity, m *jsonrpc.Message, facts *modernFacts, state string, sseOK bool) {
	h := p.unhold(state, id)
	if h == nil && p.peers != nil {
		// Perhaps another replica holds it.
		p.relayHeldRound(w, r, id, m, state, sseOK)
		return
	}
	if h == nil {
		p.opts.OnHeld("unknown")
		writeHTTPErrorFor(w, errUnknownState, m.ID)
		return
	}
	h.mu.Lock()
	h.out = &postStream{w: w, r: r, sseOK: sseOK, st: h.s.newRequestStream()}
	h.mu.Unlock()
	p.continueHeld(r, id, m, facts, h)
}

// errUnknownState refuses a requestState that names no held call.
var errUnknownState = httpError(http.StatusBadRequest, jsonrpc.CodeInvalidParams,
	"invalid params: requestState names no request awaiting input (it ended, expired, or was made by another caller); send the request again without it")

// continueHeld serves a round after the first on the held call h, taken
// back from its requestState, answering on h.out: the client's answers go
// to the server's questions, and the call goes on.
func (p *Provider) continueHeld(r *http.Request, id *Identity, m *jsonrpc.Message, facts *modernFacts, h *heldCall) {
	h.mu.Lock()
	out := h.out
	h.mu.Unlock()
	if h.method != m.Method || h.name != modernName(m) {
		p.endTransient(h.s)
		if !out.refuse(httpError(http.StatusBadRequest, jsonrpc.CodeInvalidParams, "invalid params: requestState belongs to another request"), m.ID) {
			out.answer(jsonrpc.NewErrorResponse(m.ID, jsonrpc.NewError(jsonrpc.CodeInvalidParams, "invalid params: requestState belongs to another request")))
			out.finish()
		}
		return
	}
	var answers map[string]json.RawMessage
	if raw, ok, _ := jsonrpc.Member(m.Params, "inputResponses"); ok {
		if json.Unmarshal(raw, &answers) != nil {
			p.endTransient(h.s)
			if !out.refuse(httpError(http.StatusBadRequest, jsonrpc.CodeInvalidParams, "invalid params: inputResponses must be an object"), m.ID) {
				out.answer(jsonrpc.NewErrorResponse(m.ID, jsonrpc.NewError(jsonrpc.CodeInvalidParams, "invalid params: inputResponses must be an object")))
				out.finish()
			}
			return
		}
	}
	p.opts.OnHeld("resumed")
	h.logLevel = logSeverity(facts.logLevel)
	h.mu.Lock()
	var open []heldAsk
	var answered []*jsonrpc.Message
	for _, a := range h.asks {
		if res, ok := answers[a.key]; ok && isObject(res) {
			answered = append(answered, &jsonrpc.Message{ID: a.id, Result: res})
		} else {
			open = append(open, a)
		}
	}
	h.asks = open
	h.mu.Unlock()
	for _, resp := range answered {
		p.dispatcher.Dispatch(h.s.context(), &Request{Message: resp, Session: h.s, HTTP: r, Identity: id})
	}
	if len(open) > 0 {
		// Asked again for what was not answered.
		h.mu.Lock()
		h.out = nil
		h.mu.Unlock()
		p.askClient(out, h, m.ID)
		return
	}
	p.awaitHeld(out.w, out.r, h, m.ID, out.sseOK)
}

// cacheableResults are the results that say how long they may be kept.
var cacheableResults = map[string]bool{
	"server/discover":          true,
	"tools/list":               true,
	"prompts/list":             true,
	"resources/list":           true,
	"resources/templates/list": true,
	"resources/read":           true,
}

// modernResult adds what every modern result carries: its resultType,
// the server's name in _meta and, on lists, reads and discovery, how
// long it may be kept and by whom. Always "private": what a caller is
// shown depends on who it is.
func (p *Provider) modernResult(method string, result json.RawMessage, resultType string) json.RawMessage {
	if !isObject(result) {
		return result
	}
	out, err := jsonrpc.SetMember(result, "resultType", []byte(strconv.Quote(resultType)))
	if err != nil {
		return result
	}
	if withInfo, err := jsonrpc.SetMetaMember(out, MetaServerInfo, p.serverInfo); err == nil {
		out = withInfo
	}
	if cacheableResults[method] && resultType == "complete" {
		if _, ok, _ := jsonrpc.Member(out, "ttlMs"); !ok {
			out, _ = jsonrpc.SetMember(out, "ttlMs", []byte("0"))
		}
		out, _ = jsonrpc.SetMember(out, "cacheScope", []byte(`"private"`))
	}
	return out
}
