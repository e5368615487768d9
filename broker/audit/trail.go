package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"
)

// Durability says when Trail.Write returns.
type Durability int

const (
	// Sync returns once the record is on disk (written and fsynced with
	// its batch). It is the default.
	Sync Durability = iota
	// Async returns once the record is queued; a crash loses what is
	// queued, and write errors reach only Observe and the log.
	Async
)

// MaxLineBytes caps one record's line. Write refuses larger records with
// ErrRecordTooLarge; Verify reports longer lines as bad records.
const MaxLineBytes = 1 << 20

// CheckpointType is the typ header of checkpoint signatures.
const CheckpointType = "audit-checkpoint"

// Trail events, in KindTrail records the trail writes about itself.
const (
	EventRecovered  = "trail.recovered"  // a torn last line was cut at open
	EventFault      = "trail.fault"      // records were refused since the last record written
	EventCheckpoint = "trail.checkpoint" // the event of KindCheckpoint records
)

const (
	defaultMaxFileBytes       = 100 << 20
	defaultMaxFileAge         = 24 * time.Hour
	defaultQueueSize          = 10000
	defaultQueueBytes         = 64 << 20
	defaultCheckpointEvery    = 1000
	defaultCheckpointInterval = time.Minute

	maxBatch   = 4096    // records written between two fsyncs at most
	flushBytes = 1 << 20 // a batch is handed to the kernel in pieces this large

	// seqPlaceholder is what a record with Seq 0 and Prev "" holds in its
	// JSON; the writer replaces it with the real seq and prev.
	seqPlaceholder = `"seq":0,"prev":""`
	// spliceGrowth is how much longer the line gets: up to 20 digits for
	// seq, 64 hex digits for prev.
	spliceGrowth = 20 - 1 + 64
)

