package broker_test

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	collector "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/mcpbroker/mcpbroker/apps/sample"
)

// otlpReceiver is an OTLP/HTTP trace collector that keeps every span.
type otlpReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans []*tracepb.Span
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		var export collector.ExportTraceServiceRequest
		if err != nil || req.URL.Path != "/v1/traces" || proto.Unmarshal(body, &export) != nil {
			http.Error(w, "not an OTLP trace export", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, resource := range export.ResourceSpans {
			for _, scope := range resource.ScopeSpans {
				r.spans = append(r.spans, scope.Spans...)
			}
		}
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&collector.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(r.Close)
	return r
}

// trace is the spans of one trace id, by name.
func (r *otlpReceiver) trace(traceID string) map[string]*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	spans := map[string]*tracepb.Span{}
	for _, s := range r.spans {
		if hex.EncodeToString(s.TraceId) == traceID {
			spans[s.Name] = s
		}
	}
	return spans
}

// A call is one trace: a span for the call, a child for each stage it
// went through, under the client's traceparent; the upstream receives the
// same trace in its traceparent header and in params._meta.
func TestCallsAreTracedToTheUpstream(t *testing.T) {
	// The batch exporter sends every 100 ms rather than every 5 s.
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	receiver := newOTLPReceiver(t)
	var mu sync.Mutex
	var seenHeader, seenMeta []string
	h := sample.Handler(nil)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(strings.NewReader(string(body)))
			if strings.Contains(string(body), `"tools/call"`) {
				mu.Lock()
				seenHeader = append(seenHeader, r.Header.Get("Traceparent"))
				if i := strings.Index(string(body), `"traceparent":"`); i >= 0 {
					rest := string(body)[i+len(`"traceparent":"`):]
					seenMeta = append(seenMeta, rest[:strings.IndexByte(rest, '"')])
				}
				mu.Unlock()
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(upstream.Close)
	brokerURL := startBroker(t, scenario(t, "traced"), receiver.URL, upstream.URL+"/mcp")

	const clientTrace = "4bf92f3577b34e0ea3e8a7c40b2cd4a1"
	c := newWireClient(t, brokerURL+"/mcp")
	c.header.Set("Accept", "application/json")
	c.initialize(`{}`)
	c.header.Set("Traceparent", "00-"+clientTrace+"-00f067aa0ba902b7-01")
	if a := c.send("call", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ledger_get_balance","arguments":{"account":"alice"}}}`); a.rpcCode() != 0 {
		t.Fatalf("call: %s", a.body)
	}

	mu.Lock()
	header, meta := append([]string(nil), seenHeader...), append([]string(nil), seenMeta...)
	mu.Unlock()
	if len(header) != 1 || !strings.HasPrefix(header[0], "00-"+clientTrace+"-") || len(meta) != 1 || !strings.HasPrefix(meta[0], "00-"+clientTrace+"-") {
		t.Fatalf("the upstream saw traceparent %q in the header and %q in _meta, want the client's trace %s", header, meta, clientTrace)
	}
	var spans map[string]*tracepb.Span
	eventually(t, "the call's spans reach the collector", func() bool {
		spans = receiver.trace(clientTrace)
		return spans["mcp tools/call"] != nil && spans["record"] != nil
	})
	call := spans["mcp tools/call"]
	if hex.EncodeToString(call.ParentSpanId) != "00f067aa0ba902b7" {
		t.Errorf("the call's span has parent %x, want the client's span", call.ParentSpanId)
	}
	for _, stage := range []string{"identify", "decode", "route", "authorize", "exchange", "forward", "render", "record"} {
		s := spans[stage]
		if s == nil {
			t.Errorf("no span for stage %s (spans: %v)", stage, keys(spans))
			continue
		}
		if string(s.ParentSpanId) != string(call.SpanId) {
			t.Errorf("stage %s is not a child of the call's span", stage)
		}
	}
	upstreamParent := strings.Split(header[0], "-")[2]
	if upstreamParent != hex.EncodeToString(spans["forward"].SpanId) {
		t.Errorf("the upstream's parent span %s is not the forward stage's %x", upstreamParent, spans["forward"].SpanId)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
