package limit

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newFakeClockLimiter returns a memory limiter on a clock that stands still.
func newFakeClockLimiter(maxKeys int) (*MemoryLimiter, *fakeClock) {
	l := NewMemoryLimiter(maxKeys)
	clock := &fakeClock{now: l.epoch}
	l.now = clock.Now
	return l, clock
}

// perMinute100 is 100 calls a minute, 10 at once: one every 600ms.
var perMinute100 = Rate{Count: 100, Period: time.Minute, Burst: 10}

func TestRateValidate(t *testing.T) {
	tests := []struct {
		name string
		rate Rate
		ok   bool
	}{
		{"100 a minute, 10 at once", perMinute100, true},
		{"one per microsecond", Rate{Count: 1_000_000, Period: time.Second, Burst: 1}, true},
		{"one a day, 10000 at once", Rate{Count: 1, Period: 24 * time.Hour, Burst: 10_000}, true},
		{"zero value", Rate{}, false},
		{"no count", Rate{Count: 0, Period: time.Second, Burst: 1}, false},
		{"negative period", Rate{Count: 1, Period: -time.Second, Burst: 1}, false},
		{"no burst", Rate{Count: 1, Period: time.Second, Burst: 0}, false},
		{"faster than one per microsecond", Rate{Count: 1_000_001, Period: time.Second, Burst: 1}, false},
		{"tolerance beyond 35 years", Rate{Count: 1, Period: 24 * time.Hour, Burst: 20_000}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.rate.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidRate) {
				t.Errorf("Validate() = %v, want it to wrap ErrInvalidRate", err)
			}
		})
	}
}

// A cost that is negative or larger than the burst can never be decided.
func TestAllowInvalidCost(t *testing.T) {
	l, _ := newFakeClockLimiter(10)
	for _, cost := range []int{-1, perMinute100.Burst + 1} {
		if _, err := l.Allow(context.Background(), "k", perMinute100, cost); !errors.Is(err, ErrInvalidRate) {
			t.Errorf("cost %d: err = %v, want ErrInvalidRate", cost, err)
		}
	}
	if _, err := l.Allow(context.Background(), "k", Rate{}, 1); !errors.Is(err, ErrInvalidRate) {
		t.Errorf("zero rate: err = %v, want ErrInvalidRate", err)
	}
}

// The burst is admitted at once, then one call per emission interval; a
// refused call is told exactly when it would pass, and spends nothing.
func TestGCRA(t *testing.T) {
	const interval = 600 * time.Millisecond
	type step struct {
		name    string
		advance time.Duration
		cost    int
		want    Decision
	}
	steps := []step{}
	for i := range 10 {
		steps = append(steps, step{"burst " + strconv.Itoa(i+1), 0, 1,
			Decision{Allowed: true, Remaining: 9 - i, ResetAfter: time.Duration(i+1) * interval}})
	}
	steps = append(steps, []step{
		{"beyond the burst", 0, 1, Decision{Allowed: false, RetryAfter: interval, ResetAfter: 10 * interval}},
		{"1ms early", interval - time.Millisecond, 1, Decision{Allowed: false, RetryAfter: time.Millisecond, ResetAfter: 10*interval - (interval - time.Millisecond)}},
		{"on time", time.Millisecond, 1, Decision{Allowed: true, Remaining: 0, ResetAfter: 10 * interval}},
		{"again at once", 0, 1, Decision{Allowed: false, RetryAfter: interval, ResetAfter: 10 * interval}},
		{"three intervals later", 3 * interval, 1, Decision{Allowed: true, Remaining: 2, ResetAfter: 8 * interval}},
		{"cost 0 asks without spending", 0, 0, Decision{Allowed: true, Remaining: 2, ResetAfter: 8 * interval}},
		{"cost 3 of 2 remaining", 0, 3, Decision{Allowed: false, Remaining: 2, RetryAfter: interval, ResetAfter: 8 * interval}},
		{"cost 2 of 2 remaining", 0, 2, Decision{Allowed: true, Remaining: 0, ResetAfter: 10 * interval}},
		{"a quiet hour refills the burst, no more", time.Hour, 10, Decision{Allowed: true, Remaining: 0, ResetAfter: 10 * interval}},
		{"and then it is spent", 0, 1, Decision{Allowed: false, RetryAfter: interval, ResetAfter: 10 * interval}},
	}...)

	l, clock := newFakeClockLimiter(10)
	for _, s := range steps {
		clock.Advance(s.advance)
		got, err := l.Allow(context.Background(), "agent", perMinute100, s.cost)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got != s.want {
			t.Errorf("%s: got %+v, want %+v", s.name, got, s.want)
		}
	}
}

