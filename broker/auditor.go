package broker

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpbroker/mcpbroker/broker/audit"
	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/broker/telemetry"
)

// ErrAuditUnavailable refuses a call whose audit record cannot be written
// (audit.onFailure: refuse).
var ErrAuditUnavailable = errors.New("audit trail unavailable: the call was not served")

// auditor writes the broker's decisions to the audit trail, and copies
// them to the configured sinks.
type auditor struct {
	trail *audit.Trail
	// sinks get a copy of every record the trail took, best effort.
	sinks []audit.Sink
	// refuse: a call whose record cannot be written is refused.
	refuse bool
	// failing is set while the trail refuses writes; calls are then
	// refused before they reach an upstream (refuse) or served unrecorded
	// (continue). The next write that succeeds clears it.
	failing atomic.Bool
	// arguments puts redacted arguments in records; redact holds the
	// member names (lower case) replaced at any depth.
	arguments bool
	redact    map[string]bool
	log       *slog.Logger
	metrics   *telemetry.Metrics
}

// newAuditor opens the trail in audit.dir (relative to baseDir); nil when
// audit.disabled. A dry run (check) opens nothing.
func newAuditor(cfg *config.Config, opts Options, log *slog.Logger, metrics *telemetry.Metrics) (*auditor, error) {
	ac := cfg.Audit
	if ac.Disabled || opts.Dry {
		return nil, nil
	}
	dir := ac.Dir
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(opts.BaseDir, dir)
	}
	signer, err := loadCheckpointKey(dir + ".key")
	if err != nil {
		return nil, fmt.Errorf("broker: audit: %w", err)
	}
	a := &auditor{refuse: ac.OnFailure == config.AuditRefuse, arguments: ac.Arguments.Record, log: log, metrics: metrics}
	if a.arguments {
		a.redact = make(map[string]bool, len(ac.Arguments.Redact))
		for _, name := range ac.Arguments.Redact {
			a.redact[strings.ToLower(name)] = true
		}
	}
	durability := audit.Sync
	if ac.Durability == config.AuditAsync {
		durability = audit.Async
	}
	a.trail, err = audit.OpenTrail(audit.TrailOptions{
		Dir:                dir,
		MaxFileBytes:       ac.Rotation.MaxFileBytes,
		MaxFileAge:         time.Duration(ac.Rotation.MaxAge),
		Durability:         durability,
		QueueSize:          ac.QueueSize,
		CheckpointEvery:    ac.Checkpoint.Every,
		CheckpointInterval: time.Duration(ac.Checkpoint.Interval),
		Signer:             signer,
		Observe:            a.observe,
		FileSystem:         opts.auditFS,
		Logger:             log,
	})
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if ac.Sinks.Stdout.Enabled {
		a.sinks = append(a.sinks, audit.NewStdoutSink(os.Stdout))
	}
	if o := ac.Sinks.OTLP; o.Enabled {
		endpoint := o.Endpoint
		if u, err := url.Parse(endpoint); err == nil && (u.Path == "" || u.Path == "/") {
			endpoint = strings.TrimSuffix(endpoint, "/") + "/v1/logs"
		}
		sink, err := audit.NewOTLPSink(context.Background(), audit.OTLPOptions{Endpoint: endpoint, ServiceName: cfg.Telemetry.Traces.ServiceName})
		if err != nil {
			_ = a.trail.Close()
			return nil, fmt.Errorf("broker: audit.sinks.otlp: %w", err)
		}
		a.sinks = append(a.sinks, sink)
	}
	if metrics != nil {
		metrics.AuditQueue(a.trail.QueueDepth)
	}
	log.Info("audit trail open", "dir", dir, "durability", ac.Durability, "on_failure", ac.OnFailure, "checkpoint_key", signer.KeyID())
	return a, nil
}

// observe is told of every batch the trail commits, or fails to.
func (a *auditor) observe(batch int, fsync time.Duration, err error) {
	if a.metrics != nil {
		a.metrics.AuditWrite(batch, fsync, err)
	}
	if err != nil {
		a.fail(err)
		return
	}
	if a.failing.CompareAndSwap(true, false) {
		a.log.Warn("audit trail writable again")
	}
}

func (a *auditor) fail(err error) {
	if !a.failing.Swap(true) {
		if a.refuse {
			a.log.Error("AUDIT TRAIL UNAVAILABLE: calls are refused until records can be written again", "error", err)
		} else {
			a.log.Error("AUDIT TRAIL UNAVAILABLE: calls are served WITHOUT audit records (audit.onFailure: continue)", "error", err)
		}
	}
}

// admit refuses to start work that could not be recorded: while the trail
// fails and audit.onFailure is refuse, no call reaches an upstream.
func (a *auditor) admit() error {
	if a == nil || !a.refuse || !a.failing.Load() {
		return nil
	}
	return ErrAuditUnavailable
}

