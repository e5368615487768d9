package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// ModernVersion is the protocol version without sessions.
const ModernVersion = jsonrpc.ModernVersion

// Bounds of the multi round-trip exchange with a modern server.
const (
	maxInputRounds = 10
	maxBusyRetries = 3
	// maxInputRequests bounds the questions of one round: each becomes a
	// request the client must answer.
	maxInputRequests = 16
	maxInputKeyBytes = 256
)

// ModernSession speaks to a server of the sessionless protocol
// (ModernVersion) as if it were a session, so the broker serves it like
// any other upstream: every request carries the client's version,
// capabilities and name in _meta and the standard headers; a result that
// asks for input (input_required) is turned into the server-to-client
// requests of the older protocol, passed to onMessage, and the request is
// sent again with their answers (given to Send) until it completes;
// logging/setLevel sets the level later requests ask for, ping is
// answered here, and Listen is a subscriptions/listen.
type ModernSession struct {
	http         *Session
	capabilities json.RawMessage
	clientInfo   json.RawMessage
	logLevel     atomic.Pointer[string]

	// subs are the resources subscribed to, which Listen asks to hear
	// of; subsChanged is closed when they change.
	subsMu      sync.Mutex
	subs        map[string]bool
	subsChanged chan struct{}

	mu      sync.Mutex
	pending map[string]chan *jsonrpc.Message // questions awaiting answers, by id
	seq     atomic.Int64
}

var _ Transport = (*ModernSession)(nil)

// NewModernSession returns a session with the modern server at opts.URL
// for a client with the given capabilities and name (JSON objects; empty
// for none).
func NewModernSession(opts *Options, capabilities, clientInfo json.RawMessage) (*ModernSession, error) {
	s, err := NewSession(opts)
	if err != nil {
		return nil, err
	}
	s.SetProtocolVersion(ModernVersion)
	if len(capabilities) == 0 {
		capabilities = json.RawMessage("{}")
	}
	if len(clientInfo) == 0 {
		clientInfo = json.RawMessage(`{"name":"mcpbroker","version":"1"}`)
	}
	return &ModernSession{http: s, capabilities: capabilities, clientInfo: clientInfo,
		subs: map[string]bool{}, subsChanged: make(chan struct{}),
		pending: make(map[string]chan *jsonrpc.Message)}, nil
}

// maxSubscriptions bounds the resources one session subscribes to.
const maxSubscriptions = 64

// subscribe records a resources/subscribe or unsubscribe: Listen asks
// for the resources subscribed to, opening its listen again when they
// change.
func (m *ModernSession) subscribe(msg *jsonrpc.Message, on bool) *jsonrpc.Message {
	var p struct {
		URI string `json:"uri"`
	}
	if err := json.Unmarshal(msg.Params, &p); err != nil || p.URI == "" {
		return jsonrpc.NewErrorResponse(msg.ID, jsonrpc.NewError(jsonrpc.CodeInvalidParams, "invalid params: uri is required"))
	}
	m.subsMu.Lock()
	defer m.subsMu.Unlock()
	if on && !m.subs[p.URI] && len(m.subs) >= maxSubscriptions {
		return jsonrpc.NewErrorResponse(msg.ID, jsonrpc.Errorf(jsonrpc.CodeInvalidParams, "invalid params: at most %d resources are subscribed to at once", maxSubscriptions))
	}
	if m.subs[p.URI] != on {
		if on {
			m.subs[p.URI] = true
		} else {
			delete(m.subs, p.URI)
		}
		close(m.subsChanged)
		m.subsChanged = make(chan struct{})
	}
	return &jsonrpc.Message{ID: msg.ID, Result: json.RawMessage("{}")}
}

// ID is always empty: there is no session to go on with elsewhere, and
// none is needed.
func (m *ModernSession) ID() string              { return "" }
func (m *ModernSession) SetID(string)            {}
func (m *ModernSession) ProtocolVersion() string { return ModernVersion }
func (m *ModernSession) SetProtocolVersion(string) {
}

// withMeta returns params with the modern _meta members set; the
// client's own _meta members (progressToken, trace context) are kept.
func (m *ModernSession) withMeta(params json.RawMessage) (json.RawMessage, error) {
	set := []struct {
		name  string
		value []byte
	}{
		{jsonrpc.MetaProtocolVersion, []byte(strconv.Quote(ModernVersion))},
		{jsonrpc.MetaClientCapabilities, m.capabilities},
		{jsonrpc.MetaClientInfo, m.clientInfo},
	}
	if level := m.logLevel.Load(); level != nil {
		set = append(set, struct {
			name  string
			value []byte
		}{jsonrpc.MetaLogLevel, []byte(strconv.Quote(*level))})
	}
	var err error
	for _, s := range set {
		if params, err = jsonrpc.SetMetaMember(params, s.name, s.value); err != nil {
			return nil, err
		}
	}
	return params, nil
}

