package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The catalogue BenchmarkToolsList lists: listApps upstreams of
// toolsPerApp tools each, and a policy that shows a caller half of them.
const (
	listApps    = 20
	toolsPerApp = 50
	// shownTools is what the policy of listBroker shows: the tools with
	// an even number, in every app.
	shownTools = listApps * toolsPerApp / 2
)

// listBroker serves listApps apps, %[1]s, to callers with OAuth (see
// authBroker: %[2]q is the authorization server's metadata, %[3]q the
// audience); each app's inbound policy shows members of warehouse-ops
// the tools with an even number, and nobody anything else.
const listBroker = oauthProvider + `apps:
%[1]s`

// listApp is one app of listBroker: %[1]s its name, %[2]q its upstream,
// %[3]s its listCache.
const listApp = `  - name: %[1]s
    type: mcpProxy
    upstream: {transport: stream, stream: {url: %[2]q}}
    listCache: %[3]s
    authorization:
      inbound:
        opa:
          name: even-tools
          rego: |
            package orchestrator
            default result := {"allowed": false}
            result := {"allowed": true} if {
              "warehouse-ops" in input.subject.groups
              to_number(trim_prefix(input.request.mcp.tool.params.name, "tool")) %% 2 == 0
            }
`

// listUpstream is one upstream of the catalogue, counting the tools/list
// requests that reach it.
type listUpstream struct {
	endpoint string
	lists    atomic.Int64
}

// startListUpstreams serves listApps Go SDK servers of toolsPerApp tools
// each (tool00 to tool49, each with a description and an input schema of
// two properties, like a real server's) on loopback ports until tb ends.
func startListUpstreams(tb testing.TB) []*listUpstream {
	tb.Helper()
	type input struct {
		Account string `json:"account" jsonschema:"the account to act on"`
		Limit   int    `json:"limit,omitempty" jsonschema:"at most this many entries"`
	}
	upstreams := make([]*listUpstream, listApps)
	for a := range upstreams {
		u := &listUpstream{}
		server := mcp.NewServer(&mcp.Implementation{Name: fmt.Sprintf("catalogue-%02d", a), Version: "1.0.0"}, nil)
		for t := range toolsPerApp {
			mcp.AddTool(server, &mcp.Tool{
				Name:        fmt.Sprintf("tool%02d", t),
				Description: fmt.Sprintf("Reads page %d of an account's ledger entries and returns them as text, newest first.", t),
			}, func(context.Context, *mcp.CallToolRequest, input) (*mcp.CallToolResult, any, error) {
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil, nil
			})
		}
		handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				// The counting is the test's, not the upstream's: the body
				// is read here and handed on to the SDK as it was.
				body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				if bytes.Contains(body, []byte(`"method":"tools/list"`)) {
					u.lists.Add(1)
				}
				r.Body = io.NopCloser(bytes.NewReader(body))
			}
			handler.ServeHTTP(w, r)
		}))
		tb.Cleanup(srv.Close)
		u.endpoint = srv.URL + "/mcp"
		upstreams[a] = u
	}
	return upstreams
}

// startListBroker runs listBroker in front of upstreams, every app's
// listCache set to cache (a YAML flow mapping), and returns its target.
func startListBroker(tb testing.TB, upstreams []*listUpstream, cache string) target {
	tb.Helper()
	var apps strings.Builder
	for a, u := range upstreams {
		fmt.Fprintf(&apps, listApp, fmt.Sprintf("app%02d", a), u.endpoint, cache)
	}
	dst, _ := startAuthBroker(tb, listBroker, apps.String())
	return dst
}

// A listRow is one way of listing the catalogue: list lists it once, as a
// client would, and checks what it got.
type listRow struct {
	name string
	// start returns the row's list function and the hop, if any.
	start func(tb testing.TB, upstreams []*listUpstream) (list func(context.Context) error, hop *hop)
}

// listRows are the rows of BenchmarkToolsList:
//
//   - direct: one client session with each upstream, all twenty listed at
//     once, as the broker does; a listing takes as long as the slowest
//     upstream's own listing.
//   - broker-uncached: the broker with every app's listCache disabled, so
//     that each listing asks every upstream again (over the upstream
//     sessions the warm-up opened) and puts every item to the app's
//     policy: what the first listing after a start or a list_changed
//     costs, compared with direct.
//   - broker-warm: the broker keeping lists (listCache scope subject, the
//     default for apps that receive exchanged tokens), each listing served
//     from the kept lists, filtered by the policy's kept decisions.
var listRows = []listRow{
	{"direct", func(tb testing.TB, upstreams []*listUpstream) (func(context.Context) error, *hop) {
		sessions := make([]*session, len(upstreams))
		for i, u := range upstreams {
			sessions[i] = openSessions(tb, target{endpoint: u.endpoint}, 1)[0]
		}
		return func(ctx context.Context) error {
			errs := make([]error, len(sessions))
			var wg sync.WaitGroup
			for i, s := range sessions {
				wg.Go(func() {
					tools, err := s.listTools(ctx)
					if err == nil && len(tools) != toolsPerApp {
						err = fmt.Errorf("upstream %d listed %d tools, want %d", i, len(tools), toolsPerApp)
					}
					errs[i] = err
				})
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					return err
				}
			}
			return nil
		}, nil
	}},
	{"broker-uncached", brokerListRow("{disabled: true}")},
	{"broker-warm", brokerListRow("{scope: subject}")},
}

