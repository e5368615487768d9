package broker

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/broker/audit"
	"github.com/mcpbroker/mcpbroker/broker/console"
)

// The decisions feed keeps a bounded number of records, lets a bounded
// number of pages watch, and never waits for one that does not read.
func TestDecisionFeedBounded(t *testing.T) {
	f := newDecisionFeed()
	record := func(i int) *audit.Record {
		return &audit.Record{ID: fmt.Sprint(i), Kind: audit.KindCall, Event: "tools/call", Subject: "alice", App: "ledger",
			Tool: "ledger_transfer", Detail: strings.Repeat("d", 1000), Decision: &audit.Decision{Allowed: i%2 == 0}}
	}
	live := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	base := live()
	for i := range maxRecentRecords {
		_ = f.Write(context.Background(), record(i))
	}
	full := live()
	for i := range 4 * maxRecentRecords {
		_ = f.Write(context.Background(), record(maxRecentRecords+i))
	}
	after := live()
	grown := int64(full) - int64(base)
	if grown <= 0 {
		t.Fatalf("keeping %d records took nothing on the heap: the bound is not measured", maxRecentRecords)
	}
	if extra := int64(after) - int64(full); extra > grown/4 {
		t.Errorf("4×%d more records grew the heap by %d B after %d B: the feed is not bounded", maxRecentRecords, extra, grown)
	}
	denied := f.latest(func(r console.DecisionRow) bool { return r.Decision == "denied" }, 10)
	if len(denied) != 10 || denied[0].ID != fmt.Sprint(5*maxRecentRecords-1) {
		t.Errorf("the latest denied records: %d, first %v", len(denied), denied)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range maxWatchers {
		if _, ok := f.watch(ctx); !ok {
			t.Fatalf("watcher %d refused", i+1)
		}
	}
	if _, ok := f.watch(ctx); ok {
		t.Errorf("a watcher past %d was let in", maxWatchers)
	}
	// Nobody reads: writes go on.
	done := make(chan struct{})
	go func() {
		for i := range 10 * watcherBuffer {
			_ = f.Write(context.Background(), record(i))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("writes waited for watchers that do not read")
	}
	cancel()
	eventuallyInternal(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.watchers) == 0
	})
}

func eventuallyInternal(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("the watchers were not let go when their pages went")
}
