package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/mcpbroker/mcpbroker/broker/audit"
	"github.com/mcpbroker/mcpbroker/exchange"
)

// runAudit runs "mcpbroker audit args..." and returns what it printed and
// its exit code.
func runAudit(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runCommand(t, auditCommand(), "", args...)
}

// auditTrail writes a signed trail of four calls, one of them denied and
// two hours old, and returns its directory and a file with its JWKS.
func auditTrail(t *testing.T) (dir, jwksFile string) {
	t.Helper()
	keys, err := exchange.NewKeySet(context.Background(), &exchange.MemoryKeyStore{}, exchange.KeySetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := keys.Active(jose.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(t.TempDir(), "audit")
	trail, err := audit.OpenTrail(audit.TrailOptions{Dir: dir, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i, r := range []*audit.Record{
		{Time: now.Add(-2 * time.Hour), Subject: "alice", App: "ledger", Tool: "ledger_balance", Decision: &audit.Decision{Allowed: true}},
		{Time: now, Subject: "bob", App: "ledger", Tool: "ledger_transfer", Decision: &audit.Decision{Allowed: false, Reason: "not a teller", Policy: "ledger"}},
		{Time: now, Subject: "alice\x1b[2J", App: "crm", Tool: "crm_find", Decision: &audit.Decision{Allowed: true}, Result: &audit.Result{HTTPStatus: 200}},
		{Time: now, Subject: "bob", App: "crm", Tool: "crm_find", Decision: &audit.Decision{Allowed: true}},
	} {
		r.Kind, r.Event, r.Method = audit.KindCall, "tools/call", "tools/call"
		if err := trail.Write(context.Background(), r); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	if err := trail.Close(); err != nil {
		t.Fatal(err)
	}
	set, err := json.Marshal(keys.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	jwksFile = filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwksFile, set, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, jwksFile
}

func TestAuditVerify(t *testing.T) {
	dir, jwksFile := auditTrail(t)
	jwks, err := os.ReadFile(jwksFile)
	if err != nil {
		t.Fatal(err)
	}
	jwksServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	}))
	defer jwksServer.Close()
	_, otherJWKS := auditTrail(t)

	files, _ := filepath.Glob(filepath.Join(dir, "audit-*.jsonl"))
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"whole, keys not checked", []string{dir}, 0, "ok: 1 files, 5 records (seq 1..5), 1 checkpoints, signed (keys not checked", ""},
		{"whole, with a JWKS file", []string{"--jwks", jwksFile, dir}, 0, "signed by trusted keys", ""},
		{"whole, with a JWKS URL", []string{"--jwks", jwksServer.URL, dir}, 0, "signed by trusted keys", ""},
		{"files", append([]string{"--jwks", jwksFile}, files...), 0, "ok: 1 files", ""},
		{"another broker's keys", []string{"--jwks", otherJWKS, dir}, 1, ":5: seq 5: untrusted key", "not whole"},
		{"no path", nil, 2, "", "want one or more"},
		{"missing path", []string{filepath.Join(dir, "missing")}, 2, "", "no such file"},
		{"bad anchor", []string{"--anchor", "5:xyz", dir}, 2, "", "SEQ:SHA256HEX"},
		{"a JWKS that is not one", []string{"--jwks", files[0], dir}, 2, "", "not a JWKS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runAudit(t, append([]string{"verify"}, tt.args...)...)
			if code != tt.code || !strings.Contains(stdout, tt.stdout) || !strings.Contains(stderr, tt.stderr) {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout, stderr)
			}
		})
	}

	t.Run("tampered", func(t *testing.T) {
		data, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		tampered := bytes.Replace(data, []byte(`"not a teller"`), []byte(`"not a tellar"`), 1)
		if err := os.WriteFile(files[0], tampered, 0o600); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := runAudit(t, "verify", "--jwks", jwksFile, dir)
		if want := fmt.Sprintf("%s:2: seq 2: edited: ", files[0]); code != 1 || !strings.HasPrefix(stdout, want) || !strings.Contains(stderr, "not whole") {
			t.Fatalf("exit %d, want 1 and stdout starting %q\nstdout:\n%s\nstderr:\n%s", code, want, stdout, stderr)
		}
	})
}

func TestAuditQuery(t *testing.T) {
	dir, _ := auditTrail(t)
	t.Run("json", func(t *testing.T) {
		stdout, stderr, code := runAudit(t, "query", "--dir", dir, "--subject", "bob", "--json")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		if len(lines) != 2 {
			t.Fatalf("%d lines, want bob's 2:\n%s", len(lines), stdout)
		}
		for _, line := range lines {
			var r audit.Record
			if err := json.Unmarshal([]byte(line), &r); err != nil || r.Subject != "bob" {
				t.Fatalf("line %s: %v", line, err)
			}
		}
	})
	tests := []struct {
		name  string
		args  []string
		lines int
		want  string
	}{
		{"denied", []string{"--decision", "denied"}, 1, `seq=2 call tools/call subject=bob app=ledger tool=ledger_transfer method=tools/call denied reason="not a teller" policy=ledger`},
		{"tool and app", []string{"--tool", "crm_find", "--app", "crm"}, 2, "tool=crm_find"},
		{"since a duration ago", []string{"--since", "1h", "--kind", "call"}, 3, "seq=2"},
		{"until a time", []string{"--until", time.Now().Add(-time.Hour).Format(time.RFC3339)}, 1, "seq=1 call tools/call subject=alice app=ledger"},
		{"control characters quoted", []string{"--app", "crm", "--subject", "alice\x1b[2J"}, 1, `subject="alice\x1b[2J"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runAudit(t, append([]string{"query", "--dir", dir}, tt.args...)...)
			lines := strings.Split(strings.TrimSpace(stdout), "\n")
			if code != 0 || len(lines) != tt.lines || !strings.Contains(stdout, tt.want) || strings.Contains(stdout, "\x1b") {
				t.Fatalf("exit %d, %d lines, want %d with %q\nstdout:\n%s\nstderr:\n%s", code, len(lines), tt.lines, tt.want, stdout, stderr)
			}
		})
	}
	for _, args := range [][]string{{"--decision", "maybe"}, {"--since", "yesterday"}, {"extra"}} {
		if _, stderr, code := runAudit(t, append([]string{"query", "--dir", dir}, args...)...); code != 2 {
			t.Errorf("query %v: exit %d, want 2: %s", args, code, stderr)
		}
	}
}
