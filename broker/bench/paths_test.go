package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/redis/go-redis/v9"
)

// A dataPath is one way for the client to reach the upstream. start puts
// the hop in front of the upstream MCP endpoint and returns the target the
// client should use; whatever it starts ends with tb.
type dataPath struct {
	name  string
	start func(tb testing.TB, upstream string) target
}

// A target is where the client sends its sessions.
type target struct {
	endpoint string
	// token returns the access token of the client's session i, a
	// different one for each session; nil: the path has no authentication.
	token func(i int) string
	// outsider returns a valid access token for a user whose groups the
	// path's policy refuses echo; nil: the path has no policy.
	outsider func() string
	// audience is that of the token the broker mints for each call to
	// the upstream; empty: the upstream receives no token.
	audience string
	// echo is the text each call echoes; empty: "hello".
	echo string
	// hop is the process between the client and the upstream; nil: the
	// path has none.
	hop *hop
	// admin is the base URL of the hop's /metrics; empty: the path has no
	// hop.
	admin string
	// audited: the broker records every call in its audit trail.
	audited bool
	// modern: the client speaks 2026-07-28, without sessions.
	modern bool
	// rest: the endpoint is the REST echo API, called without MCP.
	rest bool
	// redis is a client of the Redis server where the broker keeps ended
	// sessions and rate-limit budgets; nil: the broker keeps them in
	// memory, or has none.
	redis *redis.Client
}

// dataPaths are the cases of BenchmarkDataPath, in table order. direct and
// proxy are the baselines the report compares every other row against;
// the report also compares every broker+X row with broker, the cost of X
// (broker+policy, which needs a caller's identity, with broker+auth;
// broker+exchange, which mints for the policy's caller, with
// broker+policy; broker+audit-sync and broker+audit-async, the whole
// pipeline writing its audit trail, with broker+exchange; broker+redis,
// the pipeline of a replica keeping its sessions' ends and its rate-limit
// budgets in Redis, with broker+policy, the same pipeline without Redis;
// broker+chain, the session history kept in bbolt and read by the policy
// on every call, with broker+exchange).
var dataPaths = []dataPath{
	{"direct", func(_ testing.TB, upstream string) target { return target{endpoint: upstream} }},
	{"proxy", startReverseProxy},
	{"broker", brokerPath(plainBroker)},
	{"broker+auth", authBrokerPath(authBroker)},
	{"broker+policy", policyBrokerPath(policyBroker)},
	{"broker+exchange", exchangeBrokerPath(exchangeBroker)},
	{"broker+validate", exchangeBrokerPath(validateBroker)},
	{"broker+exchange-4k", withEcho(exchangeBrokerPath(exchangeBroker), result4K)},
	{"broker+redact", withEcho(exchangeBrokerPath(redactBroker), result4K)},
	{"broker+audit-sync", auditBrokerPath(auditSyncBroker)},
	{"broker+audit-async", auditBrokerPath(auditAsyncBroker)},
	{"broker+redis", redisBrokerPath(redisBroker)},
	{"broker+chain", exchangeBrokerPath(chainBroker)},
	{"broker+2026", modernPath(brokerPath(plainBroker))},
	{"rest-direct", restDirect},
	{"broker+bridge", bridgePath},
	{"broker+bridge-exchange", bridgeExchangePath},
}

// restBase is the REST echo API the bench upstream serves beside its MCP
// endpoint: GET <restBase>/echo?text=T answers T as text/plain.
func restBase(upstream string) string { return strings.TrimSuffix(upstream, "/mcp") + "/rest" }

// restDirect calls the REST echo API itself: the baseline of
// broker+bridge.
func restDirect(_ testing.TB, upstream string) target {
	return target{endpoint: restBase(upstream), rest: true}
}

// echoOpenAPI describes the REST echo API.
const echoOpenAPI = `{"openapi":"3.1.0","info":{"title":"echo","version":"1"},"paths":{"/echo":{"get":{"operationId":"echo",
"parameters":[{"name":"text","in":"query","required":true,"schema":{"type":"string"}}],"responses":{"200":{"description":"the text"}}}}}}`

// bridgePath serves the REST echo API as the tool echo of an mcpBridge
// app of the plain broker.
func bridgePath(tb testing.TB, upstream string) target {
	tb.Helper()
	doc := filepath.Join(tb.TempDir(), "echo.json")
	if err := os.WriteFile(doc, []byte(echoOpenAPI), 0o600); err != nil {
		tb.Fatal(err)
	}
	return serveBroker(tb, listen(tb), fmt.Sprintf(bridgeBroker, restBase(upstream), doc))
}

// bridgeExchangePath is bridgePath through the whole pipeline: OAuth,
// the policy and a token exchanged for each call (see exchangeBroker),
// which the REST API receives.
func bridgeExchangePath(tb testing.TB, upstream string) target {
	tb.Helper()
	doc := filepath.Join(tb.TempDir(), "echo.json")
	if err := os.WriteFile(doc, []byte(echoOpenAPI), 0o600); err != nil {
		tb.Fatal(err)
	}
	dst, mint := startAuthBroker(tb, bridgeExchangeBroker, upstream, restBase(upstream), doc)
	dst.outsider = func() string { return mint("bench-outsider", []string{"marketing"}) }
	dst.audience = benchAudience
	return dst
}

// bridgeExchangeBroker is exchangeBroker with the REST echo API at %[7]q,
// described by %[8]q, as its app.
const bridgeExchangeBroker = oauthProvider + `apps:
  - name: echo
    type: mcpBridge
    toolNamespace: {disabled: true}
    bridge: {baseURL: %[7]q, openapi: {file: %[8]q}}
` + policyRule + exchangeOutbound + exchangeStore

