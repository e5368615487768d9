package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The hop under test, the bare reverse proxy or the broker, runs in a
// process of its own, the test binary run again, so that the kernel's
// accounting of that process is the hop's CPU time and nothing else's:
// the upstream and the client stay in the benchmark's process.

// hopEnv tells a run of the test binary that it is a hop, not a test
// run: its value is a hopSpec in JSON, and the listener to serve on is
// its file descriptor 3.
const hopEnv = "MCPBROKER_BENCH_HOP"

// profileEnv names a directory where each broker hop writes its CPU
// profile, for its whole life, and at exit its allocation profile.
const profileEnv = "MCPBROKER_BENCH_PROFILE"

// The roles a hop plays.
const (
	roleProxy  = "proxy"
	roleBroker = "broker"
)

// hopSpec is what a hop is told to be.
type hopSpec struct {
	Role string `json:"role"`
	// Name is the benchmark's row, naming the profiles.
	Name string `json:"name"`
	// Upstream is the MCP endpoint the proxy forwards to.
	Upstream string `json:"upstream,omitempty"`
	// Config is the broker's configuration file.
	Config string `json:"config,omitempty"`
}

// hopAddresses is the one line a hop writes to its standard output once
// it serves.
type hopAddresses struct {
	// Endpoint is the MCP endpoint the client calls.
	Endpoint string `json:"endpoint"`
	// Admin is the base URL of the hop's /metrics.
	Admin string `json:"admin"`
}

// hopStartTimeout bounds a hop's start, and hopStopTimeout its graceful
// stop after SIGTERM: more than the broker's default
// http.shutdownTimeout (10s).
const (
	hopStartTimeout = 20 * time.Second
	hopStopTimeout  = 20 * time.Second
)

// A hop is a running hop process.
type hop struct {
	hopAddresses
	cmd    *exec.Cmd
	log    string        // its standard error
	exited chan struct{} // closed once cmd has been waited for
	err    error         // how it exited, once exited is closed
}

// startHop runs the test binary as the hop spec describes, serving on ln,
// and returns once it has said where it serves. The kernel kills it if the
// benchmark's process dies without running its cleanups; otherwise it is
// stopped when tb ends, which fails tb unless it then exits 0.
func startHop(tb testing.TB, spec hopSpec, ln net.Listener) *hop {
	tb.Helper()
	listener, err := ln.(*net.TCPListener).File()
	ln.Close() // the hop has its own descriptor from here on
	if err != nil {
		tb.Fatal(err)
	}
	defer listener.Close()
	rawSpec, err := json.Marshal(spec)
	if err != nil {
		tb.Fatal(err)
	}
	stdout, lineWriter, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	defer stdout.Close()
	h := &hop{log: filepath.Join(tb.TempDir(), "hop.log"), exited: make(chan struct{})}
	logFile, err := os.Create(h.log)
	if err != nil {
		tb.Fatal(err)
	}
	defer logFile.Close()
	h.cmd = exec.Command(os.Args[0], "-test.run=^$")
	h.cmd.Env = append(os.Environ(), hopEnv+"="+string(rawSpec))
	h.cmd.ExtraFiles = []*os.File{listener}
	h.cmd.Stdout, h.cmd.Stderr = lineWriter, logFile
	h.cmd.SysProcAttr = hopProcessAttributes()
	err = h.cmd.Start()
	lineWriter.Close() // the hop has its own; its exit ends the line
	if err != nil {
		tb.Fatalf("%s hop: %v", spec.Name, err)
	}
	go func() {
		h.err = h.cmd.Wait()
		close(h.exited)
	}()
	tb.Cleanup(func() {
		if err := h.stop(); err != nil {
			tb.Errorf("%s hop: %v", spec.Name, err)
		}
	})

	_ = stdout.SetReadDeadline(time.Now().Add(hopStartTimeout))
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &h.hopAddresses)
	}
	if err != nil {
		select {
		case <-h.exited:
			tb.Fatalf("%s hop exited on start (%v):\n%s", spec.Name, h.err, h.tail())
		default:
			tb.Fatalf("%s hop did not say where it serves (%v; it wrote %q):\n%s", spec.Name, err, line, h.tail())
		}
	}
	return h
}

// stop sends SIGTERM and waits for the hop to exit, killing it after
// hopStopTimeout. It is an error unless the hop then exits 0; a hop that
// had exited already, before it was stopped, is one too.
func (h *hop) stop() error {
	select {
	case <-h.exited:
		return fmt.Errorf("exited before it was stopped (%v):\n%s", h.cmd.ProcessState, h.tail())
	default:
	}
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
		if h.err != nil {
			return fmt.Errorf("exited with %v after SIGTERM:\n%s", h.err, h.tail())
		}
		return nil
	case <-time.After(hopStopTimeout):
		_ = h.cmd.Process.Kill()
		<-h.exited
		return fmt.Errorf("still running %v after SIGTERM: killed:\n%s", hopStopTimeout, h.tail())
	}
}

// tail is the end of what the hop wrote to its standard error.
func (h *hop) tail() string {
	data, err := os.ReadFile(h.log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(string(bytes.TrimRight(data, "\n")), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}

// cpuTime is the CPU time the hop has used so far, user and system, over
// all its threads (see processCPU).
func (h *hop) cpuTime(tb testing.TB) time.Duration {
	tb.Helper()
	used, err := processCPU(h.cmd.Process.Pid)
	if err != nil {
		tb.Fatalf("CPU time of the hop: %v", err)
	}
	return used
}

// cpuMeter reads a hop's CPU time before and after a measured stretch;
// without a hop, it measures nothing.
type cpuMeter struct {
	hop    *hop
	before time.Duration
}

func startCPUMeter(tb testing.TB, h *hop) cpuMeter {
	tb.Helper()
	if h == nil || !cpuMeasurable {
		return cpuMeter{}
	}
	return cpuMeter{hop: h, before: h.cpuTime(tb)}
}

// perOp returns the hop's CPU time since the meter started, in
// microseconds per operation, and false when nothing was measured.
func (m cpuMeter) perOp(tb testing.TB, ops int) (float64, bool) {
	tb.Helper()
	if m.hop == nil || ops == 0 {
		return 0, false
	}
	return microseconds(m.hop.cpuTime(tb)-m.before) / float64(ops), true
}

// readMetrics reads the hop's /metrics.
func readMetrics(tb testing.TB, admin string) map[string]*dto.MetricFamily {
	tb.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		tb.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET /metrics: status %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		tb.Fatalf("GET /metrics: %v", err)
	}
	return families
}

// counterValue is the sum of the counter name's series; 0 if there are
// none.
func counterValue(families map[string]*dto.MetricFamily, name string) float64 {
	var sum float64
	if f := families[name]; f != nil {
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
