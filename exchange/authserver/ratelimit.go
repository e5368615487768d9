package authserver

import (
	"container/heap"
	"net"
	"sync"
	"time"
)

// addressLimiter is a token bucket per client address: an address may
// spend burst tokens at once and earns them back evenly over window.
// State is in memory and bounded by maxEntries. To make room it drops the
// bucket that is, or soonest will be, full again: a full bucket is as
// good as none, and an address held back harder is never dropped while
// one held back less can go. It never drops them all.
type addressLimiter struct {
	mu         sync.Mutex
	burst      float64
	perToken   time.Duration // time to earn one token back
	maxEntries int
	buckets    map[string]*addressBucket
	byFull     bucketHeap // soonest full first
}

type addressBucket struct {
	key     string
	tokens  float64
	updated time.Time
	full    time.Time // when the bucket is full again
	index   int       // in the heap
}

func newAddressLimiter(burst int, window time.Duration, maxEntries int) *addressLimiter {
	return &addressLimiter{
		burst:      float64(burst),
		perToken:   window / time.Duration(burst),
		maxEntries: maxEntries,
		buckets:    map[string]*addressBucket{},
	}
}

// allow spends a token of address's bucket. When there is none it reports
// false and how long until there is one.
func (l *addressLimiter) allow(address string, now time.Time) (retryAfter time.Duration, ok bool) {
	key := limiterKey(address)
	l.mu.Lock()
	defer l.mu.Unlock()
	bucket, found := l.buckets[key]
	if !found {
		if len(l.buckets) >= l.maxEntries {
			dropped := heap.Pop(&l.byFull).(*addressBucket)
			delete(l.buckets, dropped.key)
		}
		bucket = &addressBucket{key: key, tokens: l.burst, updated: now}
		l.buckets[key] = bucket
		heap.Push(&l.byFull, bucket)
	}
	earned := float64(max(0, now.Sub(bucket.updated))) / float64(l.perToken)
	bucket.tokens = min(l.burst, bucket.tokens+earned)
	bucket.updated = now
	if bucket.tokens >= 1 {
		bucket.tokens--
		ok = true
	} else {
		retryAfter = time.Duration((1 - bucket.tokens) * float64(l.perToken))
	}
	bucket.full = now.Add(time.Duration((l.burst - bucket.tokens) * float64(l.perToken)))
	heap.Fix(&l.byFull, bucket.index)
	return retryAfter, ok
}

// bucketHeap orders buckets by when they are full again.
type bucketHeap []*addressBucket

func (h bucketHeap) Len() int           { return len(h) }
func (h bucketHeap) Less(i, j int) bool { return h[i].full.Before(h[j].full) }
func (h bucketHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *bucketHeap) Push(x any) {
	bucket := x.(*addressBucket)
	bucket.index = len(*h)
	*h = append(*h, bucket)
}
func (h *bucketHeap) Pop() any {
	old := *h
	bucket := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return bucket
}

// limiterKey is what an address is limited as: an IPv6 address by its
// /64, which one party commonly holds whole.
func limiterKey(address string) string {
	ip := net.ParseIP(address)
	if ip == nil || ip.To4() != nil {
		return address
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}
