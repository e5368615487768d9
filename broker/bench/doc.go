// Package bench owns the data-path benchmarks: the same MCP load sent
// directly to an upstream server, through a bare reverse proxy, and through
// the broker, measured in one run so the numbers compare.
//
// The upstream (the official Go SDK) and a minimal Streamable HTTP client
// run in the benchmark's process; the hop under test, the bare reverse
// proxy or the broker, runs in a process of its own (the test binary run
// again, see hop_test.go), so that the kernel's accounting of that process
// is the hop's CPU time and nothing else's: each path with a hop reports it
// per call (cpu-µs/call), the figure that holds still on a shared machine
// where throughput and latency swing. Allocation counts cover both
// processes (the hop's read from its /metrics), so the difference between
// a path and "direct" is what that hop allocates per call. With
// MCPBROKER_BENCH_PROFILE=<dir> every broker hop writes its CPU profile and
// its allocation profile there, named after its row.
//
// Run it with `make bench`, which prints a table through ./report, together
// with the policy engine's own BenchmarkDecide (./opa). A new case is one
// more entry in dataPaths, usually a broker configuration variant, named
// broker+X so the report shows what X costs over the plain broker, as
// broker+auth (OAuth, JWT access tokens, one per session) does. A feature
// measured on top of another is compared with that one instead:
// broker+policy (broker+auth plus an inbound Rego policy on the app) with
// broker+auth, broker+exchange (broker+policy plus outbound token exchange:
// a token minted in process for every call) with broker+policy, and
// broker+audit-sync and broker+audit-async (broker+exchange writing its
// audit trail to a temporary directory, with sync or async durability)
// with broker+exchange, and broker+redis (broker+policy with storage.redis:
// every call asks a redis-server the benchmark starts whether its session
// has ended and spends its budget under a rate limit there) with
// broker+policy; the report's requires table says which. The audit paths
// also report, from the broker's metrics, the records the trail wrote per
// call and per fsync, and the Redis path, from the server's command
// counts, its round trips per call. broker+2026 is the plain broker with a
// client of protocol version 2026-07-28: no session, every call on its
// own, the broker keeping the upstream session the client's previous call
// opened for the next. broker+bridge is the plain broker serving a REST
// echo API as a tool (an mcpBridge app), and broker+bridge-exchange the
// same with OAuth, the policy and a token exchanged per call; both are
// compared with rest-direct, the same REST calls made without the broker.
//
// broker+redis extends broker+policy rather than broker+exchange because
// the embedded authorization server, which mints the exchanged tokens in
// process, keeps its state in storage.bolt, and a broker with
// storage.redis has none.
package bench
