package history

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucket holds the entries: key the session's key, NUL, and the bucket's
// sequence number big-endian, so that a session's entries are adjacent and
// in order; value the Entry in JSON.
var bucket = []byte("history")

// sweepInterval is how often entries past every window are deleted.
const sweepInterval = time.Minute

type boltStore struct {
	db  *bolt.DB
	now func() time.Time
	// window is the longest window asked of the store, for the sweep.
	window time.Duration
}

// NewBolt keeps the histories in db, which the caller opens and closes;
// until ctx ends, entries older than window are swept every minute.
func NewBolt(ctx context.Context, db *bolt.DB, window time.Duration, log *slog.Logger) (Store, error) {
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	s := &boltStore{db: db, now: time.Now, window: window}
	go s.sweepEvery(ctx, sweepInterval, log)
	return s, nil
}

func prefixOf(key string) []byte { return []byte(key + "\x00") }

func (s *boltStore) Append(_ context.Context, key string, e Entry, limits Limits) error {
	value, err := json.Marshal(Bounded(e))
	if err != nil {
		return err
	}
	prefix := prefixOf(key)
	oldest := s.now().Add(-limits.Window).Unix()
	// Batch commits the appends of parallel calls together.
	err = s.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		k := binary.BigEndian.AppendUint64(bytes.Clone(prefix), seq)
		if err := b.Put(k, value); err != nil {
			return err
		}
		// Newest first: keep MaxCalls within the window, delete the rest.
		var drop [][]byte
		kept := 0
		c := b.Cursor()
		for at, v := c.Seek(k); at != nil && bytes.HasPrefix(at, prefix); at, v = c.Prev() {
			var old Entry
			if kept >= limits.MaxCalls || json.Unmarshal(v, &old) != nil || old.Time < oldest {
				drop = append(drop, bytes.Clone(at))
				continue
			}
			kept++
		}
		for _, k := range drop {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

func (s *boltStore) Read(_ context.Context, key string, limits Limits, now time.Time) ([]Entry, error) {
	prefix := prefixOf(key)
	var entries []Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("entry %x: %w", k, err)
			}
			entries = append(entries, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return within(entries, limits, now), nil
}

// sweepEvery deletes, every interval until ctx ends, the entries older than
// the window: those of sessions that ended without a further call.
func (s *boltStore) sweepEvery(ctx context.Context, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := s.sweep(); err != nil {
				log.Warn("session history: sweeping old entries failed", "error", err)
			} else if n > 0 {
				log.Debug("session history: swept old entries", "entries", n)
			}
		}
	}
}

func (s *boltStore) sweep() (int, error) {
	oldest := s.now().Add(-s.window).Unix()
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		var drop [][]byte
		err := b.ForEach(func(k, v []byte) error {
			var e Entry
			if json.Unmarshal(v, &e) != nil || e.Time < oldest {
				drop = append(drop, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range drop {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(drop)
		return nil
	})
	return n, err
}
