package broker

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/exchange"
)

// defaultBoltPath is where the embedded store lives when storage.bolt is not
// configured, relative to the configuration file's folder.
const defaultBoltPath = "data/mcpbroker.db"

// store is the one bbolt database of a broker, which each package that
// keeps state is handed: the Auth Provider's clients, grants and keys, and
// the ended session ids.
type store struct {
	db *bolt.DB
	// scratch is the throwaway store's folder of a dry build, removed on close.
	scratch string
}

// needsStore reports whether cfg keeps state in a store: the Auth
// Provider needs one; otherwise a store is opened only where storage.bolt
// names one, since one bbolt file serves one process and replicas sharing
// a session key must not contend for a default path.
func needsStore(cfg *config.Config) bool {
	if ap := cfg.AuthProvider; ap != nil && ap.Enabled && cfg.Storage.Redis == nil {
		return true
	}
	if pinning(cfg) && cfg.Storage.Redis == nil {
		return true // pins outlive the process
	}
	if cfg.SessionHistory != nil && cfg.Storage.Redis == nil {
		return true // histories outlive the process
	}
	return cfg.Storage.Bolt != nil && cfg.Storage.Bolt.Path != ""
}

// openStore opens the configured store when cfg needs one; nil otherwise.
// A dry build opens a throwaway one instead.
func openStore(cfg *config.Config, opts Options) (*store, error) {
	dryAuthProvider := opts.Dry && cfg.AuthProvider != nil && cfg.AuthProvider.Enabled
	if !needsStore(cfg) && !dryAuthProvider {
		return nil, nil
	}
	path := defaultBoltPath
	if cfg.Storage.Bolt != nil && cfg.Storage.Bolt.Path != "" {
		path = cfg.Storage.Bolt.Path
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(opts.BaseDir, path)
	}
	s := &store{}
	if opts.Dry {
		var err error
		if s.scratch, err = os.MkdirTemp("", "mcpbroker-check-"); err != nil {
			return nil, fmt.Errorf("broker: store: %w", err)
		}
		path = filepath.Join(s.scratch, "store.db")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		s.close()
		return nil, fmt.Errorf("broker: store: %w", err)
	}
	db, err := exchange.OpenBolt(path)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("broker: store: %w", err)
	}
	s.db = db
	return s, nil
}

// database is the store's bbolt database; nil without a store.
func (s *store) database() *bolt.DB {
	if s == nil {
		return nil
	}
	return s.db
}

func (s *store) close() {
	if s == nil {
		return
	}
	if s.db != nil {
		s.db.Close()
	}
	if s.scratch != "" {
		os.RemoveAll(s.scratch)
	}
}