// header returns the standard headers of a request beside the call's own.
func header(base http.Header, method string, params json.RawMessage) http.Header {
	h := make(http.Header, len(base)+2)
	for k, v := range base {
		h[k] = v
	}
	h["Mcp-Method"] = []string{method}
	if name, named := jsonrpc.RequestName(method, params); named && name != "" {
		h["Mcp-Name"] = []string{name}
	}
	return h
}

// Call sends a request, taking it through as many rounds as the server
// asks for input.
func (m *ModernSession) Call(ctx context.Context, msg *jsonrpc.Message, hdr http.Header, onMessage func(*jsonrpc.Message)) (*jsonrpc.Message, error) {
	switch msg.Method {
	case "initialize":
		return nil, fmt.Errorf("upstream: %w: a %s server has no initialize; open it with server/discover", ErrProtocol, ModernVersion)
	case "ping":
		return &jsonrpc.Message{ID: msg.ID, Result: json.RawMessage("{}")}, nil
	case "logging/setLevel":
		var p struct {
			Level string `json:"level"`
		}
		if err := json.Unmarshal(msg.Params, &p); err != nil || p.Level == "" {
			return jsonrpc.NewErrorResponse(msg.ID, jsonrpc.NewError(jsonrpc.CodeInvalidParams, "invalid params: level is required")), nil
		}
		m.logLevel.Store(&p.Level)
		return &jsonrpc.Message{ID: msg.ID, Result: json.RawMessage("{}")}, nil
	case "resources/subscribe", "resources/unsubscribe":
		// Kept here: a modern server hears of them through Listen.
		return m.subscribe(msg, msg.Method == "resources/subscribe"), nil
	}
	params := msg.Params
	busy := 0
	for round := 0; ; round++ {
		withMeta, err := m.withMeta(params)
		if err != nil {
			return nil, fmt.Errorf("upstream: %s: %w", msg.Method, err)
		}
		req := &jsonrpc.Message{ID: msg.ID, Method: msg.Method, Params: withMeta}
		resp, err := m.http.Call(ctx, req, header(hdr, msg.Method, withMeta), onMessage)
		if err != nil {
			var se *StatusError
			if errors.As(err, &se) && se.RPCError != nil && se.StatusCode >= 400 && se.StatusCode < 500 && se.StatusCode != http.StatusUnauthorized && se.StatusCode != http.StatusForbidden {
				// The protocol's refusals come as 4xx with the error.
				return jsonrpc.NewErrorResponse(msg.ID, se.RPCError), nil
			}
			return nil, err
		}
		if resp.Error != nil {
			return resp, nil
		}
		var input struct {
			ResultType    string                     `json:"resultType"`
			InputRequests map[string]json.RawMessage `json:"inputRequests"`
			RequestState  json.RawMessage            `json:"requestState"`
		}
		if json.Unmarshal(resp.Result, &input) != nil || input.ResultType != "input_required" {
			return resp, nil
		}
		if round == maxInputRounds {
			return nil, fmt.Errorf("upstream: %w: %s still asks for input after %d rounds", ErrProtocol, msg.Method, maxInputRounds)
		}
		if len(input.InputRequests) == 0 {
			// Busy: asked to come back.
			if busy++; busy > maxBusyRetries {
				return nil, fmt.Errorf("upstream: %w: %s: the server stays busy", ErrProtocol, msg.Method)
			}
			if err := sleep(ctx, time.Duration(busy)*200*time.Millisecond); err != nil {
				return nil, err
			}
			continue
		}
		answers, errResp, err := m.ask(ctx, msg.ID, input.InputRequests, onMessage)
		if err != nil || errResp != nil {
			return errResp, err
		}
		if params, err = retryParams(msg.Params, answers, input.RequestState); err != nil {
			return nil, fmt.Errorf("upstream: %s: %w", msg.Method, err)
		}
	}
}