// One key's calls spend nothing of another's budget.
func TestKeysAreIndependent(t *testing.T) {
	l, _ := newFakeClockLimiter(10)
	ctx := context.Background()
	for range perMinute100.Burst {
		if d, _ := l.Allow(ctx, "a", perMinute100, 1); !d.Allowed {
			t.Fatal("a: burst refused")
		}
	}
	if d, _ := l.Allow(ctx, "a", perMinute100, 1); d.Allowed {
		t.Fatal("a: admitted beyond its burst")
	}
	d, _ := l.Allow(ctx, "b", perMinute100, 1)
	if !d.Allowed || d.Remaining != perMinute100.Burst-1 {
		t.Errorf("b after a spent its burst: %+v, want allowed with %d remaining", d, perMinute100.Burst-1)
	}
}

// admitConcurrently sends workers × perWorker calls for one key through
// limiters (worker i uses limiters[i % len]) and counts the admitted.
func admitConcurrently(t testing.TB, limiters []Limiter, key string, rate Rate, workers, perWorker int) int {
	t.Helper()
	var admitted atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			l := limiters[w%len(limiters)]
			<-start
			for range perWorker {
				d, err := l.Allow(context.Background(), key, rate, 1)
				if err != nil {
					failed.Store(err)
					return
				}
				if d.Allowed {
					admitted.Add(1)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	return int(admitted.Load())
}

// 64 callers at once get exactly the burst, not one call more.
func TestMemoryExactUnderConcurrency(t *testing.T) {
	l, _ := newFakeClockLimiter(100)
	got := admitConcurrently(t, []Limiter{l}, "shared", perMinute100, 64, 1000)
	if got != perMinute100.Burst {
		t.Errorf("admitted %d of 64000 calls, want exactly %d", got, perMinute100.Burst)
	}
}

// Callers who invent a million keys cannot make the limiter hold more than
// maxKeys of them.
func TestMemoryBound(t *testing.T) {
	const maxKeys, keys = 10_000, 1_000_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	l := NewMemoryLimiter(maxKeys)
	ctx := context.Background()
	buf := make([]byte, 0, 32)
	for i := range keys {
		buf = strconv.AppendInt(append(buf[:0], "client-"...), int64(i), 10)
		if _, err := l.Allow(ctx, string(buf), perMinute100, 1); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)

	if n := l.Len(); n > maxKeys {
		t.Errorf("remembers %d keys, want at most %d", n, maxKeys)
	}
	// About 150 bytes a key: 1.5 MB for 10,000, 150 MB for a million.
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew by %d bytes for %d keys remembered", grown, l.Len())
	if grown > 8<<20 {
		t.Errorf("heap grew by %d bytes after %d keys, want under 8 MiB", grown, keys)
	}
	runtime.KeepAlive(l)
}

// A key that fell out of a full limiter comes back with its full burst;
// the keys in use stay.
func TestMemoryEvictsLeastRecentlyUsed(t *testing.T) {
	l, _ := newFakeClockLimiter(2)
	ctx := context.Background()
	spend := func(key string) Decision {
		d, err := l.Allow(ctx, key, Rate{Count: 1, Period: time.Hour, Burst: 1}, 1)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	spend("a")
	spend("b")
	spend("a") // refused, but a is now the most recently used
	spend("c") // evicts b
	if d := spend("a"); d.Allowed {
		t.Error("a was forgotten, though used more recently than b")
	}
	if d := spend("b"); !d.Allowed {
		t.Error("b was remembered beyond the bound")
	}
}
