package audit_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/mcpbroker/mcpbroker/broker/audit"
)

// decodeLines decodes every line of the trail in dir.
func decodeLines(t *testing.T, dir string) ([]trailLine, []audit.Record) {
	t.Helper()
	lines := readLines(t, dir)
	records := make([]audit.Record, len(lines))
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l.text), &records[i]); err != nil {
			t.Fatalf("%s:%d: %v", l.file, l.line, err)
		}
	}
	return lines, records
}

// checkChain checks, independently of Verify, that seq runs from 1 and
// each prev is the SHA-256 of the line before.
func checkChain(t *testing.T, dir string) []audit.Record {
	t.Helper()
	lines, records := decodeLines(t, dir)
	prev := ""
	for i, r := range records {
		if r.Seq != uint64(i+1) || r.Prev != prev {
			t.Fatalf("%s:%d: seq %d prev %q, want seq %d prev %q", lines[i].file, lines[i].line, r.Seq, r.Prev, i+1, prev)
		}
		sum := sha256.Sum256([]byte(lines[i].text))
		prev = hex.EncodeToString(sum[:])
	}
	return records
}

func TestTrailChain(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	signer, jwks := testSigner(t, jose.EdDSA)
	trail := openTrail(t, audit.TrailOptions{Dir: dir, Signer: signer})
	var written []*audit.Record
	for i := range 5 {
		r := callRecord(i)
		if err := trail.Write(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		if r.Seq != uint64(i+1) || len(r.ID) != 32 || (i == 0) != (r.Prev == "") {
			t.Fatalf("record %d: seq %d id %q prev %q", i, r.Seq, r.ID, r.Prev)
		}
		written = append(written, r)
	}
	if err := trail.Close(); err != nil {
		t.Fatal(err)
	}
	records := checkChain(t, dir)
	if len(records) != 6 || records[5].Kind != audit.KindCheckpoint {
		t.Fatalf("%d records, last %q; want 5 and a checkpoint", len(records), records[len(records)-1].Kind)
	}
	for i, r := range written {
		if records[i].ID != r.ID || records[i].Subject != "alice" || records[i].Decision == nil || !records[i].Decision.Allowed {
			t.Errorf("record %d reads back as %+v", i, records[i])
		}
	}
	info, err := os.Stat(dir)
	if err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, %v; want 0700", info.Mode().Perm(), err)
	}
	for _, file := range trailFiles(t, dir) {
		if info, err := os.Stat(file); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v; want 0600", file, info.Mode().Perm())
		}
	}
	report := mustVerify(t, dir, jwks)
	if !report.OK() || report.Records != 6 || report.Checkpoints != 1 || !report.KeysChecked || report.Uncovered != 0 || len(report.Warnings) != 0 {
		t.Fatalf("report:\n%s%+v", report.String(), report)
	}
	// Close wrote the last checkpoint; closing again writes nothing.
	if err := trail.Close(); err != nil {
		t.Fatal(err)
	}
	if err := trail.Write(context.Background(), callRecord(9)); !errors.Is(err, audit.ErrClosed) {
		t.Fatalf("write after close: %v, want ErrClosed", err)
	}
}

func TestTrailCheckpointsEvery(t *testing.T) {
	dir := t.TempDir()
	signer, jwks := testSigner(t, jose.ES256)
	trail := openTrail(t, audit.TrailOptions{Dir: dir, Signer: signer, CheckpointEvery: 10})
	writeRecords(t, trail, 25)
	if err := trail.Close(); err != nil {
		t.Fatal(err)
	}
	var at []uint64
	for _, r := range checkChain(t, dir) {
		if r.Kind == audit.KindCheckpoint {
			at = append(at, r.Seq)
			if c := r.Checkpoint; c.Seq != r.Seq || c.Prev != r.Prev || c.KeyID != signer.KeyID() || c.Algorithm != "ES256" || c.Signature == "" {
				t.Errorf("checkpoint %d: %+v", r.Seq, c)
			}
		}
	}
	// 10 records, checkpoint 11; 10 more, checkpoint 22; 5, and Close's at 28.
	if fmt.Sprint(at) != "[11 22 28]" {
		t.Fatalf("checkpoints at %v, want [11 22 28]", at)
	}
	if report := mustVerify(t, dir, jwks); !report.OK() || report.Checkpoints != 3 {
		t.Fatalf("report:\n%s", report.String())
	}
}

