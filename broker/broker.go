package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/mcpbroker/mcpbroker/apps"
	"github.com/mcpbroker/mcpbroker/apps/pins"
	"github.com/mcpbroker/mcpbroker/apps/schema"
	"github.com/mcpbroker/mcpbroker/opa"

	"github.com/redis/go-redis/v9"

	"github.com/mcpbroker/mcpbroker/broker/audit"
	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/broker/console"
	"github.com/mcpbroker/mcpbroker/broker/history"
	"github.com/mcpbroker/mcpbroker/broker/limit"
	"github.com/mcpbroker/mcpbroker/broker/telemetry"
	"github.com/mcpbroker/mcpbroker/provider"
)

// Options are what the command line adds to configuration.
type Options struct {
	Logger  *slog.Logger
	Version string
	// BaseDir resolves relative paths in the configuration (policy files);
	// the configuration file's folder.
	BaseDir string
	// Dry builds everything without touching state: the Auth Provider
	// gets a throwaway store instead of the configured one, so a check
	// neither creates keys nor waits for a running broker's lock.
	Dry bool

	// ConfigPath is the configuration file, read again by ReloadFile (on
	// SIGHUP, and on change with reload.watch).
	ConfigPath string

	// auditFS replaces the audit trail's file system, for tests that
	// inject faults.
	auditFS audit.FileSystem
}

// Broker is a configured mcpbroker: the provider in front, the apps behind,
// and the pipeline between them.
type Broker struct {
	cfg     *config.Config
	log     *slog.Logger
	version string
	baseDir string
	// configPath is the file ReloadFile reads.
	configPath string
	provider   *provider.Provider
	pipeline   []stage
	handler    http.Handler
	// gen holds the apps, policies, outbound tokens and token validation
	// now serving; a reload swaps it whole (generation.go).
	gen      atomic.Pointer[generation]
	reloadMu sync.Mutex
	// serveCtx is the context of Serve, which a reloaded generation's
	// background work runs under.
	serveCtx context.Context
	// authProvider is the embedded Auth Provider; nil when disabled.
	authProvider *authProvider
	// store is the bbolt database; nil when nothing needs one.
	store *store
	// dry: built for a check, touching no state (Options.Dry).
	dry bool
	// listenerTLS serves http.tls; nil without.
	listenerTLS *tls.Config
	// redis is the store replicas share (storage.redis); nil without.
	redis redis.UniversalClient
	// upstreamRefs shares the upstream sessions opened after initialize
	// between replicas (upstream_refs.go); nil without Redis.
	upstreamRefs *upstreamRefs
	// sessions holds the broker's state of each live client session
	// (*provider.Session -> *sessionState).
	sessions sync.Map
	// listChanges passes upstreams' list_changed on (list_changes.go).
	listChanges listChanges

	// audit records every decision; nil when audit.disabled.
	audit *auditor
	// console is the web console on the admin listener; nil when off.
	console *console.Console
	// feed keeps the latest records for the console; nil without the
	// console or the trail. series keeps its overview's last hour.
	feed   *decisionFeed
	series consoleSeries
	// history keeps each session's calls for the policies; nil without a
	// store (history.go in broker/history).
	history     history.Store
	stopHistory context.CancelFunc
	// pins holds definitions to what was approved (toolPinning), in the
	// store or in Redis; nil when no app pins.
	pins *pins.Pins
	// schemas are the compiled inputSchema and outputSchema of the
	// definitions calls were checked against; facts their input.tool.
	schemas *schema.Cache
	facts   *lru.Cache[*apps.Definition, *opa.Tool]
	// metrics are served on the admin listener; health answers its
	// /healthz and /readyz.
	metrics *telemetry.Metrics
	health  *telemetry.Health
	// tracing exports spans; nil when telemetry.traces is off.
	tracing *telemetry.Tracing

	// idle keeps the upstream sessions of sessionless requests for the
	// same agent's next.
	idle idleConns

	// inflight counts the requests being served; draining refuses new
	// sessions while shutdown waits for inflight to reach zero.
	inflight atomic.Int64
	draining atomic.Bool
}

