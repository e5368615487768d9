package authserver

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/mcpbroker/mcpbroker/exchange"
)

const (
	// sweepInterval is how often expired records are deleted.
	sweepInterval = 10 * time.Minute
	// sweepBatch bounds the deletions of one write transaction, so that a
	// sweep never holds the database's write lock for long.
	sweepBatch = 1000
	// revokedGrace keeps a revoked jti past its token's expiry for as long
	// as verifiers may still accept the token because of clock skew.
	revokedGrace = exchange.DefaultClockSkew
	// missingExpiry is how long a record whose expiry is unknown is kept.
	missingExpiry = 24 * time.Hour
)

// sweepEvery deletes expired records now and then every interval, until
// ctx is done.
func (s *store) sweepEvery(ctx context.Context, interval time.Duration, logger *slog.Logger) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		if deleted, err := s.sweep(s.now()); err != nil {
			logger.Error("authserver: sweeping expired records failed", slog.Any("error", err))
		} else if deleted > 0 {
			logger.Debug("authserver: swept expired records", slog.Int("deleted", deleted))
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// sweep deletes the codes, tokens and revocations that expired before now,
// and the registered clients that no token was issued to in time, and
// returns how many it deleted. Where records expire by themselves (Redis)
// only the clients are left to it.
func (s *store) sweep(now time.Time) (int, error) {
	deleted := 0
	if !s.kv.expires() {
		for _, bucket := range [][]byte{bucketCodes, bucketPKCE, bucketAccess, bucketRefresh, bucketApprovals, bucketApprovalBindings} {
			n, err := s.sweepRecords(bucket, now)
			deleted += n
			if err != nil {
				return deleted, err
			}
		}
		for _, deadlines := range []struct {
			bucket []byte
			grace  time.Duration
		}{{bucketRevoked, revokedGrace}, {bucketEnded, 0}, {bucketIDJAGSeen, 0}} {
			n, err := s.sweepDeadlines(deadlines.bucket, deadlines.grace, now)
			deleted += n
			if err != nil {
				return deleted, err
			}
		}
	}
	n, err := s.sweepUnusedClients(now)
	return deleted + n, err
}

// sweepUnusedClients deletes the registered clients that no token was
// issued to before their UnusedUntil.
func (s *store) sweepUnusedClients(now time.Time) (int, error) {
	var unused []string
	err := s.kv.view(func(tx kvTx) error {
		return tx.forEach(bucketClients, func(id string, raw []byte) error {
			if !bytes.Contains(raw, []byte(`"unused_until"`)) {
				return nil
			}
			var c client
			if json.Unmarshal(raw, &c) == nil && c.unused(now) {
				unused = append(unused, id)
			}
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	deleted := 0
	for start := 0; start < len(unused); start += sweepBatch {
		n, err := s.deleteUnusedClients(unused[start:min(start+sweepBatch, len(unused))], now)
		deleted += n
		if err != nil {
			return deleted, err
		}
	}
	return deleted, nil
}

// expiredRecord is the part of a record a sweep reads.
type expiredRecord struct {
	signature string
	requestID string
}

func (s *store) sweepRecords(bucket []byte, now time.Time) (int, error) {
	var kind byte
	switch {
	case bytes.Equal(bucket, bucketAccess):
		kind = kindAccess
	case bytes.Equal(bucket, bucketRefresh):
		kind = kindRefresh
	}
	deleted := 0
	for {
		var expired []expiredRecord
		err := s.kv.view(func(tx kvTx) error {
			return tx.forEach(bucket, func(key string, raw []byte) error {
				if len(expired) >= sweepBatch {
					return errBatchFull
				}
				var rec struct {
					ID          string    `json:"id"`
					RequestedAt time.Time `json:"requested_at"`
					Expires     time.Time `json:"expires"`
				}
				if json.Unmarshal(raw, &rec) != nil {
					expired = append(expired, expiredRecord{signature: key})
					return nil
				}
				expires := rec.Expires
				if expires.IsZero() {
					expires = rec.RequestedAt.Add(missingExpiry)
				}
				if expires.Before(now) {
					expired = append(expired, expiredRecord{signature: key, requestID: rec.ID})
				}
				return nil
			})
		})
		if errors.Is(err, errBatchFull) {
			err = nil
		}
		if err != nil || len(expired) == 0 {
			return deleted, err
		}
		err = s.kv.update(func(tx kvTx) error {
			for _, rec := range expired {
				if err := tx.del(bucket, rec.signature); err != nil {
					return err
				}
				if kind != 0 {
					if err := tx.removeMember(bucketGrants, grantSet(kind, rec.requestID), rec.signature); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return deleted, err
		}
		deleted += len(expired)
		if len(expired) < sweepBatch {
			return deleted, nil
		}
	}
}

// errBatchFull stops a walk over a bucket once a batch is full.
var errBatchFull = errors.New("authserver: sweep batch full")

// sweepDeadlines deletes the records of a bucket whose values are
// deadlines (unix seconds, big endian) that passed grace before now.
func (s *store) sweepDeadlines(bucket []byte, grace time.Duration, now time.Time) (int, error) {
	var expired []string
	err := s.kv.view(func(tx kvTx) error {
		return tx.forEach(bucket, func(key string, value []byte) error {
			if len(value) != 8 || time.Unix(int64(binary.BigEndian.Uint64(value)), 0).Add(grace).Before(now) {
				expired = append(expired, key)
			}
			return nil
		})
	})
	if err != nil || len(expired) == 0 {
		return 0, err
	}
	for start := 0; start < len(expired); start += sweepBatch {
		batch := expired[start:min(start+sweepBatch, len(expired))]
		err := s.kv.update(func(tx kvTx) error {
			for _, key := range batch {
				if err := tx.del(bucket, key); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return start, err
		}
	}
	return len(expired), nil
}