// TrailOptions configures a Trail; zero values mean the defaults.
type TrailOptions struct {
	// Dir holds the trail files; it is created with mode 0700, files with
	// 0600.
	Dir string
	// MaxFileBytes starts a new file once a file would grow beyond it.
	// Default 100 MiB.
	MaxFileBytes int64
	// MaxFileAge starts a new file once a file is this old. Default 24h.
	MaxFileAge time.Duration
	// Durability is Sync (the default) or Async.
	Durability Durability
	// QueueSize bounds the records waiting to be written; Write blocks
	// while the queue is full, until its context ends. Default 10000.
	QueueSize int
	// QueueBytes bounds the bytes waiting to be written, the same way.
	// Default 64 MiB; never less than MaxLineBytes.
	QueueBytes int64
	// CheckpointEvery writes a checkpoint after this many records.
	// Default 1000.
	CheckpointEvery int
	// CheckpointInterval writes a checkpoint this often when records came
	// since the last one. Default 1m.
	CheckpointInterval time.Duration
	// Signer signs checkpoints; nil writes them unsigned.
	Signer Signer
	// Observe, when set, is called by the writer after each batch: the
	// records in it (0 for a batch of the trail's own records, such as a
	// checkpoint), the time fsync took, and the error that refused it.
	Observe func(batch int, fsync time.Duration, err error)
	// FileSystem is where the files are; nil means the operating system's.
	FileSystem FileSystem
	// Logger receives write errors; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Trail is the durable sink: an append-only, hash-chained JSON Lines trail
// in a directory, written by one goroutine that commits queued records in
// batches with one fsync each. See the package documentation for the
// format.
type Trail struct {
	options TrailOptions
	fsys    FileSystem
	logger  *slog.Logger
	now     func() time.Time

	queue         chan *pending
	budget        byteBudget
	closing       context.Context // done once Close begins
	cancelClosing context.CancelFunc
	door          sync.RWMutex // Write holds it shared while enqueuing; Close shuts it once
	closed        bool
	stop          chan struct{} // tells the writer to drain and finish
	finished      chan struct{}
	closeOnce     sync.Once
	closeErr      error
	lock          io.Closer

	// Owned by the writer goroutine (and by OpenTrail before it starts).
	file            File
	fileSize        int64 // bytes of file known to be on disk
	fileCreated     time.Time
	needDirSync     bool // the file was created but the directory not yet synced
	dirty           bool // file may hold bytes past fileSize from a failed batch
	seq             uint64
	prev            string
	sinceCheckpoint int
	unwritten       int   // records refused since the last batch written
	fault           error // the first reason they were refused
	buf             []byte
}

// pending is one record on its way to disk.
type pending struct {
	line []byte     // the record's JSON with seqPlaceholder
	done chan error // Sync writes wait on it
	seq  uint64     // set before done is sent nil
	prev string
}

var _ Sink = (*Trail)(nil)

// OpenTrail opens the trail in options.Dir, continuing the chain of the
// newest file (a torn last line left by a crash is cut off and reported in
// a trail.recovered record), and starts its writer.
func OpenTrail(options TrailOptions) (*Trail, error) {
	if options.Dir == "" {
		return nil, errors.New("audit: trail directory not set")
	}
	if options.MaxFileBytes <= 0 {
		options.MaxFileBytes = defaultMaxFileBytes
	}
	if options.MaxFileAge <= 0 {
		options.MaxFileAge = defaultMaxFileAge
	}
	if options.QueueSize <= 0 {
		options.QueueSize = defaultQueueSize
	}
	if options.QueueBytes <= 0 {
		options.QueueBytes = defaultQueueBytes
	}
	options.QueueBytes = max(options.QueueBytes, MaxLineBytes)
	if options.CheckpointEvery <= 0 {
		options.CheckpointEvery = defaultCheckpointEvery
	}
	if options.CheckpointInterval <= 0 {
		options.CheckpointInterval = defaultCheckpointInterval
	}
	t := &Trail{
		options:  options,
		fsys:     options.FileSystem,
		logger:   options.Logger,
		now:      options.Now,
		queue:    make(chan *pending, options.QueueSize),
		budget:   newByteBudget(options.QueueBytes),
		stop:     make(chan struct{}),
		finished: make(chan struct{}),
	}
	if t.fsys == nil {
		t.fsys = OSFileSystem{}
	}
	if t.logger == nil {
		t.logger = slog.New(slog.DiscardHandler)
	}
	if t.now == nil {
		t.now = time.Now
	}
	t.closing, t.cancelClosing = context.WithCancel(context.Background())
	if err := t.fsys.MkdirAll(options.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: create trail directory: %w", err)
	}
	if l, ok := t.fsys.(locker); ok {
		lock, err := l.Lock(options.Dir)
		if err != nil {
			return nil, err
		}
		t.lock = lock
	}
	recovered, err := t.resume()
	if err == nil && recovered != nil {
		err = t.writeNow(recovered)
	}
	if err != nil {
		if t.file != nil {
			t.file.Close()
		}
		if t.lock != nil {
			t.lock.Close()
		}
		return nil, err
	}
	go t.run()
	return t, nil
}

// Write appends r to the trail: with Sync durability it returns once r is
// on disk, with Async once it is queued. It sets r.ID when empty and
// r.Time when zero; with Sync it sets r.Seq and r.Prev once written. The
// trail keeps its own copy, so r may be reused after Write returns. When
// the queue is full Write waits until ctx ends. An error means the record
// is not known to be written (disk full, permission, closed, too large).
func (t *Trail) Write(ctx context.Context, r *Record) error {
	if r.ID == "" {
		r.ID = newID()
	}
	if r.Time.IsZero() {
		r.Time = t.now()
	}
	line, err := encodeRecord(r)
	if err != nil {
		return err
	}
	p := &pending{line: line}
	if t.options.Durability == Sync {
		p.done = make(chan error, 1)
	}
	if err := t.enqueue(ctx, p); err != nil {
		return err
	}
	if p.done == nil {
		return nil
	}
	select {
	case err := <-p.done:
		if err == nil {
			r.Seq, r.Prev = p.seq, p.prev
		}
		return err
	case <-ctx.Done():
		return fmt.Errorf("audit: record not known to be written: %w", context.Cause(ctx))
	}
}

// encodeRecord marshals r with the seq placeholder, in UTC.
func encodeRecord(r *Record) ([]byte, error) {
	record := *r
	record.Time = record.Time.UTC()
	record.Seq, record.Prev = 0, ""
	line, err := json.Marshal(&record)
	if err != nil {
		return nil, fmt.Errorf("audit: encode record: %w", err)
	}
	if len(line)+spliceGrowth > MaxLineBytes {
		return nil, fmt.Errorf("%w: %d bytes", ErrRecordTooLarge, len(line))
	}
	return line, nil
}

func (t *Trail) enqueue(ctx context.Context, p *pending) error {
	t.door.RLock()
	defer t.door.RUnlock()
	if t.closed {
		return ErrClosed
	}
	size := int64(len(p.line))
	if err := t.budget.acquire(ctx, t.closing.Done(), size); err != nil {
		return err
	}
	select {
	case t.queue <- p: // room: taken whatever the state of ctx
		return nil
	default:
	}
	select {
	case t.queue <- p:
		return nil
	case <-ctx.Done():
		t.budget.release(size)
		return fmt.Errorf("audit: queue full: %w", context.Cause(ctx))
	case <-t.closing.Done():
		t.budget.release(size)
		return ErrClosed
	}
}

// QueueDepth is the number of records waiting to be written.
func (t *Trail) QueueDepth() int { return len(t.queue) }

// Close writes what is queued and a final checkpoint, and closes the
// file. Writes that begin after Close return ErrClosed. It returns the
// error of that last write, if any.
func (t *Trail) Close() error {
	t.closeOnce.Do(func() {
		t.cancelClosing()
		t.door.Lock()
		t.closed = true
		t.door.Unlock()
		close(t.stop)
		<-t.finished
		if t.lock != nil {
			t.closeErr = errors.Join(t.closeErr, t.lock.Close())
		}
	})
	return t.closeErr
}

// run is the writer: it takes what is queued, up to maxBatch records, and
// commits it with one fsync.
func (t *Trail) run() {
	defer close(t.finished)
	ticker := time.NewTicker(t.options.CheckpointInterval)
	defer ticker.Stop()
	batch := make([]*pending, 0, maxBatch)
	for {
		select {
		case p := <-t.queue:
			batch = t.collect(append(batch[:0], p))
			t.commit(batch, false)
		case <-ticker.C:
			// A checkpoint when records came since; while writes fail, the
			// fault's note, so that Observe hears when the disk is back
			// even if no record comes.
			if t.sinceCheckpoint > 0 || t.unwritten > 0 {
				t.commit(nil, true)
			}
		case <-t.stop:
			for {
				batch = t.collect(batch[:0])
				if len(batch) == 0 {
					break
				}
				t.commit(batch, false)
			}
			var err error
			if t.sinceCheckpoint > 0 {
				err = t.commit(nil, true)
			}
			if t.file != nil {
				err = errors.Join(err, t.file.Close())
				t.file = nil
			}
			t.closeErr = err
			return
		}
	}
}

// collect adds to batch what is queued without waiting.
func (t *Trail) collect(batch []*pending) []*pending {
	for len(batch) < maxBatch {
		select {
		case p := <-t.queue:
			batch = append(batch, p)
		default:
			return batch
		}
	}
	return batch
}

// writeNow commits one record the trail writes about itself before its
// writer runs.
func (t *Trail) writeNow(r *Record) error {
	r.ID, r.Time = newID(), t.now()
	line, err := encodeRecord(r)
	if err != nil {
		return err
	}
	return t.commit([]*pending{{line: line}}, false)
}

// commit writes batch, and a checkpoint when one is due (or forced and
// records came since), syncing once per file it touches. Each record's
// waiter learns the outcome.
func (t *Trail) commit(batch []*pending, forceCheckpoint bool) error {
	var fsync time.Duration
	var err error
	records := len(batch)
	queued := int64(0)
	for _, p := range batch {
		queued += int64(len(p.line))
	}
	synced := false
	for first := true; first || len(batch) > 0; first = false {
		var n int
		var took time.Duration
		var wrote bool
		n, took, wrote, err = t.segment(batch, forceCheckpoint)
		fsync += took
		synced = synced || wrote
		if err != nil {
			break
		}
		for _, p := range batch[:n] {
			if p.done != nil {
				p.done <- nil
			}
		}
		batch = batch[n:]
	}
	if err != nil {
		err = fmt.Errorf("audit: write %s: %w", t.options.Dir, err)
		if t.unwritten == 0 {
			t.fault = err
		}
		t.unwritten += len(batch)
		for _, p := range batch {
			if p.done != nil {
				p.done <- err
			}
		}
		t.logger.Error("audit: records not written", "records", len(batch), "error", err)
	}
	t.budget.release(queued)
	if t.options.Observe != nil && (records > 0 || err != nil || synced) {
		t.options.Observe(records, fsync, err)
	}
	return err
}

// segment writes the part of batch that fits in the current file and
// syncs it. It returns how many records of batch it wrote, the time fsync
// took and whether anything was written; on error none of it counts and
// the chain is where it was.
func (t *Trail) segment(batch []*pending, forceCheckpoint bool) (int, time.Duration, bool, error) {
	next := 0
	if len(batch) > 0 {
		next = len(batch[0].line) + spliceGrowth
	}
	if err := t.ready(next); err != nil {
		return 0, 0, false, err
	}
	seq, prev, since := t.seq, t.prev, t.sinceCheckpoint
	buf := t.buf[:0]
	written := int64(0)
	add := func(line []byte) {
		start := len(buf)
		seq++
		at := bytes.Index(line, []byte(seqPlaceholder))
		buf = append(buf, line[:at]...)
		buf = append(buf, `"seq":`...)
		buf = strconv.AppendUint(buf, seq, 10)
		buf = append(buf, `,"prev":"`...)
		buf = append(buf, prev...)
		buf = append(buf, '"')
		buf = append(buf, line[at+len(seqPlaceholder):]...)
		sum := sha256.Sum256(buf[start:])
		prev = hex.EncodeToString(sum[:])
		buf = append(buf, '\n')
	}
	checkpoint := func() error {
		line, err := t.checkpointLine(seq+1, prev)
		if err != nil {
			return err
		}
		add(line)
		since = 0
		return nil
	}
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		t.dirty = true
		n, err := t.file.Write(buf)
		written += int64(n)
		buf = buf[:0]
		return err
	}
	if t.unwritten > 0 {
		line, err := encodeRecord(&Record{
			Time:   t.now(),
			ID:     newID(),
			Kind:   KindTrail,
			Event:  EventFault,
			Detail: fmt.Sprintf("%d records were not written: %v", t.unwritten, t.fault),
		})
		if err != nil {
			return 0, 0, false, err
		}
		add(line)
		since++
	}
	n := 0
	for n < len(batch) {
		p := batch[n]
		if n > 0 && t.fileSize+written+int64(len(buf)+len(p.line)+spliceGrowth) > t.options.MaxFileBytes {
			break // the rest goes to the next file
		}
		p.seq, p.prev = seq+1, prev
		add(p.line)
		n++
		if since++; since >= t.options.CheckpointEvery {
			if err := checkpoint(); err != nil {
				return 0, 0, false, err
			}
		}
		if len(buf) >= flushBytes {
			if err := flush(); err != nil {
				return 0, 0, false, err
			}
		}
	}
	if forceCheckpoint && n == len(batch) && since > 0 {
		if err := checkpoint(); err != nil {
			return 0, 0, false, err
		}
	}
	if err := flush(); err != nil {
		return 0, 0, false, err
	}
	if written == 0 {
		return n, 0, false, nil
	}
	started := time.Now()
	err := t.file.Sync()
	took := time.Since(started)
	if err != nil {
		return 0, took, false, err
	}
	t.buf = buf[:0]
	t.dirty = false
	t.fileSize += written
	t.seq, t.prev, t.sinceCheckpoint = seq, prev, since
	t.unwritten, t.fault = 0, nil
	return n, took, true, nil
}

