package broker

import (
	"context"
	"sync"
	"time"

	"github.com/mcpbroker/mcpbroker/broker/console"
)

// consoleSeries keeps, minute by minute for the last hour, what the
// console's overview charts: calls, denials and errors in each minute
// (from the broker's own counters) and the sessions open at its end.
type consoleSeries struct {
	mu     sync.Mutex
	points []console.Point // oldest first, at most seriesMinutes
	last   console.Overview
	primed bool
}

const seriesMinutes = 60

// sampleEvery samples the counters every interval until ctx ends.
func (b *Broker) sampleEvery(ctx context.Context, interval time.Duration) {
	b.series.sample(b.countersNow(), time.Now())
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			b.series.sample(b.countersNow(), now)
		}
	}
}

// countersNow are the counters the charts follow.
func (b *Broker) countersNow() console.Overview {
	o, _ := b.counters()
	return o
}

// sample adds the minute that ends at now: the counters' growth since the
// last sample.
func (s *consoleSeries) sample(o console.Overview, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.primed {
		s.points = append(s.points, console.Point{At: now, Calls: o.Calls - s.last.Calls, Denied: o.Denied - s.last.Denied,
			Errors: o.Errors - s.last.Errors, Sessions: o.Sessions})
		if len(s.points) > seriesMinutes {
			s.points = s.points[len(s.points)-seriesMinutes:]
		}
	}
	s.last, s.primed = o, true
}

func (s *consoleSeries) snapshot() []console.Point {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]console.Point(nil), s.points...)
}
