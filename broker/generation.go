package broker

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/mcpbroker/mcpbroker/apps"
	"github.com/mcpbroker/mcpbroker/broker/audit"
	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/exchange"
	"github.com/mcpbroker/mcpbroker/provider"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// generation is what a configuration builds that a reload replaces whole:
// the apps, their policies and outbound tokens, and how agents' tokens are
// verified. A call takes the generation current when it starts and keeps
// it to its end, so a reload never changes the rules under a call.
type generation struct {
	cfg      *config.Config
	catalog  *apps.Catalog
	authz    *authorizer
	outbound *exchange.Outbound
	auth     *authenticator
	// limits applies rateLimits; nil when there are none.
	limits *limiter
	// trust is what each app takes on trust from its upstream, by app
	// name (trust.go).
	trust map[string]*appTrust
	// identityHeaders are the headers each app's requests carry from the
	// agent's token, by app name.
	identityHeaders map[string][]config.IdentityHeader
	// gov is what the configuration says of labels, session history and
	// approvals (governance.go).
	gov *governance
	// retired names the namespaces of apps the last reload removed, so
	// that their tools are refused as such and not as unknown names.
	retired map[string]string // prefix -> app name
	// stop ends the generation's background work: policy file watches
	// and the refresh of authorization servers' keys.
	stop context.CancelFunc
}

// current is the generation now serving.
func (b *Broker) current() *generation { return b.gen.Load() }

// build makes a generation of cfg; nothing runs until start.
func (b *Broker) build(cfg *config.Config) (_ *generation, err error) {
	g := &generation{cfg: cfg, stop: func() {}, identityHeaders: map[string][]config.IdentityHeader{}, gov: newGovernance(cfg)}
	for _, app := range cfg.Apps {
		if len(app.IdentityHeaders) > 0 {
			g.identityHeaders[app.Name] = app.IdentityHeaders
		}
	}
	if g.trust, err = newTrust(cfg); err != nil {
		return nil, err
	}
	options, err := catalogOptions(cfg.Apps, pemFiles{b.baseDir})
	if err != nil {
		return nil, err
	}
	for i := range options {
		if o := options[i].Stdio; o != nil {
			name := options[i].Name
			o.Events = func(event string) { b.metrics.StdioProcessEvent(name, event) }
		}
	}
	if g.catalog, err = apps.NewCatalog(options, b.log); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			g.close()
		}
	}()
	outbound, err := outboundOptions(cfg, b)
	if err != nil {
		return nil, err
	}
	if g.outbound, err = exchange.NewOutbound(outbound); err != nil {
		return nil, err
	}
	if g.auth, err = newAuthenticator(cfg, b); err != nil {
		return nil, err
	}
	if g.authz, err = newAuthorizer(context.Background(), cfg, b.baseDir, b); err != nil {
		return nil, err
	}
	prefix := ""
	if cfg.Storage.Redis != nil {
		prefix = cfg.Storage.Redis.KeyPrefix
	}
	g.limits = newLimiter(&cfg.RateLimits, b.redis, prefix)
	return g, nil
}

// start begins the generation's background work until ctx ends or the
// generation is replaced.
func (g *generation) start(ctx context.Context, b *Broker) {
	ctx, g.stop = context.WithCancel(ctx)
	if g.auth != nil {
		g.auth.verifier.Start(ctx)
	}
	g.authz.watch(ctx, b)
}

// close stops the background work and releases the idle upstream
// connections of the generation's apps.
func (g *generation) close() {
	g.stop()
	if g.catalog != nil {
		for _, app := range g.catalog.Apps {
			app.Close()
		}
	}
}

// retiredApp names the app a removed namespace belonged to, if name lies
// in one.
func (g *generation) retiredApp(name string) (string, bool) {
	for prefix, app := range g.retired {
		if strings.HasPrefix(name, prefix) {
			return app, true
		}
	}
	return "", false
}

// ErrRestartNeeded wraps the settings a reload read but cannot apply to a
// running broker.
var ErrRestartNeeded = errors.New("these settings take effect at the next restart")

