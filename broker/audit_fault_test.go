package broker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mcpbroker/mcpbroker/apps/sample"
	"github.com/mcpbroker/mcpbroker/broker/audit"
	"github.com/mcpbroker/mcpbroker/broker/config"
)

// While the audit trail cannot be written (a full disk, a permission taken
// away), audit.onFailure decides: refuse answers every call with an error
// before it reaches an upstream, makes the broker unready and says so
// loudly; continue serves calls unrecorded, counted and logged. Either way
// the broker finds the disk back by itself, serves and records again, and
// the trail stays whole, noting what it could not hold.
func TestAuditFailureRefusesOrContinues(t *testing.T) {
	tests := []struct {
		onFailure string
		fault     syscall.Errno
	}{
		{config.AuditRefuse, syscall.ENOSPC},
		{config.AuditRefuse, syscall.EACCES},
		{config.AuditContinue, syscall.ENOSPC},
		{config.AuditContinue, syscall.EACCES},
	}
	for _, tt := range tests {
		t.Run(tt.onFailure+"/"+faultName(tt.fault), func(t *testing.T) {
			t.Parallel()
			f := startFaultyBroker(t, tt.onFailure)
			if a := f.call(1); a.Error != nil || f.upstreamCalls.Load() != 1 {
				t.Fatalf("before the fault: %s, upstream called %d times", a.body, f.upstreamCalls.Load())
			}

			f.fsys.fail(tt.fault)
			var unserved *rpcAnswer
			if tt.onFailure == config.AuditRefuse {
				// A call made before the broker knows of the fault may reach
				// the upstream; its answer is still the refusal, since its
				// record cannot be written.
				if a := f.call(2); a.Error == nil || a.Error.Code != -32000 {
					t.Errorf("the first call while the trail fails: %s", a.body)
				}
				waitUntil(t, "the broker to be unready", func() bool {
					status, r := f.readiness()
					return status == http.StatusServiceUnavailable && r.Status == "not_ready" && r.Checks["audit"].Required && !r.Checks["audit"].OK
				})
				before := f.upstreamCalls.Load()
				a := f.call(3)
				if a.Error == nil || a.Error.Code != -32000 || !strings.HasPrefix(a.Error.Message, "audit trail unavailable") {
					t.Errorf("a call while the trail fails: %s", a.body)
				}
				if got := f.upstreamCalls.Load(); got != before {
					t.Errorf("a refused call reached the upstream (%d calls, %d before)", got, before)
				}
				f.wantLog(t, "AUDIT TRAIL UNAVAILABLE: calls are refused")
			} else {
				a := f.call(2)
				if a.Error != nil || f.upstreamCalls.Load() != 2 {
					t.Errorf("a call while the trail fails: %s, upstream called %d times", a.body, f.upstreamCalls.Load())
				}
				unserved = &a
				if got := f.metric(t, "mcpbroker_audit_records_unwritten_total"); got < 1 {
					t.Errorf("mcpbroker_audit_records_unwritten_total = %v", got)
				}
				waitUntil(t, "the broker to be degraded", func() bool {
					status, r := f.readiness()
					return status == http.StatusOK && r.Status == "degraded" && !r.Checks["audit"].Required && !r.Checks["audit"].OK
				})
				f.wantLog(t, "AUDIT TRAIL UNAVAILABLE: calls are served WITHOUT audit records")
				f.wantLog(t, "audit record not written")
			}
			if got := f.metric(t, "mcpbroker_audit_write_failures_total"); got < 1 {
				t.Errorf("mcpbroker_audit_write_failures_total = %v", got)
			}

			// The disk is back: the next checkpoint interval finds it.
			f.fsys.fail(0)
			waitUntil(t, "the broker to be ready again", func() bool {
				status, r := f.readiness()
				return status == http.StatusOK && r.Status == "ready"
			})
			f.wantLog(t, "audit trail writable again")
			before := f.upstreamCalls.Load()
			served := f.call(4)
			if served.Error != nil || f.upstreamCalls.Load() != before+1 {
				t.Fatalf("a call once the trail is back: %s", served.body)
			}

			report, err := audit.Verify(f.dir, nil)
			if err != nil || !report.OK() {
				t.Fatalf("the trail after the fault: %v\n%s", err, report)
			}
			var noted, recorded, recordedUnserved bool
			err = audit.Query(f.dir, audit.Filter{}, func(r *audit.Record) bool {
				noted = noted || r.Kind == audit.KindTrail && r.Event == audit.EventFault && strings.Contains(r.Detail, "not written")
				if r.Result != nil {
					recorded = recorded || r.Result.Digest == served.digest()
					recordedUnserved = recordedUnserved || unserved != nil && r.Result.Digest == unserved.digest()
				}
				return true
			})
			if err != nil {
				t.Fatal(err)
			}
			if !noted || !recorded || recordedUnserved {
				t.Errorf("the trail notes the fault: %v, records the call after it: %v, records a call it could not: %v", noted, recorded, recordedUnserved)
			}
		})
	}
}

func faultName(errno syscall.Errno) string {
	switch errno {
	case syscall.ENOSPC:
		return "ENOSPC"
	case syscall.EACCES:
		return "EACCES"
	}
	return fmt.Sprint(int(errno))
}

// faultyFS is the operating system's file system whose trail files, while
// a fault is set, fail writes (after taking half of what they were given,
// as a filling disk does) and syncs with it.
type faultyFS struct {
	audit.OSFileSystem
	fault atomic.Uintptr // a syscall.Errno; 0 for none
}