func TestTrailRotation(t *testing.T) {
	t.Run("size", func(t *testing.T) {
		dir := t.TempDir()
		const maxBytes = 4 << 10
		trail := openTrail(t, audit.TrailOptions{Dir: dir, MaxFileBytes: maxBytes})
		writeRecords(t, trail, 60)
		if err := trail.Close(); err != nil {
			t.Fatal(err)
		}
		files := trailFiles(t, dir)
		if len(files) < 4 {
			t.Fatalf("%d files for 60 records of about 500 bytes in files of 4 KiB", len(files))
		}
		lines := readLines(t, dir)
		for i, file := range files {
			info, err := os.Stat(file)
			if err != nil {
				t.Fatal(err)
			}
			// Close's checkpoint may take the last file past the limit.
			if i < len(files)-1 && info.Size() > maxBytes {
				t.Errorf("%s: %d bytes, more than %d", file, info.Size(), maxBytes)
			}
			// The name says the file's first seq.
			var first audit.Record
			for _, l := range lines {
				if l.file == file {
					json.Unmarshal([]byte(l.text), &first)
					break
				}
			}
			if want := fmt.Sprintf("audit-%020d-", first.Seq); !strings.HasPrefix(filepath.Base(file), want) {
				t.Errorf("%s holds seq %d first; want a name starting %s", file, first.Seq, want)
			}
		}
		checkChain(t, dir)
		if report := mustVerify(t, dir, nil); !report.OK() || len(report.Files) != len(files) {
			t.Fatalf("report:\n%s", report.String())
		}
	})
	t.Run("age", func(t *testing.T) {
		dir := t.TempDir()
		var now atomic.Int64
		now.Store(time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC).UnixNano())
		clock := func() time.Time { return time.Unix(0, now.Load()).UTC() }
		trail := openTrail(t, audit.TrailOptions{Dir: dir, MaxFileAge: time.Hour, Now: clock})
		for range 3 {
			writeRecords(t, trail, 2)
			now.Add(int64(time.Hour + time.Minute))
		}
		if err := trail.Close(); err != nil {
			t.Fatal(err)
		}
		files := trailFiles(t, dir)
		want := []string{"-20261204T000000.000Z.jsonl", "-20261204T010100.000Z.jsonl", "-20261204T020200.000Z.jsonl", "-20261204T030300.000Z.jsonl"}
		if len(files) != len(want) {
			t.Fatalf("files %v, want %d", files, len(want))
		}
		for i, file := range files {
			if !strings.HasSuffix(file, want[i]) {
				t.Errorf("file %d is %s, want one ending %s", i, file, want[i])
			}
		}
		checkChain(t, dir)
	})
}

