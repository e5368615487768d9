package apps

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func page(items ...string) *ListPage {
	p := &ListPage{}
	for _, name := range items {
		p.Items = append(p.Items, ListItem{Raw: []byte(`{"name":"` + name + `"}`), Name: name, Exposed: name, Key: name})
	}
	return p
}

func TestListCacheKeepsPagesPerCaller(t *testing.T) {
	ctx := context.Background()
	var fetches atomic.Int32
	fetch := func(name string) func() (*ListPage, error) {
		return func() (*ListPage, error) {
			fetches.Add(1)
			return page(name), nil
		}
	}
	lc := NewListCache(ListCacheOptions{})
	if _, outcome, _ := lc.Page(ctx, 0, "alice", "", fetch("a")); outcome != ListMiss {
		t.Fatalf("first lookup: %s", outcome)
	}
	p, outcome, _ := lc.Page(ctx, 0, "alice", "", fetch("x"))
	if outcome != ListHit || p.Items[0].Name != "a" {
		t.Fatalf("second lookup: %s %v", outcome, p.Items)
	}
	// Another caller, another cursor, another kind: each its own page.
	for _, k := range []struct {
		kind        uint8
		who, cursor string
	}{{0, "bob", ""}, {0, "alice", "c2"}, {1, "alice", ""}} {
		if _, outcome, _ := lc.Page(ctx, k.kind, k.who, k.cursor, fetch("b")); outcome != ListMiss {
			t.Errorf("%+v: %s, want a miss", k, outcome)
		}
	}
	// Invalidating tools leaves prompts alone.
	lc.Invalidate(0)
	if _, outcome, _ := lc.Page(ctx, 0, "alice", "", fetch("a2")); outcome != ListMiss {
		t.Errorf("after Invalidate(tools): %s, want a miss", outcome)
	}
	if _, outcome, _ := lc.Page(ctx, 1, "alice", "", fetch("p")); outcome != ListHit {
		t.Errorf("prompts after Invalidate(tools): %s, want a hit", outcome)
	}

	shared := NewListCache(ListCacheOptions{Shared: true})
	shared.Page(ctx, 0, "alice", "", fetch("s"))
	if p, outcome, _ := shared.Page(ctx, 0, "bob", "", fetch("x")); outcome != ListHit || p.Items[0].Name != "s" {
		t.Errorf("a shared list for another caller: %s, want alice's page", outcome)
	}

	off := NewListCache(ListCacheOptions{Disabled: true})
	off.Page(ctx, 0, "", "", fetch("d"))
	if _, outcome, _ := off.Page(ctx, 0, "", "", fetch("d")); outcome != ListBypass {
		t.Errorf("a disabled cache: %s", outcome)
	}
}

func TestListCacheExpires(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	lc := NewListCache(ListCacheOptions{TTL: time.Minute})
	lc.now = func() time.Time { return now }
	fetch := func() (*ListPage, error) { return page("a"), nil }
	lc.Page(ctx, 0, "", "", fetch)
	now = now.Add(59 * time.Second)
	if _, outcome, _ := lc.Page(ctx, 0, "", "", fetch); outcome != ListHit {
		t.Errorf("within the TTL: %s", outcome)
	}
	now = now.Add(2 * time.Second)
	if _, outcome, _ := lc.Page(ctx, 0, "", "", fetch); outcome != ListMiss {
		t.Errorf("past the TTL: %s", outcome)
	}
}

// A page fetched while the list was said to change is served to the caller
// that fetched it, but not kept: it may be from before the change.
func TestListCacheDropsPagesFetchedDuringAChange(t *testing.T) {
	ctx := context.Background()
	lc := NewListCache(ListCacheOptions{})
	lc.Page(ctx, 0, "", "", func() (*ListPage, error) {
		lc.Invalidate(0)
		return page("old"), nil
	})
	if _, outcome, _ := lc.Page(ctx, 0, "", "", func() (*ListPage, error) { return page("new"), nil }); outcome != ListMiss {
		t.Errorf("after a change during the fetch: %s, want a miss", outcome)
	}
}

// Concurrent listings of the same page wait for one fetch; a failed fetch
// is not kept, and those waiting for it try for themselves.
func TestListCacheJoinsConcurrentFetches(t *testing.T) {
	ctx := context.Background()
	lc := NewListCache(ListCacheOptions{Shared: true})
	release := make(chan struct{})
	var fetches atomic.Int32
	var wg sync.WaitGroup
	outcomes := make([]string, 8)
	for i := range outcomes {
		wg.Go(func() {
			_, outcomes[i], _ = lc.Page(ctx, 0, "", "", func() (*ListPage, error) {
				fetches.Add(1)
				<-release
				return page("a"), nil
			})
		})
	}
	time.Sleep(50 * time.Millisecond) // let them meet; the result holds either way
	close(release)
	wg.Wait()
	if n := fetches.Load(); n < 1 || n > int32(len(outcomes)) {
		t.Fatalf("%d fetches", n)
	}
	t.Logf("8 concurrent listings: %d fetches, outcomes %v", fetches.Load(), outcomes)

	failing := NewListCache(ListCacheOptions{})
	boom := errors.New("upstream down")
	if _, _, err := failing.Page(ctx, 0, "", "", func() (*ListPage, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("a failed fetch: %v", err)
	}
	if _, outcome, _ := failing.Page(ctx, 0, "", "", func() (*ListPage, error) { return page("a"), nil }); outcome != ListMiss {
		t.Errorf("after a failed fetch: %s, want a miss (failures are not kept)", outcome)
	}
}

// What the cache holds is bounded in bytes: the least recently used pages
// go first, and a page larger than the bound is never kept.
func TestListCacheBoundedInBytes(t *testing.T) {
	ctx := context.Background()
	const budget = 64 << 10
	lc := NewListCache(ListCacheOptions{MaxBytes: budget})
	big := func() (*ListPage, error) { return page(strings.Repeat("x", 10<<10)), nil }
	for i := range 100 {
		lc.Page(ctx, 0, string(rune('a'+i%26))+strings.Repeat("k", i), "", big)
		if lc.Bytes() > budget {
			t.Fatalf("after %d pages the cache holds %d bytes, want at most %d", i+1, lc.Bytes(), budget)
		}
	}
	if lc.Bytes() == 0 {
		t.Fatal("the cache kept nothing")
	}
	huge := func() (*ListPage, error) { return page(strings.Repeat("x", budget)), nil }
	lc.Page(ctx, 0, "huge", "", huge)
	if _, outcome, _ := lc.Page(ctx, 0, "huge", "", huge); outcome != ListMiss {
		t.Errorf("a page larger than the bound: %s, want a miss", outcome)
	}
}