// Reload applies cfg, validated as check validates it, to the running
// broker: apps added, removed and changed, their policies and outbound
// tokens, and token validation, swapped at once between calls. Sessions
// go on for the apps that still exist. Settings that cannot change while
// the broker runs (listeners, storage, the Auth Provider, transports, the
// audit trail, telemetry) keep their running values and are named in the
// returned error, which wraps ErrRestartNeeded; anything else that fails
// leaves the running configuration serving.
func (b *Broker) Reload(ctx context.Context, cfg *config.Config) error {
	b.reloadMu.Lock()
	defer b.reloadMu.Unlock()
	old := b.current()
	restart := restartOnly(old.cfg, cfg)
	next, err := b.build(cfg)
	if err != nil {
		b.reloaded(ctx, "config.rejected", err)
		return fmt.Errorf("broker: reload: %w", err)
	}
	if old.limits != nil && next.limits != nil {
		// Budgets spent and calls in flight outlive the reload.
		next.limits.rates, next.limits.inFlight = old.limits.rates, old.limits.inFlight
	}
	next.retired = map[string]string{}
	for _, app := range old.catalog.Apps {
		if next.catalog.App(app.Name) == nil && app.Prefix != "" {
			next.retired[app.Prefix] = app.Name
		}
	}
	next.start(b.serveCtx, b)
	b.gen.Store(next)
	// A session's next request to a replaced app goes on with its upstream
	// session at the new app (apps.ClientSession.Conn); calls in flight
	// finish with the old one.
	old.close()
	b.health.ReplaceGroup(appCheckPrefix, b.appChecks(next.catalog))
	b.reloaded(ctx, "config.reloaded", nil)
	if !reflect.DeepEqual(old.cfg.Apps, cfg.Apps) {
		b.listsChanged()
	}
	if len(restart) > 0 {
		err := fmt.Errorf("%w: %s", ErrRestartNeeded, strings.Join(restart, ", "))
		b.log.Warn("configuration reloaded, but some settings need a restart", "settings", strings.Join(restart, ", "))
		return err
	}
	return nil
}

// listsChanged tells every client listening on a GET stream here that the
// tools, prompts and resources may have changed: apps came, went or
// changed. Each replica tells the sessions whose stream it holds.
func (b *Broker) listsChanged() {
	notices := make([]*jsonrpc.Message, 0, 3)
	for _, method := range []string{"notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed"} {
		notices = append(notices, &jsonrpc.Message{Method: method})
	}
	b.sessions.Range(func(key, _ any) bool {
		s := key.(*provider.Session)
		for _, m := range notices {
			if !s.Notify(m) {
				break
			}
		}
		return true
	})
}

// reloaded records and counts a reload.
func (b *Broker) reloaded(ctx context.Context, event string, err error) {
	r := &audit.Record{Kind: "config", Event: event}
	outcome := "applied"
	if err != nil {
		outcome, r.Detail = "rejected", err.Error()
		b.log.Error("configuration reload rejected; the running configuration keeps serving", "error", err)
	} else {
		b.log.Info("configuration reloaded", "apps", len(b.current().catalog.Apps))
	}
	b.metrics.PolicyReload(outcome)
	if werr := b.audit.write(ctx, r); werr != nil {
		b.log.Error("audit record of a reload not written", "error", werr)
	}
}

// restartOnly lists the settings that differ between the running and the
// new configuration and cannot change while the broker runs.
func restartOnly(running, next *config.Config) []string {
	var changed []string
	check := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			changed = append(changed, name)
		}
	}
	check("http", running.HTTP, next.HTTP)
	check("storage", running.Storage, next.Storage)
	check("authProvider", running.AuthProvider, next.AuthProvider)
	if ap := running.AuthProvider; ap != nil && ap.Login.Connector != "" {
		check("connectors["+ap.Login.Connector+"] (the Auth Provider's sign-in)", running.Connector(ap.Login.Connector), next.Connector(ap.Login.Connector))
	}
	check("mcpProvider.transports", running.MCPProvider.Transports, next.MCPProvider.Transports)
	check("mcpProvider.enabled", running.MCPProvider.Enabled, next.MCPProvider.Enabled)
	check("mcpProvider.authorization.unauthenticated", running.MCPProvider.Authorization.Unauthenticated, next.MCPProvider.Authorization.Unauthenticated)
	ro, no := running.MCPProvider.Authorization.OAuth, next.MCPProvider.Authorization.OAuth
	check("mcpProvider.authorization.oauth.enabled", ro != nil && ro.Enabled, no != nil && no.Enabled)
	if ro != nil && no != nil {
		check("mcpProvider.authorization.oauth.metadataPath", ro.MetadataPath, no.MetadataPath)
		check("mcpProvider.authorization.oauth.resource", ro.Resource, no.Resource)
		check("mcpProvider.authorization.oauth.scopesSupported", ro.ScopesSupported, no.ScopesSupported)
	}
	check("admin", running.Admin, next.Admin)
	check("audit", running.Audit, next.Audit)
	check("telemetry", running.Telemetry, next.Telemetry)
	check("reload", running.Reload, next.Reload)
	check("console", running.Console, next.Console)
	jagIssuers := func(c *config.Config) []config.Connector {
		var out []config.Connector
		for _, conn := range c.Connectors {
			if conn.IDJAGIssuer {
				out = append(out, conn)
			}
		}
		return out
	}
	check("connectors (idJagIssuer, the Auth Provider's trusted identity assertion issuers)", jagIssuers(running), jagIssuers(next))
	if name := running.Console.SignIn.Connector; running.Console.Enabled && name != "" {
		check("connectors["+name+"] (the console's sign-in)", running.Connector(name), next.Connector(name))
	}
	return changed
}
