package broker_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mcpbroker/mcpbroker/broker"
	"github.com/mcpbroker/mcpbroker/broker/config"
)

// startBroker runs a broker from YAML on a loopback port and returns its
// base URL. The configuration may use %s placeholders filled from args.
func startBroker(t testing.TB, yaml string, args ...any) string {
	t.Helper()
	return startBrokerAt(t, "127.0.0.1:0", yaml, args...)
}

// startBrokerAt is startBroker on a given address, for configurations
// that must name the broker's own URL.
func startBrokerAt(t testing.TB, addr, yaml string, args ...any) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(yaml, args...)), "test.yaml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	cfg.HTTP.Address = ln.Addr().String()
	// Each broker keeps its trail apart and lets the system choose its
	// admin port.
	if cfg.Audit.Dir == "data/audit" {
		cfg.Audit.Dir = filepath.Join(t.TempDir(), "audit")
	}
	if cfg.Admin.Address == "127.0.0.1:9464" {
		cfg.Admin.Address = "127.0.0.1:0"
	}
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("MCPBROKER_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	b, err := broker.New(cfg, broker.Options{Logger: log, Version: "test"})
	if err != nil {
		t.Fatalf("broker: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.ServeListener(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("broker did not shut down")
		}
	})
	return "http://" + ln.Addr().String()
}

// startBrokerProcess runs the mcpbroker binary on addr with the
// configuration yaml (placeholders filled from args), written in a folder
// of its own, with the admin listener on a port the system chooses, until
// the test ends; it returns the broker's URL.
func startBrokerProcess(t testing.TB, addr, yaml string, args ...any) string {
	t.Helper()
	dir := t.TempDir()
	config := filepath.Join(dir, "broker.yaml")
	text := fmt.Sprintf(yaml, args...) + "\nadmin: {address: \"127.0.0.1:0\"}\nhttp: {address: \"" + addr + "\"}\n"
	if err := os.WriteFile(config, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	startProcess(t, addr, buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker"), "serve", "--config", config)
	return "http://" + addr
}

var (
	buildOnce sync.Map // package path -> func() (string, error)
	binDir    string
	binDirErr error
	binOnce   sync.Once
)

// buildBinary builds a main package once per test run.
func buildBinary(t testing.TB, pkg string) string {
	t.Helper()
	binOnce.Do(func() { binDir, binDirErr = os.MkdirTemp("", "mcpbroker-test-bin") })
	if binDirErr != nil {
		t.Fatal(binDirErr)
	}
	f, _ := buildOnce.LoadOrStore(pkg, sync.OnceValues(func() (string, error) {
		out := filepath.Join(binDir, filepath.Base(pkg))
		cmd := exec.Command("go", "build", "-o", out, pkg)
		if msg, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, msg)
		}
		return out, nil
	}))
	path, err := f.(func() (string, error))()
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// freeAddress returns a loopback address that was free a moment ago.
func freeAddress(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startProcess runs a server process until the test ends and waits until
// it accepts connections at addr.
func startProcess(t testing.TB, addr string, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	var logs strings.Builder
	cmd.Stdout = &lockedWriter{w: &logs}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), cmd.Stdout.(*lockedWriter).String())
		}
	})
	waitListening(t, addr)
	return cmd
}

func waitListening(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listening at %s", addr)
}

type lockedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// nodeTools returns the directory of Node 22 and the npm packages the
// tests use, installed by .ci/setup. Outside `make test` the tests that
// need them are skipped, unless CI is set, where their absence fails.
func nodeTools(t testing.TB) (bin, modules string) {
	t.Helper()
	bin, modules = os.Getenv("MCPBROKER_NODE_BIN"), os.Getenv("MCPBROKER_NODE_MODULES")
	if bin == "" || modules == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("MCPBROKER_NODE_BIN and MCPBROKER_NODE_MODULES are not set: run the tests with make test")
		}
		t.Skip("Node tools not set up: run make test")
	}
	return bin, modules
}

var _ = http.MethodGet

// runNode runs a script of testdata/node with the pinned Node and its
// packages, and returns what it printed; a failure ends the test with its
// output.
func runNode(t testing.TB, script string, args ...string) []byte {
	t.Helper()
	nodeBin, modules := nodeTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(nodeBin, "node"), append([]string{filepath.Join(modules, "..", script)}, args...)...)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	cmd.Dir = filepath.Join(modules, "..")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s\n%s", script, err, out, stderr.String())
	}
	return out
}

// eventually polls cond until it holds, for up to 15 s, the one bound on
// waiting for something that happens on another goroutine or process;
// what names it in the failure.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 15 s for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// scenario is the broker configuration testdata/broker/NAME.yaml, a
// template whose %s and %q placeholders the test fills (see startBroker).
func scenario(t testing.TB, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "broker", name+".yaml"))
	if err != nil {
		t.Fatalf("scenario %s: %v", name, err)
	}
	return string(data)
}

// metricSum scrapes the admin listener at admin (a base URL) and sums the
// samples of family whose labels include labels: counter and gauge
// values, or histogram sample counts.
func metricSum(t testing.TB, admin, family string, labels map[string]string) float64 {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var total float64
metrics:
	for _, m := range families[family].GetMetric() {
		for _, l := range m.GetLabel() {
			if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
				continue metrics
			}
		}
		switch {
		case m.GetHistogram() != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		case m.GetGauge() != nil:
			total += m.GetGauge().GetValue()
		default:
			total += m.GetCounter().GetValue()
		}
	}
	return total
}
