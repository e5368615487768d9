package apps

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mcpbroker/mcpbroker/apps/bridge"
	"github.com/mcpbroker/mcpbroker/apps/upstream"
)

// App is one upstream application.
type App struct {
	Name string
	// Prefix is added to tool and prompt names; empty when namespacing is off.
	Prefix string
	// Timeout bounds one request to the upstream.
	Timeout time.Duration
	URL     string

	// Lists keeps what the upstream listed (listcache.go).
	Lists *ListCache
	// Definitions are the latest listed definitions with their standing
	// (definitions.go).
	Definitions Definitions
	// TLS is the configuration the upstream is reached with; nil: the
	// defaults.
	TLS *tls.Config

	client *http.Client
	// dial opens the app's upstream sessions when they are not Streamable
	// HTTP ones (stdio.go, the legacy SSE transport); nil: Streamable HTTP.
	dial func(ctx context.Context, p InitParams, token upstream.TokenSource) (upstream.Transport, error)
	// stdio runs the processes of a stdio app.
	stdio  *stdioPool
	log    *slog.Logger
	health health
	// info is the upstream's latest initialize result, from whichever
	// client session's upstream session was opened last.
	info atomic.Pointer[InitializeResult]
	// generation is what the upstream speaks: generationUnknown until an
	// "auto" app answered server/discover.
	generation atomic.Int32

	// order is the app's place in the configuration; uriPrefixes the
	// resource URIs it declared; spaces every app's; sharesURIs that it is
	// one of several apps without a declared space (uris.go).
	order       int
	uriPrefixes []string
	spaces      uriSpaces
	sharesURIs  bool
}

// Catalog is the set of apps, in configuration order.
type Catalog struct {
	Apps       []*App
	byName     map[string]*App
	spaces     uriSpaces
	undeclared []*App
	unprefixed []*App
}

// Options describe one app. The zero values of Timeout and the connection
// settings take the defaults noted.
type Options struct {
	Name string
	// Prefix is added to the names of the app's tools and prompts; empty
	// turns namespacing off.
	Prefix string
	// URL is the upstream's Streamable HTTP endpoint.
	URL string
	// Timeout bounds one request to the upstream (30s).
	Timeout time.Duration
	// DialTimeout, KeepAlive and the idle pool sizes shape the upstream
	// connections (see upstream.NewHTTPClient).
	DialTimeout, KeepAlive            time.Duration
	MaxIdleConns, MaxIdleConnsPerHost int
	// TLS reaches an https upstream with its own roots, client
	// certificate, server name or minimum version; nil: the system's
	// roots. Proxy picks a proxy; nil: none.
	TLS   *tls.Config
	Proxy func(*http.Request) (*url.URL, error)
	// URIPrefixes declare the resource URIs the app owns; none: the app
	// shares the URIs no app declared.
	URIPrefixes []string
	// ListCache configures the app's list cache.
	ListCache ListCacheOptions
	// Stdio, when set, makes the upstream a local program (URL is then
	// empty).
	Stdio *StdioOptions
	// Legacy says URL is the event stream of a 2024-11-05 HTTP+SSE
	// server.
	Legacy bool
	// Bridge, when set, makes the app a REST API served in process (URL
	// is then its base URL).
	Bridge *bridge.API
	// Protocol picks how a Streamable HTTP upstream is spoken to: ""
	// opens sessions with initialize, upstream.ModernVersion reaches it
	// without sessions, "auto" asks it with server/discover at the first
	// need and goes on as it answers.
	Protocol string
}

