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
	single := run("../../testdata/config/valid/operations-off.yaml")
	if !strings.Contains(single, "ended sessions: memory (this process only)") || !strings.Contains(single, "audit trail: off") {
		t.Errorf("one broker without a store:\n%s", single)
	}
}
