package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// runPolicy runs "mcpbroker policy args..." and returns what it printed and
// its exit code.
func runPolicy(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runCommand(t, policyCommand(), "", args...)
}

var summaryLine = regexp.MustCompile(`(?m)^(\d+) passed, (\d+) failed$`)

// summary is the "N passed, N failed" line, which must be the last.
func summary(t *testing.T, stdout string) string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	last := lines[len(lines)-1]
	if !summaryLine.MatchString(last) {
		t.Fatalf("last line %q is not the summary; output:\n%s", last, stdout)
	}
	return last
}

func TestPolicyTestShippedExamples(t *testing.T) {
	stdout, stderr, code := runPolicy(t, "test", "-v", "../../policies")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	m := summaryLine.FindStringSubmatch(summary(t, stdout))
	if m[1] == "0" || m[2] != "0" {
		t.Errorf("summary %q, want some passed and none failed", m[0])
	}
	policies, err := filepath.Glob("../../policies/*.rego")
	if err != nil {
		t.Fatal(err)
	}
	for _, policy := range policies {
		if strings.HasSuffix(policy, "_test.rego") {
			continue
		}
		tests := strings.TrimSuffix(policy, ".rego") + "_test.rego"
		if !strings.Contains(stdout, "PASS "+tests+":") {
			t.Errorf("no passing test of %s in %s; output:\n%s", policy, tests, stdout)
		}
	}
}

func TestPolicyTestFailures(t *testing.T) {
	tests := []struct {
		name    string
		dir     string
		summary string   // "" when the run stops before testing
		want    []string // in stdout or stderr
	}{
		{
			name:    "failing test",
			dir:     "../../testdata/policy/broken",
			summary: "0 passed, 1 failed",
			want:    []string{"FAIL ../../testdata/policy/broken/policy_test.rego:4: data.orchestrator_test.test_transfer_allowed", "1 test(s) failed"},
		},
		{
			// The policy's test is not run beside the broken policy, where
			// it would pass vacuously.
			name:    "syntax error",
			dir:     "../../testdata/policy/syntax",
			summary: "0 passed, 0 failed",
			want:    []string{"../../testdata/policy/syntax/policy.rego:8: rego_parse_error", "did not parse or compile"},
		},
		{
			name:    "no tests",
			dir:     t.TempDir(),
			summary: "0 passed, 0 failed",
			want:    []string{"no tests in"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runPolicy(t, "test", tt.dir)
			if code == 0 {
				t.Fatalf("exit 0, want non-zero\nstdout:\n%s\nstderr:\n%s", stdout, stderr)
			}
			if got := summary(t, stdout); got != tt.summary {
				t.Errorf("summary %q, want %q", got, tt.summary)
			}
			for _, want := range tt.want {
				if !strings.Contains(stdout+stderr, want) {
					t.Errorf("output lacks %q\nstdout:\n%s\nstderr:\n%s", want, stdout, stderr)
				}
			}
		})
	}
}

