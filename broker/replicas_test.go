package broker_test

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mcpbroker/mcpbroker/broker/limit/redistest"
)

// Three replicas sharing Redis: many concurrent calls spread over them
// admit exactly the shared budget; a session ended on one is refused by
// the others; with Redis down, requests in a session get a clear error
// (whether the session ended cannot be told), and service returns with
// Redis.
func TestReplicasShareRedis(t *testing.T) {
	server := redistest.Start(t)
	upstream, _ := countingUpstream(t)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	sessionKey := base64.StdEncoding.EncodeToString(key)
	var replicas []string
	for _, failure := range []string{"closed", "closed", "closed"} {
		replicas = append(replicas, startBroker(t, scenario(t, "replica"), server.Addr(), sessionKey, upstream, failure)+"/mcp")
	}
	call := func(c *wireClient, id int) answer {
		return c.send("call", fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"ledger_get_balance","arguments":{"account":"alice"}}}`, id))
	}

	// One session, its requests round-robin over the replicas.
	first := newWireClient(t, replicas[0])
	first.header.Set("Accept", "application/json")
	first.initialize(`{}`)
	var admitted, limited atomic.Int64
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := *first
			c.url = replicas[i%3]
			a := call(&c, 1000+i)
			switch {
			case a.status == http.StatusOK && a.rpcCode() == 0:
				admitted.Add(1)
			case a.status == http.StatusTooManyRequests:
				limited.Add(1)
			default:
				t.Errorf("replica %d: %d %s", i%3, a.status, a.body)
			}
		}()
	}
	wg.Wait()
	if admitted.Load() != 10 || limited.Load() != 20 {
		t.Errorf("over three replicas %d admitted, %d limited; want exactly 10 and 20", admitted.Load(), limited.Load())
	}

	// Ended on the first replica, refused by the second.
	req, _ := http.NewRequest(http.MethodDelete, replicas[0], nil)
	req.Header.Set("Mcp-Session-Id", first.session)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ended := *first
	ended.url = replicas[1]
	if a := ended.send("ping", `{"jsonrpc":"2.0","id":1,"method":"ping"}`); a.status != http.StatusNotFound {
		t.Errorf("a session ended on another replica: %d %s, want 404", a.status, a.body)
	}

	// Redis down: sessions and limits cannot be checked.
	second := newWireClient(t, replicas[1])
	second.header.Set("Accept", "application/json")
	second.initialize(`{}`)
	server.Stop()
	if a := call(second, 2000); a.status != http.StatusServiceUnavailable || !strings.Contains(string(a.body), "session store unavailable") {
		t.Errorf("with Redis down: %d %s, want 503 session store unavailable", a.status, a.body)
	}
	server.Restart()
	// Without persistence the budget starts afresh: the call is served.
	eventually(t, "service returns with Redis", func() bool {
		a := call(second, 2001)
		return a.status == http.StatusOK && a.rpcCode() == 0
	})
}

// Three replica processes share Redis and a session key. One is killed
// (SIGKILL) while sessions use all three: calls that were on it fail
// cleanly, the sessions go on through the others under the same ids, and
// the killed replica, started again, serves them too.
func TestReplicaKilledUnderLoad(t *testing.T) {
	server := redistest.Start(t)
	bin := buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	upstreamAddr := freeAddress(t)
	startProcess(t, upstreamAddr, bin, "upstream", "sample", "--listen", upstreamAddr)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	sessionKey := base64.StdEncoding.EncodeToString(key)
	dir := t.TempDir()
	type replica struct {
		addr, config string
		cmd          *exec.Cmd
	}
	replicas := make([]*replica, 3)
	for i := range replicas {
		r := &replica{addr: freeAddress(t), config: filepath.Join(dir, fmt.Sprintf("replica-%d.yaml", i))}
		writeFile(t, r.config, fmt.Sprintf(scenario(t, "replica-process"), r.addr, freeAddress(t),
			filepath.Join(dir, fmt.Sprintf("audit-%d", i)), server.Addr(), sessionKey, upstreamAddr))
		r.cmd = startProcess(t, r.addr, bin, "serve", "--config", r.config)
		replicas[i] = r
	}
	url := func(i int) string { return "http://" + replicas[i%3].addr + "/mcp" }

	const sessions = 4
	clients := make([]*wireClient, sessions)
	for i := range clients {
		clients[i] = newWireClient(t, url(i))
		clients[i].header.Set("Accept", "application/json")
		clients[i].initialize(`{}`)
	}
	var served, cut atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{}
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				turn := *c
				turn.url = url(i + n)
				a, err := turn.try(client, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"ledger_get_balance","arguments":{"account":"alice"}}}`, n))
				switch {
				case err != nil:
					cut.Add(1) // the killed replica's connection: refused or cut
				case a.status == http.StatusOK && a.rpcCode() == 0:
					served.Add(1)
				default:
					t.Errorf("session %d via replica %d: %d %s", i, (i+n)%3, a.status, a.body)
				}
			}
		}()
	}
	eventually(t, "calls are served through every replica", func() bool { return served.Load() > 60 })
	if err := replicas[1].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	before := served.Load()
	eventually(t, "the sessions go on through the other replicas", func() bool { return served.Load() > before+60 && cut.Load() > 0 })

	// Started again, the killed replica serves the same sessions.
	replicas[1].cmd = startProcess(t, replicas[1].addr, bin, "serve", "--config", replicas[1].config)
	close(stop)
	wg.Wait()
	for i, c := range clients {
		turn := *c
		turn.url = url(1)
		if a := turn.send("call", `{"jsonrpc":"2.0","id":99999,"method":"tools/call","params":{"name":"ledger_get_balance","arguments":{"account":"alice"}}}`); a.status != http.StatusOK || a.rpcCode() != 0 {
			t.Errorf("session %d on the restarted replica: %d %s", i, a.status, a.body)
		}
	}
}
