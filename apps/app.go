package apps

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/mcpbroker/mcpbroker/apps/upstream"
	"github.com/mcpbroker/mcpbroker/broker/config"
)

// App is one upstream application.
type App struct {
	Name string
	// Prefix is added to tool and prompt names; empty when namespacing is off.
	Prefix string
	// Timeout bounds one request to the upstream.
	Timeout time.Duration
	URL     string

	client *http.Client
	log    *slog.Logger
	health health

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
}

// NewCatalog builds the apps of a validated configuration.
func NewCatalog(cfg []config.App, log *slog.Logger) (*Catalog, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Catalog{byName: make(map[string]*App, len(cfg))}
	for _, a := range cfg {
		if a.Type != "mcpProxy" {
			return nil, fmt.Errorf("apps: %s: type %q is not supported", a.Name, a.Type)
		}
		if a.Upstream.Stream == nil {
			return nil, fmt.Errorf("apps: %s: no stream upstream", a.Name)
		}
		conn := a.Upstream.Stream.Connection
		app := &App{
			Name:    a.Name,
			Timeout: time.Duration(a.Upstream.Timeout),
			URL:     a.Upstream.Stream.URL,
			client: upstream.NewHTTPClient(time.Duration(conn.DialTimeout), time.Duration(conn.KeepAlive.Interval),
				conn.Pool.MaxIdleConns, conn.Pool.MaxIdleConnsPerHost),
			log: log.With("app", a.Name),
		}
		if _, err := upstream.NewSession(&upstream.Options{URL: app.URL}); err != nil {
			return nil, fmt.Errorf("apps: %s: %w", a.Name, err)
		}
		if app.Timeout <= 0 {
			app.Timeout = 30 * time.Second
		}
		if ns := a.ToolNamespace; ns == nil {
			app.Prefix = a.Name + "_"
		} else if !ns.Disabled {
			app.Prefix = ns.Name
		}
		app.order = len(c.Apps)
		if ns := a.ResourceNamespace; ns != nil && len(ns.URIPrefixes) > 0 {
			app.uriPrefixes = ns.URIPrefixes
		} else {
			c.undeclared = append(c.undeclared, app)
		}
		c.Apps = append(c.Apps, app)
		c.byName[app.Name] = app
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
func (c *Catalog) Unprefixed() []*App {
	var out []*App
	for _, a := range c.Apps {
		if a.Prefix == "" {
			out = append(out, a)
		}
	}
	return out
}

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

// Close releases idle upstream connections.
func (a *App) Close() { a.client.CloseIdleConnections() }
