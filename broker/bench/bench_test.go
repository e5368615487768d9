package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/broker"
	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

// concurrency is the number of MCP sessions, each on its own goroutine,
// that share the load of every case.
const concurrency = 16

// BenchmarkDataPath sends b.N tools/call requests, spread over 16
// concurrent sessions, along each data path. Besides ns/op (wall time over
// b.N) it reports throughput, the median and 99th percentile latency of
// one call, the number of sessions and, for a path with a hop, the hop
// process's own CPU time per call; allocs/op and B/op count both
// processes (allocMeter). On a path with an audit trail, it also reports
// the records it wrote per call and per fsync; on a path with Redis, the
// round trips to Redis per call. ./report turns the output into a table
// with ratios.
func BenchmarkDataPath(b *testing.B) {
	for _, path := range dataPaths {
		b.Run(path.name, func(b *testing.B) {
			upstream, _ := startUpstream(b)
			dst := path.start(b, upstream)
			sessions := openSessions(b, dst, concurrency)
			ctx := context.Background()
			// Warm up: every session's connection dialled, pools filled.
			if load := runLoad(ctx, sessions, make([]time.Duration, 4*concurrency), (*session).callEcho); load.failures > 0 {
				b.Fatalf("warm-up: %s", load.failureSummary())
			}
			var before auditBatches
			if dst.audited {
				before = readAuditBatches(b, dst.admin)
			}
			var redisBefore redisCommands
			if dst.redis != nil {
				redisBefore = readRedisCommands(b, dst.redis)
			}
			allocs := startAllocMeter(b, dst.admin)
			cpu := startCPUMeter(b, dst.hop)
			latencies := make([]time.Duration, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			load := runLoad(ctx, sessions, latencies, (*session).callEcho)
			b.StopTimer()
			cpuPerCall, cpuMeasured := cpu.perOp(b, b.N)
			objects, bytes := allocs.perOp(b, b.N)
			if load.failures > 0 {
				b.Fatalf("not a valid measurement: %s", load.failureSummary())
			}
			slices.Sort(latencies)
			b.ReportMetric(float64(b.N)/load.elapsed.Seconds(), "calls/s")
			b.ReportMetric(microseconds(percentile(latencies, 50)), "p50-µs")
			b.ReportMetric(microseconds(percentile(latencies, 99)), "p99-µs")
			b.ReportMetric(float64(len(sessions)), "sessions")
			if cpuMeasured {
				b.ReportMetric(cpuPerCall, "cpu-µs/call")
			}
			// Override testing's counts, the benchmark's process only.
			b.ReportMetric(objects, "allocs/op")
			b.ReportMetric(bytes, "B/op")
			if dst.audited {
				// With async durability the last records may still be
				// queued (in a run of one call, all of them); the ratios
				// are of what was committed. TestDataPaths checks that
				// every call is.
				if audit := readAuditBatches(b, dst.admin).since(before); audit.batches > 0 {
					b.ReportMetric(audit.records/float64(b.N), "records/call")
					b.ReportMetric(audit.records/audit.batches, "records/fsync")
				}
			}
			if dst.redis != nil {
				ran := readRedisCommands(b, dst.redis).since(redisBefore)
				b.ReportMetric((ran.sessionChecks()+ran.budgetChecks())/float64(b.N), "redis-trips/call")
			}
		})
	}
}

// allocMeter counts the allocations of both processes over a measured
// stretch, so that allocs/op and B/op mean what they did when the hop ran
// in the benchmark's process, and a path's difference from direct is what
// its hop allocates: the benchmark's own (client and upstream) from
// runtime.MemStats, as testing counts them, and the hop's from the Go
// runtime's metrics on its /metrics. The hop's own reading of /metrics is
// counted too: a few hundred allocations, spread over b.N calls.
type allocMeter struct {
	admin          string // the hop's; empty: no hop
	objects, bytes float64
}

func startAllocMeter(tb testing.TB, admin string) allocMeter {
	tb.Helper()
	m := allocMeter{admin: admin}
	m.objects, m.bytes = m.read(tb, true)
	return m
}

// perOp returns the allocations and bytes allocated per operation since
// the meter started.
func (m allocMeter) perOp(tb testing.TB, ops int) (objects, bytes float64) {
	tb.Helper()
	objects, bytes = m.read(tb, false)
	n := float64(max(ops, 1))
	return (objects - m.objects) / n, (bytes - m.bytes) / n
}

// read sums both processes' counts. The benchmark's own are read on the
// measured side of reading the hop's (first, or last), so that the
// client's reading of /metrics is left out.
func (m allocMeter) read(tb testing.TB, hopFirst bool) (objects, bytes float64) {
	tb.Helper()
	readHop := func() {
		if m.admin != "" {
			families := readMetrics(tb, m.admin)
			objects += counterValue(families, "go_memstats_mallocs_total")
			bytes += counterValue(families, "go_memstats_alloc_bytes_total")
		}
	}
	if hopFirst {
		readHop()
	}
	var own runtime.MemStats
	runtime.ReadMemStats(&own)
	objects, bytes = objects+float64(own.Mallocs), bytes+float64(own.TotalAlloc)
	if !hopFirst {
		readHop()
	}
	return objects, bytes
}

// TestDataPaths runs a few calls along every path, so `make test` keeps
// the benchmark harness working, hop processes and their CPU time
// included. It checks results, never timings.
func TestDataPaths(t *testing.T) {
	for _, path := range dataPaths {
		t.Run(path.name, func(t *testing.T) {
			upstream, lastAuthorization := startUpstream(t)
			dst := path.start(t, upstream)
			sessions := openSessions(t, dst, 4)
			var redisBefore redisCommands
			if dst.redis != nil {
				redisBefore = readRedisCommands(t, dst.redis)
			}
			cpu := startCPUMeter(t, dst.hop)
			latencies := make([]time.Duration, 20)
			load := runLoad(context.Background(), sessions, latencies, (*session).callEcho)
			if load.failures > 0 {
				t.Fatal(load.failureSummary())
			}
			if dst.endpoint != upstream && !dst.rest {
				checkHopCPU(t, dst, cpu, len(latencies))
			}
			if dst.redis != nil {
				checkSharedInRedis(t, readRedisCommands(t, dst.redis).since(redisBefore), len(latencies))
			}
			for i, d := range latencies {
				if d <= 0 {
					t.Errorf("call %d: no latency recorded", i)
				}
			}
			checkUpstreamToken(t, dst, lastAuthorization())
			if dst.token != nil {
				checkRefusedWithoutToken(t, sessions[0])
			}
			if dst.outsider != nil {
				checkDeniedByPolicy(t, dst)
			}
			if dst.audited {
				checkAudited(t, dst, len(latencies))
			}
			checkFeature(t, path.name, sessions[0])
		})
	}
}

// checkFeature makes sure the rows that measure validation and
// redaction run them: arguments off echo's schema are answered without
// the upstream, an e-mail address in a result is masked.
func checkFeature(t *testing.T, row string, s *session) {
	t.Helper()
	ctx := context.Background()
	switch row {
	case "broker+validate":
		err := s.callTool(ctx, "echo", `{"text":5}`)
		if err == nil || !strings.Contains(err.Error(), "Invalid arguments for tool echo") {
			t.Errorf("echo with a number for text: %v, want the broker's isError result", err)
		}
	case "broker+redact":
		if err := s.callTool(ctx, "echo", `{"text":"mail alice@example.com"}`); err != nil {
			t.Fatal(err)
		}
		if c := s.msg.Result.Content; len(c) != 1 || c[0].Text != "mail [REDACTED:email]" {
			t.Errorf("echo of an e-mail address: %+v, want it masked", c)
		}
	}
}

// checkHopCPU makes sure a path with a hop runs it in a process of its
// own, whose CPU time over the given calls is measured, and above 0.
func checkHopCPU(t *testing.T, dst target, cpu cpuMeter, calls int) {
	t.Helper()
	if dst.hop == nil {
		t.Fatal("the path has a hop, but no hop process")
	}
	if !cpuMeasurable {
		t.Log("the hop's CPU time is not measured on this platform")
		return
	}
	if perCall, measured := cpu.perOp(t, calls); !measured || perCall <= 0 {
		t.Fatalf("the hop's CPU time per call: %v µs (measured: %v), want a measured figure above 0", perCall, measured)
	}
}

// checkRefusedWithoutToken makes sure the path truly authenticates: the
// call that just succeeded in s, sent again in the same session but
// without its token, is refused with 401 — a session id is no credential.
func checkRefusedWithoutToken(t *testing.T, s *session) {
	t.Helper()
	anonymous := *s
	anonymous.authorization = ""
	err := anonymous.callEcho(context.Background())
	var status *statusError
	if !errors.As(err, &status) || status.code != http.StatusUnauthorized || !strings.HasPrefix(status.challenge, "Bearer") {
		t.Fatalf("call without a token: got %v, want status 401 with a Bearer challenge", err)
	}
	s.nextID = anonymous.nextID
}

// checkUpstreamToken makes sure the agent's token never reaches the
// upstream, and that a path that mints tokens truly does: the last call's
// Authorization is a JWT for the path's audience and the tool's scope.
func checkUpstreamToken(t *testing.T, dst target, authorization string) {
	t.Helper()
	if dst.audience == "" {
		if authorization != "" {
			t.Fatalf("the upstream received Authorization %.20q…, want none", authorization)
		}
		return
	}
	token, ok := strings.CutPrefix(authorization, "Bearer ")
	if !ok || strings.Count(token, ".") != 2 {
		t.Fatalf("the upstream received Authorization %.20q…, want a Bearer JWT", authorization)
	}
	_, claims := oauthtest.Decode(t, token)
	audience, _ := claims["aud"].(string)
	subject, _ := claims["sub"].(string)
	scope, _ := claims["scope"].(string)
	// A token without scope would be the session's identity-only token,
	// not the one minted for the call.
	if audience != dst.audience || !strings.HasPrefix(subject, "bench-user-") || scope == "" {
		t.Fatalf("the upstream's token has aud %v sub %v scope %v, want aud %q, a bench user and the tool's scope",
			claims["aud"], claims["sub"], claims["scope"], dst.audience)
	}
}

// checkDeniedByPolicy makes sure the path truly evaluates its policy: a
// session of an authenticated user in none of the policy's groups is
// opened, but its echo call is refused with the broker's JSON-RPC error
// for a denial, -32010.
func checkDeniedByPolicy(t *testing.T, dst target) {
	t.Helper()
	s := openSessions(t, target{endpoint: dst.endpoint, token: func(int) string { return dst.outsider() }}, 1)[0]
	err := s.callEcho(context.Background())
	var rpcErr *rpcError
	if !errors.As(err, &rpcErr) || rpcErr.code != broker.CodeForbidden {
		t.Fatalf("call by a user outside the policy's groups: got %v, want JSON-RPC error %d", err, broker.CodeForbidden)
	}
}

// checkAudited makes sure the path truly writes its audit trail: the
// trail commits at least one record for each of the calls made. With
// async durability the last ones may still be queued, so it waits for
// them, up to a generous deadline.
func checkAudited(t *testing.T, dst target, calls int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		audit := readAuditBatches(t, dst.admin)
		if audit.records >= float64(calls) && audit.batches > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the audit trail committed %v records in %v batches, want at least one for each of %d calls",
				audit.records, audit.batches, calls)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkSharedInRedis makes sure the path truly keeps its state in Redis:
// while it made the given number of calls, and nothing else, each one
// asked Redis whether its session had ended and spent its budget there.
// The first may have needed two round trips for its budget, when Redis
// did not have the script yet.
func checkSharedInRedis(t *testing.T, ran redisCommands, calls int) {
	t.Helper()
	n := float64(calls)
	if ran.sessionChecks() != n || ran.budgetChecks() < n || ran.budgetChecks() > n+1 {
		t.Fatalf("for %d calls Redis ran %v session checks (EXISTS) and %v budget checks (EVALSHA, EVAL), want one of each per call; commands: %v",
			calls, ran.sessionChecks(), ran.budgetChecks(), ran)
	}
}

// load is the outcome of runLoad.
type load struct {
	elapsed  time.Duration
	requests int
	failures int64
	errs     []error // the first few failures
}

func (l load) failureSummary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d requests failed", l.failures, l.requests)
	for _, err := range l.errs {
		fmt.Fprintf(&b, "\n\t%v", err)
	}
	return b.String()
}

