package broker

import (
	"context"
	"github.com/mcpbroker/mcpbroker/apps"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/mcpbroker/mcpbroker/broker/audit"
	"github.com/mcpbroker/mcpbroker/broker/telemetry"
	"github.com/mcpbroker/mcpbroker/provider"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// stage is one step of the pipeline. It reads and extends the Call and
// returns an error to stop it; it never writes a response. A stage marked
// always runs whatever happened before it, with the outcome in the Call.
type stage struct {
	name   string
	run    func(context.Context, *Call) error
	always bool
	// relayed: the stage also runs for a message another replica admitted
	// and handed here (provider.Request.Relayed); limits, policy and the
	// record were that replica's.
	relayed bool
	// observe records the stage's time (set by newPipeline).
	observe func(seconds float64)
}

// newPipeline lists the steps every client message goes through, in the
// order they run. Authentication runs before them, for every HTTP request
// (stage_authenticate.go); identify takes up what it established.
func (b *Broker) newPipeline() []stage {
	stages := []stage{
		{name: "identify", run: b.identify},
		{name: "decode", run: b.decode, relayed: true},
		{name: "route", run: b.route, relayed: true},
		{name: "limit", run: b.limit},
		{name: "validate", run: b.validate},
		{name: "authorize", run: b.authorize},
		{name: "approve", run: b.approve},
		{name: "exchange", run: b.exchange},
		{name: "forward", run: b.forward, relayed: true},
		{name: "results", run: b.checkResult, relayed: true},
		{name: "redact", run: b.redactResult, relayed: true},
		{name: "remember", run: b.remember, always: true},
		{name: "render", run: b.renderReply, always: true},
		{name: "record", run: b.record, always: true},
	}
	for i := range stages {
		stages[i].observe = b.metrics.StageTimer(stages[i].name)
	}
	return stages
}

// Dispatch serves one client message through the pipeline, timing each
// stage and, when traces are exported, tracing the call with a span per
// stage under the client's traceparent.
func (b *Broker) Dispatch(ctx context.Context, req *provider.Request) provider.Reply {
	c := &Call{Start: time.Now(), Request: req, Message: req.Message, Session: req.Session, State: b.stateOf(req.Session), gen: b.current()}
	markServed(req.HTTP)
	if c.Message.Kind() == jsonrpc.KindRequest {
		b.inflight.Add(1)
		defer b.inflight.Add(-1)
	}
	var span trace.Span
	if b.tracing != nil {
		if req.HTTP != nil {
			ctx = b.tracing.Extract(ctx, req.HTTP.Header)
		}
		ctx, span = b.tracing.Tracer().Start(ctx, "mcp "+telemetry.MethodLabel(c.Message.Method), trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		c.traceID = telemetry.TraceID(ctx)
	}
	ctx = withCall(ctx, c)
	for _, st := range b.pipeline {
		if (c.Err != nil && !st.always) || (req.Relayed && !st.relayed) {
			continue
		}
		start := time.Now()
		stageCtx, stageSpan := ctx, trace.Span(nil)
		if span != nil {
			stageCtx, stageSpan = b.tracing.Tracer().Start(ctx, st.name)
		}
		err := st.run(stageCtx, c)
		st.observe(time.Since(start).Seconds())
		if stageSpan != nil {
			if err != nil {
				stageSpan.SetStatus(codes.Error, st.name+" stopped the call")
			}
			stageSpan.End()
		}
		if err != nil && c.Err == nil {
			c.Err = err
		}
	}
	if span != nil && c.Err != nil {
		span.SetStatus(codes.Error, "the call did not succeed")
	}
	return c.Reply
}

// renderReply turns the outcome into the reply the provider sends: the
// response, or the JSON-RPC error and, where HTTP can say it, a refusal.
func (b *Broker) renderReply(_ context.Context, c *Call) error {
	c.Reply = provider.Reply{Message: render(c, c.Err)}
	if c.Err != nil {
		c.Reply.Refusal = b.refusal(c, c.Err)
	}
	return nil
}

type callKey struct{}

// withCall makes c reachable from ctx, for the upstream requests made on
// its behalf.
func withCall(ctx context.Context, c *Call) context.Context {
	return context.WithValue(ctx, callKey{}, c)
}

func callFrom(ctx context.Context) *Call {
	c, _ := ctx.Value(callKey{}).(*Call)
	return c
}

// Listen relays the standalone stream of each upstream session the client
// session has (here, or recorded by other replicas) to the client's while
// the client listens, and of each one it opens here meanwhile; apps the
// session never needed are not asked.
func (b *Broker) Listen(ctx context.Context, s *provider.Session) {
	st := b.stateOf(s)
	st.mu.Lock()
	st.listening, st.listened = ctx, nil
	st.mu.Unlock()
	var elsewhere map[string]bool
	if b.upstreamRefs != nil && s.ID != "" {
		// Those other replicas opened for the session too.
		var err error
		if elsewhere, err = b.upstreamRefs.apps(ctx, s.ID); err != nil {
			b.log.Warn("the upstream sessions other replicas opened cannot be read from Redis; their streams are not relayed", "error", err)
		}
	}
	for _, app := range b.current().catalog.Apps {
		// A modern listen has no earlier requests that opened upstream
		// sessions: it hears every app.
		if s.Modern() || st.knowsConn(s, app) || elsewhere[app.Name] {
			b.listenIfListening(s, st, app)
		}
	}
}

// listenIfListening relays the app's upstream stream to the client's GET
// stream, if one is open and not relaying it yet.
func (b *Broker) listenIfListening(s *provider.Session, st *sessionState, app *apps.App) {
	st.mu.Lock()
	ctx := st.listening
	if ctx == nil || ctx.Err() != nil || st.listened[app] {
		st.mu.Unlock()
		return
	}
	if st.listened == nil {
		st.listened = make(map[*apps.App]bool)
	}
	st.listened[app] = true
	st.mu.Unlock()
	go func() {
		conn, err := b.conn(ctx, s, app)
		if err != nil {
			b.log.Debug("no upstream stream", "app", app.Name, "error", err)
			return
		}
		relay := b.relayToClient(s, conn, sessionSender{s})
		if err := conn.Listen(ctx, nil, relay); err != nil && ctx.Err() == nil {
			b.log.Debug("upstream stream ended", "app", app.Name, "error", err)
		}
	}()
}

// Closed ends a session's upstream sessions.
func (b *Broker) Closed(s *provider.Session) {
	v, ok := b.sessions.LoadAndDelete(s)
	if !ok {
		return
	}
	st := v.(*sessionState)
	if st.opened.Load() {
		b.metrics.SessionClosed()
		r := &audit.Record{Time: time.Now(), Kind: audit.KindSession, Event: "session.ended", Session: st.digestOf(s.ID)}
		principalFields(r, st.agent.Load())
		if err := b.audit.write(context.Background(), r); err != nil {
			b.log.Error("audit record of an ended session not written", "error", err)
		}
	}
	st.mu.Lock()
	holder := st.holder
	st.mu.Unlock()
	if holder == "" {
		go st.CloseConns()
		return
	}
	// A sessionless request's upstream sessions are kept for the same
	// agent's next (idle_conns.go), before its answer leaves.
	var ended []*apps.Conn
	for _, c := range st.OpenConns() {
		if !reusable(c) || !b.idle.put(idleKey{c.App, holder}, c) {
			ended = append(ended, c)
		}
	}
	go func() {
		for _, c := range ended {
			closeConn(c)
		}
	}()
}

// sessionSender sends on the client's standalone stream.
type sessionSender struct{ s *provider.Session }

func (o sessionSender) Send(m *jsonrpc.Message) error {
	if !o.s.Notify(m) {
		return provider.ErrNoStream
	}
	return nil
}
