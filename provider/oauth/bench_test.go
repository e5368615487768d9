package oauth

import (
	"context"
	"testing"
)

func benchmarkVerify(b *testing.B, cacheSize int) {
	loadKeys(b)
	as := newFakeAS(b, ecKey)
	clock := newClock()
	v := newTestVerifier(b, as, clock, nil, func(o *Options) { o.CacheSize = cacheSize })
	token := mint(b, ecKey, as.claims(clock.Now()), nil)
	ctx := context.Background()
	if _, err := v.Verify(ctx, token); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(token)))
	for b.Loop() {
		if _, err := v.Verify(ctx, token); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCached is the per-request cost for a token seen before.
func BenchmarkVerifyCached(b *testing.B) { benchmarkVerify(b, 0) }

// BenchmarkVerifyUncached is the full ES256 verification: decoding,
// header and claim checks, signature.
func BenchmarkVerifyUncached(b *testing.B) { benchmarkVerify(b, -1) }
