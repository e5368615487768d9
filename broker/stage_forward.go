package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/mcpbroker/mcpbroker/apps"
	"github.com/mcpbroker/mcpbroker/apps/upstream"
	"github.com/mcpbroker/mcpbroker/provider"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// forward serves the call where route sent it. No request is served while
// the audit trail cannot record it and audit.onFailure is refuse.
func (b *Broker) forward(ctx context.Context, c *Call) error {
	if c.Message.Kind() == jsonrpc.KindRequest {
		if err := b.audit.admit(); err != nil {
			return err
		}
	}
	switch c.Route {
	case routeLocal:
		return b.serveLocal(ctx, c)
	case routeAggregate:
		return b.aggregate(ctx, c)
	case routeFanOut:
		return b.fanOut(ctx, c)
	case routeApp:
		switch c.Message.Kind() {
		case jsonrpc.KindRequest:
			return b.forwardRequest(ctx, c)
		case jsonrpc.KindNotification:
			return b.forwardCancel(ctx, c)
		case jsonrpc.KindResponse:
			return b.forwardResponse(ctx, c)
		}
	}
	return nil
}

// serveLocal answers what the broker answers itself.
func (b *Broker) serveLocal(ctx context.Context, c *Call) error {
	switch c.Message.Method {
	case "initialize":
		return b.initialize(ctx, c)
	case "server/discover":
		return b.discover(ctx, c)
	case "subscriptions/listen":
		return b.subscribe(ctx, c)
	case "ping":
		c.Response = &jsonrpc.Message{Result: json.RawMessage("{}")}
	}
	return nil
}

// forwardRequest sends a request to its app under a fresh upstream id and
// relays whatever the upstream sends back on the way.
func (b *Broker) forwardRequest(ctx context.Context, c *Call) error {
	conn, err := b.conn(ctx, c.Session, c.App)
	if err != nil {
		return upstreamError(c.App, err)
	}
	params, err := upstreamParams(c)
	if err != nil {
		return err
	}
	if c.App.Local() {
		if params, err = withIdentityMeta(params, c.Principal); err != nil {
			return ErrInvalidParams
		}
	}
	upstreamID := jsonrpc.Int64ID(conn.NextID())
	progressToken := c.Params.progressToken()
	if progressToken != nil {
		if params, err = apps.WithProgressToken(params, upstreamID); err != nil {
			return ErrInvalidParams
		}
	}
	msg := &jsonrpc.Message{ID: upstreamID, Method: c.Message.Method, Params: params}
	// One context bounds the call by the app's timeout and ends it when
	// the client cancels (apps.Conn.Call adds no timeout of its own then).
	ctx, cancel := context.WithTimeout(ctx, c.App.Timeout)
	defer cancel()
	var cancelled atomic.Bool
	c.State.StartCall(c.Message.ID, conn, upstreamID, progressToken, func() {
		cancelled.Store(true)
		cancel()
	})
	defer c.State.EndCall(c.Message.ID, conn, upstreamID)
	header := c.upstreamHeader()
	if c.App.Modern() && c.Message.Method == "tools/call" {
		header = b.withParamHeaders(ctx, c, header, params)
	}
	if b.tracing != nil {
		header = header.Clone()
		if header == nil {
			header = http.Header{}
		}
		b.tracing.Inject(ctx, header)
		msg.Params = withTraceMeta(msg.Params, header)
	}
	start := time.Now()
	resp, err := conn.Call(ctx, msg, header, b.relayToClient(c.Session, conn, c.Request.Out))
	c.Upstream = time.Since(start)
	b.metrics.Upstream(c.App.Name, c.Upstream.Seconds(), err != nil)
	b.metrics.UpstreamUp(c.App.Name, err == nil)
	if cancelled.Load() {
		return ErrCancelled
	}
	if err != nil && c.Session.Transient() && errors.Is(ctx.Err(), context.Canceled) {
		// The client closed the request, which is how a request without
		// a session is cancelled: the upstream is told as its protocol
		// says (a modern upstream's request was closed already).
		b.cancelUpstream(conn, upstreamID)
		return ErrCancelled
	}
	if err != nil {
		return upstreamError(c.App, err)
	}
	c.State.NoteRequiredElicitations(conn, resp)
	c.Response = resp
	return nil
}

