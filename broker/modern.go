package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/mcpbroker/mcpbroker/provider"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// discover answers server/discover, the modern client's opening: the
// versions the endpoint serves and what the broker offers, as
// initialize would have said it.
func (b *Broker) discover(ctx context.Context, c *Call) error {
	if b.draining.Load() {
		return ErrShuttingDown
	}
	results := b.upstreamResults(ctx, c)
	result := map[string]any{
		"supportedVersions": provider.Versions(),
		"capabilities":      mergeCapabilities(c.gen.catalog, results),
	}
	if text := instructions(c.gen.catalog, results); text != "" {
		result["instructions"] = text
	}
	raw, err := jsonrpc.Marshal(result)
	if err != nil {
		return fmt.Errorf("broker: encode discover result: %w", err)
	}
	c.Response = &jsonrpc.Message{ID: c.Message.ID, Result: raw}
	return nil
}

// listenSeq names the resources/subscribe requests a listen makes.
var listenSeq atomic.Int64

// subscribe answers subscriptions/listen with what it grants: list
// changes of the kinds the broker offers, and each resource the client
// may read whose app accepted a subscription: each subscription is a
// resources/subscribe through the whole pipeline, policy and audit
// included, so a listen watches nothing a resources/subscribe could not.
func (b *Broker) subscribe(ctx context.Context, c *Call) error {
	var p struct {
		Notifications provider.ListenRequest `json:"notifications"`
	}
	if err := jsonrpc.Unmarshal(c.Message.Params, &p); err != nil {
		return fmt.Errorf("%w: notifications is required", ErrInvalidParams)
	}
	// A listen's upstream sessions carry its subscriptions: they end
	// with it, never kept for another request.
	c.State.mu.Lock()
	c.State.holder = ""
	c.State.noReuse = true
	c.State.mu.Unlock()
	caps := mergeCapabilities(c.gen.catalog, b.upstreamResults(ctx, c))
	offered := func(kind string) bool {
		k, ok := caps[kind].(map[string]any)
		return ok && k["listChanged"] == true
	}
	granted := provider.ListenRequest{
		ToolsListChanged:     p.Notifications.ToolsListChanged && offered("tools"),
		PromptsListChanged:   p.Notifications.PromptsListChanged && offered("prompts"),
		ResourcesListChanged: p.Notifications.ResourcesListChanged && offered("resources"),
	}
	if res, ok := caps["resources"].(map[string]any); ok && res["subscribe"] == true {
		for _, uri := range p.Notifications.ResourceSubscriptions {
			params, err := json.Marshal(map[string]string{"uri": uri})
			if err != nil {
				continue
			}
			id := jsonrpc.StringID("listen-" + strconv.FormatInt(listenSeq.Add(1), 10))
			reply := b.Dispatch(ctx, &provider.Request{
				Message: &jsonrpc.Message{ID: id, Method: "resources/subscribe", Params: params},
				Session: c.Session, HTTP: c.Request.HTTP, Identity: c.Request.Identity,
			})
			if reply.Message != nil && reply.Message.Error == nil {
				granted.ResourceSubscriptions = append(granted.ResourceSubscriptions, uri)
			} else if reply.Message != nil {
				b.log.Debug("listen: resource not subscribed", "uri", uri, "error", reply.Message.Error.Message)
			}
		}
	}
	raw, err := jsonrpc.Marshal(map[string]any{"notifications": granted})
	if err != nil {
		return fmt.Errorf("broker: encode listen grant: %w", err)
	}
	c.Response = &jsonrpc.Message{ID: c.Message.ID, Result: raw}
	return nil
}
