package history

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	bolt "go.etcd.io/bbolt"
)

// bucket holds the entries: key the session's key, NUL, and the bucket's
// sequence number big-endian, so that a session's entries are adjacent and
// in order; value the entry's time (unix seconds, 8 bytes big-endian),
// then the Entry in JSON: bounds are kept without decoding entries.
var bucket = []byte("history")

// sweepInterval is how often entries past every window are deleted.
const sweepInterval = time.Minute

type boltStore struct {
	db  *bolt.DB
	now func() time.Time
	// window is the longest window asked of the store, for the sweep.
	window time.Duration
	// decoded keeps the entries of recent sessions as read, by session:
	// entries never change once written, so a read decodes only those
	// written since the last.
	decoded *lru.Cache[string, *decodedHistory]
}

// decodedHistory is a session's entries as last read, oldest first, with
// their sequence numbers.
type decodedHistory struct {
	seqs    []uint64
	entries []Entry
}

// batchDelay is how long an append waits for others to commit with; the
// history is the only user of the database's batches.
const batchDelay = 2 * time.Millisecond

// maxDecodedEntries bounds the entries the decoded histories hold in all.
const maxDecodedEntries = 100_000

// NewBolt keeps the histories in db, which the caller opens and closes;
// until ctx ends, entries older than window are swept every minute. It
// keeps the decoded entries of as many recent sessions as hold
// maxDecodedEntries at maxCalls each.
func NewBolt(ctx context.Context, db *bolt.DB, window time.Duration, maxCalls int, log *slog.Logger) (Store, error) {
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	// The appends of parallel calls are committed together (Batch), after
	// at most batchDelay: each call's answer waits for its commit.
	db.MaxBatchDelay = batchDelay
	sessions := min(max(maxDecodedEntries/max(maxCalls, 1), 16), 4096)
	decoded, _ := lru.New[string, *decodedHistory](sessions)
	s := &boltStore{db: db, now: time.Now, window: window, decoded: decoded}
	go s.sweepEvery(ctx, sweepInterval, log)
	return s, nil
}

func prefixOf(key string) []byte { return []byte(key + "\x00") }

func (s *boltStore) Append(_ context.Context, key string, e Entry, limits Limits) error {
	encoded, err := json.Marshal(Bounded(e))
	if err != nil {
		return err
	}
	value := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(encoded)), uint64(e.Time))
	value = append(value, encoded...)
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
			if kept >= limits.MaxCalls || timeOf(v) < oldest {
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
	oldest := now.Add(-limits.Window).Unix()
	known, _ := s.decoded.Get(key)
	var seqs []uint64
	var entries []Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		seqs, entries = seqs[:0], entries[:0]
		// Newest first, as far as the bounds reach; what was decoded
		// before is taken as it was.
		c := tx.Bucket(bucket).Cursor()
		k, v := c.Seek(binary.BigEndian.AppendUint64(bytes.Clone(prefix), math.MaxUint64))
		if k == nil {
			k, v = c.Last()
		} else if !bytes.Equal(k, binary.BigEndian.AppendUint64(bytes.Clone(prefix), math.MaxUint64)) {
			k, v = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix) && len(entries) < limits.MaxCalls; k, v = c.Prev() {
			if timeOf(v) < oldest {
				break
			}
			seq := binary.BigEndian.Uint64(k[len(prefix):])
			if known != nil && len(known.seqs) > 0 && seq <= known.seqs[len(known.seqs)-1] {
				for i := len(known.seqs) - 1; i >= 0 && len(entries) < limits.MaxCalls; i-- {
					if known.seqs[i] > seq {
						continue
					}
					if known.entries[i].Time < oldest {
						break
					}
					seqs, entries = append(seqs, known.seqs[i]), append(entries, known.entries[i])
				}
				break
			}
			var e Entry
			if len(v) < 8 || json.Unmarshal(v[8:], &e) != nil {
				return fmt.Errorf("entry %x is not one", k)
			}
			seqs, entries = append(seqs, seq), append(entries, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	slices.Reverse(seqs)
	slices.Reverse(entries)
	s.decoded.Add(key, &decodedHistory{seqs: seqs, entries: entries})
	return entries, nil
}

// timeOf is the time of an entry's value; 0 for a value too short to be
// one, which the bounds then drop.
func timeOf(v []byte) int64 {
	if len(v) < 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
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
			if timeOf(v) < oldest {
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
