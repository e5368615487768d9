package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/mcpbroker/mcpbroker/exchange"
)

// check builds the whole broker, Auth Provider included, without touching
// its store: no database or keys appear, and a running broker's lock on
// the store does not stop it.
func TestCheckLeavesTheStoreAlone(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "broker.yaml")
	store := filepath.Join(dir, "data", "broker.db")
	if err := os.WriteFile(config, []byte(`version: 1
storage: {bolt: {path: data/broker.db}}
authProvider:
  enabled: true
  issuer: http://127.0.0.1:8080
`), 0o600); err != nil {
		t.Fatal(err)
	}
	check := func() (string, error) {
		var out bytes.Buffer
		app := &cli.App{Name: "mcpbroker", Commands: []*cli.Command{checkCommand()}, Writer: &out, ErrWriter: &out,
			ExitErrHandler: func(*cli.Context, error) {}}
		err := app.Run([]string{"mcpbroker", "check", "--config", config})
		return out.String(), err
	}
	if out, err := check(); err != nil || !strings.Contains(out, ": ok") {
		t.Fatalf("check: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Dir(store)); !os.IsNotExist(err) {
		t.Errorf("check created %s (%v)", filepath.Dir(store), err)
	}

	// A running broker holds the store.
	if err := os.MkdirAll(filepath.Dir(store), 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := exchange.OpenBolt(store)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if out, err := check(); err != nil {
		t.Fatalf("check beside a running broker: %v\n%s", err, out)
	}
}

// check says where each kind of state lives.
func TestCheckSaysWhereStateLives(t *testing.T) {
	run := func(config string) string {
		var out bytes.Buffer
		app := &cli.App{Name: "mcpbroker", Commands: []*cli.Command{checkCommand()}, Writer: &out, ErrWriter: &out,
			ExitErrHandler: func(*cli.Context, error) {}}
		if err := app.Run([]string{"mcpbroker", "check", "--config", config}); err != nil {
			t.Fatalf("check %s: %v\n%s", config, err, out.String())
		}
		return out.String()
	}
	cluster := run("../../testdata/config/valid/redis-cluster.yaml")
	for _, want := range []string{`ended sessions: redis redis-1:6379,redis-2:6379,redis-3:6379 (keys "mcpbroker:ended:*")`, "rate limits: none configured", "audit trail: "} {
		if !strings.Contains(cluster, want) {
			t.Errorf("with Redis, %q is missing from\n%s", want, cluster)
		}
	}
	// The Auth Provider in Redis: check says so, and builds it without
	// reaching Redis (nothing listens here) or writing anything there.
	shared := filepath.Join(t.TempDir(), "shared.yaml")
	if err := os.WriteFile(shared, []byte(`version: 1
storage: {redis: {addresses: ["127.0.0.1:1"], keyPrefix: "prod:"}}
authProvider: {enabled: true, issuer: "https://broker.example"}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`Auth Provider (clients, grants, consents, revocations, signing keys, spent forms, sign-in throttle): redis 127.0.0.1:1 (keys "prod:{auth}:*")`,
		`resumable streams, answers and cancellations for other replicas: redis 127.0.0.1:1 (keys "prod:stream:*") and channel prod:peers`} {
		if out := run(shared); !strings.Contains(out, want) {
			t.Errorf("with the Auth Provider in Redis, %q is missing from\n%s", want, out)
		}
	}
	single := run("../../testdata/config/valid/operations-off.yaml")
	if !strings.Contains(single, "ended sessions: memory (this process only)") || !strings.Contains(single, "audit trail: off") {
		t.Errorf("one broker without a store:\n%s", single)
	}
}

// check reads the certificate files the configuration names, and says
// which setting named one it cannot use.
func TestCheckReadsCertificateFiles(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "broker.yaml")
	if err := os.WriteFile(filepath.Join(dir, "not-a-ca.pem"), []byte("no certificate here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ tls, want string }{
		{`{caFile: missing-ca.pem}`, "apps[0].upstream.tls.caFile: open " + filepath.Join(dir, "missing-ca.pem")},
		{`{caFile: not-a-ca.pem}`, "apps[0].upstream.tls.caFile: no PEM certificate in " + filepath.Join(dir, "not-a-ca.pem")},
		{`{certFile: client.pem, keyFile: client-key.pem}`, "apps[0].upstream.tls.certFile: open " + filepath.Join(dir, "client.pem")},
	} {
		if err := os.WriteFile(config, []byte(`version: 1
mcpProvider:
  enabled: true
  authorization: {unauthenticated: {enabled: true}}
apps:
  - name: ledger
    type: mcpProxy
    upstream:
      transport: stream
      stream: {url: "https://ledger.internal/mcp"}
      tls: `+tt.tls+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := runCommand(t, checkCommand(), "", "--config", config)
		if code == 0 || !strings.Contains(stdout+stderr, tt.want) {
			t.Errorf("tls %s: exit %d\n%s%s\nwant %q", tt.tls, code, stdout, stderr, tt.want)
		}
	}
}

// Keys Strata's files carry that take no effect here are said, not
// silently accepted: a connector's login redirect where it signs no one in.
func TestCheckNamesSettingsWithoutEffect(t *testing.T) {
	config := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(config, []byte(`connectors:
  - name: auth-provider
    type: oidc
    oidcWellKnownURL: https://auth.example/.well-known/openid-configuration
    oauthClientID: gateway
    oauthLoginRedirect: {urls: [https://gateway.example/oidc-callback]}
mcpProvider:
  enabled: true
  authorization: {unauthenticated: {enabled: true}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCommand(t, checkCommand(), "", "--config", config)
	want := `note: connectors[0].oauthLoginRedirect has no effect: it shapes the sign-in of users, and "auth-provider" does not sign users in here (authProvider.login.connector)`
	if code != 0 || !strings.Contains(stdout, want) {
		t.Errorf("check: exit %d\n%s%s\nwant %q", code, stdout, stderr, want)
	}
}