func TestTrailRestart(t *testing.T) {
	dir := t.TempDir()
	signer, jwks := testSigner(t, jose.EdDSA)
	for round := range 3 {
		trail := openTrail(t, audit.TrailOptions{Dir: dir, Signer: signer})
		writeRecords(t, trail, 4)
		if err := trail.Close(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	records := checkChain(t, dir) // seq and prev continue across restarts
	if len(records) != 15 {
		t.Fatalf("%d records, want 3 × (4 + a checkpoint)", len(records))
	}
	if files := trailFiles(t, dir); len(files) != 1 {
		t.Fatalf("files %v: a restart appends to a newest file with room", files)
	}
	if report := mustVerify(t, dir, jwks); !report.OK() || report.Checkpoints != 3 {
		t.Fatalf("report:\n%s", report.String())
	}

	// A newest file that is full: the chain goes on in a new file.
	trail := openTrail(t, audit.TrailOptions{Dir: dir, Signer: signer, MaxFileBytes: 1024})
	writeRecords(t, trail, 1)
	if err := trail.Close(); err != nil {
		t.Fatal(err)
	}
	if files := trailFiles(t, dir); len(files) != 2 {
		t.Fatalf("files %v, want a second file", files)
	}
	checkChain(t, dir)
}

func TestTrailLock(t *testing.T) {
	dir := t.TempDir()
	openTrail(t, audit.TrailOptions{Dir: dir})
	if _, err := audit.OpenTrail(audit.TrailOptions{Dir: dir}); !errors.Is(err, audit.ErrLocked) {
		t.Fatalf("second trail on one directory: %v, want ErrLocked", err)
	}
}

func TestTrailTornLine(t *testing.T) {
	torn := `{"time":"2026-12-04T12:00:07Z","id":"0f","seq":7,"pr`
	tests := []struct {
		name string
		tear func(t *testing.T, dir string) // after 5 records and a checkpoint
	}{
		{"end of the newest file", func(t *testing.T, dir string) {
			files := trailFiles(t, dir)
			appendTo(t, files[len(files)-1], torn)
		}},
		{"a newest file with only the torn line", func(t *testing.T, dir string) {
			name := fmt.Sprintf("audit-%020d-20261204T120007.000Z.jsonl", 7)
			appendTo(t, filepath.Join(dir, name), torn)
		}},
		{"zeros a file system left", func(t *testing.T, dir string) {
			files := trailFiles(t, dir)
			appendTo(t, files[len(files)-1], strings.Repeat("\x00", 4096))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			trail := openTrail(t, audit.TrailOptions{Dir: dir})
			writeRecords(t, trail, 5)
			trail.Close()
			tt.tear(t, dir)
			if report := mustVerify(t, dir, nil); report.OK() || report.Problem.Kind != audit.ProblemIncomplete {
				t.Fatalf("before recovery, verify says:\n%s", report.String())
			}

			trail = openTrail(t, audit.TrailOptions{Dir: dir})
			writeRecords(t, trail, 2)
			if err := trail.Close(); err != nil {
				t.Fatal(err)
			}
			records := checkChain(t, dir)
			recovered := records[6]
			if recovered.Kind != audit.KindTrail || recovered.Event != audit.EventRecovered || !strings.Contains(recovered.Detail, "bytes") || !strings.Contains(recovered.Detail, "continues from seq 6") {
				t.Fatalf("record 7 is %+v, want trail.recovered", recovered)
			}
			if report := mustVerify(t, dir, nil); !report.OK() {
				t.Fatalf("after recovery:\n%s", report.String())
			}
		})
	}

	t.Run("not a torn record", func(t *testing.T) {
		dir := t.TempDir()
		trail := openTrail(t, audit.TrailOptions{Dir: dir})
		writeRecords(t, trail, 1)
		trail.Close()
		files := trailFiles(t, dir)
		appendTo(t, files[0], strings.Repeat("x", audit.MaxLineBytes+10))
		if _, err := audit.OpenTrail(audit.TrailOptions{Dir: dir}); err == nil || !strings.Contains(err.Error(), "verify") {
			t.Fatalf("open over more than a record without newline: %v; want an error pointing to verify", err)
		}
	})
	t.Run("an unreadable last record", func(t *testing.T) {
		dir := t.TempDir()
		trail := openTrail(t, audit.TrailOptions{Dir: dir})
		writeRecords(t, trail, 1)
		trail.Close()
		files := trailFiles(t, dir)
		appendTo(t, files[0], "not json\n")
		if _, err := audit.OpenTrail(audit.TrailOptions{Dir: dir}); err == nil {
			t.Fatal("open continued a chain from a line that is not a record")
		}
	})
}

func appendTo(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestTrailFaults(t *testing.T) {
	tests := []struct {
		name  string
		fault func(f *faultFS, err error)
		errno syscall.Errno
	}{
		{"disk full on write", func(f *faultFS, err error) { f.writeErr = err }, syscall.ENOSPC},
		{"disk full on sync", func(f *faultFS, err error) { f.syncErr = err }, syscall.ENOSPC},
		{"permission on write", func(f *faultFS, err error) { f.writeErr = err }, syscall.EACCES},
		{"permission on a new file", func(f *faultFS, err error) { f.openErr = err }, syscall.EACCES},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			fsys := &faultFS{}
			var observed []error
			var mu sync.Mutex
			options := audit.TrailOptions{Dir: dir, FileSystem: fsys, Observe: func(_ int, _ time.Duration, err error) {
				mu.Lock()
				observed = append(observed, err)
				mu.Unlock()
			}}
			if tt.name == "permission on a new file" {
				options.MaxFileBytes = 1500 // the third record needs a new file
			}
			trail := openTrail(t, options)
			writeRecords(t, trail, 2)

			fsys.set(func(f *faultFS) { tt.fault(f, tt.errno) })
			for i := range 3 {
				err := trail.Write(context.Background(), callRecord(10+i))
				if !errors.Is(err, tt.errno) {
					t.Fatalf("write during the fault: %v, want %v", err, tt.errno)
				}
			}
			fsys.set(func(f *faultFS) { f.writeErr, f.syncErr, f.openErr = nil, nil, nil })

			writeRecords(t, trail, 2)
			if err := trail.Close(); err != nil {
				t.Fatal(err)
			}
			records := checkChain(t, dir)
			// 2 records, the fault's note, 2 records, Close's checkpoint.
			if len(records) != 6 {
				t.Fatalf("%d records, want 6", len(records))
			}
			note := records[2]
			if note.Kind != audit.KindTrail || note.Event != audit.EventFault || !strings.HasPrefix(note.Detail, "3 records were not written") || !strings.Contains(note.Detail, tt.errno.Error()) {
				t.Fatalf("record 3 is %+v, want the fault's note", note)
			}
			if report := mustVerify(t, dir, nil); !report.OK() {
				t.Fatalf("after the fault:\n%s", report.String())
			}
			mu.Lock()
			defer mu.Unlock()
			failed := 0
			for _, err := range observed {
				if errors.Is(err, tt.errno) {
					failed++
				}
			}
			if failed != 3 {
				t.Fatalf("Observe saw %d failed batches, want 3 (%v)", failed, observed)
			}
		})
	}
}

func TestTrailTooLarge(t *testing.T) {
	dir := t.TempDir()
	trail := openTrail(t, audit.TrailOptions{Dir: dir})
	r := callRecord(0)
	r.Arguments = json.RawMessage(`"` + strings.Repeat("a", audit.MaxLineBytes) + `"`)
	if err := trail.Write(context.Background(), r); !errors.Is(err, audit.ErrRecordTooLarge) {
		t.Fatalf("write of a record over MaxLineBytes: %v", err)
	}
	writeRecords(t, trail, 1)
	trail.Close()
	if records := checkChain(t, dir); len(records) != 2 {
		t.Fatalf("%d records, want 2", len(records))
	}
}

// TestTrailGroupCommit holds the first fsync while more writers queue up:
// they are then written together, with one fsync for all of them.
func TestTrailGroupCommit(t *testing.T) {
	dir := t.TempDir()
	gate := make(chan struct{})
	fsys := &faultFS{syncGate: gate}
	trail := openTrail(t, audit.TrailOptions{Dir: dir, FileSystem: fsys})
	const writers = 64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	start := func() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- trail.Write(context.Background(), callRecord(1))
		}()
	}
	start()
	waitFor(t, "the first fsync to start", func() bool { return fsys.syncsBlock.Load() == 1 })
	for range writers - 1 {
		start()
	}
	waitFor(t, "every writer to queue", func() bool { return trail.QueueDepth() == writers-1 })
	fsys.set(func(f *faultFS) { f.syncGate = nil })
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	syncs := fsys.syncs.Load()
	if syncs >= writers || syncs > 2 {
		t.Fatalf("%d fsyncs for %d records, want 2: the first record, then all the others", syncs, writers)
	}
	trail.Close()
	if records := checkChain(t, dir); len(records) != writers+1 {
		t.Fatalf("%d records, want %d", len(records), writers+1)
	}
}

