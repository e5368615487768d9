package upstream

import (
	"bytes"
	"io"
	"sync"
	"time"
)

// sseReader parses a text/event-stream body as the WHATWG HTML standard
// defines it ("Interpreting an event stream"): a leading BOM is skipped,
// lines end in CRLF, LF or CR, comments are ignored, data lines are joined
// with LF, and an event is dispatched at a blank line. An event cut off by
// the end of the stream is discarded.
//
// The reader owns its buffers and hands out slices into them, valid until
// the next call, so a stream is parsed without allocating per event. One
// reader follows one logical stream across reconnections (reset keeps the
// last event id and the retry delay).
type sseReader struct {
	src io.Reader
	err error // sticky read error, returned once buffered lines are used up

	buf        []byte // read buffer; unread bytes are buf[start:end]
	start, end int
	scanned    int  // bytes after start known to hold no line terminator
	skipLF     bool // the last line ended in CR: a leading LF belongs to it
	bomChecked bool

	maxData int // cap on one event's data
	maxLine int // cap on one line, the data cap plus room for a field name

	data       []byte // data buffer of the event being parsed
	eventType  []byte
	pendingID  []byte // "last event ID buffer": committed at dispatch
	lastID     []byte // id of the last dispatched event
	retry      time.Duration
	hasRetry   bool
	dispatched bool // the previous call returned an event: clear buffers first
}

const (
	sseInitialBuffer = 4 << 10
	// ssePooledBufferCap keeps a reader that once met a huge event from
	// pinning that memory in the pool.
	ssePooledBufferCap = 64 << 10
	sseFieldSlack      = 256
)

var sseReaderPool = sync.Pool{New: func() any { return new(sseReader) }}

// getSSEReader returns a reader for src from the pool; release it with put.
func getSSEReader(src io.Reader, maxData int) *sseReader {
	r := sseReaderPool.Get().(*sseReader)
	r.maxData = maxData
	r.maxLine = maxData + sseFieldSlack
	r.lastID = r.lastID[:0]
	r.pendingID = r.pendingID[:0]
	r.retry, r.hasRetry = 0, false
	r.reset(src)
	return r
}

func (r *sseReader) put() {
	r.src = nil
	r.err = nil
	if cap(r.buf) > ssePooledBufferCap {
		r.buf = nil
	}
	if cap(r.data) > ssePooledBufferCap {
		r.data = nil
	}
	sseReaderPool.Put(r)
}

// reset points the reader at a new connection of the same logical stream:
// parsing starts afresh, the last event id and retry delay carry over.
func (r *sseReader) reset(src io.Reader) {
	r.src = src
	r.err = nil
	r.start, r.end, r.scanned = 0, 0, 0
	r.skipLF = false
	r.bomChecked = false
	r.data = r.data[:0]
	r.eventType = r.eventType[:0]
	r.pendingID = append(r.pendingID[:0], r.lastID...)
	r.dispatched = false
}

// next returns the type and data of the next event that carries data. The
// type is empty when the stream named none (which means "message"). Events
// without data, such as SEP-1699 priming events, update the last event id
// and are skipped. The error is the stream's read error (io.EOF at a clean
// end) or ErrMessageTooLarge.
func (r *sseReader) next() (eventType, data []byte, err error) {
	if r.dispatched {
		r.data = r.data[:0]
		r.eventType = r.eventType[:0]
		r.dispatched = false
	}
	for {
		line, err := r.readLine()
		if err != nil {
			return nil, nil, err
		}
		if len(line) == 0 {
			r.lastID = append(r.lastID[:0], r.pendingID...)
			if len(r.data) == 0 {
				r.eventType = r.eventType[:0]
				continue
			}
			r.dispatched = true
			return r.eventType, r.data[:len(r.data)-1], nil
		}
		if line[0] == ':' {
			continue
		}
		field, value := line, line[len(line):]
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "data":
			if len(r.data)+len(value) > r.maxData {
				return nil, nil, ErrMessageTooLarge
			}
			r.data = append(r.data, value...)
			r.data = append(r.data, '\n')
		case "event":
			r.eventType = append(r.eventType[:0], value...)
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				r.pendingID = append(r.pendingID[:0], value...)
			}
		case "retry":
			if ms, ok := parseDigits(value); ok {
				r.retry, r.hasRetry = time.Duration(ms)*time.Millisecond, true
			}
		}
	}
}

// maxRetryMillis keeps the retry value far from overflowing a Duration;
// callers cap it much lower anyway.
const maxRetryMillis = 1 << 30

func parseDigits(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < maxRetryMillis {
			n = n*10 + int64(c-'0')
		}
	}
	return min(n, maxRetryMillis), true
}

// readLine returns the next line without its terminator. A final line that
// the stream does not terminate is dropped, as the standard says.
func (r *sseReader) readLine() ([]byte, error) {
	for {
		if r.skipLF && r.start < r.end {
			if r.buf[r.start] == '\n' {
				r.start++
			}
			r.skipLF = false
		}
		if i := r.indexTerminator(); i >= 0 {
			if i > r.maxLine {
				return nil, ErrMessageTooLarge
			}
			line := r.buf[r.start : r.start+i]
			r.skipLF = r.buf[r.start+i] == '\r'
			r.start += i + 1
			r.scanned = 0
			if !r.bomChecked {
				r.bomChecked = true
				line = bytes.TrimPrefix(line, []byte("\xEF\xBB\xBF"))
			}
			return line, nil
		}
		if r.end-r.start > r.maxLine {
			return nil, ErrMessageTooLarge
		}
		if r.err != nil {
			return nil, r.err
		}
		r.fill()
	}
}

// indexTerminator finds the first CR or LF among the unread bytes, resuming
// where the previous search stopped so that a long line arriving in many
// reads is scanned once.
func (r *sseReader) indexTerminator() int {
	unread := r.buf[r.start+r.scanned : r.end]
	i := bytes.IndexByte(unread, '\n')
	if i < 0 {
		i = len(unread)
	}
	if j := bytes.IndexByte(unread[:i], '\r'); j >= 0 {
		i = j
	}
	if i == len(unread) {
		r.scanned += len(unread)
		return -1
	}
	return r.scanned + i
}

// fill reads once from the source, first making room by moving the unread
// bytes to the front or growing the buffer.
func (r *sseReader) fill() {
	if r.start > 0 {
		n := copy(r.buf, r.buf[r.start:r.end])
		r.start, r.end = 0, n
	}
	if r.end == len(r.buf) {
		size := max(2*len(r.buf), sseInitialBuffer)
		size = min(size, r.maxLine+1)
		if size <= len(r.buf) {
			// Unreachable: readLine rejects a line longer than maxLine first.
			r.err = ErrMessageTooLarge
			return
		}
		grown := make([]byte, size)
		copy(grown, r.buf[:r.end])
		r.buf = grown
	}
	n, err := r.src.Read(r.buf[r.end:])
	r.end += n
	if err != nil {
		r.err = err
	}
}

// ended reports whether the stream has ended, every byte of it read.
func (r *sseReader) ended() bool { return r.err == io.EOF && r.start == r.end }

// resumable reports whether the stream carried an event id to resume from.
func (r *sseReader) resumable() bool { return len(r.lastID) > 0 }
