package opa

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"time"
)

// Watch reloads a file policy when the file changes, until ctx ends. Every
// interval (default 2s) it compares the file's modification time and size,
// and its SHA-256 when those moved or are too recent to trust. A
// policy that compiles replaces the serving one atomically and bumps
// Version; one that does not is reported and the previous policy keeps
// serving. onReload, if not nil, hears of every attempt: nil on success.
// Watch returns at once for inline policies.
func (p *Policy) Watch(ctx context.Context, interval time.Duration, onReload func(err error)) {
	if p.src.File == "" {
		return
	}
	if interval <= 0 {
		interval = defaultWatchInterval
	}
	if onReload == nil {
		onReload = func(error) {}
	}
	// No modification time yet: the first poll hashes, catching a change
	// made between Compile and Watch.
	w := fileWatch{path: p.src.File, hash: p.current.Load().hash}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		text, changed, err := w.poll()
		if err != nil {
			onReload(fmt.Errorf("opa: policy %q: %w", p.src.label(), err))
			continue
		}
		if changed {
			onReload(p.reload(ctx, text))
		}
	}
}

// reload compiles text and, if it compiles, serves it as the next version.
func (p *Policy) reload(ctx context.Context, text []byte) error {
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	c, err := p.compile(ctx, string(text), p.current.Load().version+1)
	if err != nil {
		return err
	}
	p.current.Store(c)
	if p.decisions != nil {
		p.decisions.Purge() // keyed by version, so only memory is at stake
	}
	return nil
}

// timestampGranularity is how recent a modification must be to distrust an
// unchanged time and size: a second write within one filesystem timestamp
// tick (a jiffy on Linux, seconds elsewhere) keeps the time.
const timestampGranularity = 3 * time.Second

// fileWatch remembers what the file looked like at the last poll.
type fileWatch struct {
	path    string
	modTime time.Time
	size    int64
	hash    [32]byte
	failed  error // the last error reported, so a missing file is reported once
}

// poll returns the file's text when its content differs from the last poll.
func (w *fileWatch) poll() (text []byte, changed bool, err error) {
	info, err := os.Stat(w.path)
	if err != nil {
		return w.fail(err)
	}
	// Coarse timestamps let a rewrite keep the same time and size, so a
	// file modified recently is hashed even when both look the same.
	if info.ModTime().Equal(w.modTime) && info.Size() == w.size && time.Since(info.ModTime()) > timestampGranularity && w.failed == nil {
		return nil, false, nil
	}
	text, err = os.ReadFile(w.path)
	if err != nil {
		return w.fail(err)
	}
	w.modTime, w.size = info.ModTime(), info.Size()
	w.failed = nil
	hash := sourceHash(text)
	if bytes.Equal(hash[:], w.hash[:]) {
		return nil, false, nil
	}
	w.hash = hash
	return text, true, nil
}

func (w *fileWatch) fail(err error) ([]byte, bool, error) {
	if w.failed != nil && w.failed.Error() == err.Error() {
		return nil, false, nil
	}
	w.failed = err
	return nil, false, err
}

func sourceHash(text []byte) [32]byte { return sha256.Sum256(text) }
