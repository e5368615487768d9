package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/mcpbroker/mcpbroker/apps"
	"github.com/mcpbroker/mcpbroker/provider"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// route decides who serves a message: the broker itself, one app, or all
// of them. Tool and prompt names carry their app's prefix; names and URIs
// without one are found in what the session's lists revealed.
func (b *Broker) route(ctx context.Context, c *Call) error {
	m := c.Message
	// A Streamable HTTP session exists only once initialized; a legacy one
	// exists from its stream's start and must initialize first.
	if c.Session.Legacy() && m.Method != "initialize" && !c.State.isInitialized() {
		if m.Kind() == jsonrpc.KindRequest {
			return ErrNotInitialized
		}
		c.Route = routeNone
		return nil
	}
	switch m.Kind() {
	case jsonrpc.KindResponse:
		return b.routeResponse(c)
	case jsonrpc.KindNotification:
		return b.routeNotification(c)
	}
	switch m.Method {
	case "initialize", "ping":
		c.Route = routeLocal
	case "server/discover", "subscriptions/listen":
		if !c.Session.Modern() {
			return fmt.Errorf("%w: %s is only part of protocol version %s", ErrMethodNotFound, m.Method, provider.ModernVersion)
		}
		c.Route = routeLocal
	case "tools/list", "prompts/list", "resources/list", "resources/templates/list":
		c.Route = routeAggregate
	case "logging/setLevel":
		if c.Params.Level == "" {
			return fmt.Errorf("%w: level is required", ErrInvalidParams)
		}
		c.Route = routeFanOut
	case "tools/call":
		return b.routeNamed(ctx, c, c.Params.Name, kindTool)
	case "prompts/get":
		return b.routeNamed(ctx, c, c.Params.Name, kindPrompt)
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		return b.routeURI(ctx, c, c.Params.URI)
	case "completion/complete":
		ref := c.Params.Ref
		if ref == nil {
			return fmt.Errorf("%w: ref is required", ErrInvalidParams)
		}
		switch ref.Type {
		case "ref/prompt":
			return b.routeNamed(ctx, c, ref.Name, kindPrompt)
		case "ref/resource":
			return b.routeURI(ctx, c, ref.URI)
		}
		return fmt.Errorf("%w: unknown ref type", ErrInvalidParams)
	default:
		return fmt.Errorf("%w: %s", ErrMethodNotFound, m.Method)
	}
	return nil
}

// routeNamed finds the app serving a tool or prompt.
func (b *Broker) routeNamed(ctx context.Context, c *Call, name string, k listKind) error {
	unknown := ErrUnknownTool
	if k == kindPrompt {
		unknown = ErrUnknownPrompt
	}
	if name == "" {
		return fmt.Errorf("%w: name is required", ErrInvalidParams)
	}
	c.Route = routeApp
	if app, upstreamName, ok := c.gen.catalog.ByPrefix(name); ok {
		c.App, c.Name = app, upstreamName
		if app.MaybeShortened(name) {
			return b.routeShortened(ctx, c, k, name)
		}
		return nil
	}
	if app, ok := c.gen.retiredApp(name); ok {
		return fmt.Errorf("%w: %s: app %q was removed from the configuration", unknown, name, app)
	}
	candidates := c.gen.catalog.Unprefixed()
	if len(candidates) == 0 {
		return fmt.Errorf("%w: %s", unknown, name)
	}
	if len(candidates) == 1 {
		c.App, c.Name = candidates[0], name
		return nil
	}
	if app := c.State.lookup(k, name); app != nil {
		c.App, c.Name = app, name
		return nil
	}
	// Not listed yet in this session: list, then look again.
	if _, err := b.collect(ctx, c, k, nil); err != nil && !errors.Is(err, ErrUpstreamFailed) {
		return err
	}
	if app := c.State.lookup(k, name); app != nil {
		c.App, c.Name = app, name
		return nil
	}
	return fmt.Errorf("%w: %s", unknown, name)
}