// StateBackends says where each kind of state a configuration keeps
// lives, for `mcpbroker check`: one line each.
func StateBackends(cfg *config.Config, baseDir string) []string {
	boltPath := defaultBoltPath
	if cfg.Storage.Bolt != nil && cfg.Storage.Bolt.Path != "" {
		boltPath = cfg.Storage.Bolt.Path
	}
	if !filepath.IsAbs(boltPath) {
		boltPath = filepath.Join(baseDir, boltPath)
	}
	var lines []string
	redisKeys := func(kind string) string {
		return fmt.Sprintf("redis %s (keys %q)", strings.Join(cfg.Storage.Redis.Addresses, ","), cfg.Storage.Redis.KeyPrefix+kind+"*")
	}
	keyed := false
	if s := cfg.MCPProvider.Transports.Stream; s != nil && s.Session.Key.Value() != "" {
		keyed = true
	}
	switch {
	case cfg.Storage.Redis != nil:
		lines = append(lines, "ended sessions: "+redisKeys("ended:"))
	case keyed && needsStore(cfg):
		lines = append(lines, "ended sessions: bolt "+boltPath)
	default:
		lines = append(lines, "ended sessions: memory (this process only)")
	}
	switch {
	case len(cfg.RateLimits.Rules) == 0:
		lines = append(lines, "rate limits: none configured")
	case cfg.Storage.Redis != nil:
		lines = append(lines, "rate limits: "+redisKeys("rl:"))
	default:
		lines = append(lines, "rate limits: memory (this process only)")
	}
	if ap := cfg.AuthProvider; ap != nil && ap.Enabled {
		if cfg.Storage.Redis != nil {
			lines = append(lines, "Auth Provider (clients, grants, consents, revocations, signing keys, spent forms, sign-in throttle): "+redisKeys("{auth}:"))
		} else {
			lines = append(lines, "Auth Provider (clients, grants, keys): bolt "+boltPath)
		}
	}
	switch h := cfg.SessionHistory; {
	case h == nil:
		lines = append(lines, "session history: off (policies see no input.session)")
	case cfg.Storage.Redis != nil:
		lines = append(lines, fmt.Sprintf("session history: the last %d calls within %s, %s", h.MaxCalls, h.Window, redisKeys("history:")))
	default:
		lines = append(lines, fmt.Sprintf("session history: the last %d calls within %s, bolt %s", h.MaxCalls, h.Window, boltPath))
	}
	if ap := cfg.AuthProvider; ap != nil && ap.Enabled {
		lines = append(lines, fmt.Sprintf("approvals: with the Auth Provider's state, at most %d waiting per user, good for %s unless the policy or tool says", cfg.Approvals.MaxPendingPerUser, cfg.Approvals.TTL))
	} else {
		lines = append(lines, "approvals: none (they need the Auth Provider); calls a policy holds for approval are refused")
	}
	if c := cfg.Console; c.Enabled {
		at := "the embedded Auth Provider"
		if c.SignIn.Connector != "" {
			at = "connector " + c.SignIn.Connector
		}
		lines = append(lines, fmt.Sprintf("console: %s on the %s listener, sign-in at %s, operators %v, viewers %v; sign-ins in memory (this process only)", c.URL, c.Listener, at, c.Operators, c.Viewers))
	}
	if cfg.Audit.Disabled {
		lines = append(lines, "audit trail: off")
	} else {
		dir := cfg.Audit.Dir
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(baseDir, dir)
		}
		lines = append(lines, "audit trail: "+dir+" (checkpoint key "+dir+".key)")
	}
	if cfg.Storage.Redis != nil {
		lines = append(lines, "resumable streams, answers and cancellations for other replicas: "+redisKeys("stream:")+" and channel "+cfg.Storage.Redis.KeyPrefix+"peers")
	} else {
		lines = append(lines, "resumable streams, upstream requests to clients: memory (this process only)")
	}
	if cfg.Storage.Redis != nil {
		lines = append(lines, "upstream sessions opened after initialize: "+redisKeys("upstreams:"))
		lines = append(lines, "upstreams' list_changed between replicas: channel "+cfg.Storage.Redis.KeyPrefix+"lists")
	} else {
		lines = append(lines, "upstream sessions opened after initialize: memory (this process only)")
	}
	var shared, perCaller, uncached []string
	for _, app := range cfg.Apps {
		switch lc := app.ListCache; {
		case lc == nil:
		case lc.Disabled:
			uncached = append(uncached, app.Name)
		case lc.Scope == config.ListCacheShared:
			shared = append(shared, app.Name+" "+lc.TTL.String())
		default:
			perCaller = append(perCaller, app.Name+" "+lc.TTL.String())
		}
	}
	for _, group := range []struct {
		what  string
		names []string
	}{{"lists kept for everyone (memory, per replica)", shared}, {"lists kept per caller (memory, per replica)", perCaller}, {"lists not kept", uncached}} {
		if len(group.names) > 0 {
			lines = append(lines, group.what+": "+strings.Join(group.names, ", "))
		}
	}
	for _, app := range cfg.Apps {
		lines = append(lines, trustLines(app, cfg, boltPath, redisKeys)...)
	}
	return lines
}

// trustLines say what an app takes on trust: its pinning (mode, where
// pins live, the definition limits), validation and redaction.
func trustLines(app config.App, cfg *config.Config, boltPath string, redisKeys func(string) string) []string {
	var lines []string
	if p := app.ToolPinning; p != nil && p.Mode != config.PinningOff {
		where := "bolt " + boltPath
		if cfg.Storage.Redis != nil {
			where = redisKeys("pins:")
		}
		first := "trust on first use"
		if p.TrustOnFirstUse != nil && !*p.TrustOnFirstUse {
			first = "new definitions held for approval"
		}
		lines = append(lines, fmt.Sprintf("app %s: tool pinning %s, %s, %d declared pins, pins in %s; definitions refused over description %d B, schema %d B, definition %d B, or with invisible or control characters",
			app.Name, p.Mode, first, len(p.Pins), where, p.Limits.DescriptionBytes, p.Limits.SchemaBytes, p.Limits.DefinitionBytes))
	}
	if v := app.Validation; v != nil && (v.Arguments != config.PinningOff || v.Results != config.PinningOff) {
		lines = append(lines, fmt.Sprintf("app %s: validation of arguments %s (at most %d B, depth %d, strings %d B), of results %s",
			app.Name, v.Arguments, v.Limits.ArgumentBytes, v.Limits.Depth, v.Limits.StringBytes, v.Results))
	}
	if r := app.Redaction; r != nil {
		detectors := "every detector"
		if len(r.Detectors) > 0 {
			detectors = strings.Join(r.Detectors, ", ")
		}
		lines = append(lines, fmt.Sprintf("app %s: redaction %s of %s (%d tools apart)", app.Name, r.Action, detectors, len(r.Tools)))
	}
	return lines
}
