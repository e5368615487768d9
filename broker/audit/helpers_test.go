package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/mcpbroker/mcpbroker/broker/audit"
	"github.com/mcpbroker/mcpbroker/exchange"
)

// The broker signs checkpoints with its exchange keys.
var _ audit.Signer = (*exchange.Signer)(nil)

// faultFS is the operating system's file system with faults a test turns
// on: errors from Write, Sync or OpenFile, and a Sync that blocks until
// released. It counts the file syncs that succeeded.
type faultFS struct {
	audit.OSFileSystem
	mu         sync.Mutex
	writeErr   error // returned by Write (after writing half of what it got, to leave a torn batch)
	syncErr    error // returned by Sync of a trail file
	openErr    error // returned by OpenFile of a new trail file
	syncGate   chan struct{}
	syncsBlock atomic.Int64 // syncs waiting at the gate
	syncs      atomic.Int64 // file syncs that succeeded
}

func (f *faultFS) set(apply func(f *faultFS)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	apply(f)
}

func (f *faultFS) faults() (writeErr, syncErr, openErr error, gate chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writeErr, f.syncErr, f.openErr, f.syncGate
}

func (f *faultFS) OpenFile(name string, flag int, perm fs.FileMode) (audit.File, error) {
	if _, _, openErr, _ := f.faults(); openErr != nil && flag&os.O_CREATE != 0 {
		return nil, &fs.PathError{Op: "open", Path: name, Err: openErr}
	}
	file, err := f.OSFileSystem.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	info, err := file.Stat()
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, fs: f, dir: info.IsDir()}, nil
}

type faultFile struct {
	audit.File
	fs  *faultFS
	dir bool
}

func (f *faultFile) Write(p []byte) (int, error) {
	if writeErr, _, _, _ := f.fs.faults(); writeErr != nil {
		n, _ := f.File.Write(p[:len(p)/2])
		return n, writeErr
	}
	return f.File.Write(p)
}

func (f *faultFile) Sync() error {
	if f.dir {
		return f.File.Sync()
	}
	_, syncErr, _, gate := f.fs.faults()
	if gate != nil {
		f.fs.syncsBlock.Add(1)
		<-gate
		f.fs.syncsBlock.Add(-1)
	}
	if syncErr != nil {
		return syncErr
	}
	if err := f.File.Sync(); err != nil {
		return err
	}
	f.fs.syncs.Add(1)
	return nil
}

// testSigner is an exchange signing key, as the broker's.
func testSigner(t testing.TB, alg jose.SignatureAlgorithm) (*exchange.Signer, *jose.JSONWebKeySet) {
	t.Helper()
	keys, err := exchange.NewKeySet(context.Background(), &exchange.MemoryKeyStore{}, exchange.KeySetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := keys.Active(alg)
	if err != nil {
		t.Fatal(err)
	}
	jwks := keys.JWKS()
	return signer, &jwks
}

// openTrail opens a trail in dir with options, closing it when the test
// ends unless the test closed it.
func openTrail(t testing.TB, options audit.TrailOptions) *audit.Trail {
	t.Helper()
	trail, err := audit.OpenTrail(options)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { trail.Close() })
	return trail
}

// callRecord is a typical record of a tool call.
func callRecord(i int) *audit.Record {
	return &audit.Record{
		Time:            time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second),
		Kind:            audit.KindCall,
		Event:           "tools/call",
		Subject:         "alice",
		Client:          "agent-1",
		App:             "ledger",
		Tool:            "ledger_get_balance",
		UpstreamTool:    "get_balance",
		Method:          "tools/call",
		ArgumentsDigest: audit.Digest([]byte(`{"account":"42"}`)),
		Decision:        &audit.Decision{Allowed: true, Policy: "ledger", PolicyVersion: "3"},
		Result:          &audit.Result{HTTPStatus: 200, Bytes: 120},
	}
}

// writeRecords writes n call records.
func writeRecords(t testing.TB, trail *audit.Trail, n int) {
	t.Helper()
	for i := range n {
		if err := trail.Write(context.Background(), callRecord(i)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
}

// trailFiles lists the trail files of dir in name order.
func trailFiles(t testing.TB, dir string) []string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(dir, "audit-*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(matches)
	return matches
}

// lines reads every line of the trail, in order, with where it is.
type trailLine struct {
	file string
	line int
	text string
}

func readLines(t testing.TB, dir string) []trailLine {
	t.Helper()
	var all []trailLine
	for _, file := range trailFiles(t, dir) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		scanner := bufio.NewScanner(bytes.NewReader(data))
		scanner.Buffer(nil, 2<<20)
		for n := 1; scanner.Scan(); n++ {
			all = append(all, trailLine{file: file, line: n, text: scanner.Text()})
		}
	}
	return all
}

// rewrite replaces the lines of file with lines.
func rewrite(t testing.TB, file string, lines []string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fileLines reads one file's lines.
func fileLines(t testing.TB, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// mustVerify verifies dir and fails the test on a read error.
func mustVerify(t testing.TB, dir string, trusted *jose.JSONWebKeySet) audit.Report {
	t.Helper()
	report, err := audit.Verify(dir, trusted)
	if err != nil {
		t.Fatal(err)
	}
	return report
}

var errInjected = errors.New("injected")

// runtimeProcs is GOMAXPROCS.
func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