// routeShortened finds the upstream's name of a name that may have been
// shortened, from what the app listed in this session: listing it first
// when the session has not (a session restored on another replica). A
// name the listing does not show as shortened is the upstream's own, less
// the prefix.
func (b *Broker) routeShortened(ctx context.Context, c *Call, k listKind, exposed string) error {
	if name, ok := c.State.upstreamName(c.App, k, exposed); ok {
		c.Name = name
		return nil
	}
	if _, err := b.collect(ctx, c, k, nil); err != nil && !errors.Is(err, ErrUpstreamFailed) {
		return err
	}
	if name, ok := c.State.upstreamName(c.App, k, exposed); ok {
		c.Name = name
	}
	return nil
}

// routeURI finds the app serving a resource URI (uri_routes.go): the app
// that declared its space, else the one app without a declared space, else
// the first of those apps, in configuration order, that lists it.
func (b *Broker) routeURI(ctx context.Context, c *Call, uri string) error {
	if uri == "" {
		return fmt.Errorf("%w: uri is required", ErrInvalidParams)
	}
	c.Route = routeApp
	if app := c.gen.catalog.URIOwner(uri); app != nil {
		c.App = app
		return nil
	}
	switch candidates := c.gen.catalog.Undeclared(); len(candidates) {
	case 0:
		return fmt.Errorf("%w: %s", ErrResourceNotFound, uri)
	case 1:
		c.App = candidates[0]
		return nil
	}
	listed, err := b.learnURIs(ctx, c, uriKinds[:]...)
	if err != nil {
		return err
	}
	if app := c.State.resourceApp(uri); app != nil {
		c.App = app
		return nil
	}
	if !listed {
		// Listed earlier in the session: the URI may be new since.
		for _, k := range uriKinds {
			if _, err := b.collect(ctx, c, k, nil); err != nil && !errors.Is(err, ErrUpstreamFailed) {
				return err
			}
		}
		if app := c.State.resourceApp(uri); app != nil {
			c.App = app
			return nil
		}
	}
	return fmt.Errorf("%w: %s", ErrResourceNotFound, uri)
}

// routeNotification routes client notifications: cancellations to the
// upstream serving the request, root changes to every upstream; the rest
// concern the broker only.
func (b *Broker) routeNotification(c *Call) error {
	switch c.Message.Method {
	case "notifications/cancelled":
		call, ok := c.State.FindCall(string(trimJSON(c.Params.RequestID)))
		if !ok {
			c.Route = routeNone // finished already, served elsewhere, or never ours
			b.relay(c)
			return nil
		}
		c.Route, c.App = routeApp, call.Conn.App
	case "notifications/roots/list_changed":
		c.Route = routeFanOut
	default:
		c.Route = routeNone
	}
	return nil
}

// routeResponse sends a client's answer to the upstream that asked.
func (b *Broker) routeResponse(c *Call) error {
	r, ok := c.State.PeekServerRequest(c.Message.ID)
	if !ok {
		c.Route = routeNone
		b.relay(c)
		return nil
	}
	c.Route, c.App = routeApp, r.Conn.App
	return nil
}

// relay hands a client's message this replica holds nothing for to the
// replicas sharing the session: the request it answers, or the call it
// cancels, may be served by one of them. A message relayed here already
// goes no further.
func (b *Broker) relay(c *Call) {
	if c.Request.Relayed {
		return
	}
	if _, ours := c.Message.ID.Int64(); c.Message.Kind() == jsonrpc.KindResponse && !ours {
		return // the ids given to requests to the client are integers
	}
	if err := c.Session.Relay(context.Background(), c.Message); err != nil {
		b.log.Warn("a client's message could not be handed to the other replicas; the call it belongs to will not see it", "method", c.Message.Method, "error", err)
	}
}

func trimJSON(raw []byte) []byte { return []byte(strings.TrimSpace(string(raw))) }

// lookup returns the app the session learned serves a name or URI.
func (st *sessionState) lookup(k listKind, key string) *apps.App {
	st.mu.Lock()
	defer st.mu.Unlock()
	switch k {
	case kindPrompt:
		return st.prompts[key]
	case kindResource:
		return st.resources[key]
	}
	return st.tools[key]
}