// write records r; the error is ErrAuditUnavailable when the trail could
// not take it and audit.onFailure is refuse.
func (a *auditor) write(ctx context.Context, r *audit.Record) error {
	if a == nil {
		return nil
	}
	// The record is written even when the client has gone: what was
	// decided stays decided.
	ctx = context.WithoutCancel(ctx)
	if err := a.trail.Write(ctx, r); err != nil {
		a.fail(err)
		if a.metrics != nil {
			a.metrics.AuditDropped()
		}
		if a.refuse {
			return fmt.Errorf("%w: %v", ErrAuditUnavailable, err)
		}
		a.log.Error("audit record not written", "kind", r.Kind, "event", r.Event, "error", err)
		return nil
	}
	for _, sink := range a.sinks {
		if err := sink.Write(ctx, r); err != nil {
			a.log.Warn("audit sink failed", "error", err)
		}
	}
	return nil
}

// healthy is the readiness check of the trail.
func (a *auditor) healthy(context.Context) error {
	if a != nil && a.failing.Load() {
		return errors.New("the audit trail cannot be written")
	}
	return nil
}

// close flushes the trail and its sinks.
func (a *auditor) close() error {
	if a == nil {
		return nil
	}
	err := a.trail.Close()
	for _, sink := range a.sinks {
		err = errors.Join(err, sink.Close())
	}
	return err
}

// recordArguments is what a record keeps of a call's arguments: nothing
// unless audit.arguments.record, and then the arguments with every member
// named in audit.arguments.redact replaced, at any depth.
func (a *auditor) recordArguments(raw json.RawMessage) json.RawMessage {
	if a == nil || !a.arguments {
		return nil
	}
	return a.redactedArguments(raw)
}

// redactedArguments are the arguments with every member named in
// audit.arguments.redact replaced; nil when they are not JSON, or there
// is no trail to say what to redact.
func (a *auditor) redactedArguments(raw json.RawMessage) json.RawMessage {
	if a == nil || len(raw) == 0 {
		return nil
	}
	var value any
	if err := json.Unmarshal(raw, &value); err != nil {
		return nil
	}
	redacted, err := json.Marshal(a.redacted(value, 0))
	if err != nil {
		return nil
	}
	return redacted
}

// maxRedactDepth bounds the walk; deeper values are replaced whole.
const maxRedactDepth = 64

func (a *auditor) redacted(value any, depth int) any {
	if depth > maxRedactDepth {
		return "[REDACTED: too deep]"
	}
	switch v := value.(type) {
	case map[string]any:
		for name, member := range v {
			if a.redact[strings.ToLower(name)] {
				v[name] = "[REDACTED]"
				continue
			}
			v[name] = a.redacted(member, depth+1)
		}
	case []any:
		for i, element := range v {
			v[i] = a.redacted(element, depth+1)
		}
	}
	return value
}

// checkpointKey signs the trail's checkpoints: an Ed25519 key of the
// broker's own, kept beside the trail directory (never inside it, so the
// trail can be shipped without it), with its public half in a JWKS file
// for `mcpbroker audit verify --jwks`.
type checkpointKey struct {
	private ed25519.PrivateKey
	public  jose.JSONWebKey
}

func (k *checkpointKey) KeyID() string                      { return k.public.KeyID }
func (k *checkpointKey) Algorithm() jose.SignatureAlgorithm { return jose.EdDSA }
func (k *checkpointKey) Public() jose.JSONWebKey            { return k.public }

func (k *checkpointKey) Sign(typ string, payload []byte) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: k.private},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", k.public.KeyID))
	if err != nil {
		return "", err
	}
	signed, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return signed.CompactSerialize()
}

// loadCheckpointKey reads the key at path, or makes one there (mode 0600)
// with its public JWKS at path + ".jwks".
func loadCheckpointKey(path string) (*checkpointKey, error) {
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		_, private, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		jwk := jose.JSONWebKey{Key: private, Algorithm: string(jose.EdDSA), Use: "sig"}
		if data, err = jwk.MarshalJSON(); err != nil {
			return nil, err
		}
		file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("checkpoint key: %w", err)
		}
		_, err = file.Write(data)
		if err = errors.Join(err, file.Sync(), file.Close()); err != nil {
			return nil, fmt.Errorf("checkpoint key: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("checkpoint key: %w", err)
	}
	if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("checkpoint key %s is readable or writable by group or others (chmod 600 it)", path)
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(data); err != nil {
		return nil, fmt.Errorf("checkpoint key %s: %w", path, err)
	}
	private, ok := jwk.Key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("checkpoint key %s: not an Ed25519 private key", path)
	}
	public := jose.JSONWebKey{Key: private.Public(), Algorithm: string(jose.EdDSA), Use: "sig"}
	thumbprint, err := public.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	public.KeyID = base64.RawURLEncoding.EncodeToString(thumbprint)
	set, err := json.MarshalIndent(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{public}}, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path+".jwks", append(set, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("checkpoint key: %w", err)
	}
	return &checkpointKey{private: private, public: public}, nil
}
