package broker

import (
	"context"
	"encoding/json"
	"strings"
	"sync"

	"github.com/mcpbroker/mcpbroker/broker/audit"
	"github.com/mcpbroker/mcpbroker/broker/console"
)

// decisionFeed keeps the latest records of the trail for the console's
// decisions page and passes each new one to the pages watching: an audit
// sink, bounded in what it keeps and in whom it tells.
type decisionFeed struct {
	mu     sync.Mutex
	recent []*audit.Record // ring, maxRecent
	next   int
	full   bool
	// watchers get each new record; one that does not keep up misses
	// records rather than holding the trail back.
	watchers map[chan console.DecisionRow]struct{}
}

const (
	maxRecentRecords = 2000
	maxWatchers      = 32
	watcherBuffer    = 256
)

var _ audit.Sink = (*decisionFeed)(nil)

func newDecisionFeed() *decisionFeed {
	return &decisionFeed{recent: make([]*audit.Record, maxRecentRecords), watchers: map[chan console.DecisionRow]struct{}{}}
}

func (f *decisionFeed) Write(_ context.Context, r *audit.Record) error {
	if r.Kind == audit.KindCheckpoint || r.Kind == audit.KindTrail {
		return nil
	}
	row := decisionRow(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recent[f.next] = r
	f.next = (f.next + 1) % len(f.recent)
	f.full = f.full || f.next == 0
	for ch := range f.watchers {
		select {
		case ch <- row:
		default:
		}
	}
	return nil
}

func (f *decisionFeed) Close() error { return nil }

// latest are the kept records that match, newest first, at most limit.
func (f *decisionFeed) latest(match func(console.DecisionRow) bool, limit int) []console.DecisionRow {
	f.mu.Lock()
	defer f.mu.Unlock()
	var rows []console.DecisionRow
	n := f.next
	if f.full {
		n = len(f.recent)
	}
	for i := 1; i <= n && len(rows) < limit; i++ {
		r := f.recent[(f.next-i+len(f.recent))%len(f.recent)]
		if row := decisionRow(r); match(row) {
			rows = append(rows, row)
		}
	}
	return rows
}

// find is the kept record with id, every field of it as JSON.
func (f *decisionFeed) find(id string) (console.DecisionRow, string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.recent {
		if r != nil && r.ID == id {
			raw, _ := json.MarshalIndent(r, "", "  ")
			return decisionRow(r), string(raw), true
		}
	}
	return console.DecisionRow{}, "", false
}

// watch tells ch of every new record until ctx ends; false when as many
// pages watch as allowed.
func (f *decisionFeed) watch(ctx context.Context) (<-chan console.DecisionRow, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.watchers) >= maxWatchers {
		return nil, false
	}
	ch := make(chan console.DecisionRow, watcherBuffer)
	f.watchers[ch] = struct{}{}
	context.AfterFunc(ctx, func() {
		f.mu.Lock()
		delete(f.watchers, ch)
		f.mu.Unlock()
	})
	return ch, true
}

// decisionRow is what the decisions page shows of a record.
func decisionRow(r *audit.Record) console.DecisionRow {
	row := console.DecisionRow{ID: r.ID, Time: r.Time, Kind: r.Kind, Event: r.Event, Subject: r.Subject, Client: r.Client,
		App: r.App, Tool: r.Tool, TraceID: r.TraceID, Detail: r.Detail}
	switch {
	case r.Approval != nil && r.Kind == audit.KindCall:
		row.Decision = "approval " + r.Approval.Status
	case r.Decision != nil && !r.Decision.Allowed:
		row.Decision = "denied"
		if r.Decision.ExternalMessage != "" {
			row.Detail = r.Decision.ExternalMessage
		}
	case r.Result != nil && (r.Result.HTTPStatus >= 400 || r.Result.RPCCode != 0):
		row.Decision = "error"
	case r.Kind == audit.KindCall || r.Kind == audit.KindList:
		row.Decision = "allowed"
	default:
		row.Decision = strings.TrimPrefix(r.Event, r.Kind+".")
	}
	return row
}
