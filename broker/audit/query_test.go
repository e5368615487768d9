package audit_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/broker/audit"
)

func TestQuery(t *testing.T) {
	dir := t.TempDir()
	base := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	trail := openTrail(t, audit.TrailOptions{Dir: dir, MaxFileBytes: 2000})
	records := []*audit.Record{
		{Event: "tools/call", Kind: audit.KindCall, Subject: "alice", App: "ledger", Tool: "ledger_get_balance", UpstreamTool: "get_balance", Decision: &audit.Decision{Allowed: true}},
		{Event: "tools/call", Kind: audit.KindCall, Subject: "bob", App: "ledger", Tool: "ledger_transfer", UpstreamTool: "transfer", Decision: &audit.Decision{Allowed: false, Policy: "ledger"}, Result: &audit.Result{RPCCode: -32003}},
		{Event: "tools/call", Kind: audit.KindCall, Source: "10.0.0.9", Result: &audit.Result{HTTPStatus: 401}},
		{Event: "session.opened", Kind: audit.KindSession, Subject: "alice"},
		{Event: "tools/call", Kind: audit.KindCall, Subject: "alice", App: "crm", Tool: "crm_find", UpstreamTool: "find", Decision: &audit.Decision{Allowed: true}, Result: &audit.Result{HTTPStatus: 200}},
		{Event: "signin.failed", Kind: audit.KindAuth, Subject: "carol", Result: &audit.Result{HTTPStatus: 400}},
	}
	for i, r := range records {
		r.Time = base.Add(time.Duration(i) * time.Hour)
		if err := trail.Write(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	trail.Close()

	tests := []struct {
		name   string
		filter audit.Filter
		want   []uint64
	}{
		{"everything", audit.Filter{}, []uint64{1, 2, 3, 4, 5, 6, 7}},
		{"subject", audit.Filter{Subject: "alice"}, []uint64{1, 4, 5}},
		{"tool by the client's name", audit.Filter{Tool: "ledger_transfer"}, []uint64{2}},
		{"tool by the upstream's name", audit.Filter{Tool: "find"}, []uint64{5}},
		{"app", audit.Filter{App: "ledger"}, []uint64{1, 2}},
		{"allowed", audit.Filter{Decision: audit.DecisionAllowed}, []uint64{1, 5}},
		{"denied", audit.Filter{Decision: audit.DecisionDenied}, []uint64{2}},
		{"refused", audit.Filter{Decision: audit.DecisionRefused}, []uint64{3, 6}},
		{"kind", audit.Filter{Kind: audit.KindSession}, []uint64{4}},
		{"since", audit.Filter{Since: base.Add(4 * time.Hour), Kind: audit.KindCall}, []uint64{5}},
		{"until", audit.Filter{Until: base.Add(1 * time.Hour)}, []uint64{1, 2}},
		{"since and until", audit.Filter{Since: base.Add(time.Hour), Until: base.Add(3 * time.Hour)}, []uint64{2, 3, 4}},
		{"all of them", audit.Filter{Subject: "alice", App: "crm", Decision: audit.DecisionAllowed, Kind: audit.KindCall}, []uint64{5}},
		{"nothing", audit.Filter{Subject: "mallory"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []uint64
			if err := audit.Query(dir, tt.filter, func(r *audit.Record) bool {
				got = append(got, r.Seq)
				return true
			}); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("seqs %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("stop", func(t *testing.T) {
		n := 0
		audit.Query(dir, audit.Filter{}, func(*audit.Record) bool { n++; return n < 2 })
		if n != 2 {
			t.Fatalf("%d records after fn said stop at 2", n)
		}
	})
	t.Run("bad decision", func(t *testing.T) {
		if err := audit.Query(dir, audit.Filter{Decision: "maybe"}, func(*audit.Record) bool { return true }); !errors.Is(err, audit.ErrFilter) {
			t.Fatalf("decision maybe: %v", err)
		}
	})
	t.Run("unreadable lines", func(t *testing.T) {
		files := trailFiles(t, dir)
		appendTo(t, files[0], "garbage\n")
		n := 0
		err := audit.Query(dir, audit.Filter{}, func(*audit.Record) bool { n++; return true })
		if !errors.Is(err, audit.ErrUnreadable) || n != 7 {
			t.Fatalf("%d records, %v; want all 7 and ErrUnreadable", n, err)
		}
	})
}

// TestQuerySkipsFiles: a file whose successor began well before Since is
// not read (a broken one would otherwise be reported).
func TestQuerySkipsFiles(t *testing.T) {
	dir := t.TempDir()
	var now time.Time
	clock := func() time.Time { return now }
	now = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	trail := openTrail(t, audit.TrailOptions{Dir: dir, MaxFileAge: 24 * time.Hour, Now: clock})
	for day := range 3 {
		r := callRecord(0)
		r.Time = now
		r.Subject = fmt.Sprint("day", day)
		if err := trail.Write(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		now = now.Add(25 * time.Hour)
	}
	trail.Close()
	files := trailFiles(t, dir)
	appendTo(t, files[0], "garbage\n")
	var got []string
	err := audit.Query(dir, audit.Filter{Since: time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC), Kind: audit.KindCall}, func(r *audit.Record) bool {
		got = append(got, r.Subject)
		return true
	})
	if err != nil || !slices.Equal(got, []string{"day2"}) {
		t.Fatalf("%v, %v; want day2 without reading the first file", got, err)
	}
}
