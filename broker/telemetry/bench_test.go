package telemetry

import (
	"context"
	"net/http"
	"testing"
)

var pipelineStages = []string{"identify", "decode", "route", "authorize", "exchange", "forward", "render", "record"}

// BenchmarkRequestMetrics is what the metrics cost one request: its call
// and the time of each of the pipeline's eight stages.
func BenchmarkRequestMetrics(b *testing.B) {
	m := NewMetrics()
	b.ReportAllocs()
	for b.Loop() {
		for _, stage := range pipelineStages {
			m.Stage(stage, 0.0001)
		}
		m.Call("files", "read_file", "tools/call", DecisionAllowed, 0.01)
	}
}

func BenchmarkRequestMetricsParallel(b *testing.B) {
	m := NewMetrics()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			for _, stage := range pipelineStages {
				m.Stage(stage, 0.0001)
			}
			m.Call("files", "read_file", "tools/call", DecisionAllowed, 0.01)
		}
	})
}

// spanTree starts what the broker starts for one request: the call's span,
// one per stage, and the trace context for the upstream.
func spanTree(tr *Tracing, client, upstream http.Header) {
	ctx, call := tr.Tracer().Start(tr.Extract(context.Background(), client), "mcp.call")
	for _, stage := range pipelineStages {
		stageCtx, span := tr.Tracer().Start(ctx, stage)
		if stage == "forward" {
			tr.Inject(stageCtx, upstream)
		}
		span.End()
	}
	call.End()
}

// BenchmarkSpanTreeOff is what tracing costs a request when it is off.
func BenchmarkSpanTreeOff(b *testing.B) {
	clearOTELEnv(b)
	tr := mustTracing(b, TraceOptions{})
	client, upstream := http.Header{}, http.Header{}
	b.ReportAllocs()
	for b.Loop() {
		spanTree(tr, client, upstream)
	}
}

// BenchmarkSpanTreeOn is what it costs when every trace is recorded and
// exported.
func BenchmarkSpanTreeOn(b *testing.B) {
	clearOTELEnv(b)
	rcv := newReceiver(b)
	tr := mustTracing(b, TraceOptions{Endpoint: rcv.URL})
	defer func() { _ = tr.Shutdown(context.Background()) }()
	client, upstream := http.Header{}, http.Header{}
	b.ReportAllocs()
	for b.Loop() {
		spanTree(tr, client, upstream)
	}
}