// TestTrailConcurrentWriters writes from many goroutines at once, across
// files and checkpoints: every record lands once, in one unbroken chain.
func TestTrailConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	trail := openTrail(t, audit.TrailOptions{Dir: dir, MaxFileBytes: 64 << 10, CheckpointEvery: 100})
	const writers, each = 16, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r := callRecord(i)
				r.Subject = fmt.Sprintf("w%d-%d", w, i)
				if err := trail.Write(context.Background(), r); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := trail.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range checkChain(t, dir) {
		if r.Kind == audit.KindCall {
			if seen[r.Subject] {
				t.Fatalf("%s written twice", r.Subject)
			}
			seen[r.Subject] = true
		}
	}
	if len(seen) != writers*each {
		t.Fatalf("%d records, want %d", len(seen), writers*each)
	}
	if report := mustVerify(t, dir, nil); !report.OK() {
		t.Fatalf("report:\n%s", report.String())
	}
}

// TestTrailAsyncBounded blocks the disk: Async writes are taken until the
// queue is full, in records or in bytes, and then wait for their context;
// memory does not grow with the writes attempted.
func TestTrailAsyncBounded(t *testing.T) {
	payload := json.RawMessage(`"` + strings.Repeat("p", 10<<10) + `"`)
	record := func() *audit.Record {
		r := callRecord(0)
		r.Arguments = payload
		return r
	}
	tests := []struct {
		name       string
		queueSize  int
		queueBytes int64
		wantQueued func(depth int) bool
	}{
		{"records", 200, 0, func(depth int) bool { return depth == 200 }},
		{"bytes", 10000, 2 << 20, func(depth int) bool { return depth > 100 && depth < 2<<20/(10<<10) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			gate := make(chan struct{})
			fsys := &faultFS{syncGate: gate}
			trail := openTrail(t, audit.TrailOptions{Dir: dir, FileSystem: fsys, Durability: audit.Async, QueueSize: tt.queueSize, QueueBytes: tt.queueBytes})
			if err := trail.Write(context.Background(), record()); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the writer to block in fsync", func() bool { return fsys.syncsBlock.Load() == 1 })

			// Writes with a context that has ended are taken while there is room.
			ended, cancel := context.WithCancel(context.Background())
			cancel()
			accepted := 0
			for ; accepted < 100000; accepted++ {
				if err := trail.Write(ended, record()); err != nil {
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("write to a full queue: %v, want the context's error", err)
					}
					break
				}
			}
			if depth := trail.QueueDepth(); depth != accepted || !tt.wantQueued(depth) {
				t.Fatalf("%d accepted, queue depth %d", accepted, depth)
			}

			// A write with a live context waits until the context ends.
			ctx, cancel := context.WithCancel(context.Background())
			result := make(chan error, 1)
			go func() { result <- trail.Write(ctx, record()) }()
			cancel()
			if err := <-result; !errors.Is(err, context.Canceled) {
				t.Fatalf("write while full: %v, want to wait for the context", err)
			}

			// Memory stays bounded however many writes are attempted.
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for range 20000 {
				trail.Write(ended, record())
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 8<<20 {
				t.Fatalf("heap grew by %d bytes over 20000 refused writes of 10 KiB", grown)
			}

			fsys.set(func(f *faultFS) { f.syncGate = nil })
			close(gate)
			if err := trail.Close(); err != nil {
				t.Fatal(err)
			}
			if records := checkChain(t, dir); len(records) != accepted+2 {
				t.Fatalf("%d records, want the %d accepted, the first and a checkpoint", len(records), accepted)
			}
		})
	}
}

