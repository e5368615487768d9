package broker_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpbroker/mcpbroker/broker/limit/redistest"
)

// replicaSet is three `mcpbroker serve` processes sharing Redis and a
// session key, and a balancer in front that sends every request to the
// next of them.
type replicaSet struct {
	t        *testing.T
	bin      string
	redis    *redistest.Server
	key      string
	upstream string
	dir      string
	addrs    []string
	admins   []string
	cmds     []*exec.Cmd
	balancer *httptest.Server
	served   []atomic.Int64 // requests the balancer sent each replica
}

func startReplicaSet(t *testing.T, redisOptions ...redistest.Option) *replicaSet {
	t.Helper()
	rs := &replicaSet{t: t, bin: buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker"), redis: redistest.Start(t, redisOptions...), dir: t.TempDir()}
	rs.upstream = freeAddress(t)
	startProcess(t, rs.upstream, rs.bin, "upstream", "sample", "--listen", rs.upstream, "--name", "ledger")
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	rs.key = base64.StdEncoding.EncodeToString(key)
	rs.served = make([]atomic.Int64, 3)
	for i := range 3 {
		rs.addrs = append(rs.addrs, freeAddress(t))
		rs.admins = append(rs.admins, freeAddress(t))
		rs.writeConfig(i, "")
		rs.cmds = append(rs.cmds, startProcess(t, rs.addrs[i], rs.bin, "serve", "--config", rs.config(i)))
	}
	var turn atomic.Int64
	rs.balancer = httptest.NewServer(&httputil.ReverseProxy{FlushInterval: -1, Rewrite: func(r *httputil.ProxyRequest) {
		i := int(turn.Add(1) % 3)
		rs.served[i].Add(1)
		r.SetURL(&url.URL{Scheme: "http", Host: rs.addrs[i]})
	}})
	t.Cleanup(rs.balancer.Close)
	return rs
}

func (rs *replicaSet) config(i int) string {
	return filepath.Join(rs.dir, fmt.Sprintf("replica-%d.yaml", i))
}

func (rs *replicaSet) writeConfig(i int, moreApps string) {
	writeFile(rs.t, rs.config(i), fmt.Sprintf(scenario(rs.t, "replica-clients"), rs.addrs[i], rs.admins[i],
		filepath.Join(rs.dir, fmt.Sprintf("audit-%d", i)), rs.redis.Addr(), rs.key, rs.upstream, moreApps))
}

// handoffs sums mcpbroker_replica_handoffs_total{event} over the replicas.
func (rs *replicaSet) handoffs(event string) float64 {
	total := 0.0
	for _, admin := range rs.admins {
		total += metricSum(rs.t, "http://"+admin, "mcpbroker_replica_handoffs_total", map[string]string{"event": event})
	}
	return total
}

// Three replicas behind a balancer that sends each request to the next
// serve the Go SDK's client and the TypeScript SDK's client as one broker:
// tools, prompts, resources, a relayed elicitation and sampling (the
// client's answer reaching another replica than the call), progress, a
// cancellation (reaching another replica than the call), and a
// list_changed on the GET stream when the apps change. A request stream
// cut mid-call is resumed through another replica, nothing lost or
// repeated.
func TestReplicasServeEveryCall(t *testing.T) {
	rs := startReplicaSet(t)
	endpoint := rs.balancer.URL + "/mcp"

	t.Run("Go SDK", func(t *testing.T) {
		var elicitations, samplings, progress atomic.Int32
		listChanged := make(chan struct{}, 8)
		client := mcp.NewClient(&mcp.Implementation{Name: "replicas-test", Version: "1"}, &mcp.ClientOptions{
			ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
				elicitations.Add(1)
				return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"confirm": true}}, nil
			},
			CreateMessageHandler: func(context.Context, *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
				samplings.Add(1)
				return &mcp.CreateMessageResult{Model: "test-model", Role: "assistant", Content: &mcp.TextContent{Text: "a tidy account"}}, nil
			},
			ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) { progress.Add(1) },
			ToolListChangedHandler:      func(context.Context, *mcp.ToolListChangedRequest) { listChanged <- struct{}{} },
		})
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: endpoint}, nil)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer session.Close()
		relayedBefore := rs.handoffs("delivered")

		if names := toolNames(t, ctx, session); !names["ledger_transfer"] || !names["ledger_summarize"] {
			t.Errorf("tools/list: %v", names)
		}
		if got := text(callTool(t, ctx, session, "ledger_get_balance", map[string]any{"account": "alice"})); !strings.Contains(got, "alice") {
			t.Errorf("get_balance: %s", got)
		}
		prompts, err := session.ListPrompts(ctx, nil)
		if err != nil || len(prompts.Prompts) == 0 {
			t.Fatalf("prompts/list: %v %v", err, prompts)
		}
		if _, err := session.GetPrompt(ctx, &mcp.GetPromptParams{Name: prompts.Prompts[0].Name, Arguments: map[string]string{"account": "alice"}}); err != nil {
			t.Errorf("prompts/get: %v", err)
		}
		resources, err := session.ListResources(ctx, nil)
		if err != nil || len(resources.Resources) == 0 {
			t.Fatalf("resources/list: %v %v", err, resources)
		}
		if _, err := session.ReadResource(ctx, &mcp.ReadResourceParams{URI: resources.Resources[0].URI}); err != nil {
			t.Errorf("resources/read: %v", err)
		}
		// Relayed requests to the client: each answer is a POST of its own,
		// which the balancer sends to the next replica.
		for i := range 3 {
			if res := callTool(t, ctx, session, "ledger_transfer", map[string]any{"from": "alice", "to": "bob", "amount": 1001 + i}); res.IsError {
				t.Errorf("confirmed transfer %d: %s", i, text(res))
			}
			if res := callTool(t, ctx, session, "ledger_summarize", map[string]any{"account": "alice"}); res.IsError || !strings.Contains(text(res), "a tidy account") {
				t.Errorf("summarize %d: %s", i, text(res))
			}
		}
		if elicitations.Load() != 3 || samplings.Load() != 3 {
			t.Errorf("the client answered %d elicitations and %d samplings, want 3 and 3", elicitations.Load(), samplings.Load())
		}
		if rs.handoffs("delivered") == relayedBefore {
			t.Error("no answer reached another replica than the one it was sent to: the test proves nothing")
		}
		params := &mcp.CallToolParams{Name: "ledger_slow_count", Arguments: map[string]any{"n": 3, "delay_ms": 10}}
		params.SetProgressToken("count")
		if res, err := session.CallTool(ctx, params); err != nil || res.IsError {
			t.Errorf("slow_count: %v %v", err, res)
		}
		eventually(t, "three progress notifications", func() bool { return progress.Load() >= 3 })

		// A cancellation: the call ends at once; notifications/cancelled
		// may reach any replica.
		long, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			_, err := session.CallTool(long, &mcp.CallToolParams{Name: "ledger_slow_count", Arguments: map[string]any{"n": 300, "delay_ms": 100}})
			done <- err
		}()
		time.Sleep(300 * time.Millisecond)
		stop()
		select {
		case err := <-done:
			if err == nil {
				t.Error("a cancelled 30 s call completed")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the cancelled call did not end")
		}
		if got := text(callTool(t, ctx, session, "ledger_get_balance", map[string]any{"account": "bob"})); !strings.Contains(got, "bob") {
			t.Errorf("the session after the cancellation: %s", got)
		}

		// The apps change on every replica: the one holding the GET stream
		// tells the client.
		treasury := freeAddress(t)
		startProcess(t, treasury, rs.bin, "upstream", "sample", "--listen", treasury, "--name", "treasury")
		for i, cmd := range rs.cmds {
			rs.writeConfig(i, fmt.Sprintf("  - name: treasury\n    type: mcpProxy\n    upstream: {transport: stream, stream: {url: \"http://%s/mcp\"}}", treasury))
			if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case <-listChanged:
		case <-time.After(20 * time.Second):
			t.Error("no notifications/tools/list_changed on the GET stream")
		}
		eventually(t, "treasury's tools listed through every replica", func() bool {
			for range 3 {
				if !toolNames(t, ctx, session)["treasury_get_balance"] {
					return false
				}
			}
			return true
		})
	})

	t.Run("TypeScript SDK", func(t *testing.T) {
		out := runNode(t, "replica-client.mjs", "--url", endpoint)
		var got struct {
			Tools                    []string
			Balance                  string
			Prompts, Resources       []string
			PromptMessages           int
			ResourceContents         int
			Transfer, Summary, Count struct {
				IsError bool
				Text    string
			}
			CancelOutcome, After string
			Seen                 struct{ Elicitations, Samplings, Progress int }
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("replica-client printed %s: %v", out, err)
		}
		switch {
		case !strings.Contains(got.Balance, "alice"), got.PromptMessages == 0, got.ResourceContents == 0:
			t.Errorf("tools, prompts, resources: %+v", got)
		case got.Transfer.IsError || got.Seen.Elicitations != 1:
			t.Errorf("the confirmed transfer: %+v, %d elicitations", got.Transfer, got.Seen.Elicitations)
		case got.Summary.IsError || got.Seen.Samplings != 1 || !strings.Contains(got.Summary.Text, "a tidy account"):
			t.Errorf("the summary: %+v, %d samplings", got.Summary, got.Seen.Samplings)
		case got.Count.IsError || got.Seen.Progress < 3:
			t.Errorf("slow_count: %+v, %d progress notifications", got.Count, got.Seen.Progress)
		case !strings.HasPrefix(got.CancelOutcome, "aborted") || !strings.Contains(got.After, "carol"):
			t.Errorf("the cancelled call: %q, then %q", got.CancelOutcome, got.After)
		}
	})

	t.Run("a stream cut mid-call resumes through another replica", func(t *testing.T) {
		c := newWireClient(t, "http://"+rs.addrs[0]+"/mcp")
		c.initialize(`{}`)
		ctx, cut := context.WithCancel(context.Background())
		req, err := c.request(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"ledger_slow_count","arguments":{"n":6,"delay_ms":300},"_meta":{"progressToken":"cut"}}}`)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		events := bufio.NewScanner(resp.Body)
		var lastID string
		var before []string
		for len(before) < 2 && events.Scan() {
			line := events.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				lastID = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				before = append(before, strings.TrimPrefix(line, "data: "))
			}
		}
		cut()
		resp.Body.Close()
		if len(before) < 2 || lastID == "" {
			t.Fatalf("before the cut: %v, last id %q", before, lastID)
		}

		// The client comes back through the second replica.
		get, _ := http.NewRequest(http.MethodGet, "http://"+rs.addrs[1]+"/mcp", nil)
		get.Header.Set("Accept", "text/event-stream")
		get.Header.Set("Mcp-Session-Id", c.session)
		get.Header.Set("MCP-Protocol-Version", c.version)
		get.Header.Set("Last-Event-ID", lastID)
		resumed, err := http.DefaultClient.Do(get)
		if err != nil {
			t.Fatal(err)
		}
		defer resumed.Body.Close()
		if resumed.StatusCode != http.StatusOK {
			t.Fatalf("resume through another replica: %d", resumed.StatusCode)
		}
		var after []string
		ids := map[string]bool{lastID: true}
		events = bufio.NewScanner(resumed.Body)
		for events.Scan() {
			line := events.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				id := strings.TrimPrefix(line, "id: ")
				if ids[id] {
					t.Errorf("event %s delivered again", id)
				}
				ids[id] = true
			case strings.HasPrefix(line, "data: "):
				after = append(after, strings.TrimPrefix(line, "data: "))
			}
		}
		all := append(before, after...)
		progress := 0
		for i, data := range all {
			var m struct {
				Method string
				Params struct{ Progress float64 }
				Result json.RawMessage
			}
			_ = json.Unmarshal([]byte(data), &m)
			switch {
			case m.Method == "notifications/progress":
				progress++
				if int(m.Params.Progress) != progress {
					t.Errorf("event %d is progress %v, want %d (lost or repeated): %v", i, m.Params.Progress, progress, all)
				}
			case m.Result != nil && i != len(all)-1:
				t.Errorf("the result came before the end: %v", all)
			}
		}
		if progress != 6 || !strings.Contains(all[len(all)-1], `"result"`) {
			t.Errorf("across the cut: %d progress notifications and last %s, want 6 and the result", progress, all[len(all)-1])
		}
	})

	for i := range rs.served {
		if rs.served[i].Load() == 0 {
			t.Errorf("the balancer sent replica %d nothing", i)
		}
	}
}

// Redis stopped and started again under load: while it is down, calls in
// sessions get a clean refusal (503, the store unavailable), never a cut
// connection, and no replica falls over; once it is back every replica
// serves the same sessions again, with no goroutines left piling up.
func TestReplicasRedisRestartUnderLoad(t *testing.T) {
	rs := startReplicaSet(t, redistest.AppendOnly())
	goroutines := func() float64 {
		total := 0.0
		for _, admin := range rs.admins {
			total += metricSum(t, "http://"+admin, "go_goroutines", nil)
		}
		return total
	}
	clients := make([]*wireClient, 4)
	for i := range clients {
		clients[i] = newWireClient(t, "http://"+rs.addrs[i%3]+"/mcp")
		clients[i].header.Set("Accept", "application/json")
		clients[i].initialize(`{}`)
	}
	call := func(c *wireClient, replica, id int) (answer, error) {
		turn := *c
		turn.url = "http://" + rs.addrs[replica%3] + "/mcp"
		return turn.try(http.DefaultClient, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"ledger_get_balance","arguments":{"account":"alice"}}}`, id))
	}
	var served, refused atomic.Int64
	var mu sync.Mutex
	var odd []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				a, err := call(c, i+n, n)
				switch {
				case err == nil && a.status == http.StatusOK && a.rpcCode() == 0:
					served.Add(1)
				case err == nil && a.status == http.StatusServiceUnavailable && strings.Contains(string(a.body), "unavailable"):
					refused.Add(1)
					time.Sleep(20 * time.Millisecond)
				default:
					mu.Lock()
					odd = append(odd, fmt.Sprintf("%v %d %s", err, a.status, a.body))
					mu.Unlock()
				}
			}
		}()
	}
	eventually(t, "calls served before Redis stops", func() bool { return served.Load() > 40 })
	before := goroutines()
	rs.redis.Stop()
	eventually(t, "calls refused while Redis is down", func() bool { return refused.Load() > 20 })
	rs.redis.Restart()
	resumed := served.Load()
	eventually(t, "service back on every replica", func() bool { return served.Load() > resumed+60 })
	close(stop)
	wg.Wait()
	for i := range clients {
		for r := range 3 {
			if a, err := call(clients[i], r, 99999); err != nil || a.status != http.StatusOK || a.rpcCode() != 0 {
				t.Errorf("session %d on replica %d after the restart: %v %d %s", i, r, err, a.status, a.body)
			}
		}
	}
	if len(odd) > 0 {
		t.Errorf("%d answers neither served nor cleanly refused, the first: %s", len(odd), odd[0])
	}
	for i, cmd := range rs.cmds {
		if cmd.ProcessState != nil {
			t.Errorf("replica %d exited: %v", i, cmd.ProcessState)
		}
	}
	eventually(t, "goroutines back to where they were", func() bool { return goroutines() <= before+30 })
}