// upstreamParams rewrites the name a client used into the upstream's own.
// Only that member changes: the rest of the params reach the upstream as
// the client wrote them, so the upstream reads what the policy judged and
// a request under the body cap stays under it.
func upstreamParams(c *Call) (json.RawMessage, error) {
	exposed := c.Params.Name
	if c.Message.Method == "completion/complete" && c.Params.Ref != nil {
		exposed = c.Params.Ref.Name
	}
	if c.Name == "" || c.Name == exposed {
		return c.Message.Params, nil
	}
	name, err := jsonrpc.Marshal(c.Name)
	if err != nil {
		return nil, err
	}
	if c.Message.Method != "completion/complete" {
		return setParam(c.Message.Params, "name", name)
	}
	ref, ok, err := jsonrpc.Member(c.Message.Params, "ref")
	if err != nil || !ok {
		return nil, fmt.Errorf("%w: malformed ref", ErrInvalidParams)
	}
	if ref, err = jsonrpc.SetMember(ref, "name", name); err != nil {
		return nil, fmt.Errorf("%w: malformed ref", ErrInvalidParams)
	}
	return setParam(c.Message.Params, "ref", ref)
}

// setParam replaces one member of a message's params.
func setParam(params json.RawMessage, member string, value []byte) (json.RawMessage, error) {
	out, err := jsonrpc.SetMember(params, member, value)
	if err != nil {
		return nil, fmt.Errorf("%w: malformed params", ErrInvalidParams)
	}
	return out, nil
}

// forwardCancel passes a client's cancellation on under the upstream's id.
func (b *Broker) forwardCancel(ctx context.Context, c *Call) error {
	call, ok := c.State.FindCall(string(trimJSON(c.Params.RequestID)))
	if !ok {
		return nil
	}
	params, err := setParam(c.Message.Params, "requestId", []byte(call.UpstreamID.Raw()))
	if err != nil {
		return err
	}
	// The client expects no answer now: stop waiting for the upstream's
	// before telling it, so a quick answer to the cancellation is not sent.
	call.Cancel()
	return call.Conn.Send(ctx, &jsonrpc.Message{Method: c.Message.Method, Params: params}, nil)
}

// forwardResponse passes a client's answer to an upstream's request back
// under the upstream's id.
func (b *Broker) forwardResponse(ctx context.Context, c *Call) error {
	r, ok := c.State.TakeServerRequest(c.Message.ID)
	if !ok {
		return nil
	}
	m := *c.Message
	m.ID = r.UpstreamID
	return r.Conn.Send(ctx, &m, nil)
}

// fanOut sends a message to every app and answers once.
func (b *Broker) fanOut(ctx context.Context, c *Call) error {
	if c.Message.Kind() == jsonrpc.KindNotification {
		for _, conn := range c.State.OpenConns() {
			if err := conn.Send(ctx, c.Message, nil); err != nil {
				b.log.Debug("notification not delivered", "app", conn.App.Name, "method", c.Message.Method, "error", err)
			}
		}
		return nil
	}
	// logging/setLevel: every upstream that logs gets the level.
	each(c.gen.catalog.Apps, func(app *apps.App) {
		conn, err := b.conn(ctx, c.Session, app)
		if err != nil {
			return
		}
		if r := conn.Result(); r != nil && r.Capabilities.Logging == nil {
			return
		}
		msg := &jsonrpc.Message{ID: jsonrpc.Int64ID(conn.NextID()), Method: c.Message.Method, Params: c.Message.Params}
		if _, err := conn.Call(ctx, msg, nil, nil); err != nil {
			b.log.Debug("logging level not set", "app", app.Name, "error", err)
		}
	})
	c.Response = &jsonrpc.Message{Result: json.RawMessage("{}")}
	return nil
}

