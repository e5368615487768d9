package authserver

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/exchange"
)

// A spent form token is refused until its flow would have expired anyway,
// and the record stays within its bound, forgetting the oldest first.
func TestSpentFormsAreRefusedAndBounded(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name  string
		limit int
		// spends are made in order, a second apart; want is what each returns.
		spends []string
		want   []bool
		// later is spent flowTTL after the first spend.
		later     string
		wantLater bool
	}{
		{name: "replay refused", limit: 10, spends: []string{"a", "a", "b", "a"}, want: []bool{true, false, true, false}},
		{name: "oldest forgotten past the bound", limit: 2, spends: []string{"a", "b", "c", "b", "a"}, want: []bool{true, true, true, false, true}},
		{name: "forgotten once the flow expired", limit: 10, spends: []string{"a"}, want: []bool{true}, later: "a", wantLater: true},
		{name: "remembered while the flow lives", limit: 10, spends: []string{"a", "b"}, want: []bool{true, true}, later: "b", wantLater: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forms := newSpentForms(flowTTL, tt.limit)
			for i, token := range tt.spends {
				if got := spendOK(forms, token, start.Add(time.Duration(i)*time.Second)); got != tt.want[i] {
					t.Errorf("spend #%d (%s) = %v, want %v", i, token, got, tt.want[i])
				}
				if len(forms.spent) > tt.limit || len(forms.queue) > tt.limit {
					t.Fatalf("%d tokens remembered, bound %d", len(forms.spent), tt.limit)
				}
			}
			if tt.later != "" {
				if got := spendOK(forms, tt.later, start.Add(flowTTL)); got != tt.wantLater {
					t.Errorf("spend %s after the flow's lifetime = %v, want %v", tt.later, got, tt.wantLater)
				}
			}
		})
	}
	t.Run("memory stays bounded under a flood", func(t *testing.T) {
		forms := newSpentForms(flowTTL, 1000)
		for i := range 100_000 {
			if !spendOK(forms, fmt.Sprintf("token-%d", i), start) {
				t.Fatalf("a fresh token %d was refused", i)
			}
		}
		if len(forms.spent) != 1000 || len(forms.queue) != 1000 {
			t.Errorf("%d/%d tokens remembered, want 1000", len(forms.spent), len(forms.queue))
		}
	})
}

// A server leaves no goroutine behind once its context is done: every
// piece of state it keeps in memory is swept without one of its own.
func TestServerLeavesNoGoroutineBehind(t *testing.T) {
	const servers = 20
	db, err := exchange.OpenBolt(filepath.Join(t.TempDir(), "authserver.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	keys, err := exchange.NewKeySet(t.Context(), exchange.NewBoltKeyStore(db), exchange.KeySetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	minter, err := exchange.NewMinter(keys, exchange.MinterOptions{Issuer: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, issuer: "http://127.0.0.1:1"}
	opts := ts.defaultOptions()
	opts.DB, opts.Keys, opts.Minter = db, keys, minter
	opts.Logger = slog.New(slog.DiscardHandler)

	before := runtime.NumGoroutine()
	for range servers {
		ctx, cancel := context.WithCancel(t.Context())
		if _, err := New(ctx, opts); err != nil {
			cancel()
			t.Fatal(err)
		}
		cancel()
	}
	// The servers' own goroutines end when they see their context done;
	// give them the chance, then count.
	after := runtime.NumGoroutine()
	for deadline := time.Now().Add(10 * time.Second); after > before && time.Now().Before(deadline); after = runtime.NumGoroutine() {
		time.Sleep(20 * time.Millisecond)
	}
	if after > before {
		t.Errorf("%d goroutines before %d servers were built and stopped, %d after", before, servers, after)
	}
}
