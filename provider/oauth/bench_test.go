package oauth

import (
	"context"
	"testing"

	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

func benchmarkVerify(b *testing.B, cacheSize int) {
	as := oauthtest.NewIssuer(b, nil)
	clock := newClock()
	v := newTestVerifier(b, as, clock, nil, func(o *Options) { o.CacheSize = cacheSize })
	token := as.Token(b, clock.Now(), as.EC, nil)
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
