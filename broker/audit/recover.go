package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// tailWindow is how much of a file's end recover reads: a torn line and a
// whole line before it, each at most MaxLineBytes.
const tailWindow = 2*MaxLineBytes + 2

// resume finds where the chain stands: the seq and line hash of the last
// whole record. A torn last line (the end of a batch a crash cut short) is
// cut off, and the returned record reports it. The newest file stays open
// for appending while it has room.
func (t *Trail) resume() (*Record, error) {
	files, err := listTrail(t.fsys.ReadDir, t.options.Dir)
	if err != nil {
		return nil, err
	}
	var report *Record
	var emptyNewest *trailFile
	for i := len(files) - 1; i >= 0; i-- {
		f := files[i]
		newest := i == len(files)-1
		file, err := t.fsys.OpenFile(f.path, os.O_RDWR|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("audit: open %s: %w", f.path, err)
		}
		last, keep, size, err := readTail(file)
		if err == nil && keep < size {
			// Only the end of the last batch can be torn: the newest file's,
			// or the one before it when the newest holds nothing yet.
			tearable := newest || emptyNewest != nil && i == len(files)-2 && report == nil
			if !tearable {
				err = fmt.Errorf("%s has an incomplete last line but is not the newest file; run mcpbroker audit verify", f.path)
			} else {
				report, err = cutTorn(file, f.path, keep, size)
			}
		}
		if err != nil {
			file.Close()
			return nil, fmt.Errorf("audit: recover %s: %w", f.path, err)
		}
		if last == nil {
			file.Close()
			if newest {
				emptyNewest = &files[i]
			}
			continue
		}
		var record Record
		if err := json.Unmarshal(last, &record); err != nil || record.Seq == 0 {
			file.Close()
			return nil, fmt.Errorf("audit: recover %s: the last record is unreadable; run mcpbroker audit verify", f.path)
		}
		sum := sha256.Sum256(last)
		t.seq, t.prev = record.Seq, hex.EncodeToString(sum[:])
		if record.Kind != KindCheckpoint {
			t.sinceCheckpoint = 1 // a checkpoint is due at the next interval or at Close
		}
		if newest && keep < t.options.MaxFileBytes && t.now().Sub(f.created) < t.options.MaxFileAge {
			t.file, t.fileSize, t.fileCreated = file, keep, f.created
		} else if err := file.Close(); err != nil {
			return nil, fmt.Errorf("audit: recover %s: %w", f.path, err)
		}
		break
	}
	if t.file == nil && emptyNewest != nil && emptyNewest.firstSeq == t.seq+1 {
		file, err := t.fsys.OpenFile(emptyNewest.path, os.O_RDWR|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("audit: open %s: %w", emptyNewest.path, err)
		}
		t.file, t.fileSize, t.fileCreated = file, 0, emptyNewest.created
	}
	if report != nil {
		report.Detail += fmt.Sprintf("; the chain continues from seq %d", t.seq)
	}
	return report, nil
}

// readTail reads the end of file: the last whole line (nil if none), the
// size up to and including its newline, and the file size.
func readTail(file File) (last []byte, keep, size int64, err error) {
	info, err := file.Stat()
	if err != nil {
		return nil, 0, 0, err
	}
	size = info.Size()
	start := max(0, size-tailWindow)
	window := make([]byte, size-start)
	if _, err := file.ReadAt(window, start); err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, 0, err
	}
	end := bytes.LastIndexByte(window, '\n')
	if end < 0 {
		if start > 0 || size > MaxLineBytes {
			return nil, 0, 0, fmt.Errorf("no newline in the last %d bytes: not a torn record; run mcpbroker audit verify", len(window))
		}
		return nil, 0, size, nil // one torn line and nothing else
	}
	keep = start + int64(end) + 1
	if size-keep > MaxLineBytes {
		return nil, 0, 0, fmt.Errorf("%d bytes after the last newline: not a torn record; run mcpbroker audit verify", size-keep)
	}
	begin := bytes.LastIndexByte(window[:end], '\n') + 1
	if begin == 0 && start > 0 {
		return nil, 0, 0, errors.New("the last line is longer than a record can be; run mcpbroker audit verify")
	}
	return window[begin:end], keep, size, nil
}

// cutTorn truncates file to keep and returns the record that reports it.
func cutTorn(file File, path string, keep, size int64) (*Record, error) {
	torn := make([]byte, size-keep)
	if _, err := file.ReadAt(torn, keep); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if err := file.Truncate(keep); err != nil {
		return nil, err
	}
	if err := file.Sync(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(torn)
	return &Record{
		Kind:   KindTrail,
		Event:  EventRecovered,
		Detail: fmt.Sprintf("cut an incomplete last line of %d bytes (sha256:%x) from %s at offset %d", len(torn), sum, path, keep),
	}, nil
}
