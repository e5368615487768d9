package broker

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpbroker/mcpbroker/broker/config"
)

// With storage.redis, what replicas must share lives in Redis: the ended
// session ids, the rate limits' budgets, the Auth Provider's state and
// signing keys, resumable streams, and the answers and cancellations one
// replica hands another (StateBackends lists them with their keys).

// redisTimeouts bound one Redis request; a call waits no longer for its
// budget or its session.
const (
	redisDialTimeout = 2 * time.Second
	redisIOTimeout   = time.Second
)

// openRedis makes the Redis client storage.redis describes; nil without
// storage.redis. No connection is made until the first request: a Redis
// that is down at start is reported by the readiness check and by the
// calls that need it, and the broker serves once it is back.
func openRedis(cfg *config.Config, baseDir string, log *slog.Logger) (redis.UniversalClient, error) {
	r := cfg.Storage.Redis
	if r == nil {
		return nil, nil
	}
	// The client's own complaints (failed dials while Redis is down) go to
	// the broker's log, at debug: the calls that fail say it at their level.
	redis.SetLogger(redisLog{log})
	var tlsConfig *tls.Config
	if t := r.TLS; t != nil && t.Enabled {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
		if tlsConfig.ServerName == "" && len(r.Addresses) > 0 {
			tlsConfig.ServerName, _, _ = net.SplitHostPort(r.Addresses[0])
		}
		if t.CAFile != "" {
			roots, err := pemFiles{baseDir}.roots("storage.redis.tls.caFile", t.CAFile)
			if err != nil {
				return nil, err
			}
			tlsConfig.RootCAs = roots
		}
	}
	options := &redis.UniversalOptions{
		Addrs:                 r.Addresses,
		MasterName:            r.MasterName,
		Username:              r.Username,
		Password:              r.Password.Value(),
		DB:                    r.DB,
		TLSConfig:             tlsConfig,
		DialTimeout:           redisDialTimeout,
		ReadTimeout:           redisIOTimeout,
		WriteTimeout:          redisIOTimeout,
		ContextTimeoutEnabled: true,
		MaxRetries:            1,
	}
	if r.Cluster {
		return redis.NewClusterClient(options.Cluster()), nil
	}
	if r.MasterName != "" {
		return redis.NewFailoverClient(options.Failover()), nil
	}
	return redis.NewClient(options.Simple()), nil
}

// redisReady is the readiness check of Redis.
func redisReady(client redis.UniversalClient) func(context.Context) error {
	return func(ctx context.Context) error { return client.Ping(ctx).Err() }
}

// redisLog is the Redis client's log, in the broker's.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, args ...any) {
	l.log.DebugContext(ctx, "redis: "+fmt.Sprintf(format, args...))
}
