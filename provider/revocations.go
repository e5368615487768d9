package provider

import (
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Revocations remembers ended session ids until they would have expired
// anyway. A sealed id is valid on any replica holding the key, so replicas
// that must refuse each other's ended sessions share one Revocations (the
// shared store of a replicated deployment).
//
// A store that cannot be reached says so (an error): an ended session must
// not be revived by an outage, nor a live one taken for ended.
type Revocations interface {
	Revoke(id string, until time.Time) error
	Revoked(id string) (bool, error)
	// Forget drops entries whose time has passed (a store that expires
	// entries itself does nothing).
	Forget(now time.Time)
}

// NewMemoryRevocations keeps up to max ended ids in memory; the oldest
// are forgotten first.
func NewMemoryRevocations(max int) Revocations {
	c, _ := lru.New[string, time.Time](max)
	return &memoryRevocations{ended: c}
}

type memoryRevocations struct {
	mu    sync.Mutex
	ended *lru.Cache[string, time.Time]
}

func (m *memoryRevocations) Revoke(id string, until time.Time) error {
	m.ended.Add(id, until)
	return nil
}

func (m *memoryRevocations) Revoked(id string) (bool, error) {
	_, ok := m.ended.Peek(id)
	return ok, nil
}

func (m *memoryRevocations) Forget(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range m.ended.Keys() {
		if until, ok := m.ended.Peek(id); ok && now.After(until) {
			m.ended.Remove(id)
		}
	}
}