// writeFiles creates files (name -> content) in a new directory.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestPolicyTestRegoVersions(t *testing.T) {
	const v1Test = `package orchestrator_test

test_get_balance_allowed if {
	data.orchestrator.result.allowed with input as {"request": {"mcp": {"tool": {"params": {"name": "get_balance"}}}}}
}

test_transfer_denied if {
	not data.orchestrator.result.allowed with input as {"request": {"mcp": {"tool": {"params": {"name": "transfer"}}}}}
}
`
	tests := []struct {
		name   string
		policy string
	}{
		{
			name: "v0 policy with a v1 test",
			policy: `package orchestrator

default result["allowed"] := false

result["allowed"] := true {
  input.request.mcp.tool.params.name == "get_balance"
}
`,
		},
		{
			// Parses as v1 but compiles only as v0: re_match left Rego v1.
			name: "v0 builtin",
			policy: `package orchestrator

result := {"allowed": re_match("^get_", input.request.mcp.tool.params.name)}
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"policy.rego": tt.policy, "policy_test.rego": v1Test})
			stdout, stderr, code := runPolicy(t, "test", dir)
			if code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			if got := summary(t, stdout); got != "2 passed, 0 failed" {
				t.Errorf("summary %q, want 2 passed", got)
			}
		})
	}
}

// TestPolicyTestSeparatesPolicies checks that two policies in one directory,
// both defining data.orchestrator.result, are each tested on their own.
func TestPolicyTestSeparatesPolicies(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"allow.rego":      "package orchestrator\n\nresult := {\"allowed\": true}\n",
		"allow_test.rego": "package orchestrator_test\n\ntest_allowed if data.orchestrator.result.allowed\n",
		"deny.rego":       "package orchestrator\n\nresult := {\"allowed\": false}\n",
		"deny_test.rego":  "package orchestrator_test\n\ntest_denied if not data.orchestrator.result.allowed\n",
	})
	stdout, stderr, code := runPolicy(t, "test", dir)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if got := summary(t, stdout); got != "2 passed, 0 failed" {
		t.Errorf("summary %q, want 2 passed", got)
	}
}

// evalResult is the output of policy eval.
type evalResult struct {
	Input    map[string]any `json:"input"`
	Result   any            `json:"result"`
	Decision map[string]any `json:"decision"`
}

func runEval(t *testing.T, args ...string) evalResult {
	t.Helper()
	stdout, stderr, code := runPolicy(t, append([]string{"eval"}, args...)...)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	var out evalResult
	decoder := json.NewDecoder(strings.NewReader(stdout))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(&out); err != nil {
		t.Fatalf("output is not the expected JSON: %v\n%s", err, stdout)
	}
	return out
}

func TestPolicyEvalConfigFile(t *testing.T) {
	tests := []struct {
		input        string
		wantResult   any
		wantDecision map[string]any
	}{
		{
			input:        "../../testdata/policy/eval-allowed.json",
			wantResult:   map[string]any{"allowed": true},
			wantDecision: map[string]any{"allowed": true, "reason": "allowed"},
		},
		{
			input: "../../testdata/policy/eval-denied.json",
			wantResult: map[string]any{
				"allowed":          false,
				"external_message": "cancel-order is available only to the group(s) customer-support",
			},
			wantDecision: map[string]any{
				"allowed":          false,
				"external_message": "cancel-order is available only to the group(s) customer-support",
				"reason":           "denied by policy",
			},
		},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.input), func(t *testing.T) {
			out := runEval(t, "--config", "../../testdata/policy/eval.yaml", "--app", "ecommerce", "--input", tt.input)
			if !reflect.DeepEqual(out.Result, tt.wantResult) {
				t.Errorf("result %v, want %v", out.Result, tt.wantResult)
			}
			if !reflect.DeepEqual(out.Decision, tt.wantDecision) {
				t.Errorf("decision %v, want %v", out.Decision, tt.wantDecision)
			}
			if subject, _ := out.Input["subject"].(map[string]any); subject["sub"] != "alice" {
				t.Errorf("input not echoed: %v", out.Input)
			}
		})
	}
}

// inlineConfig writes a configuration whose app "app" has the inline policy
// text, and returns its path.
func inlineConfig(t *testing.T, policy string) string {
	t.Helper()
	config := `version: 1
mcpProvider:
  enabled: true
  authorization: {unauthenticated: {enabled: true}}
apps:
  - name: app
    type: mcpProxy
    upstream:
      transport: stream
      stream:
        url: http://127.0.0.1:9000/mcp
    authorization:
      inbound:
        opa:
          name: inline
          rego: |
            ` + strings.ReplaceAll(strings.TrimSpace(policy), "\n", "\n            ") + "\n"
	return filepath.Join(writeFiles(t, map[string]string{"config.yaml": config}), "config.yaml")
}

func TestPolicyEvalDecisions(t *testing.T) {
	tests := []struct {
		name         string
		policy       string
		input        string
		wantResult   any
		wantDecision map[string]any
	}{
		{
			name: "strata v0 allowed",
			policy: `package orchestrator

default result["allowed"] := false

result["allowed"] := true {
  input.request.mcp.tool.params.name == "listItems"
}`,
			input:        `{"request": {"mcp": {"method": "tools/call", "tool": {"params": {"name": "listItems"}}}}}`,
			wantResult:   map[string]any{"allowed": true},
			wantDecision: map[string]any{"allowed": true, "reason": "allowed"},
		},
		{
			name:         "undefined",
			policy:       "package orchestrator\n\nresult := {\"allowed\": true} if input.purpose == \"call\"",
			input:        `{"purpose": "list"}`,
			wantResult:   nil,
			wantDecision: map[string]any{"allowed": false, "reason": "undefined"},
		},
		{
			name:         "allowed missing",
			policy:       "package orchestrator\n\nresult := {\"external_message\": \"no\"}",
			input:        `{}`,
			wantResult:   map[string]any{"external_message": "no"},
			wantDecision: map[string]any{"allowed": false, "external_message": "no", "reason": "undefined"},
		},
		{
			name:         "not a boolean",
			policy:       "package orchestrator\n\nresult := {\"allowed\": \"true\"}",
			input:        `{}`,
			wantResult:   map[string]any{"allowed": "true"},
			wantDecision: map[string]any{"allowed": false, "reason": "not a boolean"},
		},
		{
			name:         "not an object",
			policy:       "package orchestrator\n\nresult := true",
			input:        `{}`,
			wantResult:   true,
			wantDecision: map[string]any{"allowed": false, "reason": "not an object"},
		},
		{
			name:         "scopes",
			policy:       "package orchestrator\n\nresult := {\"allowed\": true, \"scopes\": [\"item:Get\"]}",
			input:        `{}`,
			wantResult:   map[string]any{"allowed": true, "scopes": []any{"item:Get"}},
			wantDecision: map[string]any{"allowed": true, "scopes": []any{"item:Get"}, "reason": "allowed"},
		},
		{
			name:         "bad scopes deny",
			policy:       "package orchestrator\n\nresult := {\"allowed\": true, \"scopes\": \"item:Get\"}",
			input:        `{}`,
			wantResult:   map[string]any{"allowed": true, "scopes": "item:Get"},
			wantDecision: map[string]any{"allowed": false, "reason": "scopes not an array of strings"},
		},
		{
			name: "arguments keep exact numbers",
			policy: `package orchestrator

result := {"allowed": input.request.mcp.tool.params.arguments.amount <= 1000}`,
			input:        `{"request": {"mcp": {"tool": {"params": {"name": "transfer", "arguments": {"amount": 1000.0000000000001}}}}}}`,
			wantResult:   map[string]any{"allowed": false},
			wantDecision: map[string]any{"allowed": false, "reason": "denied by policy"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			config := inlineConfig(t, tt.policy)
			input := filepath.Join(writeFiles(t, map[string]string{"input.json": tt.input}), "input.json")
			out := runEval(t, "--config", config, "--app", "app", "--input", input)
			if !reflect.DeepEqual(out.Result, tt.wantResult) {
				t.Errorf("result %#v, want %#v", out.Result, tt.wantResult)
			}
			if !reflect.DeepEqual(out.Decision, tt.wantDecision) {
				t.Errorf("decision %v, want %v", out.Decision, tt.wantDecision)
			}
		})
	}
}

func TestPolicyEvalError(t *testing.T) {
	// Two complete definitions that disagree are an evaluation error, which
	// denies; eval still exits 0.
	config := inlineConfig(t, "package orchestrator\n\nresult := {\"allowed\": true}\n\nresult := {\"allowed\": false} if input.conflict")
	input := filepath.Join(writeFiles(t, map[string]string{"input.json": `{"conflict": true}`}), "input.json")
	out := runEval(t, "--config", config, "--app", "app", "--input", input)
	reason, _ := out.Decision["reason"].(string)
	if out.Result != nil || out.Decision["allowed"] != false || !strings.HasPrefix(reason, "evaluation error: ") {
		t.Errorf("result %v, decision %v; want null and an evaluation error", out.Result, out.Decision)
	}
}

func TestPolicyEvalLoadErrors(t *testing.T) {
	goodInput := "../../testdata/policy/eval-allowed.json"
	badInput := filepath.Join(writeFiles(t, map[string]string{"input.json": `["not", "an", "object"]`}), "input.json")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{
			name: "unknown app",
			args: []string{"--config", "../../testdata/policy/eval.yaml", "--app", "nope", "--input", goodInput},
			want: `no app "nope" (apps: ecommerce, bank)`,
		},
		{
			name: "policy does not parse",
			args: []string{"--config", inlineConfig(t, "package orchestrator\n\nresult := {\"allowed\" true}"), "--app", "app", "--input", goodInput},
			want: "inline:3: rego_parse_error",
		},
		{
			name: "policy does not compile",
			args: []string{"--config", inlineConfig(t, "package orchestrator\n\nresult := {\"allowed\": nothing}"), "--app", "app", "--input", goodInput},
			want: "inline:3: rego_unsafe_var_error",
		},
		{
			name: "input not an object",
			args: []string{"--config", "../../testdata/policy/eval.yaml", "--app", "ecommerce", "--input", badInput},
			want: "not a JSON object",
		},
		{
			name: "invalid config",
			args: []string{"--config", "../../testdata/quickstart.yaml.missing", "--app", "ecommerce", "--input", goodInput},
			want: "no such file",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runPolicy(t, append([]string{"eval"}, tt.args...)...)
			if code == 0 {
				t.Fatalf("exit 0, want non-zero\nstdout:\n%s", stdout)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr lacks %q:\n%s", tt.want, stderr)
			}
		})
	}
}

// policy eval reads a result as the broker does: an approval asked for by
// a denial is shown with its approvers and time.
func TestPolicyEvalApproval(t *testing.T) {
	out := runEval(t, "--config", "../../testdata/policy/eval.yaml", "--app", "bank", "--input", "../../testdata/policy/eval-approval.json")
	want := map[string]any{
		"allowed":          false,
		"external_message": "transfers above 1000 need a second person's approval",
		"approval":         map[string]any{"reason": "Transfer above 1000.", "approvers": "treasury", "ttl": "15m0s"},
		"reason":           "denied by policy",
	}
	if !reflect.DeepEqual(out.Decision, want) {
		t.Errorf("decision %v, want %v", out.Decision, want)
	}
}
