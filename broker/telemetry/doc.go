// Package telemetry owns what the broker tells its operators about itself:
// Prometheus metrics in the broker's own registry, OpenTelemetry traces
// exported over OTLP/HTTP with W3C trace context, and the admin listener's
// endpoints (/metrics, /healthz, /readyz).
package telemetry
