package apps

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpbroker/mcpbroker/apps/upstream"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// InitParams are what a client said in its initialize request; the broker
// says the same to each upstream, so upstreams see the client's real
// capabilities (sampling, elicitation and roots only when it has them).
type InitParams struct {
	ProtocolVersion string
	Capabilities    json.RawMessage
	ClientInfo      json.RawMessage
	// Subject names the user the session acts for (issuer and subject),
	// "" when unauthenticated; it picks a perSubject stdio process.
	Subject string
	// Stateless: the client has no session (one request of protocol
	// 2026-07-28, or of an endpoint without sessions); a perSession stdio
	// app then gives it its subject's process.
	Stateless bool
}

// Conn is one app's upstream session held for one client session.
type Conn struct {
	App  *App
	init InitParams
	// token supplies the credentials of the upstream session's requests;
	// nil sends none.
	token upstream.TokenSource

	ids atomic.Int64

	mu      sync.Mutex
	session upstream.Transport
	result  *InitializeResult
}

// InitializeResult is the part of an upstream's initialize result the broker
// uses; Raw keeps all of it.
type InitializeResult struct {
	ProtocolVersion string          `json:"protocolVersion"`
	Capabilities    Capabilities    `json:"capabilities"`
	ServerInfo      json.RawMessage `json:"serverInfo"`
	Instructions    string          `json:"instructions"`
}

// Capabilities are a server's declared capabilities.
type Capabilities struct {
	Tools       *ListCapability     `json:"tools,omitempty"`
	Resources   *ResourceCapability `json:"resources,omitempty"`
	Prompts     *ListCapability     `json:"prompts,omitempty"`
	Logging     json.RawMessage     `json:"logging,omitempty"`
	Completions json.RawMessage     `json:"completions,omitempty"`
}

// ListCapability is a capability whose list can change.
type ListCapability struct {
	ListChanged bool `json:"listChanged,omitempty"`
}

// ResourceCapability adds subscriptions.
type ResourceCapability struct {
	Subscribe   bool `json:"subscribe,omitempty"`
	ListChanged bool `json:"listChanged,omitempty"`
}

// What an app's upstream speaks.
const (
	generationUnknown int32 = iota // "auto", not asked yet
	generationSessions
	generationModern
)

// newSession starts an upstream session; the URL was checked by NewCatalog.
func (a *App) newSession(ctx context.Context, p InitParams, token upstream.TokenSource) (upstream.Transport, error) {
	if a.dial != nil {
		return a.dial(ctx, p, token)
	}
	opts := &upstream.Options{URL: a.URL, Client: a.client, Logger: a.log, Token: token}
	if a.generation.Load() == generationModern {
		return upstream.NewModernSession(opts, p.Capabilities, p.ClientInfo)
	}
	return upstream.NewSession(opts)
}

// Modern reports whether the app's upstream is reached without sessions
// (upstream.ModernVersion).
func (a *App) Modern() bool { return a.generation.Load() == generationModern }

// probe asks an "auto" app's upstream with server/discover what it
// speaks: a server that answers naming upstream.ModernVersion is reached
// without sessions from then on, any other answer (an error, older
// versions only) means sessions. An upstream that cannot be reached is
// asked again at the next need.
func (a *App) probe(ctx context.Context, p InitParams, token upstream.TokenSource) error {
	m, err := upstream.NewModernSession(&upstream.Options{URL: a.URL, Client: a.client, Logger: a.log, Token: token}, p.Capabilities, p.ClientInfo)
	if err != nil {
		return err
	}
	c := &Conn{App: a, init: p, token: token, session: m}
	result, err := c.discover(ctx)
	var status *upstream.StatusError
	switch {
	case err == nil:
		a.generation.CompareAndSwap(generationUnknown, generationModern)
		a.info.Store(result)
		a.log.Info("upstream speaks " + upstream.ModernVersion + ": reached without sessions")
	case errors.Is(err, errNotModern) || errors.As(err, &status):
		a.generation.CompareAndSwap(generationUnknown, generationSessions)
		a.log.Info("upstream opens sessions with initialize", "answer", err)
	default:
		return fmt.Errorf("apps: %s: server/discover: %w", a.Name, err)
	}
	return nil
}

// errNotModern: the upstream answered server/discover, but not as a
// server of the modern protocol.
var errNotModern = errors.New("apps: the upstream does not serve " + upstream.ModernVersion)

