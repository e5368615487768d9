package provider

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// waitServed waits until n HTTP requests have been served in all.
func (h *harness) waitServed(n int64) {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for h.served.Load() < n {
		if time.Now().After(deadline) {
			h.t.Fatalf("%d requests served, want %d", h.served.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// abandon sends a "big" request and hangs up once the answer has begun
// (after its first event, when progress is sent) or, without progress,
// as soon as the request is being served.
func (h *harness) abandon(sid string, id, size int, progress bool) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	params := fmt.Sprintf(`{"size":%d,"abandoned":true,"progress":%v}`, size, progress)
	if progress {
		resp := h.do(call{subject: "alice", session: sid, ctx: ctx, body: requestBody(id, "big", params)})
		sr := newSSEReader(resp.Body)
		if ev, ok := sr.next(h.t); !ok || ev.id == "" {
			h.t.Fatalf("no first event with an id: %+v", ev)
		}
		cancel()
		resp.Body.Close()
		<-sr.done
		return
	}
	before := h.d.dispatchedBig()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := h.client.Do(h.request(call{subject: "alice", session: sid, ctx: ctx, body: requestBody(id, "big", params)})); err == nil {
			resp.Body.Close()
		}
	}()
	for h.d.dispatchedBig() == before {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
}

// Answers to POSTs whose clients hung up are kept for resumption only
// within a per-session byte budget: neither a call in flight, nor one
// event larger than a stream's cap, nor answers no client can ever resume
// make a session hold more.
func TestAbandonedAnswersBounded(t *testing.T) {
	const answer = 256 << 10
	for _, tt := range []struct {
		name     string
		n, size  int
		progress bool // the client saw an event id before hanging up
		blocker  bool // an older call stays in flight meanwhile
	}{
		{name: "resumable answers behind a call in flight", n: 200, size: answer, progress: true, blocker: true},
		{name: "answers no client can resume", n: 200, size: answer, blocker: true},
		{name: "one event larger than a stream's cap", n: 24, size: 2 << 20, progress: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			sid := h.initialize("alice", "2025-11-25")
			served := h.served.Load()
			if tt.blocker {
				go func() {
					resp, body := h.doBody(call{subject: "alice", session: sid, body: requestBody(1, "big", `{"size":1,"gate":"hold"}`)})
					if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"data":"x"`) {
						t.Errorf("call in flight: %d %s", resp.StatusCode, body)
					}
				}()
				for h.d.dispatchedBig() == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			base := heapInUse()
			for i := range tt.n {
				h.abandon(sid, 100+i, tt.size, tt.progress)
			}
			h.waitServed(served + int64(tt.n))
			held := int64(heapInUse()) - int64(base)
			// The session keeps at most MaxKeptBytesPerSession; the rest
			// is slack for the runtime.
			if limit := int64(4<<20 + 8<<20); held > limit {
				t.Errorf("session holds %d MiB after %d abandoned answers of %d KiB, want under %d MiB",
					held>>20, tt.n, tt.size>>10, limit>>20)
			}
			if tt.blocker {
				h.d.release("hold")
				h.waitServed(served + int64(tt.n) + 1)
			}
		})
	}
}

// An answer too large to keep is replaced, for a client that resumes, by
// an error with the request's id, so the client is not left waiting.
func TestResumeAnswerTooLargeToKeep(t *testing.T) {
	h := newHarness(t, nil)
	sid := h.initialize("alice", "2025-11-25")
	served := h.served.Load()
	ctx, cancel := context.WithCancel(context.Background())
	resp := h.do(call{subject: "alice", session: sid, ctx: ctx, body: requestBody(7, "big", `{"size":2097152,"abandoned":true,"progress":true}`)})
	sr := newSSEReader(resp.Body)
	first, ok := sr.next(t)
	if !ok {
		t.Fatal("no first event")
	}
	cancel()
	resp.Body.Close()
	<-sr.done
	h.waitServed(served + 1)

	resp = resumeWhenFree(t, h, sid, first.id)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	events := parseSSE(t, body)
	if len(events) != 1 {
		t.Fatalf("resumed %d events, want 1: %.200s", len(events), body)
	}
	m := decodeMessage(t, []byte(events[0].data))
	if m.ID.Raw() != "7" || m.Error == nil || m.Error.Code != jsonrpc.CodeServerError {
		t.Fatalf("resumed %.200s, want error -32000 for id 7", events[0].data)
	}
}

// Batches are bounded in length, their requests count against the
// session's in-flight bound for as long as the batch is served, and a
// JSON answer to a batch is bounded in bytes.
func TestBatchLimits(t *testing.T) {
	t.Run("longer than the in-flight bound", func(t *testing.T) {
		h := newHarness(t, nil)
		sid := h.initialize("alice", "2025-03-26")
		elements := make([]string, h.opts.MaxInFlight+1)
		for i := range elements {
			elements[i] = requestBody(i+1, "big", `{"size":1}`)
		}
		resp, body := h.doBody(call{subject: "alice", session: sid, body: "[" + strings.Join(elements, ",") + "]"})
		wantStatus(t, resp, body, http.StatusBadRequest)
		wantRPCError(t, body, jsonrpc.CodeInvalidRequest)
		if n := h.d.dispatchedBig(); n != 0 {
			t.Errorf("%d requests of a refused batch were served", n)
		}
	})
	t.Run("counted against the in-flight bound", func(t *testing.T) {
		h := newHarness(t, func(o *Options) { o.MaxInFlight = 10 })
		sid := h.initialize("alice", "2025-03-26")
		batch := func(n int, params string) string {
			elements := make([]string, n)
			for i := range elements {
				elements[i] = requestBody(i+1, "big", params)
			}
			return "[" + strings.Join(elements, ",") + "]"
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body := h.doBody(call{subject: "alice", session: sid, accept: "application/json", body: batch(6, `{"size":1,"gate":"first"}`)})
			for _, m := range responseMessages(t, resp, body) {
				if m.Error != nil {
					t.Errorf("first batch: %s", m.Encode())
				}
			}
		}()
		for h.d.dispatchedBig() == 0 {
			time.Sleep(time.Millisecond)
		}
		resp, body := h.doBody(call{subject: "alice", session: sid, accept: "application/json", body: batch(6, `{"size":1}`)})
		for _, m := range responseMessages(t, resp, body) {
			if m.Error == nil || m.Error.Code != jsonrpc.CodeServerError {
				t.Errorf("second batch beside a first holding 6 of 10 slots: %s, want -32000", m.Encode())
			}
		}
		if n := h.d.dispatchedBig(); n != 1 {
			t.Errorf("%d requests dispatched, want only the first batch's first", n)
		}
		h.d.release("first")
		wg.Wait()
	})
	t.Run("answer bytes", func(t *testing.T) {
		h := newHarness(t, nil)
		sid := h.initialize("alice", "2025-03-26")
		const n, size = 64, 1 << 20
		elements := make([]string, n)
		for i := range elements {
			elements[i] = requestBody(i+1, "big", fmt.Sprintf(`{"size":%d}`, size))
		}
		base := heapInUse()
		var peak uint64
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			var ms runtime.MemStats
			for {
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapAlloc)
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
			}
		}()
		resp, body := h.doBody(call{subject: "alice", session: sid, accept: "application/json", body: "[" + strings.Join(elements, ",") + "]"})
		close(stop)
		<-sampled
		if limit := 8<<20 + 2*size; len(body) > limit {
			t.Errorf("batch answer of %d MiB, want at most %d MiB", len(body)>>20, limit>>20)
		}
		msgs := responseMessages(t, resp, body)
		if len(msgs) != n {
			t.Fatalf("%d answers, want %d", len(msgs), n)
		}
		results, refused := 0, 0
		for _, m := range msgs {
			switch {
			case m.Error == nil:
				results++
			case m.Error.Code == jsonrpc.CodeServerError:
				refused++
			}
		}
		if results == 0 || results+refused != n {
			t.Errorf("%d results and %d refusals, want both adding up to %d", results, refused, n)
		}
		if grew := int64(peak) - int64(base); grew > 48<<20 {
			t.Errorf("heap grew by %d MiB while serving the batch", grew>>20)
		}
	})
}

// Every byte a session keeps is given back to the process when it ends,
// however its streams were left: the process's budget does not leak.
func TestKeptBytesGivenBackWhenSessionsEnd(t *testing.T) {
	h := newHarness(t, nil)
	served := h.served.Load()
	var sids []string
	for i := range 4 {
		sids = append(sids, h.initialize(fmt.Sprintf("user%d", i), "2025-11-25"))
	}
	served += 4
	var wg sync.WaitGroup
	for i, sid := range sids {
		subject := fmt.Sprintf("user%d", i)
		for j := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				resp, err := h.client.Do(h.request(call{subject: subject, session: sid, ctx: ctx,
					body: requestBody(100+j, "big", `{"size":700000,"abandoned":true,"progress":true}`)}))
				if err != nil {
					t.Error(err)
					return
				}
				sr := newSSEReader(resp.Body)
				sr.next(t)
				cancel()
				resp.Body.Close()
				<-sr.done
			}()
		}
	}
	wg.Wait()
	h.waitServed(served + 32)
	if used := h.p.sessions.kept.used.Load(); used <= 0 || used > 4*(4<<20) {
		t.Errorf("sessions keep %d bytes, want some and at most 4 MiB each", used)
	}
	for i, sid := range sids {
		resp, body := h.doBody(call{method: http.MethodDelete, subject: fmt.Sprintf("user%d", i), session: sid})
		wantStatus(t, resp, body, http.StatusNoContent)
	}
	if used := h.p.sessions.kept.used.Load(); used != 0 {
		t.Errorf("%d bytes still counted after every session ended", used)
	}
}