// maxEndedSessions bounds the ended session ids stored; past it, those
// closest to expiring anyway are forgotten first.
const maxEndedSessions = 1_000_000

// New builds a broker from a validated configuration.
func New(cfg *config.Config, opts Options) (_ *Broker, err error) {
	b := &Broker{cfg: cfg, log: opts.Logger, version: opts.Version, baseDir: opts.BaseDir, configPath: opts.ConfigPath, serveCtx: context.Background(), dry: opts.Dry}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.version == "" {
		b.version = "dev"
	}
	b.metrics = telemetry.NewMetrics()
	b.metrics.SetStdioProcesses(func() map[string]int {
		out := map[string]int{}
		if g := b.current(); g != nil {
			for _, app := range g.catalog.Apps {
				if app.Local() {
					out[app.Name] = app.Processes()
				}
			}
		}
		return out
	})
	if b.store, err = openStore(cfg, opts); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			b.store.close() // the store stays locked while open
			_ = b.audit.close()
		}
	}()
	if b.audit, err = newAuditor(cfg, opts, b.log, b.metrics); err != nil {
		return nil, err
	}
	if t := cfg.HTTP.TLS; t != nil {
		if b.listenerTLS, err = (pemFiles{opts.BaseDir}).listenerTLS(t); err != nil {
			return nil, err
		}
	}
	if b.redis, err = openRedis(cfg, opts.BaseDir, b.log); err != nil {
		return nil, err
	}
	if b.tracing, err = newTracing(cfg, opts); err != nil {
		return nil, err
	}

	if b.authProvider, err = newAuthProvider(context.Background(), cfg, b.store.database(), b); err != nil {
		return nil, err
	}
	if b.pins, err = newPins(cfg, b.store.database(), b.redis); err != nil {
		return nil, err
	}
	if b.history, b.stopHistory, err = newHistory(cfg, b.store.database(), b.redis, b.log); err != nil {
		return nil, err
	}
	if b.console, err = b.newConsole(cfg); err != nil {
		return nil, err
	}
	if b.console != nil && b.audit != nil {
		b.feed = newDecisionFeed()
		b.audit.sinks = append(b.audit.sinks, b.feed)
	}
	b.schemas, b.facts = schema.NewCache(schemaCacheSize), newFacts()
	gen, err := b.build(cfg)
	if err != nil {
		return nil, err
	}
	b.gen.Store(gen)
	b.pipeline = b.newPipeline()
	if a := cfg.MCPProvider.Authorization; a.ServesUnauthenticated() {
		b.log.Warn("NOTHING IS AUTHENTICATED: every client that reaches this broker may use every app "+
			"(mcpProvider.authorization.unauthenticated)", "address", cfg.HTTP.Address, "allow_non_loopback", a.Unauthenticated.AllowNonLoopback)
	}

	popts, err := providerOptions(cfg, b.log)
	popts.ServerVersion = b.version
	if err != nil {
		return nil, err
	}
	popts.OnSessionRefused = b.metrics.SessionRefused
	popts.OnHeld = b.metrics.HeldCall
	switch {
	case b.redis != nil:
		// Every replica must refuse the sessions any replica ended.
		popts.Revocations = provider.NewRedisRevocations(b.redis, cfg.Storage.Redis.KeyPrefix)
		// A session's answers, cancellations and resumed streams reach the
		// replica holding what they belong to.
		popts.Peers = provider.NewRedisPeers(b.redis, cfg.Storage.Redis.KeyPrefix)
		popts.OnHandoff = b.metrics.Handoff
		// Upstream sessions opened after initialize are shared too, and
		// upstreams' list_changed.
		b.upstreamRefs = newUpstreamRefs(b.redis, cfg.Storage.Redis.KeyPrefix, popts.SessionTimeout)
		b.listChanges.redis, b.listChanges.channel, b.listChanges.replica = b.redis, cfg.Storage.Redis.KeyPrefix+"lists", randomReplicaID()
	case popts.SessionKey != nil && b.store != nil:
		// Sealed ids outlive the process: so must the record of ended ones.
		if popts.Revocations, err = provider.NewBoltRevocations(b.store.database(), maxEndedSessions); err != nil {
			return nil, err
		}
	}
	if o := cfg.MCPProvider.Authorization.OAuth; gen.auth != nil {
		scopes := o.ScopesSupported
		if len(scopes) == 0 {
			scopes = o.RequiredScopes
		}
		popts.ResourceMetadata = &provider.ResourceMetadata{
			Path: o.MetadataPath, Resource: o.Resource, ScopesSupported: scopes,
			AuthorizationServers: func() []string {
				if auth := b.current().auth; auth != nil {
					return auth.verifier.Issuers()
				}
				return nil
			},
		}
	}
	popts.Authenticate = b.authenticate
	b.provider, err = provider.New(popts, b)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	b.provider.Register(mux)
	if b.console != nil && cfg.Console.Listener == config.ConsoleOnMain {
		mux.Handle(cfg.Console.Path, b.console)
		mux.Handle(cfg.Console.Path+"/", b.console)
	}
	if b.authProvider != nil {
		endpoints := http.NewServeMux()
		b.authProvider.register(endpoints)
		mux.Handle("/", b.provider.GuardHost(endpoints, b.authProvider.server.BrowserAPI))
	}
	b.handler = limit.BodyDeadline(newForwarding(&cfg.HTTP).handler(mux), time.Duration(cfg.HTTP.ReadBodyTimeout))
	b.health = b.newHealth()
	return b, nil
}