// discover asks a modern upstream what it offers: its answer stands for
// an initialize result.
func (c *Conn) discover(ctx context.Context) (*InitializeResult, error) {
	ctx, cancel := context.WithTimeout(ctx, c.App.Timeout)
	defer cancel()
	msg := &jsonrpc.Message{ID: jsonrpc.Int64ID(c.NextID()), Method: "server/discover", Params: json.RawMessage("{}")}
	resp, err := c.currentSession().Call(ctx, msg, nil, nil)
	c.App.health.observe(err, time.Now())
	if err != nil {
		return nil, err
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("%w: %w", errNotModern, resp.Error)
	}
	var result struct {
		SupportedVersions []string     `json:"supportedVersions"`
		Capabilities      Capabilities `json:"capabilities"`
		Instructions      string       `json:"instructions"`
		Meta              struct {
			ServerInfo json.RawMessage `json:"io.modelcontextprotocol/serverInfo"`
		} `json:"_meta"`
	}
	if err := json.Unmarshal(resp.Result, &result); err != nil {
		return nil, fmt.Errorf("apps: %s: server/discover: malformed result: %w", c.App.Name, err)
	}
	if !slices.Contains(result.SupportedVersions, upstream.ModernVersion) {
		return nil, fmt.Errorf("%w: it serves %q", errNotModern, result.SupportedVersions)
	}
	return &InitializeResult{ProtocolVersion: upstream.ModernVersion, Capabilities: result.Capabilities,
		ServerInfo: result.Meta.ServerInfo, Instructions: result.Instructions}, nil
}

// open makes a new transport's session ready: initialize, or for a modern
// upstream what it said of itself at server/discover.
func (c *Conn) open(ctx context.Context) error {
	if _, modern := c.currentSession().(*upstream.ModernSession); !modern {
		return c.handshake(ctx)
	}
	result := c.App.Info()
	if result == nil || result.ProtocolVersion != upstream.ModernVersion {
		var err error
		if result, err = c.discover(ctx); err != nil {
			return fmt.Errorf("apps: %s: server/discover: %w", c.App.Name, err)
		}
		c.App.info.Store(result)
	}
	c.mu.Lock()
	c.result = result
	c.mu.Unlock()
	return nil
}

// Open starts an upstream session: initialize, then the initialized
// notification. token supplies the bearer token of every request of the
// session that carries none of its own (see upstream.Options.Token); nil
// sends none.
func (a *App) Open(ctx context.Context, p InitParams, token upstream.TokenSource) (*Conn, error) {
	if err := a.health.check(time.Now()); err != nil {
		return nil, fmt.Errorf("apps: %s: %w", a.Name, err)
	}
	if a.dial == nil && a.generation.Load() == generationUnknown {
		if err := a.probe(ctx, p, token); err != nil {
			return nil, err
		}
	}
	t, err := a.newSession(ctx, p, token)
	if err != nil {
		return nil, fmt.Errorf("apps: %s: %w", a.Name, err)
	}
	c := &Conn{App: a, init: p, token: token, session: t}
	if err := c.open(ctx); err != nil {
		_ = t.Close(context.WithoutCancel(ctx), nil)
		return nil, err
	}
	return c, nil
}

// Restore rebuilds a session another process opened, from its id; token
// is as for Open. Only HTTP upstream sessions have ids to restore.
func (a *App) Restore(id, protocolVersion string, p InitParams, token upstream.TokenSource) *Conn {
	s, _ := upstream.NewSession(&upstream.Options{URL: a.URL, Client: a.client, Logger: a.log, Token: token})
	c := &Conn{App: a, init: p, token: token, session: s}
	// The upstream session has seen ids from the process that opened it;
	// continue from a random point far from them, within what JavaScript
	// numbers hold exactly.
	var b [8]byte
	_, _ = rand.Read(b[:])
	c.ids.Store(int64(1<<32 + binary.BigEndian.Uint64(b[:])%(1<<50)))
	c.session.SetID(id)
	c.session.SetProtocolVersion(protocolVersion)
	return c
}