// bridgeBroker serves the REST API at %q, described by %q, as tools.
const bridgeBroker = openProvider + `  - name: echo
    type: mcpBridge
    toolNamespace: {disabled: true}
    bridge: {baseURL: %q, openapi: {file: %q}}
`

// modernPath is path with a client of protocol version 2026-07-28: each
// call stands alone, the broker keeping the upstream session it opened
// for the next call of the same client.
func modernPath(path func(testing.TB, string) target) func(testing.TB, string) target {
	return func(tb testing.TB, upstream string) target {
		dst := path(tb, upstream)
		dst.modern = true
		return dst
	}
}

// openProvider is the MCP endpoint of the brokers without
// authentication: /mcp, with sessions the client may end.
const openProvider = `
version: 1
mcpProvider:
  enabled: true
  authorization: {unauthenticated: {enabled: true}}
  transports:
    stream: {enabled: true, path: /mcp, session: {enabled: true, allowClientTermination: true}}
apps:
`

// plainBroker proxies one app without authentication or policy. %s is the
// upstream MCP endpoint.
const plainBroker = openProvider + `  - name: ledger
    type: mcpProxy
    toolNamespace: {disabled: true}
    upstream: {transport: stream, stream: {url: %q}}
`

type echoInput struct {
	Text string `json:"text"`
}

// startUpstream serves a stateful Go SDK server with one tool, echo, at
// /mcp on a loopback port and returns that endpoint, and what the last
// request that reached it carried in Authorization.
func startUpstream(tb testing.TB) (endpoint string, lastAuthorization func() string) {
	tb.Helper()
	server := mcp.NewServer(&mcp.Implementation{Name: "bench-upstream", Version: "1.0.0"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "echo", Description: "returns its text"},
		func(_ context.Context, _ *mcp.CallToolRequest, in echoInput) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
		})
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	var last atomic.Pointer[string]
	mux := http.NewServeMux()
	mux.HandleFunc("GET /rest/echo", func(w http.ResponseWriter, r *http.Request) {
		authorization := r.Header.Get("Authorization")
		last.Store(&authorization)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, r.URL.Query().Get("text"))
	})
	mux.Handle("/mcp", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			authorization := r.Header.Get("Authorization")
			last.Store(&authorization)
		}
		handler.ServeHTTP(w, r)
	}))
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	return srv.URL + "/mcp", func() string {
		if a := last.Load(); a != nil {
			return *a
		}
		return ""
	}
}

// startReverseProxy is the floor for any HTTP hop: a reverse proxy that
// knows nothing of MCP, with a pooled transport like the broker's, in a
// process of its own (newReverseProxy).
func startReverseProxy(tb testing.TB, upstream string) target {
	tb.Helper()
	h := startHop(tb, hopSpec{Role: roleProxy, Name: rowName(tb), Upstream: upstream}, listen(tb))
	return target{endpoint: h.Endpoint, admin: h.Admin, hop: h}
}

// newReverseProxy is the proxy hop: it forwards every request to the
// upstream's origin.
func newReverseProxy(upstream *url.URL) (*httputil.ReverseProxy, *http.Transport) {
	origin := &url.URL{Scheme: upstream.Scheme, Host: upstream.Host}
	transport := newTransport()
	return &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(origin) },
		FlushInterval: -1, // SSE: flush every write
		Transport:     transport,
		BufferPool:    &bufferPool{}, // a tuned proxy reuses its copy buffers
	}, transport
}

// brokerPath runs the broker from yaml, whose one %q is the upstream
// endpoint.
func brokerPath(yaml string) func(testing.TB, string) target {
	return func(tb testing.TB, upstream string) target {
		tb.Helper()
		return serveBroker(tb, listen(tb), fmt.Sprintf(yaml, upstream))
	}
}

// listen opens the hop's loopback listener, so that its address is known
// before the broker's configuration is written; the hop serves on it.
func listen(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return ln
}

// serveBroker runs the broker configured by yaml on ln, in a hop process
// (serveBrokerHop), until tb ends and returns the target of its MCP
// endpoint.
func serveBroker(tb testing.TB, ln net.Listener, yaml string) target {
	tb.Helper()
	file := filepath.Join(tb.TempDir(), "bench.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		ln.Close()
		tb.Fatal(err)
	}
	h := startHop(tb, hopSpec{Role: roleBroker, Name: rowName(tb), Config: file}, ln)
	return target{endpoint: h.Endpoint, admin: h.Admin, hop: h}
}

// brokerEndpoint is the MCP endpoint of the broker listening on ln, as the
// client calls it: also the audience of its access tokens.
func brokerEndpoint(ln net.Listener) string { return "http://" + ln.Addr().String() + "/mcp" }

// rowName is the benchmark's row tb runs: broker+auth for
// BenchmarkDataPath/broker+auth.
func rowName(tb testing.TB) string {
	name := tb.Name()
	return name[strings.LastIndexByte(name, '/')+1:]
}

// newTransport is the pooled HTTP/1.1 transport of the client and of the
// reverse proxy: enough idle connections that 16 sessions never redial.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        128,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

// bufferPool gives the reverse proxy reusable 32 KiB copy buffers.
type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, 32<<10)
}

func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }

// withEcho is path with each call echoing text.
func withEcho(path func(testing.TB, string) target, text string) func(testing.TB, string) target {
	return func(tb testing.TB, upstream string) target {
		dst := path(tb, upstream)
		dst.echo = text
		return dst
	}
}

// result4K is 4 KiB of log-like text with nothing redaction finds: what
// most results are, and what every detector must still read.
var result4K = strings.Repeat("2026-12-05T10:00:00Z order 1234-5678 shipped from warehouse 7 to Berlin, status ok; ", 50)[:4096]