// relayToClient returns the handler for messages an upstream sends while a
// request is served (or on its standalone stream): notifications pass
// through, those about a request only from the upstream the request
// belongs to (relay_origin.go); requests to the client get a client-facing
// id so the answer can find its way back.
func (b *Broker) relayToClient(s *provider.Session, conn *apps.Conn, out provider.Sender) func(*jsonrpc.Message) {
	st := b.stateOf(s)
	return func(m *jsonrpc.Message) {
		switch m.Kind() {
		case jsonrpc.KindRequest:
			b.relayServerRequest(st, s.Modern(), conn, out, m)
		case jsonrpc.KindNotification:
			method := m.Method
			switch method {
			case "notifications/cancelled":
				m = st.RemapServerCancel(conn, m)
			case "notifications/progress":
				m = st.RemapProgress(conn, m)
			case "notifications/elicitation/complete":
				m = st.CompleteElicitation(conn, m)
			case "notifications/resources/updated":
				m = b.checkResourceUpdated(st, conn, m)
			case "notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed":
				// Passed on to every listening session, this one too, at
				// most once a second (list_changes.go).
				b.listChanged(conn.App, method)
				return
			}
			if m == nil {
				b.log.Warn("upstream notification about a request it did not make dropped",
					"app", conn.App.Name, "method", method, "session", st.digestOf(s.ID))
				return
			}
			if out != nil {
				_ = out.Send(m)
			}
		}
	}
}

// checkResourceUpdated passes an update about a resource only from the
// app that serves its URI: another app cannot announce changes to, and
// so prompt re-reads of, what it does not own.
func (b *Broker) checkResourceUpdated(st *sessionState, conn *apps.Conn, m *jsonrpc.Message) *jsonrpc.Message {
	var p struct {
		URI string `json:"uri"`
	}
	if jsonrpc.Unmarshal(m.Params, &p) != nil || p.URI == "" {
		return nil
	}
	app := conn.App
	if !app.MayList(p.URI) {
		return nil
	}
	if app.SharesURIs() {
		if owner := st.resourceApp(p.URI); owner != nil && owner != app {
			return nil
		}
	}
	return m
}

func (b *Broker) relayServerRequest(st *sessionState, modern bool, conn *apps.Conn, out provider.Sender, m *jsonrpc.Message) {
	refuse := func(message string) {
		resp := jsonrpc.NewErrorResponse(m.ID, jsonrpc.NewError(jsonrpc.CodeInternalError, message))
		ctx, cancel := context.WithTimeout(context.Background(), conn.App.Timeout)
		defer cancel()
		_ = conn.Send(ctx, resp, nil)
	}
	if refusal := st.clientCapabilities().refusal(m); refusal != nil {
		b.log.Debug("upstream request not relayed", "app", conn.App.Name, "method", m.Method, "reason", refusal.Message)
		resp := jsonrpc.NewErrorResponse(m.ID, refusal)
		ctx, cancel := context.WithTimeout(context.Background(), conn.App.Timeout)
		defer cancel()
		_ = conn.Send(ctx, resp, nil)
		return
	}
	if out == nil {
		refuse("the client has no stream open for this request")
		return
	}
	id, ok := st.AddServerRequest(conn, m.ID)
	if !ok {
		refuse("too many requests pending for the client")
		return
	}
	// Noted before the client sees it: the completion may come on
	// another stream as soon as the user acts.
	elicitation, noted := st.noteURLElicitation(conn, m)
	params := m.Params
	if !modern {
		// Asked under the upstream's own name only where the client
		// answers input_required results.
		_, params = jsonrpc.TakeInputKey(params)
	}
	if err := out.Send(&jsonrpc.Message{ID: id, Method: m.Method, Params: params}); err != nil {
		st.TakeServerRequest(id)
		if noted {
			st.ForgetElicitation(conn, elicitation)
		}
		refuse("the client cannot receive requests on this stream")
	}
}

// upstreamError classifies a failure to reach an upstream.
func upstreamError(app *apps.App, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %s: %w", ErrUpstreamTimeout, app.Name, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrUpstreamFailed, app.Name, clientCertFailure(app.TLS, err))
}

