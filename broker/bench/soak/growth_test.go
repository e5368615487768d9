//go:build linux

package soak

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The bounds of growth from the baseline sample to the last: a replica
// serving a steady load reaches a steady state once warm, and what grows
// beyond these afterwards is held by something that should have let go.
const (
	maxGoroutineGrowth = 0.20
	// goroutineSlack is growth in goroutines that is always allowed: the
	// calls in flight when a sample is taken, which come and go, are a
	// few goroutines of a replica's twenty-odd.
	goroutineSlack = 5
	maxRSSGrowth   = 0.30
	// baselineAt is when the baseline sample is taken: the first minute
	// fills pools, caches and the heap.
	baselineAt = 2 * time.Minute
)

// A sample is what one replica had served and was using at one moment of
// the load.
type sample struct {
	at         time.Duration // since the load started
	calls      int64         // answered so far
	errors     int64         // so far
	rss        float64       // resident memory, bytes
	goroutines float64
}

// readProcess reads a replica's resident memory and goroutines from its
// admin listener (base URL admin): process_resident_memory_bytes and
// go_goroutines, from the process and Go collectors.
func readProcess(ctx context.Context, client *http.Client, admin string) (rss, goroutines float64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/metrics", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("GET %s/metrics: status %d", admin, resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, 0, fmt.Errorf("GET %s/metrics: %w", admin, err)
	}
	gauge := func(name string) (float64, error) {
		f := families[name]
		if f == nil || len(f.GetMetric()) != 1 {
			return 0, fmt.Errorf("GET %s/metrics: no %s", admin, name)
		}
		return f.GetMetric()[0].GetGauge().GetValue(), nil
	}
	if rss, err = gauge("process_resident_memory_bytes"); err != nil {
		return 0, 0, err
	}
	goroutines, err = gauge("go_goroutines")
	return rss, goroutines, err
}

// baseline is the sample growth is measured from: the first taken at
// baselineAt or later, unless that is the last one (a run too short to
// leave the warm-up out), in which case the first.
func baseline(samples []sample) sample {
	for _, s := range samples[:len(samples)-1] {
		if s.at >= baselineAt {
			return s
		}
	}
	return samples[0]
}

// growthProblems says how a replica's goroutines or resident memory grew
// beyond their bounds from the baseline sample to the last; none when
// there are fewer than two samples.
func growthProblems(samples []sample) []string {
	if len(samples) < 2 {
		return nil
	}
	from, to := baseline(samples), samples[len(samples)-1]
	var problems []string
	if g := growth(from.goroutines, to.goroutines); g > maxGoroutineGrowth && to.goroutines-from.goroutines > goroutineSlack {
		problems = append(problems, fmt.Sprintf("goroutines grew %.0f → %.0f (%+.1f %%, bound %+.0f %% or +%d) from %s to %s",
			from.goroutines, to.goroutines, g*100, maxGoroutineGrowth*100, goroutineSlack, at(from.at), at(to.at)))
	}
	if g := growth(from.rss, to.rss); g > maxRSSGrowth {
		problems = append(problems, fmt.Sprintf("resident memory grew %s → %s (%+.1f %%, bound %+.0f %%) from %s to %s",
			mebibytes(from.rss), mebibytes(to.rss), g*100, maxRSSGrowth*100, at(from.at), at(to.at)))
	}
	return problems
}

// growth is the relative change from a to b.
func growth(a, b float64) float64 {
	if a == 0 {
		return 0
	}
	return b/a - 1
}

func mebibytes(bytes float64) string { return fmt.Sprintf("%.1f MiB", bytes/(1<<20)) }

// at formats a moment of the load as minutes and seconds: 2m00s.
func at(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
}

func TestGrowthProblems(t *testing.T) {
	const mib = 1 << 20
	minute := func(m float64, goroutines, rssMiB float64) sample {
		return sample{at: time.Duration(m * float64(time.Minute)), goroutines: goroutines, rss: rssMiB * mib}
	}
	tests := []struct {
		name    string
		samples []sample
		want    []string // substrings of the problems, in order; none: no problem
	}{
		{"steady", []sample{minute(1, 50, 30), minute(2, 60, 40), minute(3, 61, 41), minute(10, 62, 45)}, nil},
		{"warm-up growth is left out", []sample{minute(1, 20, 10), minute(2, 60, 40), minute(10, 70, 50)}, nil},
		{"goroutines leak", []sample{minute(1, 50, 30), minute(2, 50, 40), minute(10, 61, 40)},
			[]string{"goroutines grew 50 → 61 (+22.0 %, bound +20 % or +5) from 2m00s to 10m00s"}},
		{"a few more goroutines in flight", []sample{minute(2, 20, 40), minute(10, 25, 40)}, nil},
		{"a few more goroutines than in flight", []sample{minute(2, 20, 40), minute(10, 26, 40)},
			[]string{"goroutines grew 20 → 26 (+30.0 %"}},
		{"memory leaks", []sample{minute(1, 50, 30), minute(2, 50, 40), minute(10, 50, 52.5)},
			[]string{"resident memory grew 40.0 MiB → 52.5 MiB (+31.2 %, bound +30 %) from 2m00s to 10m00s"}},
		{"both", []sample{minute(2, 50, 40), minute(3, 100, 80)},
			[]string{"goroutines grew 50 → 100", "resident memory grew 40.0 MiB → 80.0 MiB"}},
		{"short run: from minute 1", []sample{minute(1, 50, 30), minute(2, 61, 30)},
			[]string{"goroutines grew 50 → 61 (+22.0 %, bound +20 % or +5) from 1m00s to 2m00s"}},
		{"last minute partial", []sample{minute(1, 10, 10), minute(2, 50, 40), minute(2.5, 50, 40)}, nil},
		{"one sample", []sample{minute(1, 50, 30)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := growthProblems(tt.samples)
			if len(got) != len(tt.want) {
				t.Fatalf("got %q, want problems containing %q", got, tt.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tt.want[i]) {
					t.Errorf("problem %d: %q, want one containing %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}