// ready makes the current file fit for the next write of about next
// bytes: it undoes what a failed batch left, starts a new file when the
// current one is full or old, and makes a new file's name durable.
func (t *Trail) ready(next int) error {
	if t.file != nil && t.dirty {
		if err := t.file.Truncate(t.fileSize); err != nil {
			return fmt.Errorf("undo a failed write: %w", err)
		}
		t.dirty = false
	}
	if t.file != nil && t.fileSize > 0 && !t.needDirSync {
		full := t.fileSize+int64(next) > t.options.MaxFileBytes
		old := t.now().Sub(t.fileCreated) >= t.options.MaxFileAge
		if full || old {
			err := t.file.Close()
			t.file = nil
			if err != nil {
				return fmt.Errorf("close a full file: %w", err)
			}
		}
	}
	if t.file == nil {
		created := t.now()
		path := t.options.Dir + string(os.PathSeparator) + fileName(t.seq+1, created)
		file, err := t.fsys.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("create a trail file: %w", err)
		}
		t.file, t.fileSize, t.fileCreated, t.needDirSync = file, 0, created, true
	}
	if t.needDirSync {
		if err := syncDir(t.fsys, t.options.Dir); err != nil {
			return fmt.Errorf("sync the trail directory: %w", err)
		}
		t.needDirSync = false
	}
	return nil
}

