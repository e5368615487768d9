package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/mcpbroker/mcpbroker/apps"
	"github.com/mcpbroker/mcpbroker/provider"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// maxClientFacts bounds what a client may declare about itself.
const maxClientFacts = 8 << 10

// initialize negotiates the client's session. It answers from the
// broker's own capabilities and what each upstream said of itself when
// the broker last initialized a session with it.
func (b *Broker) initialize(ctx context.Context, c *Call) error {
	if b.draining.Load() {
		return ErrShuttingDown
	}
	var p struct {
		ProtocolVersion string          `json:"protocolVersion"`
		Capabilities    json.RawMessage `json:"capabilities"`
		ClientInfo      json.RawMessage `json:"clientInfo"`
	}
	if err := jsonrpc.Unmarshal(c.Message.Params, &p); err != nil || p.ProtocolVersion == "" {
		return fmt.Errorf("%w: initialize needs protocolVersion, capabilities and clientInfo", ErrInvalidParams)
	}
	if len(p.Capabilities)+len(p.ClientInfo) > maxClientFacts {
		// Both are sealed into the session id and sent to every upstream.
		return fmt.Errorf("%w: capabilities and clientInfo exceed %d bytes", ErrInvalidParams, maxClientFacts)
	}
	capabilities, err := canonicalCapabilities(p.Capabilities)
	if err != nil {
		return err
	}
	s := c.Session
	if !c.State.beginInitialize() {
		return ErrAlreadyInitialized
	}
	// Other requests of a legacy session wait for this one to finish.
	defer c.State.endInitialize()
	version := p.ProtocolVersion
	if !provider.IsSupportedVersion(version) {
		version = provider.LatestVersion
	}
	s.ProtocolVersion = version
	s.ClientCapabilities = capabilities
	s.ClientInfo = p.ClientInfo
	c.State.setClientCapabilities(capabilities)
	s.Upstreams = make(map[string]provider.UpstreamRef)

	results := b.upstreamResults(ctx, c)

	result := map[string]any{
		"protocolVersion": version,
		"capabilities":    mergeCapabilities(c.gen.catalog, results),
		"serverInfo":      map[string]string{"name": "mcpbroker", "version": b.version},
	}
	if text := instructions(c.gen.catalog, results); text != "" {
		result["instructions"] = text
	}
	// Unescaped: upstreams' instructions are text, not HTML.
	raw, err := jsonrpc.Marshal(result)
	if err != nil {
		return fmt.Errorf("broker: encode initialize result: %w", err)
	}
	c.Response = &jsonrpc.Message{ID: c.Message.ID, Result: raw}
	return nil
}

// upstreamResults is what each app said of itself at its last
// initialize. Upstream sessions open at a session's first need of each
// app (conn): an idle session costs the upstreams nothing. Only an app
// the broker has not met since it started is opened now, to learn what
// it offers; its upstream session is this session's, sealed into the id.
func (b *Broker) upstreamResults(ctx context.Context, c *Call) map[string]*apps.InitializeResult {
	s, st := c.Session, c.State
	if s.Upstreams == nil {
		s.Upstreams = make(map[string]provider.UpstreamRef)
	}
	var mu sync.Mutex
	results := make(map[string]*apps.InitializeResult, len(c.gen.catalog.Apps))
	var unknown []*apps.App
	for _, app := range c.gen.catalog.Apps {
		if info := app.Info(); info != nil {
			results[app.Name] = info
		} else {
			unknown = append(unknown, app)
		}
	}
	each(unknown, func(app *apps.App) {
		conn, err := app.Open(ctx, initParams(s), b.sessionToken(st, app))
		if err != nil {
			b.log.Warn("upstream not reachable", "app", app.Name, "error", err)
			return
		}
		id, upstreamVersion := conn.Ref()
		mu.Lock()
		s.Upstreams[app.Name] = provider.UpstreamRef{ID: id, ProtocolVersion: upstreamVersion}
		results[app.Name] = conn.Result()
		mu.Unlock()
		st.SetConn(app, conn)
	})
	return results
}

// mergeCapabilities offers what at least one upstream offers and the broker
// can relay. Tools are always offered: the broker lists them even when no
// upstream is up yet.
func mergeCapabilities(catalog *apps.Catalog, results map[string]*apps.InitializeResult) map[string]any {
	tools := map[string]any{"listChanged": true}
	caps := map[string]any{"tools": tools}
	var resources map[string]any
	for _, app := range catalog.Apps {
		r := results[app.Name]
		if r == nil {
			continue
		}
		if r.Capabilities.Prompts != nil {
			caps["prompts"] = map[string]any{"listChanged": true}
		}
		if rc := r.Capabilities.Resources; rc != nil {
			if resources == nil {
				resources = map[string]any{"listChanged": true}
			}
			if rc.Subscribe {
				resources["subscribe"] = true
			}
		}
		if r.Capabilities.Logging != nil {
			caps["logging"] = map[string]any{}
		}
		if r.Capabilities.Completions != nil {
			caps["completions"] = map[string]any{}
		}
	}
	if resources != nil {
		caps["resources"] = resources
	}
	return caps
}

// instructions joins the upstreams' instructions, each under its app.
func instructions(catalog *apps.Catalog, results map[string]*apps.InitializeResult) string {
	var parts []string
	for _, app := range catalog.Apps {
		if r := results[app.Name]; r != nil && r.Instructions != "" {
			if len(catalog.Apps) == 1 {
				return r.Instructions
			}
			parts = append(parts, app.Name+": "+r.Instructions)
		}
	}
	return strings.Join(parts, "\n\n")
}
