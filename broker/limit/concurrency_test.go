package limit

import (
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// At most max calls per key are in flight; a release frees its slot once,
// however often it is called; keys without calls in flight are forgotten.
func TestConcurrencyAcquireRelease(t *testing.T) {
	c := NewConcurrency(10)
	release1, ok1 := c.Acquire("ledger", 2)
	_, ok2 := c.Acquire("ledger", 2)
	_, ok3 := c.Acquire("ledger", 2)
	if !ok1 || !ok2 || ok3 {
		t.Fatalf("three calls with max 2: %v %v %v, want the third refused", ok1, ok2, ok3)
	}
	if _, ok := c.Acquire("crm", 2); !ok {
		t.Error("another key refused while the first is full")
	}
	if _, ok := c.Acquire("zero", 0); ok {
		t.Error("max 0 admitted a call")
	}

	release1()
	release1() // a second release must not free a second slot
	if _, ok := c.Acquire("ledger", 2); !ok {
		t.Fatal("a released slot was not given back")
	}
	if _, ok := c.Acquire("ledger", 2); ok {
		t.Fatal("a double release gave back two slots")
	}
	if got := c.InFlight("ledger"); got != 2 {
		t.Errorf("InFlight(ledger) = %d, want 2", got)
	}
}

// Beyond maxKeys keys with calls in flight, a new key is refused, and
// admitted again once a key has no calls left.
func TestConcurrencyBound(t *testing.T) {
	c := NewConcurrency(3)
	releases := make([]func(), 3)
	for i := range releases {
		var ok bool
		if releases[i], ok = c.Acquire("app-"+strconv.Itoa(i), 5); !ok {
			t.Fatalf("key %d refused below the bound", i)
		}
	}
	if _, ok := c.Acquire("app-3", 5); ok {
		t.Fatal("a fourth key admitted with maxKeys 3")
	}
	if _, ok := c.Acquire("app-0", 5); !ok {
		t.Fatal("a key already in flight refused at the bound")
	}
	releases[1]()
	if _, ok := c.Acquire("app-3", 5); !ok {
		t.Fatal("a new key refused after another's last call ended")
	}
}

// Many callers at once never exceed max, and when all are done nothing is
// held.
func TestConcurrencyUnderLoad(t *testing.T) {
	const max = 5
	c := NewConcurrency(100)
	var inFlight, peak, admitted atomic.Int64
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Go(func() {
			key := "app-" + strconv.Itoa(w%2) // two keys, 32 callers each
			for range 500 {
				release, ok := c.Acquire(key, max)
				if !ok {
					continue
				}
				admitted.Add(1)
				if key == "app-0" {
					n := inFlight.Add(1)
					for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
					}
					runtime.Gosched() // let others try while the slot is held
					inFlight.Add(-1)
				}
				release()
				release()
			}
		})
	}
	wg.Wait()
	if peak.Load() > max {
		t.Errorf("%d calls for one key in flight at once, want at most %d", peak.Load(), max)
	}
	if admitted.Load() == 0 {
		t.Error("no call admitted")
	}
	if n := c.Len(); n != 0 {
		t.Errorf("%d keys held after every call ended, want 0", n)
	}
}