// NewCatalog builds the apps, in the order given.
func NewCatalog(list []Options, log *slog.Logger) (*Catalog, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Catalog{byName: make(map[string]*App, len(list))}
	for _, a := range list {
		app := &App{
			Name:    a.Name,
			Prefix:  a.Prefix,
			Timeout: a.Timeout,
			URL:     a.URL,
			TLS:     a.TLS,
			client: upstream.NewHTTPClient(upstream.HTTPOptions{DialTimeout: a.DialTimeout, KeepAlive: a.KeepAlive,
				MaxIdleConns: a.MaxIdleConns, MaxIdlePerHost: a.MaxIdleConnsPerHost, TLS: a.TLS, Proxy: a.Proxy}),
			log:   log.With("app", a.Name),
			Lists: NewListCache(a.ListCache),
		}
		switch {
		case a.Bridge != nil:
			api, client, name := a.Bridge, bridge.NewClient(app.client.Transport), a.Name
			app.dial = func(context.Context, InitParams, upstream.TokenSource) (upstream.Transport, error) {
				return bridge.NewSession(api, client, name), nil
			}
		case a.Stdio != nil:
			app.stdio = newStdioPool(*a.Stdio, app.log)
			app.dial = app.stdio.dial
		case a.Legacy:
			if _, err := upstream.NewLegacySession(&upstream.Options{URL: app.URL}); err != nil {
				return nil, fmt.Errorf("apps: %s: %w", a.Name, err)
			}
			app.dial = func(_ context.Context, _ InitParams, token upstream.TokenSource) (upstream.Transport, error) {
				return upstream.NewLegacySession(&upstream.Options{URL: app.URL, Client: app.client, Logger: app.log, Token: token})
			}
		default:
			if _, err := upstream.NewSession(&upstream.Options{URL: app.URL}); err != nil {
				return nil, fmt.Errorf("apps: %s: %w", a.Name, err)
			}
			switch a.Protocol {
			case "":
				app.generation.Store(generationSessions)
			case upstream.ModernVersion:
				app.generation.Store(generationModern)
			case "auto":
			default:
				return nil, fmt.Errorf("apps: %s: unknown protocol %q", a.Name, a.Protocol)
			}
		}
		if app.Timeout <= 0 {
			app.Timeout = 30 * time.Second
		}
		app.order = len(c.Apps)
		if len(a.URIPrefixes) > 0 {
			app.uriPrefixes = a.URIPrefixes
		} else {
			c.undeclared = append(c.undeclared, app)
		}
		c.Apps = append(c.Apps, app)
		c.byName[app.Name] = app
		if app.Prefix == "" {
			c.unprefixed = append(c.unprefixed, app)
		}
	}
	spaces, err := newURISpaces(c.Apps)
	if err != nil {
		return nil, err
	}
	c.spaces = spaces
	for _, app := range c.Apps {
		app.spaces = spaces
	}
	for _, app := range c.undeclared {
		app.sharesURIs = len(c.undeclared) > 1
	}
	return c, nil
}

// App returns an app by name.
func (c *Catalog) App(name string) *App { return c.byName[name] }

// ErrNoApp means no app owns a name.
var ErrNoApp = errors.New("apps: no app owns this name")

// ByPrefix finds the namespaced app whose prefix starts name and returns
// the name without it, which is the upstream's name unless the name was
// shortened (see ExposedName). Prefixes never nest (configuration forbids
// it).
func (c *Catalog) ByPrefix(name string) (*App, string, bool) {
	for _, a := range c.Apps {
		if a.Prefix != "" && strings.HasPrefix(name, a.Prefix) && len(name) > len(a.Prefix) {
			return a, strings.TrimPrefix(name, a.Prefix), true
		}
	}
	return nil, "", false
}

// Unprefixed lists the apps whose names pass through unchanged.
func (c *Catalog) Unprefixed() []*App { return c.unprefixed }

// ExposedName is the client-facing name of an upstream tool or prompt;
// shortened reports a name that cannot be turned back by removing the
// prefix. The app keeps no record of it: the name is derived the same way
// every time, and whoever shows it to a client remembers the way back for
// as long as the upstream lists it.
func (a *App) ExposedName(name string) (exposed string, shortened bool) {
	return exposedName(a.Prefix, name)
}

// MaybeShortened reports whether a client-facing name has the form of a
// shortened one (the prefix, then a hash suffix).
func (a *App) MaybeShortened(exposed string) bool {
	return a.Prefix != "" && hasHashSuffix(exposed)
}

// Info returns what the upstream said of itself at the latest initialize
// the broker made, nil before the first.
func (a *App) Info() *InitializeResult { return a.info.Load() }

// Close releases idle upstream connections.
func (a *App) Close() {
	a.client.CloseIdleConnections()
	if a.stdio != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a.stdio.close(ctx)
	}
}

// HTTPSessions reports whether the app's upstream sessions are
// Streamable HTTP sessions, named by the upstream and held by nothing
// here but their id.
func (a *App) HTTPSessions() bool { return a.dial == nil && a.generation.Load() != generationModern }

// Local reports whether the app's upstream is a process the broker runs
// (a stdio app): it has no HTTP headers, so identity travels in _meta.
func (a *App) Local() bool { return a.stdio != nil }

// Processes counts a stdio app's running server processes.
func (a *App) Processes() int {
	if a.stdio == nil {
		return 0
	}
	return a.stdio.running()
}
