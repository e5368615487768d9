package provider

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/broker/limit/redistest"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// peerDispatcher hands every client answer or notification that did not
// come from a peer to the peers, as a broker holding no state for it
// does, and notes the ones that did.
type peerDispatcher struct {
	*fakeDispatcher
	relayed  chan *jsonrpc.Message
	handoffs sync.Map // event → *atomic.Int64
}

func (d *peerDispatcher) handoff(event string) {
	n, _ := d.handoffs.LoadOrStore(event, &atomic.Int64{})
	n.(*atomic.Int64).Add(1)
}

func (d *peerDispatcher) handoffCount(event string) int64 {
	if n, ok := d.handoffs.Load(event); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

func (d *peerDispatcher) Dispatch(ctx context.Context, req *Request) Reply {
	if req.Message.Kind() != jsonrpc.KindRequest {
		if req.Relayed {
			d.relayed <- req.Message
		} else {
			req.Session.Relay(ctx, req.Message)
		}
		return Reply{}
	}
	return d.fakeDispatcher.Dispatch(ctx, req)
}

// twoReplicas serves two providers sharing a session key and a Redis.
func twoReplicas(t *testing.T) (a, b *harness, da, db *peerDispatcher) {
	t.Helper()
	server := redistest.Start(t)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	replica := func() (*harness, *peerDispatcher) {
		d := &peerDispatcher{fakeDispatcher: newFakeDispatcher(), relayed: make(chan *jsonrpc.Message, 10)}
		h := newHarnessWith(t, d.fakeDispatcher, func(o *Options) {
			o.SessionKey = key
			o.Revocations = NewRedisRevocations(server.Client(), "peers-test:")
			o.Peers = NewRedisPeers(server.Client(), "peers-test:")
			o.OnHandoff = d.handoff
		})
		// The harness serves the fake dispatcher; route through the peer one.
		h.p.dispatcher = d
		return h, d
	}
	a, da = replica()
	b, db = replica()
	return a, b, da, db
}

// A client's answer that reaches the replica holding nothing for it is
// served by the replica holding the session's state, once, and by no
// other.
func TestPeersRelayClientMessages(t *testing.T) {
	a, b, da, db := twoReplicas(t)
	sid := a.initialize("alice", "2025-06-18")
	// The session is live on a; b restores it from its id.
	if resp, body := b.doBody(call{subject: "alice", session: sid, body: requestBody(1, "echo", `{}`)}); resp.StatusCode != http.StatusOK {
		t.Fatalf("echo on b: %d %s", resp.StatusCode, body)
	}
	answer := `{"jsonrpc":"2.0","id":"s-1","result":{"action":"accept"}}`
	resp, body := b.doBody(call{subject: "alice", session: sid, body: answer})
	wantStatus(t, resp, body, http.StatusAccepted)
	select {
	case m := <-da.relayed:
		if m.ID.Raw() != `"s-1"` || string(m.Result) != `{"action":"accept"}` {
			t.Errorf("relayed %s", m.Encode())
		}
	case <-time.After(waitLong):
		t.Fatal("the answer never reached the other replica")
	}
	select {
	case m := <-db.relayed:
		t.Errorf("the replica that relayed the answer got it back: %s", m.Encode())
	case <-time.After(200 * time.Millisecond):
	}
	if db.handoffCount("relayed") != 1 || da.handoffCount("delivered") != 1 {
		t.Errorf("handoffs counted: relayed %d by b, delivered %d by a; want 1 and 1", db.handoffCount("relayed"), da.handoffCount("delivered"))
	}
}

// A request stream cut while its call goes on is resumed through another
// replica: the events after the client's last one arrive there, each
// once, and the stream ends with the response.
func TestPeersResumeStreamElsewhere(t *testing.T) {
	a, b, da, db := twoReplicas(t)
	sid := a.initialize("alice", "2025-06-18")
	_, first, disconnect := startStream(t, a, sid, 7, 4, "cut", "mine")
	disconnect()

	resp := b.do(call{method: http.MethodGet, subject: "alice", session: sid, lastEventID: first.id})
	defer resp.Body.Close()
	wantStatus(t, resp, nil, http.StatusOK)
	a.d.release("cut")
	events := newSSEReader(resp.Body).rest(t)
	progress, final := tallyReplay(t, events, first.id, "mine")
	if progress != 3 || !final {
		t.Errorf("resumed elsewhere: %d notifications (want 3), response %v; events %+v", progress, final, events)
	}

	// A stream nobody holds is not found, after the wait for its holder.
	resp2, body := b.doBody(call{method: http.MethodGet, subject: "alice", session: sid, lastEventID: "0123456789abcdef_1"})
	wantStatus(t, resp2, body, http.StatusNotFound)
	if da.handoffCount("copied_out") != 1 || db.handoffCount("resumed_elsewhere") != 1 || db.handoffCount("resume_not_found") != 1 {
		t.Errorf("handoffs counted: copied_out %d, resumed_elsewhere %d, resume_not_found %d; want 1 each",
			da.handoffCount("copied_out"), db.handoffCount("resumed_elsewhere"), db.handoffCount("resume_not_found"))
	}
}

// Without Redis, resuming elsewhere is a clear 503, not a hang.
func TestPeersResumeWithRedisDown(t *testing.T) {
	server := redistest.Start(t)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	h := newHarness(t, func(o *Options) {
		o.SessionKey = key
		o.Peers = NewRedisPeers(server.Client(), "peers-down:")
	})
	sid := h.initialize("alice", "2025-06-18")
	server.Stop()
	resp, body := h.doBody(call{method: http.MethodGet, subject: "alice", session: sid, lastEventID: "0123456789abcdef_1"})
	wantStatus(t, resp, body, http.StatusServiceUnavailable)
	var m struct{ Error struct{ Message string } }
	_ = json.Unmarshal(body, &m)
	if m.Error.Message == "" {
		t.Errorf("503 without a message: %s", body)
	}
}

// Answers flooding in from the peers while the replica serving them is
// stuck take a bounded share of memory: past maxPeerDeliveries at once
// they are dropped, not queued; and an answer over maxPeerMessageBytes is
// not handed over at all.
func TestPeersDeliveriesBounded(t *testing.T) {
	a, b, da, db := twoReplicas(t)
	sid := a.initialize("alice", "2025-06-18")
	if resp, body := b.doBody(call{subject: "alice", session: sid, body: requestBody(1, "echo", `{}`)}); resp.StatusCode != http.StatusOK {
		t.Fatalf("echo on b: %d %s", resp.StatusCode, body)
	}
	const answers, size = 400, 256 << 10
	padding := strings.Repeat("x", size)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range answers {
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"result":{"pad":"%s"}}`, i, padding)
		resp, _ := b.doBody(call{subject: "alice", session: sid, body: body})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("answer %d: %d", i, resp.StatusCode)
		}
	}
	deadline := time.Now().Add(waitLong)
	for da.handoffCount("delivered")+da.handoffCount("dropped") < answers && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if delivered := da.handoffCount("delivered"); delivered > int64(maxPeerDeliveries+cap(da.relayed)+1) || da.handoffCount("dropped") == 0 {
		t.Errorf("%d delivered, %d dropped while the replica was stuck; want at most %d delivered and the rest dropped",
			delivered, da.handoffCount("dropped"), maxPeerDeliveries+cap(da.relayed)+1)
	}
	if limit := int64(2*maxPeerDeliveries*size + 16<<20); grown > limit {
		t.Errorf("heap grew by %d MiB over %d answers of %d KiB, want under %d MiB", grown>>20, answers, size>>10, limit>>20)
	}
	for len(da.relayed) > 0 {
		<-da.relayed
	}

	huge := fmt.Sprintf(`{"jsonrpc":"2.0","id":9999,"result":{"pad":"%s"}}`, strings.Repeat("x", maxPeerMessageBytes))
	failed := db.handoffCount("relay_failed")
	if resp, body := b.doBody(call{subject: "alice", session: sid, body: huge}); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("huge answer: %d %s", resp.StatusCode, body)
	}
	if db.handoffCount("relay_failed") != failed+1 {
		t.Error("an answer over the cap was handed to the peers")
	}
}