// brokerListRow lists through the broker with listCache cache, in one
// client session.
func brokerListRow(cache string) func(testing.TB, []*listUpstream) (func(context.Context) error, *hop) {
	return func(tb testing.TB, upstreams []*listUpstream) (func(context.Context) error, *hop) {
		dst := startListBroker(tb, upstreams, cache)
		s := openSessions(tb, dst, 1)[0]
		return func(ctx context.Context) error {
			tools, err := s.listTools(ctx)
			if err != nil {
				return err
			}
			return checkShown(tools)
		}, dst.hop
	}
}

// checkShown makes sure a listing through the broker holds exactly the
// tools the policy shows, each under its app's prefix.
func checkShown(tools []listedTool) error {
	if len(tools) != shownTools {
		return fmt.Errorf("listed %d tools, want the %d the policy shows", len(tools), shownTools)
	}
	for _, t := range tools {
		app, tool, ok := strings.Cut(t.Name, "_")
		var a, n int
		if !ok || !strings.HasPrefix(app, "app") || !strings.HasPrefix(tool, "tool") {
			return fmt.Errorf("listed %q, not an app's prefixed tool", t.Name)
		}
		if _, err := fmt.Sscanf(app+" "+tool, "app%d tool%d", &a, &n); err != nil || n%2 != 0 {
			return fmt.Errorf("listed %q, which the policy does not show", t.Name)
		}
	}
	return nil
}

// BenchmarkToolsList lists a catalogue of 20 apps of 50 tools each, with a
// policy that shows half of them, one listing at a time: directly from the
// twenty upstreams at once, and through the broker with and without its
// list cache (see listRows). Besides ns/op it reports the median and 99th
// percentile latency of one listing and, for the broker, its process's CPU
// time per listing.
func BenchmarkToolsList(b *testing.B) {
	for _, row := range listRows {
		b.Run(row.name, func(b *testing.B) {
			list, h := row.start(b, startListUpstreams(b))
			ctx := context.Background()
			for range 5 { // warm-up: sessions opened, lists kept
				if err := list(ctx); err != nil {
					b.Fatal(err)
				}
			}
			cpu := startCPUMeter(b, h)
			latencies := make([]time.Duration, b.N)
			b.ResetTimer()
			for i := range latencies {
				t0 := time.Now()
				err := list(ctx)
				latencies[i] = time.Since(t0)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			slices.Sort(latencies)
			b.ReportMetric(microseconds(percentile(latencies, 50)), "p50-µs")
			b.ReportMetric(microseconds(percentile(latencies, 99)), "p99-µs")
			if perList, ok := cpu.perOp(b, b.N); ok {
				b.ReportMetric(perList, "cpu-µs/list")
			}
		})
	}
}

// TestToolsList keeps BenchmarkToolsList working: every row lists what it
// should, and a warm broker's listings ask no upstream anything.
func TestToolsList(t *testing.T) {
	for _, row := range listRows {
		t.Run(row.name, func(t *testing.T) {
			upstreams := startListUpstreams(t)
			list, _ := row.start(t, upstreams)
			ctx := context.Background()
			if err := list(ctx); err != nil {
				t.Fatal(err)
			}
			before := make([]int64, len(upstreams))
			for i, u := range upstreams {
				before[i] = u.lists.Load()
				if before[i] == 0 {
					t.Fatalf("upstream %d was never asked for its tools", i)
				}
			}
			for range 3 {
				if err := list(ctx); err != nil {
					t.Fatal(err)
				}
			}
			for i, u := range upstreams {
				asked := u.lists.Load() - before[i]
				if row.name == "broker-warm" && asked != 0 {
					t.Errorf("upstream %d was asked for its tools %d times by 3 warm listings, want none", i, asked)
				}
				if row.name != "broker-warm" && asked != 3 {
					t.Errorf("upstream %d was asked for its tools %d times by 3 listings, want 3", i, asked)
				}
			}
		})
	}
}