// checkpointLine is the KindCheckpoint record at seq, whose prev is prev,
// with the seq placeholder.
func (t *Trail) checkpointLine(seq uint64, prev string) ([]byte, error) {
	now := t.now().UTC()
	body := &Checkpoint{Seq: seq, Prev: prev}
	if signer := t.options.Signer; signer != nil {
		signature, err := signer.Sign(CheckpointType, checkpointPayload(seq, prev, now))
		if err != nil {
			// An unsigned checkpoint still marks the chain; verify reports it.
			t.logger.Error("audit: checkpoint not signed", "seq", seq, "error", err)
		} else {
			key := signer.Public()
			body.KeyID, body.Algorithm, body.Key, body.Signature = signer.KeyID(), string(signer.Algorithm()), &key, signature
		}
	}
	return encodeRecord(&Record{Time: now, ID: newID(), Kind: KindCheckpoint, Event: EventCheckpoint, Checkpoint: body})
}

// checkpointPayload is the RFC 8785 canonical JSON of {seq, prev, time}
// that a checkpoint signs: members in order prev, seq, time; time as the
// record's "time" field spells it (RFC 3339, UTC, nanoseconds without
// trailing zeros).
func checkpointPayload(seq uint64, prev string, at time.Time) []byte {
	payload := make([]byte, 0, 128)
	payload = append(payload, `{"prev":`...)
	payload = appendCanonicalString(payload, prev)
	payload = append(payload, `,"seq":`...)
	payload = strconv.AppendUint(payload, seq, 10)
	payload = append(payload, `,"time":`...)
	payload = appendCanonicalString(payload, at.Format(time.RFC3339Nano))
	return append(payload, '}')
}

// newID is 128 random bits in hex.
func newID() string {
	var id [16]byte
	rand.Read(id[:])
	return hex.EncodeToString(id[:])
}

// byteBudget bounds the bytes waiting in the queue.
type byteBudget struct {
	mu    sync.Mutex
	free  int64
	freed chan struct{} // closed and replaced whenever bytes come back
}

func newByteBudget(size int64) byteBudget {
	return byteBudget{free: size, freed: make(chan struct{})}
}

func (b *byteBudget) acquire(ctx context.Context, closing <-chan struct{}, n int64) error {
	for {
		b.mu.Lock()
		if b.free >= n {
			b.free -= n
			b.mu.Unlock()
			return nil
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return fmt.Errorf("audit: queue full: %w", context.Cause(ctx))
		case <-closing:
			return ErrClosed
		}
	}
}

func (b *byteBudget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.free += n
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}
