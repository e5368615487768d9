package audit

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
)

// OTLPOptions configures an OTLPSink; zero values mean the defaults.
type OTLPOptions struct {
	// Endpoint is the full URL of the collector's OTLP/HTTP logs endpoint,
	// such as https://collector:4318/v1/logs. Required.
	Endpoint string
	// Headers are sent with every export (an API key, typically).
	Headers map[string]string
	// Timeout bounds one export. Default 10s.
	Timeout time.Duration
	// QueueSize is how many records wait for export; when the collector
	// falls behind, more are dropped. Default 2048.
	QueueSize int
	// ServiceName is the resource's service.name. Default "mcpbroker".
	ServiceName string
	// TLS configures the connection to an https endpoint.
	TLS *tls.Config
}

// OTLPSink exports records as OpenTelemetry log records over OTLP/HTTP,
// in batches, in the background. It never blocks a call: a collector that
// is down or slow loses records from its queue, the trail keeps them.
type OTLPSink struct {
	provider *sdklog.LoggerProvider
	logger   otellog.Logger
	closed   atomic.Bool
}

var _ Sink = (*OTLPSink)(nil)

// NewOTLPSink builds the exporter; it does not connect until the first
// export.
func NewOTLPSink(ctx context.Context, options OTLPOptions) (*OTLPSink, error) {
	if options.Endpoint == "" {
		return nil, errors.New("audit: otlp: endpoint not set")
	}
	if options.Timeout <= 0 {
		options.Timeout = 10 * time.Second
	}
	if options.QueueSize <= 0 {
		options.QueueSize = 2048
	}
	if options.ServiceName == "" {
		options.ServiceName = "mcpbroker"
	}
	exporterOptions := []otlploghttp.Option{
		otlploghttp.WithEndpointURL(options.Endpoint),
		otlploghttp.WithTimeout(options.Timeout),
	}
	if len(options.Headers) > 0 {
		exporterOptions = append(exporterOptions, otlploghttp.WithHeaders(options.Headers))
	}
	if options.TLS != nil {
		exporterOptions = append(exporterOptions, otlploghttp.WithTLSClientConfig(options.TLS))
	}
	exporter, err := otlploghttp.New(ctx, exporterOptions...)
	if err != nil {
		return nil, fmt.Errorf("audit: otlp: %w", err)
	}
	processor := sdklog.NewBatchProcessor(exporter, sdklog.WithMaxQueueSize(options.QueueSize), sdklog.WithExportTimeout(options.Timeout))
	provider := sdklog.NewLoggerProvider(
		sdklog.WithProcessor(processor),
		sdklog.WithResource(resource.NewSchemaless(attribute.String("service.name", options.ServiceName))),
	)
	return &OTLPSink{provider: provider, logger: provider.Logger("github.com/mcpbroker/mcpbroker/broker/audit")}, nil
}

// Write queues r for export. The log record's body is the audit record
// as a map, its event name "mcpbroker.audit.<kind>", its time the
// record's; a trace in ctx is attached by the SDK.
func (s *OTLPSink) Write(ctx context.Context, r *Record) error {
	if s.closed.Load() {
		return ErrClosed
	}
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("audit: encode record: %w", err)
	}
	body, err := jsonToValue(line)
	if err != nil {
		return fmt.Errorf("audit: otlp body: %w", err)
	}
	var record otellog.Record
	record.SetTimestamp(r.Time)
	record.SetObservedTimestamp(time.Now())
	record.SetEventName("mcpbroker.audit." + r.Kind)
	severity, text := otellog.SeverityInfo, "INFO"
	if decision := decisionOf(r); decision == DecisionDenied || decision == DecisionRefused {
		severity, text = otellog.SeverityWarn, "WARN"
	}
	record.SetSeverity(severity)
	record.SetSeverityText(text)
	record.SetBody(body)
	record.AddAttributes(
		attribute.String("audit.kind", r.Kind),
		attribute.String("audit.event", r.Event),
		attribute.String("audit.id", r.ID),
		attribute.Int64("audit.seq", int64(r.Seq)),
	)
	if decision := decisionOf(r); decision != "" {
		record.AddAttributes(attribute.String("audit.decision", decision))
	}
	s.logger.Emit(ctx, record)
	return nil
}

// Close exports what is queued, within ctx's time, and stops.
func (s *OTLPSink) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := s.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("audit: otlp: %w", err)
	}
	return nil
}

// decisionOf names the record's outcome as Filter.Decision does, or "".
func decisionOf(r *Record) string {
	for _, d := range []string{DecisionAllowed, DecisionDenied, DecisionRefused} {
		f := Filter{Decision: d}
		if f.Match(r) {
			return d
		}
	}
	return ""
}

// maxValueDepth bounds how deep jsonToValue follows nested arguments;
// deeper values are kept as their JSON text.
const maxValueDepth = 16

// jsonToValue converts a JSON text to a log value: objects to maps,
// arrays to slices, numbers to int64 when they are integers.
func jsonToValue(data []byte) (attribute.Value, error) {
	decoder := json.NewDecoder(bytes.NewReader(data))
	decoder.UseNumber()
	var v any
	if err := decoder.Decode(&v); err != nil {
		return attribute.Value{}, err
	}
	return toValue(v, 0), nil
}

func toValue(v any, depth int) attribute.Value {
	if depth > maxValueDepth {
		text, _ := json.Marshal(v)
		return attribute.StringValue(string(text))
	}
	switch v := v.(type) {
	case nil:
		return attribute.Value{}
	case bool:
		return attribute.BoolValue(v)
	case string:
		return attribute.StringValue(v)
	case json.Number:
		if i, err := strconv.ParseInt(v.String(), 10, 64); err == nil {
			return attribute.Int64Value(i)
		}
		if f, err := v.Float64(); err == nil {
			return attribute.Float64Value(f)
		}
		return attribute.StringValue(v.String())
	case []any:
		values := make([]attribute.Value, len(v))
		for i, item := range v {
			values[i] = toValue(item, depth+1)
		}
		return attribute.SliceValue(values...)
	case map[string]any:
		members := make([]attribute.KeyValue, 0, len(v))
		for key, item := range v {
			members = append(members, attribute.KeyValue{Key: attribute.Key(key), Value: toValue(item, depth+1)})
		}
		return attribute.MapValue(members...)
	default:
		return attribute.StringValue(fmt.Sprint(v))
	}
}
