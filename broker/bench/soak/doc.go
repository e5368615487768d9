// Package soak owns the soak test of replicas: three mcpbroker processes
// sharing Redis and a session key serve a steady load for a long time,
// while their resident memory and goroutines are read from their admin
// listeners every minute. Leaks that no short test sees (sessions ended
// on another replica, upstream sessions, Redis connections, timers) show
// as growth there.
//
// The load is sessions that each spread their requests round-robin over
// the replicas: tools/call, tools/list and ping at a fixed total rate,
// each session ended by DELETE after a while and replaced by a new one;
// after every DELETE another replica must refuse the session. The test
// fails on any unexpected answer, if a replica does not exit 0 when
// stopped by SIGTERM, and if from minute 2 (the warm-up excluded) to the
// end a replica's goroutines grew by more than 20 % (and by more than 5,
// the calls in flight) or its resident memory by more than 30 %.
//
// It runs only through `make soak` (MCPBROKER_SOAK=1), never in `make
// test`, and only on Linux, where the process metrics come from /proc:
//
//	make soak                                    # 200 calls/s for 10 minutes
//	make soak SOAK_RATE=500 SOAK_DURATION=1h SOAK_TIMEOUT=70m
package soak
