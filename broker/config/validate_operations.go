package config

import (
	"fmt"
	"strings"
	"time"
)

// Bounds of the operational settings.
const (
	minAuditFileBytes     = 1 << 20
	maxAuditQueueSize     = 1_000_000
	maxAuditCheckpoint    = 1_000_000
	minAuditRotationAge   = Duration(time.Minute)
	minAuditCheckpointAge = Duration(time.Second)
)

func (v *validator) admin(admin *Admin, httpAddress string) {
	if admin.Disabled {
		return
	}
	if message := hostPortProblem(admin.Address); message != "" {
		v.add("admin.address", message)
		return
	}
	if admin.Address == httpAddress && !strings.HasSuffix(admin.Address, ":0") {
		v.add("admin.address", fmt.Sprintf("must differ from http.address (%s): the admin listener is a listener of its own", quote(httpAddress)))
	}
	if t := admin.Token.Value(); t != "" && len(t) < minAdminTokenBytes {
		v.add("admin.token", fmt.Sprintf("must be at least %d characters: it lets whoever holds it approve tool definitions", minAdminTokenBytes))
	}
}

// minAdminTokenBytes keeps admin.token out of guessing range.
const minAdminTokenBytes = 24

func (v *validator) audit(audit *Audit) {
	if audit.Disabled {
		return
	}
	if strings.TrimSpace(audit.Dir) == "" {
		v.add("audit.dir", "required")
	}
	switch audit.Durability {
	case AuditSync, AuditAsync:
	default:
		v.add("audit.durability", fmt.Sprintf("want %q or %q, got %s", AuditSync, AuditAsync, quote(audit.Durability)))
	}
	switch audit.OnFailure {
	case AuditRefuse, AuditContinue:
	default:
		v.add("audit.onFailure", fmt.Sprintf("want %q or %q, got %s", AuditRefuse, AuditContinue, quote(audit.OnFailure)))
	}
	if audit.QueueSize < 1 || audit.QueueSize > maxAuditQueueSize {
		v.add("audit.queueSize", fmt.Sprintf("want 1 to %d, got %d", maxAuditQueueSize, audit.QueueSize))
	}
	if audit.Rotation.MaxFileBytes < minAuditFileBytes {
		v.add("audit.rotation.maxFileBytes", fmt.Sprintf("must be at least %d (1 MiB), got %d", minAuditFileBytes, audit.Rotation.MaxFileBytes))
	}
	if audit.Rotation.MaxAge < minAuditRotationAge {
		v.add("audit.rotation.maxAge", fmt.Sprintf("must be at least %s, got %s", minAuditRotationAge, audit.Rotation.MaxAge))
	}
	if audit.Checkpoint.Every < 1 || audit.Checkpoint.Every > maxAuditCheckpoint {
		v.add("audit.checkpoint.every", fmt.Sprintf("want 1 to %d records, got %d", maxAuditCheckpoint, audit.Checkpoint.Every))
	}
	if audit.Checkpoint.Interval < minAuditCheckpointAge {
		v.add("audit.checkpoint.interval", fmt.Sprintf("must be at least %s, got %s", minAuditCheckpointAge, audit.Checkpoint.Interval))
	}
	if len(audit.Arguments.Redact) > 0 && !audit.Arguments.Record {
		v.add("audit.arguments.redact", "has no effect unless audit.arguments.record is true")
	}
	for i, name := range audit.Arguments.Redact {
		if strings.TrimSpace(name) == "" {
			v.add(index("audit.arguments.redact", i), "must not be empty")
		}
	}
	if o := audit.Sinks.OTLP; o.Enabled {
		v.otlpEndpoint("audit.sinks.otlp.endpoint", o.Endpoint, o.Insecure, true)
	} else if o.Endpoint != "" || o.Insecure {
		v.add("audit.sinks.otlp", "endpoint and insecure have no effect unless enabled is true")
	}
}

func (v *validator) telemetry(t *Telemetry) {
	traces := t.Traces
	if !traces.Enabled {
		if traces.Endpoint != "" || traces.Insecure {
			v.add("telemetry.traces", "endpoint and insecure have no effect unless enabled is true")
		}
		return
	}
	if traces.Endpoint != "" {
		v.otlpEndpoint("telemetry.traces.endpoint", traces.Endpoint, traces.Insecure, false)
	}
	if traces.SamplePercent < 0 || traces.SamplePercent > 100 {
		v.add("telemetry.traces.samplePercent", fmt.Sprintf("want 0 to 100, got %d", traces.SamplePercent))
	}
	if strings.TrimSpace(traces.ServiceName) == "" {
		v.add("telemetry.traces.serviceName", "must not be empty")
	}
}

// otlpEndpoint checks an OTLP/HTTP endpoint: https, or http when insecure
// says so (a collector on the same host or network).
func (v *validator) otlpEndpoint(path, endpoint string, insecure, required bool) {
	if endpoint == "" {
		if required {
			v.add(path, "required")
		}
		return
	}
	if insecure {
		if strings.HasPrefix(endpoint, "http://") && len(endpoint) > len("http://") {
			return
		}
		v.add(path, fmt.Sprintf("with insecure: true, want an http:// URL, got %s", quote(endpoint)))
		return
	}
	if message := endpointProblem(endpoint); message != "" {
		v.add(path, message+" (set insecure: true for a collector over plain http)")
	}
}
