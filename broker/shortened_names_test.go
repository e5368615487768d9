package broker_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
)

func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// What the broker remembers of shortened tool names is bounded by what
// upstreams list now: an upstream that lists fresh long names every time
// cannot make the broker hold them after they are listed again, or after
// the session that listed them ended. A shortened name still calls the
// tool it was listed for.
func TestShortenedNamesBounded(t *testing.T) {
	// Names as long as the broker shows (maxNameBytes), many of them.
	const perList, nameBytes = 4000, 500
	var generation atomic.Int64
	u := &scriptUpstream{toolsFunc: func() string {
		g := generation.Add(1)
		items := make([]string, perList)
		for i := range items {
			name := fmt.Sprintf("t%d-%d-%s", g, i, strings.Repeat("n", nameBytes))
			items[i] = fmt.Sprintf(`{"name":%q,"inputSchema":{"type":"object"}}`, name)
		}
		return "[" + strings.Join(items, ",") + "]"
	}}
	url := newScriptUpstream(t, u)
	brokerURL := startBroker(t, scenario(t, "shortened-names-bounded"), url)

	list := func(c *wireClient) []string {
		msgs := readMessages(t, c.post(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`))
		var result struct {
			Tools []struct{ Name string } `json:"tools"`
		}
		if len(msgs) != 1 || msgs[0]["result"] == nil {
			t.Fatalf("tools/list: %v", msgs)
		}
		raw, _ := json.Marshal(msgs[0]["result"])
		_ = json.Unmarshal(raw, &result)
		names := make([]string, len(result.Tools))
		for i, tool := range result.Tools {
			names[i] = tool.Name
		}
		return names
	}
	base := liveHeap()
	listed := perList * nameBytes
	c := newWireClient(t, brokerURL+"/mcp")
	c.initialize(`{}`)
	var names []string
	for range 20 {
		names = list(c)
	}
	if held := liveHeap() - base; held > int64(4*listed) {
		t.Errorf("after 20 listings in one session the broker holds %d MiB, want about one listing's (%d MiB)", held>>20, listed>>20)
	}

	// The shortened name still reaches the tool it was listed for.
	last := names[len(names)-1]
	if len(last) > 64 || !strings.HasPrefix(last, "hostile_") {
		t.Fatalf("listed name %q is not a shortened one", last)
	}
	msgs := readMessages(t, c.post(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"`+last+`","arguments":{}}}`))
	if len(msgs) != 1 || msgs[0]["result"] == nil {
		t.Fatalf("calling %s: %v", last, msgs)
	}
	calls := u.received("tools/call")
	var p struct{ Name string }
	_ = json.Unmarshal([]byte(rawParams(t, calls[len(calls)-1])), &p)
	if want := fmt.Sprintf("t%d-%d-", generation.Load(), perList-1); !strings.HasPrefix(p.Name, want) || len(p.Name) < nameBytes {
		t.Errorf("the upstream was called with %.40q..., want the listed tool %s...", p.Name, want)
	}

	for range 10 {
		other := newWireClient(t, brokerURL+"/mcp")
		other.initialize(`{}`)
		list(other)
		req, _ := http.NewRequest(http.MethodDelete, brokerURL+"/mcp", nil)
		req.Header.Set("Mcp-Session-Id", other.session)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	req, _ := http.NewRequest(http.MethodDelete, brokerURL+"/mcp", nil)
	req.Header.Set("Mcp-Session-Id", c.session)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	u.mu.Lock()
	u.bodies = nil // the test upstream's own record
	u.mu.Unlock()
	// Ended sessions close their upstream sessions in the background.
	eventually(t, "the ended sessions' listings are released", func() bool { return liveHeap()-base <= int64(listed) })
}