// identityMetaKey is where a stdio upstream finds who calls: it has no
// HTTP headers to carry a token, and a token in its environment is its
// session's or user's, not this call's.
const identityMetaKey = "io.mcpbroker/identity"

// callerIdentity is what a stdio upstream is told of the caller.
type callerIdentity struct {
	Issuer   string       `json:"iss,omitempty"`
	Subject  string       `json:"sub,omitempty"`
	ClientID string       `json:"client_id,omitempty"`
	Scopes   []string     `json:"scopes,omitempty"`
	Actor    *oauth.Actor `json:"act,omitempty"`
}

// withIdentityMeta sets params._meta["io.mcpbroker/identity"] to the
// caller's identity, or to null when the call is unauthenticated; what a
// client put there is overwritten, never passed on.
func withIdentityMeta(params json.RawMessage, p *oauth.Principal) (json.RawMessage, error) {
	value := []byte("null")
	if p != nil {
		var err error
		if value, err = jsonrpc.Marshal(callerIdentity{Issuer: p.Issuer, Subject: p.Subject, ClientID: p.ClientID, Scopes: p.Scopes, Actor: p.Actor}); err != nil {
			return nil, err
		}
	}
	return jsonrpc.SetMetaMember(params, identityMetaKey, value)
}

// editMeta rewrites params._meta with edit, which is given "{}" when
// there is none; params that are absent or null become an object.
func editMeta(params json.RawMessage, edit func(meta []byte) ([]byte, error)) (json.RawMessage, error) {
	if len(params) == 0 || string(params) == "null" {
		params = json.RawMessage("{}")
	}
	meta, ok, err := jsonrpc.Member(params, "_meta")
	if err != nil {
		return nil, err
	}
	if !ok {
		meta = []byte("{}")
	}
	if meta, err = edit(meta); err != nil {
		return nil, err
	}
	return jsonrpc.SetMember(params, "_meta", meta)
}

// withTraceMeta puts the call's trace context in params._meta, where MCP
// reserves traceparent and tracestate for it, besides the HTTP header: an
// upstream behind a proxy that drops headers still joins the trace. The
// params are left as they are when they cannot be edited.
func withTraceMeta(params json.RawMessage, h http.Header) json.RawMessage {
	if h.Get("traceparent") == "" {
		return params
	}
	edited, err := editMeta(params, func(meta []byte) ([]byte, error) {
		for _, name := range [...]string{"traceparent", "tracestate"} {
			value := h.Get(name)
			if value == "" {
				continue
			}
			encoded, err := jsonrpc.Marshal(value)
			if err != nil {
				return nil, err
			}
			if meta, err = jsonrpc.SetMember(meta, name, encoded); err != nil {
				return nil, err
			}
		}
		return meta, nil
	})
	if err != nil {
		return params
	}
	return edited
}

// withParamHeaders adds the Mcp-Param headers a modern upstream expects
// of a tools/call, made from the arguments as the tool's definition marks
// them.
func (b *Broker) withParamHeaders(ctx context.Context, c *Call, header http.Header, params json.RawMessage) http.Header {
	d := c.App.Definitions.Get(string(pinKinds[kindTool]), c.Name)
	if d == nil {
		var err error
		if d, err = b.definition(ctx, c, kindTool, c.Name); err != nil || d == nil {
			return header
		}
	}
	annotations := upstream.ParamHeaders(d.Raw)
	if len(annotations) == 0 {
		return header
	}
	header = header.Clone()
	if header == nil {
		header = http.Header{}
	}
	upstream.SetParamHeaders(header, annotations, params)
	return header
}

// cancelUpstream tells an upstream that a request it serves was
// cancelled by the client.
func (b *Broker) cancelUpstream(conn *apps.Conn, id jsonrpc.ID) {
	params, _ := jsonrpc.Marshal(map[string]any{"requestId": json.RawMessage(id.Raw()), "reason": "the client closed the request"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := conn.Send(ctx, &jsonrpc.Message{Method: "notifications/cancelled", Params: params}, nil); err != nil {
		b.log.Debug("upstream not told of a cancellation", "app", conn.App.Name, "error", err)
	}
}