func providerOptions(cfg *config.Config, log *slog.Logger) (provider.Options, error) {
	o := provider.Options{
		ListenAddress:  cfg.HTTP.Address,
		AllowedHosts:   cfg.HTTP.AllowedHosts,
		AllowedOrigins: cfg.HTTP.AllowedOrigins,
		MaxBodyBytes:   cfg.HTTP.MaxBodyBytes,
		Logger:         log,
	}
	if s := cfg.MCPProvider.Transports.Stream; s != nil && s.Enabled {
		o.StreamEnabled = true
		o.StreamPath = s.Path
		o.SessionHeader = s.Session.HeaderName
		o.AllowClientTermination = s.Session.AllowClientTermination
		o.Sessionless = !s.Session.Enabled
		o.SessionTimeout = time.Duration(s.Session.Timeout)
		o.MaxSessions, o.MaxSessionsPerSubject, o.MaxSessionsPerAddress = s.Session.MaxSessions, s.Session.MaxPerSubject, s.Session.MaxPerAddress
		key, err := s.Session.DecodedKey()
		if err != nil {
			return o, fmt.Errorf("broker: mcpProvider.transports.stream.session.key: %w", err)
		}
		o.SessionKey = key
	}
	if s := cfg.MCPProvider.Transports.SSE; s != nil && s.Enabled {
		o.SSEEnabled = true
		o.SSEPath = s.Path
		o.MessagePath = s.MessagePath
		if s.KeepAlive.Enabled {
			o.KeepAlive = time.Duration(s.KeepAlive.Interval)
		}
	}
	return o, nil
}

// Handler serves every endpoint of the broker.
func (b *Broker) Handler() http.Handler { return b.handler }

// Close ends all sessions and releases upstream connections.
func (b *Broker) Close() {
	b.provider.Close()
	b.idle.closeAll()
	b.current().close()
	if b.stopHistory != nil {
		b.stopHistory()
	}
	b.store.close()
	if b.redis != nil {
		_ = b.redis.Close()
	}
	if err := b.audit.close(); err != nil {
		b.log.Error("audit trail: closing", "error", err)
	}
	if b.tracing != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.tracing.Shutdown(ctx); err != nil {
			b.log.Warn("traces: flushing", "error", err)
		}
	}
}

// Serve listens on the configured address until ctx ends, then shuts down
// gracefully.
func (b *Broker) Serve(ctx context.Context) error {
	ln, err := net.Listen("tcp", b.cfg.HTTP.Address)
	if err != nil {
		return fmt.Errorf("broker: listen: %w", err)
	}
	return b.ServeListener(ctx, ln)
}

