package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/mcpbroker/mcpbroker/exchange"
	"github.com/mcpbroker/mcpbroker/provider/oauth"
	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

const mintIssuer = "http://127.0.0.1:8080"

// writeMintConfig writes a configuration with an enabled authProvider to a
// new folder; storage is its storage block, algorithm its
// signingAlgorithm, both optional.
func writeMintConfig(t *testing.T, storage, algorithm string) string {
	t.Helper()
	var config strings.Builder
	fmt.Fprintf(&config, "version: 1\n%s\nauthProvider:\n  enabled: true\n  issuer: %s\n", storage, mintIssuer)
	if algorithm != "" {
		fmt.Fprintf(&config, "  signingAlgorithm: %s\n", algorithm)
	}
	config.WriteString(`  login:
    users:
      - username: demo
        passwordHash: "$2a$12$sLCNs770uStfYzHR7HzBne890w4dmhjx3bW/hbHhhm6yTg3exJduS"
`)
	file := filepath.Join(t.TempDir(), "mcpbroker.yaml")
	if err := os.WriteFile(file, []byte(config.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// createStore makes the store at path with its signing keys, as the
// broker does on its first start, and returns the keys.
func createStore(t *testing.T, path string) *exchange.KeySet {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := exchange.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	keys, err := exchange.NewKeySet(context.Background(), exchange.NewBoltKeyStore(db), exchange.KeySetOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestTokenMint(t *testing.T) {
	tests := []struct {
		name      string
		storage   string // the configuration's storage block
		store     string // where the test makes the store, relative to the configuration's folder
		algorithm string
		args      []string
		wantAlg   jose.SignatureAlgorithm
		wantTTL   time.Duration
		wantScope string
		wantActor *oauth.Actor
	}{
		{name: "the default store", store: "data/mcpbroker.db",
			args:    []string{"--scope", "ledger:read", "--scope", "ledger:write", "--ttl", "90s"},
			wantAlg: jose.EdDSA, wantTTL: 90 * time.Second, wantScope: "ledger:read ledger:write"},
		{name: "a delegation chain, ES256", store: "data/mcpbroker.db", algorithm: "ES256",
			args:    []string{"--actor", "agent-b", "--actor", "agent-a"},
			wantAlg: jose.ES256, wantTTL: time.Minute,
			wantActor: &oauth.Actor{Subject: "agent-b", Actor: &oauth.Actor{Subject: "agent-a"}}},
		{name: "storage.bolt.path", storage: "storage: {bolt: {path: state/keys.db}}", store: "state/keys.db",
			args: []string{"--ttl", "1h"}, wantAlg: jose.EdDSA, wantTTL: time.Hour},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			configFile := writeMintConfig(t, test.storage, test.algorithm)
			storeFile := filepath.Join(filepath.Dir(configFile), test.store)
			keys := createStore(t, storeFile)
			before, err := os.ReadFile(storeFile)
			if err != nil {
				t.Fatal(err)
			}
			args := append([]string{"mint", "--config", configFile, "--subject", "alice", "--client-id", "agent-app", "--audience", "https://ledger.example/"}, test.args...)
			stdout, stderr, code := runToken(t, "", args...)
			if code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			if !strings.Contains(stderr, "bypasses login, consent and policy") {
				t.Errorf("stderr lacks the warning:\n%s", stderr)
			}
			if after, err := os.ReadFile(storeFile); err != nil || !bytes.Equal(after, before) {
				t.Errorf("mint changed the store (%v)", err)
			}
			token := strings.TrimSuffix(stdout, "\n")
			verified, err := keys.Verify(token, exchange.VerifyOptions{Issuer: mintIssuer, Audience: "https://ledger.example/"})
			if err != nil {
				t.Fatalf("the token does not verify with the store's keys: %v", err)
			}
			if verified.Subject != "alice" || verified.ClientID != "agent-app" || verified.Scope != test.wantScope {
				t.Errorf("sub %q, client_id %q, scope %q", verified.Subject, verified.ClientID, verified.Scope)
			}
			if got := verified.Expiry.Sub(verified.IssuedAt); got != test.wantTTL {
				t.Errorf("exp - iat = %s, want %s", got, test.wantTTL)
			}
			if header, _ := oauthtest.Decode(t, token); header["alg"] != string(test.wantAlg) {
				t.Errorf("header %v, want alg %s", header, test.wantAlg)
			}
			if !reflect.DeepEqual(verified.Actor, test.wantActor) {
				t.Errorf("act %+v, want %+v", verified.Actor, test.wantActor)
			}
		})
	}
}

func TestTokenMintRefusals(t *testing.T) {
	grant := []string{"--subject", "alice", "--client-id", "agent-app", "--audience", "https://ledger.example/"}
	withStore := writeMintConfig(t, "", "")
	storeFile := filepath.Join(filepath.Dir(withStore), "data/mcpbroker.db")
	createStore(t, storeFile)
	withoutStore := writeMintConfig(t, "", "")
	withoutKeys := writeMintConfig(t, "storage: {bolt: {path: empty.db}}", "EdDSA")
	empty, err := exchange.OpenBolt(filepath.Join(filepath.Dir(withoutKeys), "empty.db"))
	if err != nil {
		t.Fatal(err)
	}
	empty.Close()
	withoutProvider := filepath.Join(t.TempDir(), "mcpbroker.yaml")
	if err := os.WriteFile(withoutProvider, []byte("version: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		config    string
		locked    bool // a broker holds the store
		args      []string
		wantError string
	}{
		{name: "a running broker", config: withStore, locked: true, wantError: "is locked, most likely by a running broker"},
		{name: "no store", config: withoutStore, wantError: "no store at " + filepath.Join(filepath.Dir(withoutStore), "data/mcpbroker.db")},
		{name: "a store without keys", config: withoutKeys, wantError: "has no active EdDSA key: start the broker once"},
		{name: "no authProvider", config: withoutProvider, wantError: "no enabled authProvider"},
		{name: "a ttl beyond an hour", config: withStore, args: []string{"--ttl", "61m"}, wantError: "ttl must be"},
		{name: "a fractional ttl", config: withStore, args: []string{"--ttl", "1500ms"}, wantError: "ttl must be"},
		{name: "a scope with a space", config: withStore, args: []string{"--scope", "ledger read"}, wantError: "not a scope token"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			if test.locked {
				db, err := exchange.OpenBolt(storeFile)
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
			}
			args := append(append([]string{"mint", "--config", test.config}, grant...), test.args...)
			stdout, stderr, code := runToken(t, "", args...)
			if code != 1 || stdout != "" {
				t.Fatalf("exit %d, stdout %q; want 1 and nothing\nstderr:\n%s", code, stdout, stderr)
			}
			if !strings.Contains(stderr, test.wantError) {
				t.Errorf("stderr lacks %q:\n%s", test.wantError, stderr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(withoutStore), "data")); err == nil {
		t.Error("mint created the store's folder")
	}
}