// handshake initializes the upstream session. It carries the session's
// credentials, never a call's: a call's token is shaped for its tool.
func (c *Conn) handshake(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.App.Timeout)
	defer cancel()
	params := struct {
		ProtocolVersion string          `json:"protocolVersion"`
		Capabilities    json.RawMessage `json:"capabilities"`
		ClientInfo      json.RawMessage `json:"clientInfo"`
	}{c.init.ProtocolVersion, c.init.Capabilities, c.init.ClientInfo}
	if len(params.Capabilities) == 0 {
		params.Capabilities = json.RawMessage("{}")
	}
	if len(params.ClientInfo) == 0 {
		params.ClientInfo = json.RawMessage(`{"name":"mcpbroker","version":"1"}`)
	}
	msg, err := jsonrpc.NewRequest(jsonrpc.Int64ID(c.NextID()), "initialize", params)
	if err != nil {
		return err
	}
	s := c.currentSession()
	resp, err := s.Call(ctx, msg, nil, nil)
	c.App.health.observe(err, time.Now())
	if err != nil {
		return fmt.Errorf("apps: %s: initialize: %w", c.App.Name, err)
	}
	if resp.Error != nil {
		return fmt.Errorf("apps: %s: initialize: %w", c.App.Name, resp.Error)
	}
	var result InitializeResult
	if err := jsonrpc.Unmarshal(resp.Result, &result); err != nil {
		return fmt.Errorf("apps: %s: initialize: malformed result: %w", c.App.Name, err)
	}
	s.SetProtocolVersion(result.ProtocolVersion)
	note, _ := jsonrpc.NewNotification("notifications/initialized", nil)
	if err := s.Send(ctx, note, nil); err != nil {
		return fmt.Errorf("apps: %s: initialized: %w", c.App.Name, err)
	}
	c.mu.Lock()
	c.result = &result
	c.mu.Unlock()
	c.App.info.Store(&result)
	return nil
}

func (c *Conn) currentSession() upstream.Transport {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session
}

// Result is the upstream's initialize result; nil for restored sessions.
func (c *Conn) Result() *InitializeResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.result
}

// Ref names the upstream session so another process can restore it.
func (c *Conn) Ref() (id, protocolVersion string) {
	s := c.currentSession()
	return s.ID(), s.ProtocolVersion()
}

// NextID returns a fresh upstream request id.
func (c *Conn) NextID() int64 {
	if src, ok := c.currentSession().(upstream.IDSource); ok {
		return src.NextID()
	}
	return c.ids.Add(1)
}

// Call sends a request whose id came from NextID and returns the response.
// Related messages go to onMessage. An upstream that forgot the session is
// initialized again and the request retried once: it was never served.
func (c *Conn) Call(ctx context.Context, msg *jsonrpc.Message, header http.Header, onMessage func(*jsonrpc.Message)) (*jsonrpc.Message, error) {
	if err := c.App.health.check(time.Now()); err != nil {
		return nil, fmt.Errorf("apps: %s: %s: %w", c.App.Name, msg.Method, err)
	}
	if deadline, ok := ctx.Deadline(); !ok || time.Until(deadline) > c.App.Timeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.App.Timeout)
		defer cancel()
	}
	resp, err := c.currentSession().Call(ctx, msg, header, onMessage)
	if !errors.Is(err, context.DeadlineExceeded) {
		// A slow tool is not a dead upstream: only refusals and resets count.
		c.App.health.observe(err, time.Now())
	}
	if errors.Is(err, upstream.ErrSessionNotFound) {
		if err := c.reopen(ctx); err != nil {
			return nil, err
		}
		resp, err = c.currentSession().Call(ctx, msg, header, onMessage)
	}
	if err != nil {
		return nil, fmt.Errorf("apps: %s: %s: %w", c.App.Name, msg.Method, err)
	}
	return resp, nil
}

// Send delivers a notification or a response to the upstream.
func (c *Conn) Send(ctx context.Context, msg *jsonrpc.Message, header http.Header) error {
	ctx, cancel := context.WithTimeout(ctx, c.App.Timeout)
	defer cancel()
	if err := c.currentSession().Send(ctx, msg, header); err != nil {
		return fmt.Errorf("apps: %s: send: %w", c.App.Name, err)
	}
	return nil
}

// Listen relays the upstream's standalone stream until ctx ends.
func (c *Conn) Listen(ctx context.Context, header http.Header, onMessage func(*jsonrpc.Message)) error {
	return c.currentSession().Listen(ctx, header, onMessage)
}

func (c *Conn) reopen(ctx context.Context) error {
	t, err := c.App.newSession(ctx, c.init, c.token)
	if err != nil {
		return fmt.Errorf("apps: %s: %w", c.App.Name, err)
	}
	c.mu.Lock()
	old := c.session
	c.session = t
	c.mu.Unlock()
	if _, http := old.(*upstream.Session); !http && old != nil {
		// A process or a held stream is released; an HTTP session the
		// upstream forgot needs no DELETE.
		_ = old.Close(context.WithoutCancel(ctx), nil)
	}
	return c.open(ctx)
}

// Close ends the upstream session.
func (c *Conn) Close(ctx context.Context) error {
	return c.currentSession().Close(ctx, nil)
}
