package broker_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mcpbroker/mcpbroker/broker/limit/redistest"
)

// brokerReplicas is three `mcpbroker serve` processes that share Redis,
// a session key and a ledger upstream, behind a balancer that sends each
// request of a session to another replica than the one before.
type brokerReplicas struct {
	t             *testing.T
	bin, dir, key string
	redis         *redistest.Server
	ledger        string // the ledger upstream's address
	addrs, admins []string
	balancer      *balancer
}

func startBrokerReplicas(t *testing.T, redisOptions ...redistest.Option) *brokerReplicas {
	t.Helper()
	r := &brokerReplicas{t: t, bin: buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker"), dir: t.TempDir()}
	r.redis = redistest.Start(t, redisOptions...)
	r.ledger = freeAddress(t)
	startProcess(t, r.ledger, r.bin, "upstream", "sample", "--listen", r.ledger, "--name", "ledger")
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	r.key = base64.StdEncoding.EncodeToString(key)
	for i := range 3 {
		r.addrs = append(r.addrs, freeAddress(t))
		r.admins = append(r.admins, freeAddress(t))
		r.configure(i, "")
		startProcess(t, r.addrs[i], r.bin, "serve", "--config", r.config(i))
	}
	r.balancer = startBalancer(t, r.addrs)
	return r
}

func (r *brokerReplicas) config(i int) string {
	return filepath.Join(r.dir, fmt.Sprintf("replica-%d.yaml", i))
}

// configure writes replica i's configuration with moreApps after the
// ledger. The file is replaced whole, as configuration management does,
// so that a replica watching it never reads half of it.
func (r *brokerReplicas) configure(i int, moreApps string) {
	r.t.Helper()
	next := r.config(i) + ".next"
	writeFile(r.t, next, fmt.Sprintf(scenario(r.t, "replica-full"), r.addrs[i], r.admins[i],
		filepath.Join(r.dir, fmt.Sprintf("audit-%d", i)), r.redis.Addr(), r.key, r.ledger, moreApps))
	if err := os.Rename(next, r.config(i)); err != nil {
		r.t.Fatal(err)
	}
}

// callsEnded counts, over the replicas, the tools/call requests for tool
// that have ended, however they ended: a call is counted when its answer
// is decided, so a cancelled call is counted once its upstream stops.
func (r *brokerReplicas) callsEnded(t *testing.T, tool string) float64 {
	t.Helper()
	total := 0.0
	for _, admin := range r.admins {
		total += metricSum(t, "http://"+admin, "mcpbroker_calls_total", map[string]string{"method": "tools/call", "tool": tool})
	}
	return total
}

// goroutines reads each replica's go_goroutines.
func (r *brokerReplicas) goroutines(t *testing.T) []float64 {
	t.Helper()
	var counts []float64
	for _, admin := range r.admins {
		resp, err := http.Get("http://" + admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		gauge := families["go_goroutines"].GetMetric()
		if len(gauge) != 1 {
			t.Fatalf("replica admin %s: go_goroutines has %d samples", admin, len(gauge))
		}
		counts = append(counts, gauge[0].GetGauge().GetValue())
	}
	return counts
}

// Three replicas behind a balancer that sends each request of a session
// to another replica than the one before serve the Go SDK's and the
// TypeScript SDK's clients as one broker would: tools, prompts, resources;
// an elicitation and a sampling request relayed from the upstream whose
// answers reach another replica than the call; progress; a cancellation
// that reaches another replica than the call and stops it; the tools'
// list_changed on the GET stream when a reload changes the apps; and a
// request's stream cut mid-call resumed through another replica with no
// event lost or repeated.
func TestReplicasServeEveryCallRoundRobin(t *testing.T) {
	r := startBrokerReplicas(t)
	treasury := freeAddress(t)
	startProcess(t, treasury, r.bin, "upstream", "sample", "--listen", treasury, "--name", "treasury")
	endpoint := r.balancer.URL + "/mcp"

	t.Run("Go SDK", func(t *testing.T) {
		c := newRecordingClient()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		// Sessions across replicas: the sessionful protocol.
		session, err := c.client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: endpoint}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer session.Close()

		t.Run("tools, prompts and resources", func(t *testing.T) {
			names := toolNames(t, ctx, session)
			for _, want := range []string{"ledger_get_balance", "ledger_transfer", "ledger_summarize", "ledger_slow_count"} {
				if !names[want] {
					t.Errorf("tools/list lacks %s: %v", want, names)
				}
			}
			if got := text(callTool(t, ctx, session, "ledger_get_balance", map[string]any{"account": "alice"})); got != "alice: 5000" {
				t.Errorf("get_balance: %q, want alice: 5000", got)
			}
			prompts, err := session.ListPrompts(ctx, nil)
			if err != nil {
				t.Fatalf("prompts/list: %v", err)
			}
			if !slices.ContainsFunc(prompts.Prompts, func(p *mcp.Prompt) bool { return p.Name == "ledger_audit_account" }) {
				t.Errorf("prompts/list lacks ledger_audit_account: %d prompts", len(prompts.Prompts))
			}
			prompt, err := session.GetPrompt(ctx, &mcp.GetPromptParams{Name: "ledger_audit_account", Arguments: map[string]string{"account": "alice"}})
			if err != nil || len(prompt.Messages) == 0 {
				t.Fatalf("prompts/get: %v %v", err, prompt)
			}
			if content, ok := prompt.Messages[0].Content.(*mcp.TextContent); !ok || !strings.Contains(content.Text, "alice") {
				t.Errorf("prompts/get: %#v", prompt.Messages[0].Content)
			}
			resources, err := session.ListResources(ctx, nil)
			if err != nil || len(resources.Resources) == 0 {
				t.Fatalf("resources/list: %v %v", err, resources)
			}
			read, err := session.ReadResource(ctx, &mcp.ReadResourceParams{URI: resources.Resources[0].URI})
			if err != nil || len(read.Contents) == 0 || !strings.Contains(read.Contents[0].Text, "alice") {
				t.Fatalf("resources/read %s: %v %v", resources.Resources[0].URI, err, read)
			}
		})

		t.Run("the answer to an elicitation reaches another replica than the call", func(t *testing.T) {
			res := callTool(t, ctx, session, "ledger_transfer", map[string]any{"from": "alice", "to": "bob", "amount": 1500})
			if res.IsError || !strings.Contains(text(res), "moved 1500 from alice to bob") {
				t.Errorf("confirmed transfer: isError=%v %s", res.IsError, text(res))
			}
			if n := c.elicitations.Load(); n != 1 {
				t.Errorf("the client answered %d elicitations, want 1", n)
			}
			answerCrossed(t, r.balancer, session.ID(), "ledger_transfer")
		})

		t.Run("the answer to a sampling request reaches another replica than the call", func(t *testing.T) {
			res := callTool(t, ctx, session, "ledger_summarize", map[string]any{"account": "alice"})
			if res.IsError || text(res) != "a tidy account" {
				t.Errorf("summarize: isError=%v %q", res.IsError, text(res))
			}
			if n := c.samplings.Load(); n != 1 {
				t.Errorf("the client answered %d sampling requests, want 1", n)
			}
			answerCrossed(t, r.balancer, session.ID(), "ledger_summarize")
		})

		t.Run("progress", func(t *testing.T) {
			params := &mcp.CallToolParams{Name: "ledger_slow_count", Arguments: map[string]any{"n": 5, "delay_ms": 20}}
			params.SetProgressToken("count")
			res, err := session.CallTool(ctx, params)
			if err != nil || res.IsError || text(res) != "counted 5" {
				t.Fatalf("slow_count: %v %v", err, res)
			}
			// The SDK hands notifications to their handler apart from the
			// response: they may arrive after it.
			eventually(t, "five progress notifications", func() bool { return len(c.progressOf("count")) >= 5 })
			if got := c.progressOf("count"); !slices.Equal(got, []float64{1, 2, 3, 4, 5}) {
				t.Errorf("progress %v, want 1 to 5 once each", got)
			}
		})

		t.Run("a cancellation reaches another replica than the call and stops it", func(t *testing.T) {
			ended := r.callsEnded(t, "slow_count")
			long, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() {
				// 30 s unless cancelled: longer than eventually waits.
				params := &mcp.CallToolParams{Name: "ledger_slow_count", Arguments: map[string]any{"n": 300, "delay_ms": 100}}
				params.SetProgressToken("long")
				_, err := session.CallTool(long, params)
				done <- err
			}()
			eventually(t, "the long count under way", func() bool { return len(c.progressOf("long")) > 0 })
			stop()
			select {
			case err := <-done:
				if err == nil {
					t.Error("the cancelled call completed")
				}
			case <-time.After(15 * time.Second):
				t.Fatal("the cancelled call did not return")
			}
			eventually(t, "the cancelled call ended at the upstream", func() bool { return r.callsEnded(t, "slow_count") > ended })
			cancellationCrossed(t, r.balancer, session.ID(), "ledger_slow_count")
			if got := text(callTool(t, ctx, session, "ledger_get_balance", map[string]any{"account": "bob"})); got != "bob: 2700" {
				t.Errorf("the session after the cancellation: %q, want bob: 2700", got)
			}
		})

		t.Run("a reload that changes the apps is told on the GET stream", func(t *testing.T) {
			if !slices.ContainsFunc(r.balancer.of(session.ID()), func(p passage) bool { return p.HTTPMethod == http.MethodGet }) {
				t.Fatal("the client opened no GET stream")
			}
			c.listChanged.Store(0)
			for i := range r.addrs {
				r.configure(i, fmt.Sprintf("  - name: treasury\n    type: mcpProxy\n    toolNamespace: {name: treasury_}\n    upstream: {transport: stream, stream: {url: \"http://%s/mcp\"}}\n", treasury))
			}
			eventually(t, "notifications/tools/list_changed", func() bool { return c.listChanged.Load() > 0 })
			// Successive requests of the session reach each replica in turn.
			eventually(t, "treasury's tools listed by every replica", func() bool {
				for range r.addrs {
					if !toolNames(t, ctx, session)["treasury_get_balance"] {
						return false
					}
				}
				return true
			})
			if got := text(callTool(t, ctx, session, "treasury_get_balance", map[string]any{"account": "carol"})); got != "carol: 300" {
				t.Errorf("treasury_get_balance: %q, want carol: 300", got)
			}
		})

		t.Run("every replica served the session", func(t *testing.T) {
			everyReplicaServed(t, r.balancer, session.ID())
		})
	})

	t.Run("TypeScript SDK", func(t *testing.T) {
		ended := r.callsEnded(t, "slow_count")
		var got struct {
			SessionID         string
			Tools             []string
			Balance           string
			PromptMessages    int
			PromptText        string
			ResourceContents  int
			Transfer, Summary struct {
				IsError bool
				Text    string
			}
			Count struct {
				IsError bool
				Text    string
			}
			ProgressValues []float64
			CancelOutcome  string
			After          string
			Seen           struct{ Elicitations, Samplings int }
		}
		out := runNode(t, "replica-client.mjs", "--url", endpoint)
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("replica-client.mjs printed %s: %v", out, err)
		}
		if got.SessionID == "" {
			t.Fatalf("replica-client.mjs had no session: %s", out)
		}
		if !slices.Contains(got.Tools, "ledger_transfer") || !strings.HasPrefix(got.Balance, "alice: ") {
			t.Errorf("tools/list %v, get_balance %q", got.Tools, got.Balance)
		}
		if got.PromptMessages == 0 || !strings.Contains(got.PromptText, "alice") || got.ResourceContents == 0 {
			t.Errorf("prompt: %d messages %q; resource: %d contents", got.PromptMessages, got.PromptText, got.ResourceContents)
		}
		if got.Transfer.IsError || !strings.Contains(got.Transfer.Text, "moved 1100 from bob to carol") || got.Seen.Elicitations != 1 {
			t.Errorf("confirmed transfer: %+v after %d elicitations, want 1", got.Transfer, got.Seen.Elicitations)
		}
		if got.Summary.IsError || got.Summary.Text != "a tidy account" || got.Seen.Samplings != 1 {
			t.Errorf("summary: %+v after %d sampling requests, want 1", got.Summary, got.Seen.Samplings)
		}
		if got.Count.IsError || got.Count.Text != "counted 3" || !slices.Equal(got.ProgressValues, []float64{1, 2, 3}) {
			t.Errorf("slow_count: %+v with progress %v, want 1 to 3", got.Count, got.ProgressValues)
		}
		if !strings.HasPrefix(got.CancelOutcome, "aborted") || !strings.HasPrefix(got.After, "carol: ") {
			t.Errorf("the cancelled call: %q, then %q", got.CancelOutcome, got.After)
		}
		answerCrossed(t, r.balancer, got.SessionID, "ledger_transfer")
		answerCrossed(t, r.balancer, got.SessionID, "ledger_summarize")
		// The count that completed and the cancelled one.
		eventually(t, "both counts ended at the upstream", func() bool { return r.callsEnded(t, "slow_count") >= ended+2 })
		cancellationCrossed(t, r.balancer, got.SessionID, "ledger_slow_count")
		everyReplicaServed(t, r.balancer, got.SessionID)
	})

	t.Run("a stream cut mid-call resumes through another replica", func(t *testing.T) {
		c := newWireClient(t, endpoint)
		c.initialize(`{}`)
		r.balancer.cutAfterEvents(2)
		resp := c.post(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"ledger_slow_count","arguments":{"n":5,"delay_ms":300},"_meta":{"progressToken":"cut"}}}`)
		before, err := readEvents(resp.Body)
		resp.Body.Close()
		if err == nil || len(before) != 2 || before[1].ID == "" {
			t.Fatalf("before the cut (%v): %v, want two events and a cut", err, before)
		}
		last := before[1].ID

		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		get, _ := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
		get.Header.Set("Accept", "text/event-stream")
		get.Header.Set("Mcp-Session-Id", c.session)
		get.Header.Set("MCP-Protocol-Version", c.version)
		get.Header.Set("Last-Event-ID", last)
		resumed, err := http.DefaultClient.Do(get)
		if err != nil {
			t.Fatal(err)
		}
		defer resumed.Body.Close()
		if resumed.StatusCode != http.StatusOK {
			t.Fatalf("resuming after %s: %d", last, resumed.StatusCode)
		}
		after, err := readEvents(resumed.Body)
		if err != nil {
			t.Errorf("the resumed stream: %v after %v", err, after)
		}
		checkResumed(t, before, after, 7, "cut", 5)

		passages := r.balancer.of(c.session)
		cut := slices.IndexFunc(passages, func(p passage) bool { return p.Cut })
		resume := slices.IndexFunc(passages, func(p passage) bool { return p.LastEventID == last })
		switch {
		case cut < 0 || resume < 0:
			t.Errorf("the balancer saw no cut (%d) or no resumption (%d)", cut, resume)
		case passages[cut].Replica == passages[resume].Replica:
			t.Errorf("the stream was resumed through replica %d, which served the call: the test proves nothing", passages[resume].Replica)
		}
		everyReplicaServed(t, r.balancer, c.session)
	})

	t.Run("the Go SDK resumes a cut stream through another replica", func(t *testing.T) {
		c := newRecordingClient()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// Sessions across replicas: the sessionful protocol.
		session, err := c.client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: endpoint}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer session.Close()
		r.balancer.cutAfterEvents(2)
		params := &mcp.CallToolParams{Name: "ledger_slow_count", Arguments: map[string]any{"n": 5, "delay_ms": 300}}
		params.SetProgressToken("resumed")
		res, err := session.CallTool(ctx, params)
		if err != nil || res.IsError || text(res) != "counted 5" {
			t.Fatalf("slow_count across a cut: %v %v", err, res)
		}
		eventually(t, "five progress notifications", func() bool { return len(c.progressOf("resumed")) >= 5 })
		if got := c.progressOf("resumed"); !slices.Equal(got, []float64{1, 2, 3, 4, 5}) {
			t.Errorf("progress across the cut %v, want 1 to 5 once each", got)
		}
		passages := r.balancer.of(session.ID())
		cut := slices.IndexFunc(passages, func(p passage) bool { return p.Cut })
		if cut < 0 {
			t.Fatal("the balancer cut nothing")
		}
		resume := slices.IndexFunc(passages, func(p passage) bool { return p.LastEventID != "" })
		switch {
		case resume < cut:
			t.Errorf("the SDK did not resume the cut stream with Last-Event-ID")
		case passages[cut].Replica == passages[resume].Replica:
			t.Errorf("the stream was resumed through replica %d, which served the call: the test proves nothing", passages[resume].Replica)
		}
		everyReplicaServed(t, r.balancer, session.ID())
	})
}

// recordingClient is a Go SDK client that answers elicitations (accept,
// confirm) and sampling requests ("a tidy account"), and records progress
// and tools' list_changed.
type recordingClient struct {
	client                  *mcp.Client
	elicitations, samplings atomic.Int32
	listChanged             atomic.Int32
	mu                      sync.Mutex
	progress                map[string][]float64 // by token
}

func newRecordingClient() *recordingClient {
	c := &recordingClient{progress: map[string][]float64{}}
	c.client = mcp.NewClient(&mcp.Implementation{Name: "replicas-test", Version: "1"}, &mcp.ClientOptions{
		ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			c.elicitations.Add(1)
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"confirm": true}}, nil
		},
		CreateMessageHandler: func(context.Context, *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			c.samplings.Add(1)
			return &mcp.CreateMessageResult{Model: "test-model", Role: "assistant", Content: &mcp.TextContent{Text: "a tidy account"}}, nil
		},
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			c.mu.Lock()
			defer c.mu.Unlock()
			token := fmt.Sprint(req.Params.ProgressToken)
			c.progress[token] = append(c.progress[token], req.Params.Progress)
		},
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { c.listChanged.Add(1) },
	})
	return c
}

// progressOf returns the progress values notified for token, sorted: the
// SDK may hand notifications to the handler out of order.
func (c *recordingClient) progressOf(token string) []float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(slices.Values(c.progress[token]))
}

// answerCrossed checks that the client's answer to what the broker asked
// it during the call of tool reached another replica than the call: the
// broker had to carry it across.
func answerCrossed(t *testing.T, b *balancer, session, tool string) {
	t.Helper()
	var call *passage
	for _, p := range b.of(session) {
		switch {
		case p.RPC == "tools/call" && p.Tool == tool:
			call = &p
		case p.RPC == "response" && call != nil:
			if p.Replica == call.Replica {
				t.Errorf("the answer during %s reached replica %d, which served the call: the test proves nothing", tool, p.Replica)
			}
			return
		}
	}
	t.Errorf("no answer from the client followed the call of %s", tool)
}

// cancellationCrossed checks that the client cancelled a call of tool
// through another replica than the one serving it.
func cancellationCrossed(t *testing.T, b *balancer, session, tool string) {
	t.Helper()
	calls := map[string]passage{}
	for _, p := range b.of(session) {
		switch {
		case p.RPC == "tools/call" && p.Tool == tool:
			calls[p.ID] = p
		case p.RPC == "notifications/cancelled":
			if call, ok := calls[p.Cancels]; ok {
				if p.Replica == call.Replica {
					t.Errorf("the cancellation of %s reached replica %d, which served the call: the test proves nothing", tool, p.Replica)
				}
				return
			}
		}
	}
	t.Errorf("the client cancelled no call of %s", tool)
}

// everyReplicaServed checks that each replica served requests of session.
func everyReplicaServed(t *testing.T, b *balancer, session string) {
	t.Helper()
	counts := b.servedBy(session)
	for i, n := range counts {
		if n == 0 {
			t.Errorf("replica %d served no request of the session (requests by replica: %v)", i, counts)
		}
	}
}

// checkResumed checks the events of a stream read before a cut and after
// resuming it: progress for token 1 to n once each and in order, then the
// answer to request id, once and last; the resumed events numbered on
// from the last one read, with no gap.
func checkResumed(t *testing.T, before, after []sseEvent, id int, token string, n int) {
	t.Helper()
	all := append(slices.Clone(before), after...)
	var progress []float64
	answers := 0
	for i, e := range all {
		var m struct {
			ID     *int   `json:"id"`
			Method string `json:"method"`
			Params struct {
				ProgressToken any     `json:"progressToken"`
				Progress      float64 `json:"progress"`
			} `json:"params"`
			Result struct {
				Content []struct{ Text string } `json:"content"`
			} `json:"result"`
		}
		if err := json.Unmarshal([]byte(e.Data), &m); err != nil {
			t.Errorf("event %s: %q: %v", e.ID, e.Data, err)
			continue
		}
		switch {
		case m.Method == "notifications/progress" && m.Params.ProgressToken == token:
			progress = append(progress, m.Params.Progress)
		case m.ID != nil && *m.ID == id:
			answers++
			if i != len(all)-1 || len(m.Result.Content) != 1 || m.Result.Content[0].Text != fmt.Sprintf("counted %d", n) {
				t.Errorf("the answer, event %d of %d: %s", i+1, len(all), e.Data)
			}
		}
	}
	want := make([]float64, n)
	for i := range want {
		want[i] = float64(i + 1)
	}
	if !slices.Equal(progress, want) || answers != 1 {
		t.Errorf("across the cut: progress %v and %d answers, want %v and one answer; events %v", progress, answers, want, all)
	}
	stream, seq, ok := splitEventID(before[len(before)-1].ID)
	if !ok {
		t.Fatalf("event id %q is not stream_sequence", before[len(before)-1].ID)
	}
	for _, e := range after {
		s, next, ok := splitEventID(e.ID)
		if !ok || s != stream || next != seq+1 {
			t.Errorf("after event %s_%d came %q: events resumed must follow on with no gap", stream, seq, e.ID)
		}
		seq = next
	}
}

// splitEventID splits the broker's event ids, STREAM_SEQUENCE.
func splitEventID(id string) (stream string, seq int, ok bool) {
	i := strings.LastIndexByte(id, '_')
	if i < 0 {
		return "", 0, false
	}
	seq, err := strconv.Atoi(id[i+1:])
	return id[:i], seq, err == nil
}

// Redis stopped and started again while sessions call through the three
// replicas: while it is down every answer is a clean refusal (never a cut
// connection, never a success that is not one), the replicas stay up, and
// once it is back every replica serves the same sessions again, with no
// goroutines left piling up.
func TestReplicasRedisRestartUnderLoadRoundRobin(t *testing.T) {
	r := startBrokerReplicas(t, redistest.AppendOnly())
	endpoint := r.balancer.URL + "/mcp"
	clients := make([]*wireClient, 4)
	for i := range clients {
		clients[i] = newWireClient(t, endpoint)
		clients[i].header.Set("Accept", "application/json")
		clients[i].initialize(`{}`)
	}
	balance := func(client *http.Client, c *wireClient, id int) (string, error) {
		a, err := c.try(client, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"ledger_get_balance","arguments":{"account":"alice"}}}`, id))
		if err != nil {
			return "", err
		}
		return classifyAnswer(a), nil
	}
	// Each session through each replica, before and after.
	everySessionEverywhere := func() error {
		for i, c := range clients {
			for range r.addrs {
				if outcome, err := balance(http.DefaultClient, c, 100); err != nil || outcome != "served" {
					return fmt.Errorf("session %d: %v %s", i, err, outcome)
				}
			}
		}
		return nil
	}
	if err := everySessionEverywhere(); err != nil {
		t.Fatal(err)
	}
	r.balancer.transport.CloseIdleConnections()
	before := r.goroutines(t)

	var served, refused atomic.Int64
	var mu sync.Mutex
	var odd []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			client := &http.Client{Timeout: 30 * time.Second}
			defer client.CloseIdleConnections()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				outcome, err := balance(client, c, 1000+n)
				switch {
				case err == nil && outcome == "served":
					served.Add(1)
				case err == nil && outcome == "refused":
					refused.Add(1)
				default:
					mu.Lock()
					odd = append(odd, fmt.Sprintf("session %d: %v %s", i, err, outcome))
					mu.Unlock()
				}
			}
		})
	}
	eventually(t, "calls served before Redis stops", func() bool { return served.Load() > 40 })
	r.redis.Stop()
	down := refused.Load()
	eventually(t, "calls refused while Redis is down", func() bool { return refused.Load() > down+8 })
	r.redis.Restart()
	back := served.Load()
	eventually(t, "calls served again", func() bool { return served.Load() > back+150 })
	close(stop)
	wg.Wait()

	t.Logf("%d calls served, %d refused while Redis was down", served.Load(), refused.Load())
	for i, c := range clients {
		everyReplicaServed(t, r.balancer, c.session)
		if counts := r.balancer.servedBy(c.session); slices.Min(counts) < 10 {
			t.Errorf("session %d: requests by replica %v, want the load spread over all", i, counts)
		}
	}
	if len(odd) > 0 {
		t.Errorf("%d answers neither served nor cleanly refused; the first: %s", len(odd), odd[0])
	}
	if err := everySessionEverywhere(); err != nil {
		t.Errorf("the same sessions after Redis came back: %v", err)
	}
	for i, admin := range r.admins {
		if resp, err := http.Get("http://" + admin + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("replica %d is not alive: %v %v", i, err, resp)
		} else {
			resp.Body.Close()
		}
	}
	r.balancer.transport.CloseIdleConnections()
	const slack = 50
	var after []float64
	eventually(t, fmt.Sprintf("goroutines back to within %d of %v", slack, before), func() bool {
		after = r.goroutines(t)
		for i := range after {
			if after[i] > before[i]+slack {
				return false
			}
		}
		return true
	})
	t.Logf("goroutines by replica: %v under no load before, %v after", before, after)
}

