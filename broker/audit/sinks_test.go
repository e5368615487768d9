package audit_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/mcpbroker/mcpbroker/broker/audit"
)

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func TestStdoutSink(t *testing.T) {
	var out syncBuffer
	sink := audit.NewStdoutSink(&out)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			if err := sink.Write(context.Background(), callRecord(i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	sink.Close()
	scanner := bufio.NewScanner(&out.buf)
	n := 0
	for ; scanner.Scan(); n++ {
		var r audit.Record
		if err := json.Unmarshal(scanner.Bytes(), &r); err != nil || r.Subject != "alice" {
			t.Fatalf("line %d: %v: %s", n+1, err, scanner.Text())
		}
	}
	if n != 50 {
		t.Fatalf("%d lines, want 50", n)
	}
}

// failingSink refuses every record.
type failingSink struct{ writes, closes int }

func (s *failingSink) Write(context.Context, *audit.Record) error {
	s.writes++
	return errors.New("collector down")
}
func (s *failingSink) Close() error { s.closes++; return nil }

// collectSink keeps the records it gets.
type collectSink struct{ records []*audit.Record }

func (s *collectSink) Write(_ context.Context, r *audit.Record) error {
	s.records = append(s.records, r)
	return nil
}
func (s *collectSink) Close() error { return nil }

func TestMulti(t *testing.T) {
	t.Run("the others are best effort", func(t *testing.T) {
		dir := t.TempDir()
		trail := openTrail(t, audit.TrailOptions{Dir: dir})
		down, copy := &failingSink{}, &collectSink{}
		var errs []error
		multi := audit.Multi(audit.MultiOptions{OnError: func(err error) { errs = append(errs, err) }}, trail, down, copy)
		for i := range 3 {
			if err := multi.Write(context.Background(), callRecord(i)); err != nil {
				t.Fatalf("a failing secondary sink refused the call: %v", err)
			}
		}
		if multi.Failures() != 3 || len(errs) != 3 || len(copy.records) != 3 {
			t.Fatalf("failures %d, errors %d, copies %d; want 3 each", multi.Failures(), len(errs), len(copy.records))
		}
		// The copies hold what the trail wrote: seq and prev included.
		if copy.records[2].Seq != 3 || copy.records[2].Prev == "" {
			t.Fatalf("copy %+v", copy.records[2])
		}
		if err := multi.Close(); err != nil || down.closes != 1 {
			t.Fatalf("close: %v, secondary closed %d times", err, down.closes)
		}
		if records := checkChain(t, dir); len(records) != 4 {
			t.Fatalf("%d records in the trail, want 3 and a checkpoint", len(records))
		}
	})
	t.Run("the trail's error is the caller's", func(t *testing.T) {
		primary, copy := &failingSink{}, &collectSink{}
		multi := audit.Multi(audit.MultiOptions{}, primary, copy)
		if err := multi.Write(context.Background(), callRecord(0)); err == nil {
			t.Fatal("the primary's error was swallowed")
		}
		if len(copy.records) != 0 {
			t.Fatal("a record the trail refused went to the other sinks")
		}
	})
}

func TestOTLPSink(t *testing.T) {
	var mu sync.Mutex
	var bodies [][]byte
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/logs" || r.Header.Get("X-Api-Key") != "k1" {
			http.Error(w, "wrong request", http.StatusBadRequest)
			return
		}
		var reader io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			gz, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			reader = gz
		}
		body, _ := io.ReadAll(reader)
		mu.Lock()
		bodies = append(bodies, body)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()

	sink, err := audit.NewOTLPSink(context.Background(), audit.OTLPOptions{
		Endpoint: collector.URL + "/v1/logs",
		Headers:  map[string]string{"X-Api-Key": "k1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	denied := callRecord(1)
	denied.ID = "0123456789abcdef0123456789abcdef"
	denied.Subject = "mallory"
	denied.Decision = &audit.Decision{Allowed: false, Reason: "not in group"}
	for _, r := range []*audit.Record{callRecord(0), denied} {
		if err := sink.Write(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sink.Write(context.Background(), callRecord(2)); !errors.Is(err, audit.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	all := bytes.Join(bodies, nil)
	for _, want := range []string{"mcpbroker.audit.call", denied.ID, "mallory", "not in group", "audit.decision", "denied", "service.name", "mcpbroker"} {
		if !bytes.Contains(all, []byte(want)) {
			t.Errorf("the export does not hold %q", want)
		}
	}
	if len(bodies) == 0 || !strings.Contains(string(all), "alice") {
		t.Fatalf("%d exports", len(bodies))
	}
}