// ask puts a server's questions to the client as requests through
// onMessage and waits for every answer (given to Send). An answer that is
// an error ends the call with it.
func (m *ModernSession) ask(ctx context.Context, id jsonrpc.ID, requests map[string]json.RawMessage, onMessage func(*jsonrpc.Message)) (map[string]json.RawMessage, *jsonrpc.Message, error) {
	if onMessage == nil {
		return nil, nil, fmt.Errorf("upstream: %w: the server asks for input and nobody can answer", ErrProtocol)
	}
	type question struct {
		key string
		id  string
		ch  chan *jsonrpc.Message
	}
	if len(requests) > maxInputRequests {
		return nil, nil, fmt.Errorf("upstream: %w: %d input requests in one round, at most %d are passed on", ErrProtocol, len(requests), maxInputRequests)
	}
	questions := make([]question, 0, len(requests))
	defer func() {
		m.mu.Lock()
		for _, q := range questions {
			delete(m.pending, q.id)
		}
		m.mu.Unlock()
	}()
	for key, raw := range requests {
		var r struct {
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
		}
		if err := json.Unmarshal(raw, &r); err != nil || r.Method == "" || len(key) > maxInputKeyBytes {
			return nil, nil, fmt.Errorf("upstream: %w: malformed input request %q", ErrProtocol, sanitize(key, 64))
		}
		qid := jsonrpc.StringID("input-" + strconv.FormatInt(m.seq.Add(1), 10))
		q := question{key: key, id: qid.Raw(), ch: make(chan *jsonrpc.Message, 1)}
		m.mu.Lock()
		m.pending[q.id] = q.ch
		m.mu.Unlock()
		questions = append(questions, q)
		params := r.Params
		if keyed, err := jsonrpc.SetMetaMember(params, jsonrpc.MetaInputKey, []byte(strconv.Quote(key))); err == nil {
			params = keyed
		}
		onMessage(&jsonrpc.Message{ID: qid, Method: r.Method, Params: params})
	}
	answers := make(map[string]json.RawMessage, len(questions))
	for _, q := range questions {
		select {
		case a := <-q.ch:
			if a.Error != nil {
				return nil, jsonrpc.NewErrorResponse(id, a.Error), nil
			}
			answers[q.key] = a.Result
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	return answers, nil, nil
}

// retryParams are a request's params sent again with the answers and the
// server's state.
func retryParams(params json.RawMessage, answers map[string]json.RawMessage, state json.RawMessage) (json.RawMessage, error) {
	if len(params) == 0 || string(params) == "null" {
		params = json.RawMessage("{}")
	}
	raw, err := jsonrpc.Marshal(answers)
	if err != nil {
		return nil, err
	}
	out, err := jsonrpc.SetMember(params, "inputResponses", raw)
	if err != nil {
		return nil, err
	}
	if len(state) > 0 && string(state) != "null" {
		return jsonrpc.SetMember(out, "requestState", state)
	}
	return out, nil
}

// Send takes the answers to the questions Call put; a cancellation needs
// nothing sent (closing the request cancels it), and the rest of the
// older protocol's notifications mean nothing to the server.
func (m *ModernSession) Send(_ context.Context, msg *jsonrpc.Message, _ http.Header) error {
	if err := sendable(msg); err != nil {
		return err
	}
	if msg.Kind() == jsonrpc.KindNotification {
		return nil
	}
	m.mu.Lock()
	ch := m.pending[msg.ID.Raw()]
	delete(m.pending, msg.ID.Raw())
	m.mu.Unlock()
	if ch == nil {
		return sendError(msg, fmt.Errorf("%w: no question %s awaits an answer", ErrProtocol, sanitize(msg.ID.Raw(), 64)))
	}
	ch <- msg
	return nil
}

// Listen holds a subscriptions/listen open until ctx ends, passing on
// what it brings: list changes, and updates of the resources subscribed
// to, asking again whenever those change.
func (m *ModernSession) Listen(ctx context.Context, hdr http.Header, onMessage func(*jsonrpc.Message)) error {
	for {
		m.subsMu.Lock()
		uris := make([]string, 0, len(m.subs))
		for uri := range m.subs {
			uris = append(uris, uri)
		}
		changed := m.subsChanged
		m.subsMu.Unlock()
		slices.Sort(uris)
		notifications := map[string]any{"toolsListChanged": true, "promptsListChanged": true, "resourcesListChanged": true}
		if len(uris) > 0 {
			notifications["resourceSubscriptions"] = uris
		}
		params, err := jsonrpc.Marshal(map[string]any{"notifications": notifications})
		if err != nil {
			return err
		}
		msg := &jsonrpc.Message{ID: jsonrpc.StringID("listen-" + strconv.FormatInt(m.seq.Add(1), 10)), Method: "subscriptions/listen", Params: params}
		listenCtx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-changed:
				cancel()
			case <-listenCtx.Done():
			}
		}()
		resp, err := m.Call(listenCtx, msg, hdr, func(n *jsonrpc.Message) {
			if n.Method != "notifications/subscriptions/acknowledged" {
				onMessage(n)
			}
		})
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		select {
		case <-changed:
			continue // asked again for the resources subscribed to now
		default:
		}
		if err != nil {
			return err
		}
		if resp.Error != nil {
			if resp.Error.Code == jsonrpc.CodeMethodNotFound {
				return ErrNoStream
			}
			return fmt.Errorf("upstream: subscriptions/listen: %w", resp.Error)
		}
		return nil // the server ended the subscription
	}
}

// Close has nothing to end.
func (m *ModernSession) Close(context.Context, http.Header) error { return nil }
