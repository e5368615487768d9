package upstream

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

type sseEvent struct {
	Type, Data string
}

// readAll parses input in chunks of chunk bytes (0: all at once) and
// returns the dispatched events, the final state and the error that ended
// the stream.
func readAll(input string, chunk, maxData int) (events []sseEvent, lastID string, retry time.Duration, hasRetry bool, err error) {
	var src io.Reader = strings.NewReader(input)
	if chunk > 0 {
		src = &chunkReader{data: input, size: chunk}
	}
	r := getSSEReader(src, maxData)
	defer r.put()
	for {
		typ, data, err := r.next()
		if err != nil {
			return events, string(r.lastID), r.retry, r.hasRetry, err
		}
		events = append(events, sseEvent{Type: string(typ), Data: string(data)})
	}
}

// chunkReader returns at most size bytes per Read, so line terminators and
// fields split across reads.
type chunkReader struct {
	data string
	size int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.size)], c.data)
	c.data = c.data[n:]
	return n, nil
}

func TestSSEReader(t *testing.T) {
	tests := []struct {
		name      string
		input     string
		maxData   int
		want      []sseEvent
		wantID    string
		wantRetry time.Duration
		wantErr   error
	}{
		{
			name:  "one event",
			input: "data: {\"a\":1}\n\n",
			want:  []sseEvent{{"", `{"a":1}`}},
		},
		{
			name:  "multi-line data joined with LF",
			input: "data: one\ndata:two\ndata:  three\n\n",
			want:  []sseEvent{{"", "one\ntwo\n three"}},
		},
		{
			name:  "CRLF, CR and LF line endings",
			input: "data: a\r\ndata: b\rdata: c\n\r\nevent: x\rdata: d\r\r",
			want:  []sseEvent{{"", "a\nb\nc"}, {"x", "d"}},
		},
		{
			name:  "leading BOM skipped once",
			input: "\xEF\xBB\xBFdata: a\n\n\xEF\xBB\xBFdata: b\n\ndata: c\n\n",
			want:  []sseEvent{{"", "a"}, {"", "c"}},
		},
		{
			name:  "comments ignored",
			input: ": ping\n:\ndata: a\n: inside\ndata: b\n\n",
			want:  []sseEvent{{"", "a\nb"}},
		},
		{
			name:      "event type kept per event",
			input:     "event: message\ndata: a\n\nevent: close\nretry: 5\n\ndata: b\n\n",
			want:      []sseEvent{{"message", "a"}, {"", "b"}},
			wantRetry: 5 * time.Millisecond,
		},
		{
			name:   "priming event sets the id and is skipped",
			input:  "id: s_0\nevent: prime\n\nid: s_1\ndata: x\n\n",
			want:   []sseEvent{{"", "x"}},
			wantID: "s_1",
		},
		{
			name:   "empty data line dispatches an empty event",
			input:  "id: 1\ndata\n\n",
			want:   []sseEvent{{"", ""}},
			wantID: "1",
		},
		{
			name:   "id persists and empty id clears it",
			input:  "id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\n",
			want:   []sseEvent{{"", "a"}, {"", "b"}, {"", "c"}},
			wantID: "",
		},
		{
			name:   "id with NUL ignored",
			input:  "id: 1\n\nid: 2\x003\n\n",
			wantID: "1",
		},
		{
			name:   "id commits only at dispatch",
			input:  "id: 1\ndata: a\n\nid: 2\ndata: b\n",
			want:   []sseEvent{{"", "a"}},
			wantID: "1",
		},
		{
			name:      "retry must be digits",
			input:     "retry: 250\n\nretry: 1x\n\nretry:\n\nretry: -1\n\n",
			wantRetry: 250 * time.Millisecond,
		},
		{
			name:  "unknown fields and field without colon ignored",
			input: "foo: bar\nretryx: 3\nevent\ndata: a\n\n",
			want:  []sseEvent{{"", "a"}},
		},
		{
			name:  "unterminated event at EOF discarded",
			input: "data: a\n\ndata: b\n",
			want:  []sseEvent{{"", "a"}},
		},
		{
			name:    "data over the cap",
			input:   "data: 0123456789\n\n",
			maxData: 8,
			wantErr: ErrMessageTooLarge,
		},
		{
			name:    "data over the cap across lines",
			input:   "data: 01234\ndata: 56789\n\n",
			maxData: 8,
			wantErr: ErrMessageTooLarge,
		},
		{
			name:    "endless comment line",
			input:   ":" + strings.Repeat("x", 2000) + "\n\n",
			maxData: 8,
			wantErr: ErrMessageTooLarge,
		},
		{
			name:    "data at the cap",
			input:   "data: 01234567\n\n",
			maxData: 8,
			want:    []sseEvent{{"", "01234567"}},
		},
	}
	for _, tt := range tests {
		for _, chunk := range []int{0, 1, 3} {
			t.Run(tt.name, func(t *testing.T) {
				maxData := tt.maxData
				if maxData == 0 {
					maxData = 1 << 20
				}
				got, lastID, retry, _, err := readAll(tt.input, chunk, maxData)
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("chunk %d: err = %v, want %v", chunk, err, tt.wantErr)
					}
					return
				}
				if err != io.EOF {
					t.Fatalf("chunk %d: err = %v, want EOF", chunk, err)
				}
				if !equalEvents(got, tt.want) {
					t.Errorf("chunk %d: events = %q, want %q", chunk, got, tt.want)
				}
				if lastID != tt.wantID {
					t.Errorf("chunk %d: last id = %q, want %q", chunk, lastID, tt.wantID)
				}
				if retry != tt.wantRetry {
					t.Errorf("chunk %d: retry = %v, want %v", chunk, retry, tt.wantRetry)
				}
			})
		}
	}
}

