package history

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mcpbroker/mcpbroker/broker/limit/redistest"
)

// Both stores keep the last MaxCalls within the window, oldest first, per
// session, and bound every entry.
func TestStores(t *testing.T) {
	stores := map[string]func(t *testing.T) Store{
		"bolt": func(t *testing.T) Store {
			db, ctx := openTestBolt(t, nil)
			s, err := NewBolt(ctx, db, time.Hour, 3, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"redis": func(t *testing.T) Store {
			server := redistest.Start(t)
			return NewRedis(server.Client(), "test:")
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			ctx := context.Background()
			limits := Limits{MaxCalls: 3, Window: time.Hour}
			now := time.Now()
			for i := range 5 {
				e := Entry{Method: "tools/call", App: "records", Name: fmt.Sprintf("read_%d", i), Decision: Allowed, Time: now.Unix(), Labels: []string{"confidential"}}
				if err := s.Append(ctx, "session-a", e, limits); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Append(ctx, "session-b", Entry{Name: "send", Decision: Denied, Time: now.Unix()}, limits); err != nil {
				t.Fatal(err)
			}
			got, err := s.Read(ctx, "session-a", limits, now)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range got {
				names = append(names, e.Name)
			}
			if strings.Join(names, ",") != "read_2,read_3,read_4" {
				t.Errorf("session-a keeps %v, want the last three", names)
			}
			if other, _ := s.Read(ctx, "session-b", limits, now); len(other) != 1 || other[0].Name != "send" {
				t.Errorf("session-b: %+v", other)
			}
			if none, _ := s.Read(ctx, "session-c", limits, now); len(none) != 0 {
				t.Errorf("an unknown session has %+v", none)
			}
			// An hour later the window has passed.
			if later, _ := s.Read(ctx, "session-a", limits, now.Add(time.Hour+2*time.Second)); len(later) != 0 {
				t.Errorf("past the window: %+v", later)
			}
			// Entries are bounded however large the names and labels.
			huge := Entry{Name: strings.Repeat("n", 10000), Decision: Allowed, Time: now.Unix()}
			for i := range 100 {
				huge.Labels = append(huge.Labels, strings.Repeat("l", i%70+1))
			}
			if err := s.Append(ctx, "session-d", huge, limits); err != nil {
				t.Fatal(err)
			}
			got, _ = s.Read(ctx, "session-d", limits, now)
			if len(got) != 1 || len(got[0].Name) != MaxNameBytes || len(got[0].Labels) != MaxLabels {
				t.Errorf("a huge entry was kept as name %d B, %d labels", len(got[0].Name), len(got[0].Labels))
			}
		})
	}
}

// The bbolt store sweeps the entries of sessions that ended.
func TestBoltSweep(t *testing.T) {
	db, ctx := openTestBolt(t, nil)
	s, err := NewBolt(ctx, db, time.Minute, 10, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	limits := Limits{MaxCalls: 10, Window: time.Minute}
	old := time.Now().Add(-2 * time.Minute).Unix()
	for i := range 20 {
		_ = s.Append(ctx, fmt.Sprint("session-", i), Entry{Name: "x", Decision: Allowed, Time: old}, Limits{MaxCalls: 10, Window: time.Hour})
	}
	_ = s.Append(ctx, "live", Entry{Name: "x", Decision: Allowed, Time: time.Now().Unix()}, limits)
	n, err := s.(*boltStore).sweep()
	if err != nil || n != 20 {
		t.Fatalf("swept %d, %v; want the 20 old entries", n, err)
	}
	if live, _ := s.Read(ctx, "live", limits, time.Now()); len(live) != 1 {
		t.Errorf("the live session lost its entry")
	}
}

// A Redis that is down is ErrUnavailable, for the broker to refuse on.
func TestRedisDown(t *testing.T) {
	server := redistest.Start(t)
	s := NewRedis(server.Client(), "test:")
	server.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	limits := Limits{MaxCalls: 3, Window: time.Minute}
	if err := s.Append(ctx, "k", Entry{}, limits); !errors.Is(err, ErrUnavailable) {
		t.Errorf("append with Redis down: %v", err)
	}
	if _, err := s.Read(ctx, "k", limits, time.Now()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("read with Redis down: %v", err)
	}
}

func TestLabels(t *testing.T) {
	got := Labels([]Entry{
		{Decision: Allowed, Labels: []string{"confidential"}},
		{Decision: Denied, Labels: []string{"external"}},
		{Decision: ApprovalRequired, Labels: []string{"payments"}},
		{Decision: Failed, Labels: []string{"confidential", "pii"}},
	})
	if strings.Join(got, ",") != "confidential,pii" {
		t.Errorf("labels %v: want those of calls the policy let through", got)
	}
}

// The bbolt store decodes only what was written since its last read of a
// session; what it returns is what a store with nothing decoded reads,
// through appends, trims, the window and other sessions' entries.
func TestBoltReadsAsWritten(t *testing.T) {
	db, ctx := openTestBolt(t, nil)
	log := slog.New(slog.DiscardHandler)
	warm, _ := NewBolt(ctx, db, time.Hour, 5, log)
	limits := Limits{MaxCalls: 5, Window: time.Minute}
	start := time.Now()
	for i := range 40 {
		at := start.Add(time.Duration(i) * 10 * time.Second)
		for _, key := range []string{"a", "b", "a-1"} {
			e := Entry{Method: "tools/call", App: key, Name: fmt.Sprint(i), Decision: Allowed, Time: at.Unix()}
			if err := warm.Append(ctx, key, e, Limits{MaxCalls: 5 + i%3, Window: time.Hour}); err != nil {
				t.Fatal(err)
			}
		}
		if i%3 == 0 {
			continue // reads skip some appends
		}
		cold, _ := NewBolt(ctx, db, time.Hour, 5, log)
		for _, key := range []string{"a", "b", "a-1"} {
			got, err := warm.Read(ctx, key, limits, at)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := cold.Read(ctx, key, limits, at)
			if fmt.Sprint(got) != fmt.Sprint(want) || len(got) == 0 || got[len(got)-1].Name != fmt.Sprint(i) {
				t.Fatalf("after %d appends, %s reads %v, want %v", i+1, key, got, want)
			}
		}
	}
}

// The decoded histories the bbolt store keeps are bounded: reading twice
// as many sessions as it keeps leaves the live heap where reading as many
// as it keeps left it.
func TestBoltDecodedBounded(t *testing.T) {
	db, ctx := openTestBolt(t, &bolt.Options{NoSync: true})
	const maxCalls, perSession = 50, 40
	s, err := NewBolt(ctx, db, time.Hour, maxCalls, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	kept := maxDecodedEntries / maxCalls // sessions
	now := time.Now()
	// Written straight into the bucket, as Append would, in one go.
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		for i := range 2 * kept {
			for j := range perSession {
				e, _ := json.Marshal(Entry{Method: "tools/call", App: "records", Name: strings.Repeat("n", 100), Decision: Allowed, Time: now.Unix(), Labels: []string{"confidential", "pii"}})
				k := binary.BigEndian.AppendUint64(prefixOf(fmt.Sprintf("session-%06d", i)), uint64(j+1))
				if err := b.Put(k, append(binary.BigEndian.AppendUint64(nil, uint64(now.Unix())), e...)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	limits := Limits{MaxCalls: maxCalls, Window: time.Hour}
	live := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	// What the writing left behind goes first.
	_ = db.Update(func(*bolt.Tx) error { return nil })
	live()
	base := live()
	read := func(from, to int) {
		for i := from; i < to; i++ {
			if got, err := s.Read(ctx, fmt.Sprintf("session-%06d", i), limits, now); err != nil || len(got) != perSession {
				t.Fatalf("session %d: %d entries, %v", i, len(got), err)
			}
		}
	}
	read(0, kept)
	full := live()
	read(kept, 2*kept)
	after := live()
	grown := int64(full) - int64(base)
	if grown <= 0 {
		t.Fatalf("reading %d sessions kept nothing on the heap (%d B): the bound is not measured", kept, grown)
	}
	if extra := int64(after) - int64(full); extra > grown/4 {
		t.Errorf("reading %d more sessions grew the live heap by %d B, after %d B for the first %d: the decoded histories are not bounded", kept, extra, grown, kept)
	}
	t.Logf("%d sessions of %d entries: %d B live; %d more: %+d B", kept, perSession, grown, kept, int64(after)-int64(full))
}

// openTestBolt opens a bbolt file of the test's, closed when it ends, and a
// context that ends with it.
func openTestBolt(t *testing.T, opts *bolt.Options) (*bolt.DB, context.Context) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "h.db"), 0o600, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, t.Context()
}