// waitFor polls until cond holds; the deadline only keeps a broken test
// from hanging.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestTrailFaultClears: once the disk is back, the trail says so through
// Observe at the next checkpoint interval, even when no record comes, so
// a broker that refuses calls while the trail fails can serve again.
func TestTrailFaultClears(t *testing.T) {
	dir := t.TempDir()
	fsys := &faultFS{}
	var mu sync.Mutex
	var last error
	observed := 0
	// A checkpoint after every record: when the fault comes, none is due.
	trail := openTrail(t, audit.TrailOptions{Dir: dir, FileSystem: fsys, CheckpointEvery: 1, CheckpointInterval: 5 * time.Millisecond, Observe: func(_ int, _ time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		last = err
		observed++
	}})
	writeRecords(t, trail, 1)
	fsys.set(func(f *faultFS) { f.syncErr = syscall.EIO })
	if err := trail.Write(context.Background(), callRecord(1)); !errors.Is(err, syscall.EIO) {
		t.Fatalf("write: %v", err)
	}
	fsys.set(func(f *faultFS) { f.syncErr = nil })
	waitFor(t, "a successful batch after the fault", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return last == nil && observed > 2
	})
	trail.Close()
	records := checkChain(t, dir)
	found := false
	for _, r := range records {
		found = found || r.Event == audit.EventFault && strings.HasPrefix(r.Detail, "1 records were not written")
	}
	if !found {
		t.Fatalf("no fault note in %+v", records)
	}
}
