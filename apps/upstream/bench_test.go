package upstream

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

const benchResult = `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hello"}],"isError":false}}`

func benchSession(b *testing.B, handler http.HandlerFunc) (*Session, *jsonrpc.Message) {
	b.Helper()
	ts := httptest.NewServer(handler)
	b.Cleanup(ts.Close)
	s, err := NewSession(&Options{URL: ts.URL, Client: NewHTTPClient(HTTPOptions{})})
	if err != nil {
		b.Fatal(err)
	}
	s.SetID(fixtureSessionID)
	s.SetProtocolVersion(testProtocolVersion)
	msg, err := jsonrpc.NewRequest(jsonrpc.Int64ID(1), "tools/call", map[string]any{"name": "echo", "arguments": map[string]any{"text": "hello"}})
	if err != nil {
		b.Fatal(err)
	}
	return s, msg
}

func BenchmarkCallJSON(b *testing.B) {
	s, msg := benchSession(b, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(benchResult)))
		_, _ = io.WriteString(w, benchResult)
	})
	header := http.Header{"Authorization": {"Bearer token"}}
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Call(ctx, msg, header, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCallSSE(b *testing.B) {
	stream := "id: 1\ndata: " + progressEvent + "\n\nid: 2\ndata: " + benchResult + "\n\n"
	s, msg := benchSession(b, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, stream)
	})
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Call(ctx, msg, nil, func(*jsonrpc.Message) {}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSSEReader(b *testing.B) {
	input := strings.Repeat("id: 7\nevent: message\ndata: "+benchResult+"\n\n", 64)
	src := strings.NewReader(input)
	b.SetBytes(int64(len(input)))
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(input)
		r := getSSEReader(src, DefaultMaxMessageBytes)
		for {
			if _, _, err := r.next(); err != nil {
				break
			}
		}
		r.put()
	}
}
