package limit

import (
	"context"
	"fmt"
	"time"
)

// Rate is a budget for one key: Count calls per Period on average, and at
// most Burst of them at once after a quiet spell. Rate{Count: 100, Period:
// time.Minute, Burst: 10} admits 10 calls at once, then one every 600ms.
type Rate struct {
	Count  int
	Period time.Duration
	Burst  int
}

// maxTolerance bounds Burst × Period/Count, so that every time the Redis
// script computes (microseconds since 1970 plus the tolerance) stays an
// exact integer in a Lua number (a float64, exact below 2^53).
const maxTolerance = (1 << 50) * time.Microsecond // about 35 years

// Validate reports the first problem with r, wrapping ErrInvalidRate.
func (r Rate) Validate() error {
	_, _, err := r.cells(0)
	return err
}

// interval is the emission interval, Period/Count, in whole microseconds
// so that both limiters (memory in nanoseconds, Redis in microseconds)
// admit exactly the same calls.
func (r Rate) interval() time.Duration {
	return (r.Period / time.Duration(r.Count)).Truncate(time.Microsecond)
}

// cells checks r and cost and returns the emission interval and the
// tolerance (Burst × interval).
func (r Rate) cells(cost int) (interval, tolerance time.Duration, err error) {
	switch {
	case r.Count < 1:
		return 0, 0, fmt.Errorf("%w: count %d: must be at least 1", ErrInvalidRate, r.Count)
	case r.Period <= 0:
		return 0, 0, fmt.Errorf("%w: period %v: must be > 0", ErrInvalidRate, r.Period)
	case r.Burst < 1:
		return 0, 0, fmt.Errorf("%w: burst %d: must be at least 1", ErrInvalidRate, r.Burst)
	}
	interval = r.interval()
	switch {
	case interval < time.Microsecond:
		return 0, 0, fmt.Errorf("%w: %d per %v: more than one per microsecond", ErrInvalidRate, r.Count, r.Period)
	case time.Duration(r.Burst) > maxTolerance/interval:
		return 0, 0, fmt.Errorf("%w: burst %d × %v: longer than %v", ErrInvalidRate, r.Burst, interval, maxTolerance)
	case cost < 0:
		return 0, 0, fmt.Errorf("%w: cost %d: must not be negative", ErrInvalidRate, cost)
	case cost > r.Burst:
		return 0, 0, fmt.Errorf("%w: cost %d exceeds burst %d: never admitted", ErrInvalidRate, cost, r.Burst)
	}
	return interval, time.Duration(r.Burst) * interval, nil
}

// Decision is a limiter's answer for one call.
type Decision struct {
	// Allowed says whether the call is within the budget; if so, its cost
	// has been spent.
	Allowed bool
	// Remaining is how many more calls of cost 1 the key could make now.
	Remaining int
	// RetryAfter is, for a refused call, how long until the same call
	// would be admitted; zero when Allowed.
	RetryAfter time.Duration
	// ResetAfter is how long until the key's whole burst is available
	// again (and its state may be forgotten).
	ResetAfter time.Duration
}

// Limiter decides whether a call identified by key is within rate, and
// spends cost (usually 1; 0 asks without spending) if it is.
//
// Both implementations use the generic cell rate algorithm (GCRA), which
// keeps one timestamp per key: its theoretical arrival time (TAT), the time
// at which the key would have no debt if every admitted call had arrived
// exactly on schedule. With the emission interval T = Period/Count and the
// tolerance τ = Burst × T, a call of cost c arriving at time now is
// admitted when
//
//	max(TAT, now) + c×T − τ ≤ now
//
// and then TAT becomes max(TAT, now) + c×T. A refused call changes
// nothing; it may retry after max(TAT, now) + c×T − τ − now. A key whose
// TAT is in the past has its full burst and needs no state at all, which
// is why the state can expire (Redis) or be evicted (memory) at TAT.
//
// Compared with a token bucket, GCRA needs no refill step and no second
// field, so a shared store updates it with one read and one write, in one
// round trip.
type Limiter interface {
	Allow(ctx context.Context, key string, rate Rate, cost int) (Decision, error)
}

// gcra applies the algorithm at now to a key whose theoretical arrival
// time is tat (zero for a key without state). All values are in one unit.
// It returns the key's new TAT, and the reset and retry delays from now.
func gcra(now, tat, interval, tolerance, cost int64) (newTAT int64, allowed bool, reset, retry int64) {
	if tat < now {
		tat = now
	}
	newTAT = tat + cost*interval
	if allowAt := newTAT - tolerance; allowAt > now {
		return tat, false, tat - now, allowAt - now
	}
	return newTAT, true, newTAT - now, 0
}

// decision builds the answer from delays counted in unit.
func decision(allowed bool, reset, retry, interval, tolerance int64, unit time.Duration) Decision {
	remaining := (tolerance - reset) / interval
	if remaining < 0 { // the key's TAT was set under a larger burst
		remaining = 0
	}
	return Decision{
		Allowed:    allowed,
		Remaining:  int(remaining),
		RetryAfter: time.Duration(retry) * unit,
		ResetAfter: time.Duration(reset) * unit,
	}
}
