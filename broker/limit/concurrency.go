package limit

import (
	"sync"
	"sync/atomic"
)

// Concurrency bounds the calls in flight per key, such as the calls to one
// upstream app. It remembers only keys with calls in flight, and at most
// maxKeys of them, so its memory is bounded by the calls it admits.
type Concurrency struct {
	maxKeys int

	mu       sync.Mutex
	inFlight map[string]int
}

// NewConcurrency returns a limiter that tracks at most maxKeys keys with
// calls in flight at once (DefaultMaxKeys if maxKeys < 1); a call for one
// more key is refused until another key has none left.
func NewConcurrency(maxKeys int) *Concurrency {
	if maxKeys < 1 {
		maxKeys = DefaultMaxKeys
	}
	return &Concurrency{maxKeys: maxKeys, inFlight: make(map[string]int)}
}

// Acquire admits a call for key if fewer than max are in flight; a max
// below 1 admits none. The caller must call release when the call ends;
// release may be called any number of times and frees the slot once.
func (c *Concurrency) Acquire(key string, max int) (release func(), ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, known := c.inFlight[key]
	if n >= max || (!known && len(c.inFlight) >= c.maxKeys) {
		return nil, false
	}
	c.inFlight[key] = n + 1
	s := &slot{owner: c, key: key}
	return s.release, true
}

// InFlight is the number of calls in flight for key.
func (c *Concurrency) InFlight(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inFlight[key]
}

// Len is the number of keys with calls in flight.
func (c *Concurrency) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.inFlight)
}

func (c *Concurrency) leave(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.inFlight[key] - 1; n > 0 {
		c.inFlight[key] = n
	} else {
		delete(c.inFlight, key)
	}
}

// slot is one admitted call.
type slot struct {
	owner    *Concurrency
	key      string
	released atomic.Bool
}

func (s *slot) release() {
	if s.released.CompareAndSwap(false, true) {
		s.owner.leave(s.key)
	}
}
