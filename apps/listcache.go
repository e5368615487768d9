package apps

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// ListItem is one item of an app's list, read once when the page was
// fetched: what routing, policy and namespacing need is taken out of it
// then, so serving the page again decodes nothing.
type ListItem struct {
	// Raw is the upstream's item, compacted, with the exposed name in
	// place of the upstream's (tools and prompts); every other byte is the
	// upstream's.
	Raw json.RawMessage
	// Name is the upstream's name of a tool or prompt; Exposed the name
	// clients see, Shortened whether it had to be shortened to fit.
	Name, Exposed string
	Shortened     bool
	// Key is what the policy is asked about: the upstream's name, or a
	// resource's URI, or a template's URI template.
	Key string
}

// ListPage is one page of an app's list.
type ListPage struct {
	Items []ListItem
	// Next is the upstream's cursor of the following page; empty on the
	// last.
	Next string
}

// size approximates what the page holds in memory.
func (p *ListPage) size() int64 {
	n := int64(64 + len(p.Next))
	for i := range p.Items {
		it := &p.Items[i]
		n += int64(96 + len(it.Raw) + len(it.Name) + len(it.Exposed) + len(it.Key))
	}
	return n
}

// ListCacheOptions configure an app's list cache.
type ListCacheOptions struct {
	// Disabled asks the upstream for every listing.
	Disabled bool
	// Shared keeps one copy of each list for every caller; otherwise each
	// caller (the Who of a lookup) has its own.
	Shared bool
	// TTL bounds how long a page is served without asking the upstream
	// again, when no list_changed came first.
	TTL time.Duration
	// MaxBytes bounds what the cache holds; the least recently used
	// pages go first.
	MaxBytes int64
}

// Defaults of an app's list cache.
const (
	DefaultListTTL      = 5 * time.Minute
	DefaultListMaxBytes = 8 << 20
	// maxListEntries bounds the pages kept, whatever their size.
	maxListEntries = 4096
	// listKinds is the number of kinds of list (tools, prompts, resources,
	// resource templates).
	listKinds = 4
)

// ListCache keeps the pages of one app's lists, per kind of list, cursor
// and caller (one caller, "", when the lists are shared), until the
// upstream says the list changed (Invalidate), the TTL passes, or the app
// is replaced by a reload (a new App, a new cache). Pages fetched while an
// invalidation happens are not kept. Concurrent fetches of the same page
// wait for one of them.
type ListCache struct {
	opts    ListCacheOptions
	entries *lru.Cache[listKey, *listEntry]
	bytes   atomic.Int64
	epochs  [listKinds]atomic.Uint64
	now     func() time.Time

	mu      sync.Mutex
	flights map[listKey]*listFlight
}

type listKey struct {
	kind        uint8
	who, cursor string
}

type listEntry struct {
	page    *ListPage
	epoch   uint64
	expires time.Time
	size    int64
}

type listFlight struct {
	done chan struct{}
	page *ListPage // nil when the fetch failed
}

// NewListCache makes an app's list cache.
func NewListCache(opts ListCacheOptions) *ListCache {
	if opts.TTL <= 0 {
		opts.TTL = DefaultListTTL
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultListMaxBytes
	}
	lc := &ListCache{opts: opts, now: time.Now, flights: make(map[listKey]*listFlight)}
	lc.entries, _ = lru.NewWithEvict(maxListEntries, func(_ listKey, e *listEntry) {
		lc.bytes.Add(-e.size)
	})
	return lc
}

// Shared reports whether every caller sees the same lists.
func (lc *ListCache) Shared() bool { return lc.opts.Shared }

// Disabled reports whether every listing asks the upstream.
func (lc *ListCache) Disabled() bool { return lc.opts.Disabled }

// Outcomes of ListCache.Page, for metrics.
const (
	ListHit    = "hit"
	ListMiss   = "miss"
	ListShared = "joined" // waited for another caller's fetch of the same page
	ListBypass = "disabled"
)

// Page returns a page of list kind for caller who (ignored when the lists
// are shared): kept, or fetched by fetch and kept. outcome says which.
func (lc *ListCache) Page(ctx context.Context, kind uint8, who, cursor string, fetch func() (*ListPage, error)) (page *ListPage, outcome string, err error) {
	if lc.opts.Disabled || int(kind) >= listKinds {
		page, err = fetch()
		return page, ListBypass, err
	}
	if lc.opts.Shared {
		who = ""
	}
	key := listKey{kind, who, cursor}
	epoch := lc.epochs[kind].Load()
	if e, ok := lc.entries.Get(key); ok {
		if e.epoch == epoch && lc.now().Before(e.expires) {
			return e.page, ListHit, nil
		}
		lc.entries.Remove(key)
	}
	lc.mu.Lock()
	if f, ok := lc.flights[key]; ok {
		lc.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, ListShared, ctx.Err()
		}
		if f.page != nil {
			return f.page, ListShared, nil
		}
		// That fetch failed: this caller tries for itself.
		page, err = fetch()
		return page, ListMiss, err
	}
	f := &listFlight{done: make(chan struct{})}
	lc.flights[key] = f
	lc.mu.Unlock()

	page, err = fetch()
	if err == nil {
		f.page = page
		lc.keep(key, page, epoch)
	}
	lc.mu.Lock()
	delete(lc.flights, key)
	lc.mu.Unlock()
	close(f.done)
	return page, ListMiss, err
}

// keep stores a page fetched while the kind's epoch was epoch, unless it
// changed meanwhile or the page alone exceeds the budget.
func (lc *ListCache) keep(key listKey, page *ListPage, epoch uint64) {
	size := page.size()
	if size > lc.opts.MaxBytes || lc.epochs[key.kind].Load() != epoch {
		return
	}
	lc.entries.Remove(key) // its size leaves the count through the eviction callback
	lc.entries.Add(key, &listEntry{page: page, epoch: epoch, expires: lc.now().Add(lc.opts.TTL), size: size})
	lc.bytes.Add(size)
	for lc.bytes.Load() > lc.opts.MaxBytes {
		if _, _, ok := lc.entries.RemoveOldest(); !ok {
			break
		}
	}
}

// Invalidate forgets every page of list kind, for every caller.
func (lc *ListCache) Invalidate(kind uint8) {
	if int(kind) < listKinds {
		lc.epochs[kind].Add(1)
	}
}

// Bytes is what the cache holds now, approximately.
func (lc *ListCache) Bytes() int64 { return lc.bytes.Load() }
