package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mcpbroker/mcpbroker/broker"
	"github.com/mcpbroker/mcpbroker/broker/config"
)

// TestMain runs the test binary as a hop when a benchmark started it as
// one (hopEnv), and runs the tests and benchmarks otherwise.
func TestMain(m *testing.M) {
	if spec, ok := os.LookupEnv(hopEnv); ok {
		if err := runHop(spec); err != nil {
			fmt.Fprintln(os.Stderr, "hop:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runHop serves as spec says on the listener passed as file descriptor 3,
// until SIGTERM; then it stops gracefully.
func runHop(spec string) error {
	var s hopSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		return fmt.Errorf("%s: %w", hopEnv, err)
	}
	inherited := os.NewFile(3, "listener")
	ln, err := net.FileListener(inherited)
	inherited.Close()
	if err != nil {
		return fmt.Errorf("listener: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	switch s.Role {
	case roleProxy:
		return serveProxyHop(ctx, ln, s)
	case roleBroker:
		return serveBrokerHop(ctx, ln, s)
	}
	return fmt.Errorf("unknown role %q", s.Role)
}

// serveProxyHop serves the bare reverse proxy in front of spec.Upstream,
// and the Go runtime's metrics on its admin listener.
func serveProxyHop(ctx context.Context, ln net.Listener, spec hopSpec) (err error) {
	if dir := os.Getenv(profileEnv); dir != "" {
		stopProfiles, err := startProfiles(dir, spec.Name)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, stopProfiles()) }()
	}
	u, err := url.Parse(spec.Upstream)
	if err != nil {
		return err
	}
	proxy, transport := newReverseProxy(u)
	defer transport.CloseIdleConnections()
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector())
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	admin, err := serveAdmin(mux)
	if err != nil {
		return err
	}
	defer admin.Close()

	srv := &http.Server{Handler: proxy}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if err := announce(hopAddresses{Endpoint: "http://" + ln.Addr().String() + u.Path, Admin: adminURL(admin)}); err != nil {
		return err
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

// serveBrokerHop runs the broker configured by the file spec.Config on ln,
// as `mcpbroker serve` would, with its admin handler on a loopback port of
// its own.
func serveBrokerHop(ctx context.Context, ln net.Listener, spec hopSpec) (err error) {
	if dir := os.Getenv(profileEnv); dir != "" {
		stopProfiles, err := startProfiles(dir, spec.Name)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, stopProfiles()) }()
	}
	yaml, err := os.ReadFile(spec.Config)
	if err != nil {
		return err
	}
	cfg, err := config.Parse(yaml, filepath.Base(spec.Config))
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	cfg.HTTP.Address = ln.Addr().String()
	// The admin handler is served below, on a port the hop can tell.
	cfg.Admin.Disabled = true
	// The audit trail costs what its own paths measure; the others run
	// without it. A path that audits names its directory.
	if cfg.Audit.Dir == "data/audit" {
		cfg.Audit.Disabled = true
	}
	b, err := broker.New(cfg, broker.Options{Version: "bench"})
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	admin, err := serveAdmin(b.AdminHandler())
	if err != nil {
		return err
	}
	defer admin.Close()
	if err := announce(hopAddresses{Endpoint: brokerEndpoint(ln), Admin: adminURL(admin)}); err != nil {
		return err
	}
	return b.ServeListener(ctx, ln)
}

// serveAdmin serves handler on a loopback port until the server is
// closed.
func serveAdmin(handler http.Handler) (*http.Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	srv := &http.Server{Addr: ln.Addr().String(), Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}

func adminURL(srv *http.Server) string { return "http://" + srv.Addr }

// announce tells the benchmark where the hop serves: one line of JSON on
// standard output.
func announce(addresses hopAddresses) error {
	line, err := json.Marshal(addresses)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(line, '\n'))
	return err
}

// startProfiles starts the CPU profile of the hop named name, written to
// <dir>/<name>.cpu.pprof. The function it returns stops it and writes the
// allocation profile, <dir>/<name>.allocs.pprof.
func startProfiles(dir, name string) (func() error, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	base := filepath.Join(dir, profileName(name))
	cpu, err := os.Create(base + ".cpu.pprof")
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		cpu.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		errCPU := cpu.Close()
		allocs, err := os.Create(base + ".allocs.pprof")
		if err != nil {
			return errors.Join(errCPU, err)
		}
		runtime.GC() // the in-use figures as of now
		errWrite := pprof.Lookup("allocs").WriteTo(allocs, 0)
		return errors.Join(errCPU, errWrite, allocs.Close())
	}, nil
}

// profileName is a row's name as a file name: broker+auth is broker_auth.
func profileName(row string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '_':
			return r
		}
		return '_'
	}, row)
}
