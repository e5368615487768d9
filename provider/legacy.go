package provider

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// The legacy HTTP+SSE transport (protocol 2024-11-05): the client opens a
// GET stream whose first event names the endpoint it POSTs messages to;
// every message from the server travels on that one stream. Sessions live
// as long as the stream, so they are local to this process.

func (p *Provider) serveLegacyStream(w http.ResponseWriter, r *http.Request, id *Identity) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeHTTPError(w, httpError(http.StatusMethodNotAllowed, jsonrpc.CodeServerError, "method not allowed"))
		return
	}
	now := p.now()
	s := newSession(id, now)
	s.legacy = true
	s.ProtocolVersion = "2024-11-05"
	if err := p.sessions.addLocal(s, now); err != nil {
		if errors.Is(err, errTooManySessions) {
			writeHTTPError(w, sessionCapError(err))
			return
		}
		writeHTTPError(w, httpError(http.StatusServiceUnavailable, jsonrpc.CodeServerError, "cannot open session"))
		return
	}
	defer p.sessions.end(s)
	s.inflight = make(chan struct{}, p.opts.MaxInFlight)
	ctx := s.context()
	// The open stream is the session's listener: idle sweeps spare it.
	s.mu.Lock()
	s.listening = func() {}
	s.mu.Unlock()

	conn := newSSEConn(w, true)
	st := s.standaloneStream()
	st.attachOpen(conn, 0)
	defer st.detach(conn)
	// Attached first, so nothing sent once the client knows the endpoint is
	// lost; nothing can be sent before, since the client cannot yet speak.
	endpoint := p.opts.MessagePath + "?sessionId=" + url.QueryEscape(s.ID)
	st.mu.Lock()
	err := conn.writeEvent("endpoint", "", []byte(endpoint))
	st.mu.Unlock()
	if err != nil {
		return
	}

	p.hold(r, st, conn, ctx, p.opts.KeepAlive)
}

// legacySender sends on the session's one stream.
type legacySender struct{ s *Session }

func (l legacySender) Send(m *jsonrpc.Message) error {
	if !l.s.Notify(m) {
		return ErrNoStream
	}
	return nil
}

func (p *Provider) serveLegacyMessage(w http.ResponseWriter, r *http.Request, id *Identity) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeHTTPError(w, httpError(http.StatusMethodNotAllowed, jsonrpc.CodeServerError, "method not allowed"))
		return
	}
	sid := r.URL.Query().Get("sessionId")
	if sid == "" {
		writeHTTPError(w, httpError(http.StatusBadRequest, jsonrpc.CodeInvalidRequest, "bad request: missing sessionId"))
		return
	}
	p.sessions.mu.Lock()
	s := p.sessions.live[sid]
	p.sessions.mu.Unlock()
	if s == nil || !s.legacy || s.Subject != id.Subject {
		writeHTTPError(w, httpError(http.StatusNotFound, jsonrpc.CodeInvalidRequest, "session not found"))
		return
	}
	s.touch(p.now())
	msgs, errs, _, ok := p.readMessages(w, r)
	if !ok {
		return
	}
	out := legacySender{s}
	ctx := s.context()
	for i, m := range msgs {
		if errs[i] != nil {
			_ = out.Send(decodeErrorResponse(errs[i]))
			continue
		}
		// The request is served after this handler returns: give it a copy
		// that does not end with the POST.
		req := &Request{Message: m, Session: s, HTTP: r.Clone(context.WithoutCancel(r.Context())), Identity: id}
		if m.Kind() != jsonrpc.KindRequest {
			p.dispatcher.Dispatch(ctx, req)
			continue
		}
		select {
		case s.inflight <- struct{}{}:
		default:
			_ = out.Send(jsonrpc.NewErrorResponse(m.ID, jsonrpc.NewError(jsonrpc.CodeServerError, "too many requests in flight")))
			continue
		}
		req.Out = out
		// The answer travels on the stream, so the POST returns at once and
		// the request is served on its own goroutine, bounded by inflight
		// and by the session's life.
		go func() {
			defer func() { <-s.inflight }()
			initialize := req.Message.Method == "initialize"
			resp := p.dispatcher.Dispatch(ctx, req).Message
			if resp != nil {
				_ = out.Send(resp)
			}
			if initialize && resp != nil && resp.Error == nil {
				p.dispatcher.Listen(ctx, s)
			}
		}()
	}
	w.WriteHeader(http.StatusAccepted)
}