// classifyAnswer says what a JSON answer to a tools/call is: "served", a
// success; "refused", the clean refusal of a broker that cannot reach its
// session store (503 and a JSON-RPC error that says so); otherwise what
// it was.
func classifyAnswer(a answer) string {
	var m struct {
		JSONRPC string `json:"jsonrpc"`
		Result  *struct {
			IsError bool `json:"isError"`
		} `json:"result"`
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(a.body, &m); err != nil || m.JSONRPC != "2.0" {
		return fmt.Sprintf("%d, not JSON-RPC: %q", a.status, a.body)
	}
	switch {
	case a.status == http.StatusOK && m.Result != nil && !m.Result.IsError && m.Error == nil:
		return "served"
	case a.status == http.StatusServiceUnavailable && m.Result == nil && m.Error != nil && strings.Contains(m.Error.Message, "session store unavailable"):
		return "refused"
	}
	return fmt.Sprintf("%d %s", a.status, a.body)
}

// A modern client's next round may reach another replica than the one
// holding its call: it is handed there through the peers and answered
// through this one, as an event stream or as JSON; a requestState no
// replica holds is refused as unknown.
func TestModernHeldCallAcrossReplicas(t *testing.T) {
	r := startBrokerReplicas(t)
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}}}`
	header := map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "ledger_transfer"}
	transfer := func(addr string, id int, extra string, accept string) (*http.Response, string) {
		h := map[string]string{"Accept": accept}
		for k, v := range header {
			h[k] = v
		}
		return modernPost(t, "http://"+addr+"/mcp", fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"ledger_transfer","arguments":{"from":"alice","to":"bob","amount":1200},%s%s}}`, id, extra, meta), h)
	}
	for i, accept := range []string{"application/json, text/event-stream", "application/json"} {
		_, body := transfer(r.addrs[0], 10*i+1, "", accept)
		resp, body := transfer(r.addrs[1], 10*i+2, confirmed(inputRequired(t, body)), accept)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "moved 1200") || !strings.Contains(body, fmt.Sprintf(`"id":%d`, 10*i+2)) {
			t.Fatalf("next round through another replica (%s): %d %s", accept, resp.StatusCode, body)
		}
	}
	resp, body := transfer(r.addrs[2], 99, `"requestState":"0123456789abcdef0123456789abcdef","inputResponses":{},`, "application/json, text/event-stream")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "-32602") {
		t.Fatalf("a requestState no replica holds: %d %s", resp.StatusCode, body)
	}
}
