package audit_test

import (
	"context"
	"testing"

	"github.com/mcpbroker/mcpbroker/broker/audit"
)

// BenchmarkTrail writes from 16 goroutines at once, with Sync and Async
// durability, and reports records per second and fsyncs per record.
func BenchmarkTrail(b *testing.B) {
	for _, bench := range []struct {
		name       string
		durability audit.Durability
	}{
		{"sync", audit.Sync},
		{"async", audit.Async},
	} {
		b.Run(bench.name, func(b *testing.B) {
			fsys := &faultFS{}
			trail, err := audit.OpenTrail(audit.TrailOptions{Dir: b.TempDir(), FileSystem: fsys, Durability: bench.durability})
			if err != nil {
				b.Fatal(err)
			}
			record := callRecord(0)
			b.SetParallelism(max(1, 16/runtimeProcs()))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r := *record
					r.ID = ""
					if err := trail.Write(context.Background(), &r); err != nil {
						b.Error(err)
						return
					}
				}
			})
			if err := trail.Close(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(fsys.syncs.Load())/float64(b.N), "fsyncs/record")
		})
	}
}
