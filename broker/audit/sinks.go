package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
)

// StdoutSink writes each record as one JSON line to a writer, for a log
// collector that reads the broker's output. It is not chained: seq and
// prev are whatever the trail set before it.
type StdoutSink struct {
	mu  sync.Mutex
	out io.Writer
	buf []byte
}

var _ Sink = (*StdoutSink)(nil)

// NewStdoutSink writes to out (os.Stdout, typically).
func NewStdoutSink(out io.Writer) *StdoutSink { return &StdoutSink{out: out} }

// Write writes r as one line.
func (s *StdoutSink) Write(_ context.Context, r *Record) error {
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("audit: encode record: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = append(append(s.buf[:0], line...), '\n')
	if _, err := s.out.Write(s.buf); err != nil {
		return fmt.Errorf("audit: write record: %w", err)
	}
	return nil
}

// Close does nothing: the writer belongs to the caller.
func (s *StdoutSink) Close() error { return nil }

// MultiSink writes each record to a primary sink (the trail), whose error
// is the caller's to act on, and then, best effort, to the others: their
// errors are counted and logged, never returned.
type MultiSink struct {
	primary  Sink
	others   []Sink
	logger   *slog.Logger
	failures atomic.Uint64
	onError  func(err error)
}

var _ Sink = (*MultiSink)(nil)

// MultiOptions configures Multi; nil fields mean none.
type MultiOptions struct {
	// Logger receives the errors of the other sinks.
	Logger *slog.Logger
	// OnError is called with each error of the other sinks (a metric).
	OnError func(err error)
}

// Multi fans records out: primary first, then others. A record the
// primary refused is not passed on: the others hold what the trail holds.
func Multi(options MultiOptions, primary Sink, others ...Sink) *MultiSink {
	logger := options.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &MultiSink{primary: primary, others: others, logger: logger, onError: options.OnError}
}

// Write writes r to the primary and returns its error; the others get r
// only once the primary has it.
func (m *MultiSink) Write(ctx context.Context, r *Record) error {
	if err := m.primary.Write(ctx, r); err != nil {
		return err
	}
	for _, sink := range m.others {
		if err := sink.Write(ctx, r); err != nil {
			m.failures.Add(1)
			m.logger.Warn("audit: a secondary sink refused a record", "sink", fmt.Sprintf("%T", sink), "error", err)
			if m.onError != nil {
				m.onError(err)
			}
		}
	}
	return nil
}

// Failures is the number of records the other sinks refused.
func (m *MultiSink) Failures() uint64 { return m.failures.Load() }

// Close closes every sink, the primary first: it is the one that must
// not be kept waiting by a slow collector.
func (m *MultiSink) Close() error {
	errs := []error{m.primary.Close()}
	for _, sink := range m.others {
		errs = append(errs, sink.Close())
	}
	return errors.Join(errs...)
}
