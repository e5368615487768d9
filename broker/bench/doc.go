// Package bench owns the data-path benchmarks: the same MCP load sent
// directly to an upstream server, through a bare reverse proxy, and through
// the broker, measured in one run so the numbers compare.
//
// Everything runs in one process: the upstream (the official Go SDK), the
// hop under test and a minimal Streamable HTTP client. Allocation counts
// therefore cover the whole process, and the difference between a path and
// "direct" is what that hop costs per call.
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
// counts, its round trips per call.
//
// broker+redis extends broker+policy rather than broker+exchange because
// the embedded authorization server, which mints the exchanged tokens in
// process, keeps its state in storage.bolt, and a broker with
// storage.redis has none.
package bench