// runLoad makes len(latencies) requests with op, such as
// (*session).callEcho, one goroutine per session each taking the next
// request until none are left, and records the latency of request i in
// latencies[i].
func runLoad(ctx context.Context, sessions []*session, latencies []time.Duration, op func(*session, context.Context) error) load {
	var (
		next     atomic.Int64
		failures atomic.Int64
		mu       sync.Mutex
		errs     []error
		wg       sync.WaitGroup
	)
	n := int64(len(latencies))
	start := time.Now()
	for _, s := range sessions {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				err := op(s, ctx)
				latencies[i] = time.Since(t0)
				if err != nil {
					failures.Add(1)
					mu.Lock()
					if len(errs) < 3 {
						errs = append(errs, fmt.Errorf("session %s: %w", s.id, err))
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return load{elapsed: time.Since(start), requests: len(latencies), failures: failures.Load(), errs: errs}
}

// percentile returns the nearest-rank p-th percentile of sorted latencies.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (len(sorted)*p + 99) / 100 // ceil(n·p/100)
	return sorted[max(rank, 1)-1]
}

func microseconds(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i + 1)
	}
	tests := []struct {
		sorted []time.Duration
		p      int
		want   time.Duration
	}{
		{nil, 50, 0},
		{[]time.Duration{7}, 50, 7},
		{[]time.Duration{7}, 99, 7},
		{[]time.Duration{1, 2}, 50, 1},
		{[]time.Duration{1, 2, 3}, 50, 2},
		{hundred, 50, 50},
		{hundred, 99, 99},
		{hundred, 100, 100},
	}
	for _, tt := range tests {
		if got := percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("percentile(%d values, %d) = %d, want %d", len(tt.sorted), tt.p, got, tt.want)
		}
	}
}