// ServeListener serves on ln until ctx ends.
func (b *Broker) ServeListener(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           b.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(b.log.Handler(), slog.LevelDebug),
	}
	ln = limit.NewListener(ln, b.maxConnections(), b.cfg.HTTP.MaxConnectionsPerAddress, b.log)
	if b.listenerTLS != nil {
		srv.TLSConfig = b.listenerTLS
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	adminLn, err := b.listenAdmin()
	if err != nil {
		return err
	}
	var admin *http.Server
	if adminLn != nil {
		admin = b.serveAdmin(adminLn)
	}
	b.reloadMu.Lock()
	b.serveCtx = ctx
	b.current().start(ctx, b)
	b.reloadMu.Unlock()
	if ap := b.cfg.AuthProvider; ap != nil {
		b.authProvider.start(ctx, timeOf(ap.KeyRotation))
	}
	if b.console != nil {
		go b.sampleEvery(ctx, time.Minute)
	}
	if err := b.watchConfig(ctx); err != nil {
		return fmt.Errorf("broker: reload.watch: %w", err)
	}
	b.listenForListChanges(ctx)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	b.log.Info("mcpbroker listening", "address", ln.Addr().String(), "apps", len(b.current().catalog.Apps))
	for _, note := range b.cfg.Unused() {
		b.log.Warn("configuration: " + note)
	}
	select {
	case err := <-errc:
		b.Close()
		if admin != nil {
			admin.Close()
		}
		return err
	case <-ctx.Done():
	}
	timeout := time.Duration(b.cfg.HTTP.ShutdownTimeout)
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err = b.shutdown(shutdownCtx, srv)
	if admin != nil {
		admin.Close()
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("broker: shutdown: %w", err)
	}
	b.log.Info("shutdown complete")
	return nil
}

// shutdown stops in order: no new connections or sessions, the requests
// being served finish (answered, not cut) until ctx ends, then sessions
// end so their streams close, and last the upstream connections, the
// audit trail (flushed) and the trace exporter.
func (b *Broker) shutdown(ctx context.Context, srv *http.Server) error {
	b.draining.Store(true)
	b.health.SetDraining(true)
	b.log.Info("shutting down: no new connections or sessions", "in_flight", b.inflight.Load())
	if n := b.provider.EndHeld(); n > 0 {
		// They wait on people, not on the upstreams.
		b.log.Info("shutting down: requests awaiting a client's input ended", "held", n)
	}
	closed := make(chan error, 1)
	go func() { closed <- srv.Shutdown(ctx) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for b.inflight.Load() > 0 && ctx.Err() == nil {
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	if n := b.inflight.Load(); n > 0 {
		b.log.Warn("shutting down: requests still in flight at http.shutdownTimeout are cut", "in_flight", n)
	} else {
		b.log.Info("shutting down: every request in flight was answered")
	}
	b.provider.Close() // ends sessions, so open streams return
	err := <-closed
	b.log.Info("shutting down: sessions ended; closing upstreams and flushing the audit trail")
	b.Close()
	return err
}

func timeOf(d config.Duration) time.Duration { return time.Duration(d) }

// maxConnections is http.maxConnections, lowered to leave the process file
// descriptors for its own use (upstreams, the store, logs) when its limit
// is lower than that. The Go runtime has already raised the soft open-files
// limit to (one below) the hard limit at start, so what is read here is as
// high as the process can go without privileges.
func (b *Broker) maxConnections() int {
	configured := b.cfg.HTTP.MaxConnections
	var rlimit syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rlimit); err == nil && rlimit.Cur < uint64(configured)+reservedFiles {
		lowered := max(int(rlimit.Cur)-reservedFiles, 1)
		b.log.Warn("http.maxConnections lowered to fit the open files limit",
			"configured", configured, "effective", lowered, "open_files_limit", rlimit.Cur)
		return lowered
	}
	return configured
}

// reservedFiles are the file descriptors kept for other than client
// connections.
const reservedFiles = 256
