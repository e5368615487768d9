package provider

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisTimeout bounds one request to Redis for a session.
const redisTimeout = 2 * time.Second

// NewRedisRevocations keeps ended session ids in Redis, where every
// replica sees them: one key per id (a digest of it, never the id), which
// Redis expires when the id would have expired anyway.
func NewRedisRevocations(client redis.UniversalClient, keyPrefix string) Revocations {
	return &redisRevocations{client: client, prefix: keyPrefix + "ended:"}
}

type redisRevocations struct {
	client redis.UniversalClient
	prefix string
}

func (r *redisRevocations) key(id string) string { return r.prefix + hex.EncodeToString(endedKey(id)) }

func (r *redisRevocations) Revoke(id string, until time.Time) error {
	ttl := time.Until(until)
	if ttl <= 0 {
		return nil // expired anyway
	}
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	if err := r.client.Set(ctx, r.key(id), "1", ttl).Err(); err != nil {
		return fmt.Errorf("provider: ended sessions in redis: %w", err)
	}
	return nil
}

func (r *redisRevocations) Revoked(id string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	n, err := r.client.Exists(ctx, r.key(id)).Result()
	if err != nil {
		return false, fmt.Errorf("provider: ended sessions in redis: %w", err)
	}
	return n == 1, nil
}

// Forget does nothing: Redis expires the keys.
func (r *redisRevocations) Forget(time.Time) {}
