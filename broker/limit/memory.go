package limit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// DefaultMaxKeys is the number of keys a MemoryLimiter remembers when
// NewMemoryLimiter is given none (about 15 MB with short keys).
const DefaultMaxKeys = 100_000

// MemoryLimiter is the Limiter of a single node: exact under any number of
// concurrent callers, and bounded, so that callers who invent keys cannot
// grow its memory.
//
// Keys are spread over shards, each a mutex and a least-recently-used map
// from key to TAT. When a shard is full the key used least recently is
// forgotten; it comes back with its full burst, which is the price of the
// bound: size maxKeys above the number of keys active within one reset
// period. Keys whose TAT has passed carry no debt and are the first to go
// in practice, as nobody uses them.
type MemoryLimiter struct {
	seed   maphash.Seed
	shards []memoryShard
	mask   uint64

	// Time is counted in nanoseconds since epoch on the monotonic clock,
	// so a change of the wall clock neither frees nor freezes budgets.
	epoch time.Time
	now   func() time.Time
}

type memoryShard struct {
	mu   sync.Mutex
	tats *simplelru.LRU[string, int64]
	_    [40]byte // keeps neighbouring shards' mutexes off one cache line
}

var _ Limiter = (*MemoryLimiter)(nil)

// NewMemoryLimiter returns a limiter that remembers at most maxKeys keys
// (DefaultMaxKeys if maxKeys < 1).
func NewMemoryLimiter(maxKeys int) *MemoryLimiter {
	if maxKeys < 1 {
		maxKeys = DefaultMaxKeys
	}
	// Enough shards that callers rarely wait on one another, few enough
	// that each holds a good share of the keys: per-shard eviction only
	// approximates one LRU order across all keys.
	shards := 1
	for shards < 64 && shards*2*1024 <= maxKeys {
		shards *= 2
	}
	l := &MemoryLimiter{
		seed:   maphash.MakeSeed(),
		shards: make([]memoryShard, shards),
		mask:   uint64(shards - 1),
		epoch:  time.Now(),
		now:    time.Now,
	}
	for i := range l.shards {
		tats, err := simplelru.NewLRU[string, int64](maxKeys/shards, nil)
		if err != nil {
			panic(err) // only for a size < 1, which the sharding above rules out
		}
		l.shards[i].tats = tats
	}
	return l
}

// Allow implements Limiter. It never fails for a valid rate and cost; ctx
// is not used.
func (l *MemoryLimiter) Allow(_ context.Context, key string, rate Rate, cost int) (Decision, error) {
	interval, tolerance, err := rate.cells(cost)
	if err != nil {
		return Decision{}, err
	}
	shard := &l.shards[maphash.String(l.seed, key)&l.mask]

	shard.mu.Lock()
	// The clock is read under the lock, so one key's decisions are taken
	// in the order of their times: exactly the serial algorithm.
	now := int64(l.now().Sub(l.epoch))
	tat, _ := shard.tats.Get(key)
	newTAT, allowed, reset, retry := gcra(now, tat, int64(interval), int64(tolerance), int64(cost))
	if allowed && newTAT > now {
		shard.tats.Add(key, newTAT)
	}
	shard.mu.Unlock()

	return decision(allowed, reset, retry, int64(interval), int64(tolerance), time.Nanosecond), nil
}

// Len is the number of keys the limiter remembers.
func (l *MemoryLimiter) Len() int {
	n := 0
	for i := range l.shards {
		shard := &l.shards[i]
		shard.mu.Lock()
		n += shard.tats.Len()
		shard.mu.Unlock()
	}
	return n
}
