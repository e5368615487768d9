package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpbroker/mcpbroker/provider"
)

// Upstream sessions open at a client session's first request that needs
// the app, not at its initialize. Those opened at initialize are sealed
// into the session id; those opened later cannot be, so replicas sharing
// Redis record them there: the first replica to open one for a client
// session records its id, the others go on with it instead of opening
// their own. Without Redis a session is served by one process, which
// holds them in memory.

// upstreamRefs records the upstream sessions client sessions opened after
// their initialize, in Redis under <prefix>upstreams:<session hash>, a
// hash of app name to the upstream session's id and protocol version.
type upstreamRefs struct {
	client redis.UniversalClient
	prefix string
	// ttl keeps a record as long as an idle session lives, renewed by
	// every upstream session opened for it; a record of an ended session
	// goes with it.
	ttl time.Duration
}

// upstreamRefsTTL is how long a record outlives its last write when
// sessions never expire for idleness.
const upstreamRefsTTL = 24 * time.Hour

func newUpstreamRefs(client redis.UniversalClient, prefix string, sessionTimeout time.Duration) *upstreamRefs {
	if client == nil {
		return nil
	}
	ttl := upstreamRefsTTL
	if sessionTimeout > 0 {
		ttl = 2 * sessionTimeout
	}
	return &upstreamRefs{client: client, prefix: prefix, ttl: ttl}
}

// key names a client session's record by a full hash of its id, which is
// a bearer of the session and never stored.
func (r *upstreamRefs) key(sessionID string) string {
	sum := sha256.Sum256([]byte(sessionID))
	return r.prefix + "upstreams:" + hex.EncodeToString(sum[:])
}

// get returns the upstream session another replica opened for the client
// session and app.
func (r *upstreamRefs) get(ctx context.Context, sessionID, app string) (provider.UpstreamRef, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, redisIOTimeout)
	defer cancel()
	raw, err := r.client.HGet(ctx, r.key(sessionID), app).Bytes()
	if errors.Is(err, redis.Nil) {
		return provider.UpstreamRef{}, false, nil
	}
	if err != nil {
		return provider.UpstreamRef{}, false, err
	}
	var ref provider.UpstreamRef
	if err := json.Unmarshal(raw, &ref); err != nil || ref.ID == "" {
		return provider.UpstreamRef{}, false, nil
	}
	return ref, true, nil
}

// claim records ref as the client session's upstream session with app,
// unless another replica recorded one first: then that one is returned,
// with won false.
func (r *upstreamRefs) claim(ctx context.Context, sessionID, app string, ref provider.UpstreamRef) (provider.UpstreamRef, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, redisIOTimeout)
	defer cancel()
	raw, _ := json.Marshal(ref)
	key := r.key(sessionID)
	var set *redis.BoolCmd
	var current *redis.StringCmd
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		set = p.HSetNX(ctx, key, app, raw)
		current = p.HGet(ctx, key, app)
		p.Expire(ctx, key, r.ttl)
		return nil
	})
	if err != nil {
		return ref, false, err
	}
	if set.Val() {
		return ref, true, nil
	}
	var theirs provider.UpstreamRef
	if err := json.Unmarshal([]byte(current.Val()), &theirs); err != nil || theirs.ID == "" {
		return ref, false, errors.New("broker: malformed upstream session record")
	}
	return theirs, false, nil
}

// apps names the apps whose upstream sessions replicas recorded for the
// client session.
func (r *upstreamRefs) apps(ctx context.Context, sessionID string) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, redisIOTimeout)
	defer cancel()
	names, err := r.client.HKeys(ctx, r.key(sessionID)).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(names))
	for _, name := range names {
		out[name] = true
	}
	return out, nil
}