// fail sets the fault; 0 clears it.
func (f *faultyFS) fail(errno syscall.Errno) { f.fault.Store(uintptr(errno)) }

func (f *faultyFS) OpenFile(name string, flag int, perm fs.FileMode) (audit.File, error) {
	file, err := f.OSFileSystem.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	info, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, err
	}
	if info.IsDir() {
		return file, nil
	}
	return &faultyFile{File: file, name: name, fs: f}, nil
}

type faultyFile struct {
	audit.File
	name string
	fs   *faultyFS
}

func (f *faultyFile) Write(p []byte) (int, error) {
	if errno := syscall.Errno(f.fs.fault.Load()); errno != 0 {
		n, _ := f.File.Write(p[:len(p)/2])
		return n, &fs.PathError{Op: "write", Path: f.name, Err: errno}
	}
	return f.File.Write(p)
}

func (f *faultyFile) Sync() error {
	if errno := syscall.Errno(f.fs.fault.Load()); errno != 0 {
		return &fs.PathError{Op: "sync", Path: f.name, Err: errno}
	}
	return f.File.Sync()
}

// faultyBrokerConfig is a broker in front of one upstream, recording to a
// trail that looks for a lost fault every second. Placeholders: the
// broker's address, the trail and audit.onFailure, the upstream's URL.
const faultyBrokerConfig = `
version: 1
http: {address: "%s"}
admin: {disabled: true}
audit: {dir: "%s", durability: sync, onFailure: %s, checkpoint: {interval: 1s}}
mcpProvider:
  enabled: true
  authorization: {unauthenticated: {enabled: true}}
  transports:
    stream: {enabled: true, path: /mcp, session: {enabled: true}}
apps:
  - name: ledger
    type: mcpProxy
    upstream: {transport: stream, stream: {url: "%s"}}
`

// faultyBroker is a broker served in the test's process whose audit trail
// fails on demand, with a client session open.
type faultyBroker struct {
	broker        *Broker
	fsys          *faultyFS
	dir           string
	url           string
	session       string
	logs          *logBuffer
	upstreamCalls *atomic.Int32 // tools/call requests the upstream received
	t             *testing.T
}

func startFaultyBroker(t *testing.T, onFailure string) *faultyBroker {
	t.Helper()
	f := &faultyBroker{fsys: &faultyFS{}, dir: filepath.Join(t.TempDir(), "audit"), logs: &logBuffer{}, upstreamCalls: &atomic.Int32{}, t: t}
	ledger := sample.Handler(nil)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m struct{ Method string }
		if json.Unmarshal(body, &m) == nil && m.Method == "tools/call" {
			f.upstreamCalls.Add(1)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		ledger.ServeHTTP(w, r)
	}))
	t.Cleanup(upstream.Close)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(fmt.Appendf(nil, faultyBrokerConfig, ln.Addr(), f.dir, onFailure, upstream.URL+"/mcp"), "faulty.yaml")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(f.logs, nil))
	if f.broker, err = New(cfg, Options{Logger: log, Version: "test", auditFS: f.fsys}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.broker.ServeListener(ctx, ln) }()
	t.Cleanup(func() {
		f.fsys.fail(0)
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("the broker did not shut down")
		}
		if t.Failed() {
			t.Logf("broker log:\n%s", f.logs)
		}
	})
	f.url = "http://" + ln.Addr().String() + "/mcp"

	resp, body := f.post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}`)
	f.session = resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || f.session == "" {
		t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	if resp, body := f.post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("initialized: %d %s", resp.StatusCode, body)
	}
	return f
}

func (f *faultyBroker) post(body string) (*http.Response, []byte) {
	f.t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.url, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if f.session != "" {
		req.Header.Set("Mcp-Session-Id", f.session)
		req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp, raw
}

// rpcAnswer is a JSON-RPC response and the bytes it came in.
type rpcAnswer struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int64  `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	body []byte
}

func (a rpcAnswer) digest() string {
	sum := sha256.Sum256(a.body)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// call asks for alice's balance.
func (f *faultyBroker) call(id int) rpcAnswer {
	f.t.Helper()
	resp, body := f.post(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"ledger_get_balance","arguments":{"account":"alice"}}}`, id))
	a := rpcAnswer{body: body}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &a) != nil || a.Result == nil && a.Error == nil {
		f.t.Fatalf("call %d: %d %s", id, resp.StatusCode, body)
	}
	return a
}

// readiness is what the admin listener's /readyz says.
func (f *faultyBroker) readiness() (int, readyReport) {
	rec := httptest.NewRecorder()
	f.broker.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	var r readyReport
	_ = json.Unmarshal(rec.Body.Bytes(), &r)
	return rec.Code, r
}

type readyReport struct {
	Status string
	Checks map[string]struct{ OK, Required bool }
}

// metric is the value of a counter without labels on /metrics.
func (f *faultyBroker) metric(t *testing.T, name string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	f.broker.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, m := range families[name].GetMetric() {
		total += m.GetCounter().GetValue()
	}
	return total
}

func (f *faultyBroker) wantLog(t *testing.T, text string) {
	t.Helper()
	if !strings.Contains(f.logs.String(), text) {
		t.Errorf("the log does not say %q", text)
	}
}

// waitUntil polls cond until it holds, for up to 15 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 15 s for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logBuffer is a log destination the test reads while the broker
// writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