// interleavedPaths are the hops BenchmarkHopCPU measures side by side: the
// bare proxy, the broker's data path and its full pipeline.
var interleavedPaths = []string{"proxy", "broker", "broker+exchange"}

// hopRounds is how many turns each hop of BenchmarkHopCPU gets.
const hopRounds = 8

// BenchmarkHopCPU measures the CPU time per call of the proxy, the broker
// and the broker's full pipeline in alternation: the three hops run at
// once in front of one upstream, and b.N calls to each are made in
// rounds, each round visiting the hops in a rotated order. On a shared
// machine the CPU time one call costs drifts over minutes with the
// neighbours' load; measured in alternation, the drift weighs on all
// three alike, so their ratios hold where BenchmarkDataPath's, measured
// minutes apart, swing. It reports each hop's CPU µs per call and the
// ratios to the proxy's.
func BenchmarkHopCPU(b *testing.B) {
	if !cpuMeasurable {
		b.Skip("hop CPU time cannot be read on this system")
	}
	type arm struct {
		name     string
		dst      target
		sessions []*session
		cpu      float64 // µs, summed over rounds
		calls    int
	}
	upstream, _ := startUpstream(b)
	ctx := context.Background()
	arms := make([]*arm, 0, len(interleavedPaths))
	for _, name := range interleavedPaths {
		i := slices.IndexFunc(dataPaths, func(p dataPath) bool { return p.name == name })
		a := &arm{name: name, dst: dataPaths[i].start(b, upstream)}
		a.sessions = openSessions(b, a.dst, concurrency)
		if load := runLoad(ctx, a.sessions, make([]time.Duration, 4*concurrency), (*session).callEcho); load.failures > 0 {
			b.Fatalf("%s: warm-up: %s", name, load.failureSummary())
		}
		arms = append(arms, a)
	}
	b.ResetTimer()
	for round := range hopRounds {
		calls := b.N / hopRounds
		if round < b.N%hopRounds {
			calls++
		}
		if calls == 0 {
			continue
		}
		for k := range arms {
			a := arms[(round+k)%len(arms)]
			meter := startCPUMeter(b, a.dst.hop)
			if load := runLoad(ctx, a.sessions, make([]time.Duration, calls), (*session).callEcho); load.failures > 0 {
				b.Fatalf("%s: %s", a.name, load.failureSummary())
			}
			perCall, _ := meter.perOp(b, calls)
			a.cpu += perCall * float64(calls)
			a.calls += calls
		}
	}
	b.StopTimer()
	proxy := arms[0].cpu / float64(max(arms[0].calls, 1))
	for _, a := range arms {
		perCall := a.cpu / float64(max(a.calls, 1))
		b.ReportMetric(perCall, a.name+"-cpu-µs/call")
		if a != arms[0] && proxy > 0 {
			b.ReportMetric(perCall/proxy, a.name+"/proxy")
		}
	}
}
