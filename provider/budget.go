package provider

import "sync/atomic"

// keepBudget bounds the bytes of events kept for clients that reconnect
// with Last-Event-ID. Each session has one, whose parent is the process's:
// an event is kept only while both have room. Events delivered to a
// client that stays connected are given back at the end of their stream,
// so the budget limits what clients that went away can make the broker
// hold, whatever they send and however slowly their calls finish.
type keepBudget struct {
	used   atomic.Int64
	max    int64
	parent *keepBudget
}

// take reserves n bytes, or reports false and reserves nothing. A nil
// budget has room for anything (streams outside any session).
func (b *keepBudget) take(n int) bool {
	if b == nil {
		return true
	}
	if b.used.Add(int64(n)) > b.max {
		b.used.Add(-int64(n))
		return false
	}
	if !b.parent.take(n) {
		b.used.Add(-int64(n))
		return false
	}
	return true
}

// give returns n bytes taken before.
func (b *keepBudget) give(n int) {
	if b == nil || n == 0 {
		return
	}
	b.used.Add(-int64(n))
	b.parent.give(n)
}

// full reports whether n more bytes would not fit.
func (b *keepBudget) full(n int) bool {
	if b == nil {
		return false
	}
	return b.used.Load()+int64(n) > b.max || b.parent.full(n)
}
