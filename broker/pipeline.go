package broker

import (
	"context"
	"time"

	"github.com/mcpbroker/mcpbroker/provider"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// stage is one step of the pipeline. It reads and extends the Call and
// returns an error to stop it; it never writes a response.
type stage struct {
	name string
	run  func(context.Context, *Call) error
}

// newPipeline lists the stages every client message goes through, in order.
// Authentication (stage_authenticate.go) runs before them, at admission,
// for every HTTP request.
func (b *Broker) newPipeline() []stage {
	return []stage{
		{"decode", b.decode},
		{"route", b.route},
		{"authorize", b.authorize},
		{"exchange", b.exchange},
		{"forward", b.forward},
	}
}

// Dispatch serves one client message: it runs the pipeline, renders the
// outcome and records the call.
func (b *Broker) Dispatch(ctx context.Context, req *provider.Request) provider.Reply {
	c := &Call{Start: time.Now(), Request: req, Message: req.Message, Session: req.Session, State: b.stateOf(req.Session)}
	if req.Identity != nil {
		c.Principal, _ = req.Identity.Value.(*oauth.Principal)
	}
	ctx = b.exchanger.begin(ctx, c)
	var err error
	for _, st := range b.pipeline {
		if err = st.run(ctx, c); err != nil {
			break
		}
	}
	reply := provider.Reply{Message: render(c, err)}
	if err != nil {
		reply.Refusal = b.refusal(c, err)
	}
	b.record(c, reply.Message, err)
	return reply
}

// Listen relays each upstream's standalone stream to the client's while
// the client listens.
func (b *Broker) Listen(ctx context.Context, s *provider.Session) {
	for _, app := range b.catalog.Apps {
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
}

// Closed ends a session's upstream sessions.
func (b *Broker) Closed(s *provider.Session) {
	st, ok := b.sessions.LoadAndDelete(s)
	if !ok {
		return
	}
	go st.(*sessionState).closeConns()
}

// sessionSender sends on the client's standalone stream.
type sessionSender struct{ s *provider.Session }

func (o sessionSender) Send(m *jsonrpc.Message) error {
	if !o.s.Notify(m) {
		return provider.ErrNoStream
	}
	return nil
}