func TestSSEReaderResetKeepsResumeState(t *testing.T) {
	r := getSSEReader(strings.NewReader("retry: 20\nid: 7\ndata: a\n\ndata: cut"), 1<<10)
	defer r.put()
	if _, data, err := r.next(); err != nil || string(data) != "a" {
		t.Fatalf("next = %q, %v", data, err)
	}
	if _, _, err := r.next(); err != io.EOF {
		t.Fatalf("err = %v, want EOF", err)
	}
	r.reset(iotest.OneByteReader(strings.NewReader("\ndata: b\n\n")))
	// The new connection starts afresh: "\n" is a blank line, not the end of
	// the cut line, and the cut event is gone.
	if _, data, err := r.next(); err != nil || string(data) != "b" {
		t.Fatalf("after reset next = %q, %v", data, err)
	}
	if string(r.lastID) != "7" || r.retry != 20*time.Millisecond {
		t.Errorf("after reset last id %q retry %v, want 7 and 20ms", r.lastID, r.retry)
	}
}

func equalEvents(a, b []sseEvent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// referenceParse is the standard's algorithm written for clarity, not
// speed: the fuzz test holds sseReader to it.
func referenceParse(input string) (events []sseEvent, lastID string, retry time.Duration, hasRetry bool) {
	input = strings.TrimPrefix(input, "\uFEFF")
	var data, eventType, idBuffer strings.Builder
	var dataSet bool
	for {
		i := strings.IndexAny(input, "\r\n")
		if i < 0 {
			return events, lastID, retry, hasRetry // an unterminated line is dropped
		}
		line := input[:i]
		if strings.HasPrefix(input[i:], "\r\n") {
			input = input[i+2:]
		} else {
			input = input[i+1:]
		}
		switch {
		case line == "":
			lastID = idBuffer.String()
			if dataSet {
				d := strings.TrimSuffix(data.String(), "\n")
				events = append(events, sseEvent{Type: eventType.String(), Data: d})
			}
			data.Reset()
			eventType.Reset()
			dataSet = false
			continue
		case line[0] == ':':
			continue
		}
		field, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "data":
			data.WriteString(value)
			data.WriteByte('\n')
			dataSet = true
		case "event":
			eventType.Reset()
			eventType.WriteString(value)
		case "id":
			if !strings.Contains(value, "\x00") {
				idBuffer.Reset()
				idBuffer.WriteString(value)
			}
		case "retry":
			if value != "" && strings.Trim(value, "0123456789") == "" {
				// Absurd values saturate at maxRetryMillis.
				var ms int64
				for _, c := range value {
					if ms < maxRetryMillis {
						ms = ms*10 + int64(c-'0')
					}
				}
				retry, hasRetry = time.Duration(min(ms, maxRetryMillis))*time.Millisecond, true
			}
		}
	}
}

func FuzzSSEReader(f *testing.F) {
	seeds := []string{
		"data: {\"jsonrpc\":\"2.0\",\"method\":\"x\"}\n\n",
		"id: a_1\nevent: prime\ndata:\n\n",
		"\xEF\xBB\xBFdata: a\r\ndata: b\r\rid: 3\n\n",
		": comment\nretry: 1000\nevent: close\n\n",
		"data: a\ndata: b\n\ndata: cut",
		"id: x\x00y\ndata: z\r\n\r\n",
		"\r\n\n\r\r",
		"data:" + strings.Repeat("y", 300) + "\n\n",
	}
	for _, s := range seeds {
		f.Add(s, uint8(0))
		f.Add(s, uint8(1))
	}
	f.Fuzz(func(t *testing.T, input string, chunk uint8) {
		const maxData = 1 << 20
		got, lastID, retry, hasRetry, err := readAll(input, int(chunk), maxData)
		if err != io.EOF {
			t.Fatalf("err = %v, want EOF (input is under the caps)", err)
		}
		want, wantID, wantRetry, wantHasRetry := referenceParse(input)
		if !equalEvents(got, want) {
			t.Fatalf("events = %q, want %q", got, want)
		}
		if lastID != wantID {
			t.Fatalf("last id = %q, want %q", lastID, wantID)
		}
		if hasRetry != wantHasRetry || retry != wantRetry {
			t.Fatalf("retry = %v (set %v), want %v (set %v)", retry, hasRetry, wantRetry, wantHasRetry)
		}
		for _, e := range got {
			if strings.ContainsAny(e.Type, "\r\n") || strings.Contains(e.Data, "\r") {
				t.Fatalf("line terminator leaked into event %q", e)
			}
		}
	})
}
