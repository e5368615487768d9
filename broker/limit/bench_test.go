package limit

import (
	"context"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/broker/limit/redistest"
)

// BenchmarkAllow measures one decision: in memory for one key and for many
// keys from parallel callers, and in Redis (one round trip over loopback).
func BenchmarkAllow(b *testing.B) {
	ctx := context.Background()
	// Generous enough that every call is admitted and writes.
	rate := Rate{Count: 1_000_000, Period: time.Second, Burst: 1_000_000}

	b.Run("memory/one-key", func(b *testing.B) {
		l := NewMemoryLimiter(0)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := l.Allow(ctx, "client", rate, 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("memory/many-keys-parallel", func(b *testing.B) {
		l := NewMemoryLimiter(0)
		keys := make([]string, 10_000)
		for i := range keys {
			keys[i] = keyFor(i)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := l.Allow(ctx, keys[i%len(keys)], rate, 1); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	})
	b.Run("redis", func(b *testing.B) {
		srv := redistest.Start(b)
		l := NewRedisLimiter(srv.Client(), "bench:")
		b.ReportAllocs()
		for b.Loop() {
			if _, err := l.Allow(ctx, "client", rate, 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("redis/parallel", func(b *testing.B) {
		srv := redistest.Start(b)
		l := NewRedisLimiter(srv.Client(), "bench:")
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := l.Allow(ctx, keyFor(i%1000), rate, 1); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	})
}

// BenchmarkConcurrency measures one acquire and release.
func BenchmarkConcurrency(b *testing.B) {
	c := NewConcurrency(0)
	b.ReportAllocs()
	for b.Loop() {
		release, ok := c.Acquire("ledger", 10)
		if !ok {
			b.Fatal("refused")
		}
		release()
	}
}
