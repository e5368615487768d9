// Package limit bounds what clients can make the broker hold and do: open
// connections in all and per client address, how long a request body may
// take to arrive, how often a key (an agent, a user, an app) may call
// (Rate, Limiter: in memory for one node, in Redis for replicas that share
// one budget), and how many calls for a key may be in flight at once
// (Concurrency).
//
// Rate limits use the generic cell rate algorithm (GCRA); see Limiter for
// the algorithm and RedisLimiter for the Redis key layout.
package limit
