package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mcpbroker/mcpbroker/apps"
	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/broker/telemetry"
)

// The admin listener serves operators apart from agents: /metrics,
// /healthz and /readyz, on admin.address (loopback by default).

// newHealth is the readiness the admin listener reports: the audit trail
// writable (required when a failing trail refuses calls), the store open,
// the Auth Provider's keys loaded, and each app's upstream reachable
// (degraded, not unready, when one is not: the others still serve).
func (b *Broker) newHealth() *telemetry.Health {
	h := telemetry.NewHealth()
	if b.audit != nil {
		h.Add(telemetry.Check{Name: "audit", Run: b.audit.healthy, Required: b.audit.refuse})
	}
	if b.redis != nil {
		h.Add(telemetry.Check{Name: "redis", Required: true, Run: redisReady(b.redis)})
	}
	if db := b.store.database(); db != nil {
		h.Add(telemetry.Check{Name: "store", Required: true, Run: func(context.Context) error {
			return db.View(func(*bolt.Tx) error { return nil })
		}})
	}
	if b.authProvider != nil {
		h.Add(telemetry.Check{Name: "keys", Required: true, Run: func(context.Context) error {
			if len(b.authProvider.keys.JWKS().Keys) == 0 {
				return errors.New("no signing keys")
			}
			return nil
		}})
	}
	h.ReplaceGroup(appCheckPrefix, b.appChecks(b.current().catalog))
	return h
}

// appCheckPrefix begins the names of the apps' readiness checks.
const appCheckPrefix = "app:"

// appChecks are the readiness checks of the catalog's apps: each upstream
// reachable.
func (b *Broker) appChecks(catalog *apps.Catalog) []telemetry.Check {
	var checks []telemetry.Check
	for _, app := range catalog.Apps {
		checks = append(checks, telemetry.Check{Name: appCheckPrefix + app.Name, Run: func(ctx context.Context) error {
			err := app.Reachable(ctx)
			b.metrics.UpstreamUp(app.Name, err == nil)
			return err
		}})
	}
	return checks
}

// newTracing starts exporting traces when telemetry.traces is enabled;
// nil otherwise, and for a dry run.
func newTracing(cfg *config.Config, opts Options) (*telemetry.Tracing, error) {
	t := cfg.Telemetry.Traces
	if !t.Enabled || opts.Dry {
		return nil, nil
	}
	tracing, err := telemetry.NewTracing(context.Background(), telemetry.TraceOptions{
		Endpoint:    t.Endpoint,
		Insecure:    t.Insecure,
		SampleRatio: float64(t.SamplePercent) / 100,
		ServiceName: t.ServiceName,
	})
	if err != nil {
		return nil, fmt.Errorf("broker: telemetry.traces: %w", err)
	}
	return tracing, nil
}

// AdminHandler serves /metrics, /healthz and /readyz, and with
// admin.token the operator endpoints under /pins (admin_pins.go).
func (b *Broker) AdminHandler() http.Handler {
	base := telemetry.AdminHandler(b.metrics, b.health)
	pins := b.pinsHandler()
	console := b.console
	if b.cfg.Console.Listener != config.ConsoleOnAdmin {
		console = nil // on the main listener
	}
	if pins == nil && console == nil {
		return base
	}
	mux := http.NewServeMux()
	if pins != nil {
		mux.Handle("/pins", pins)
		mux.Handle("/pins/", pins)
	}
	if console != nil {
		path := b.cfg.Console.Path
		mux.Handle(path, console)
		mux.Handle(path+"/", console)
	}
	mux.Handle("/", base)
	return mux
}

// listenAdmin opens the admin listener; nil when admin.disabled.
func (b *Broker) listenAdmin() (net.Listener, error) {
	if b.cfg.Admin.Disabled {
		return nil, nil
	}
	ln, err := net.Listen("tcp", b.cfg.Admin.Address)
	if err != nil {
		return nil, fmt.Errorf("broker: admin listener on %s (admin.address): %w", b.cfg.Admin.Address, err)
	}
	return ln, nil
}

// serveAdmin serves the admin listener until it is closed.
func (b *Broker) serveAdmin(ln net.Listener) *http.Server {
	srv := &http.Server{Handler: b.AdminHandler(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.log.Error("admin listener stopped", "error", err)
		}
	}()
	endpoints := adminEndpoints(b.cfg.Admin.Token.Value() != "")
	if b.console != nil && b.cfg.Console.Listener == config.ConsoleOnAdmin {
		endpoints += " " + b.cfg.Console.Path
	}
	b.log.Info("admin listener", "address", ln.Addr().String(), "endpoints", endpoints)
	return srv
}

func adminEndpoints(pins bool) string {
	if pins {
		return "/metrics /healthz /readyz /pins"
	}
	return "/metrics /healthz /readyz"
}
