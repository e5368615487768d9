package broker_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpbroker/mcpbroker/broker/audit"
)

// redactionBroker serves the sample upstream (%[1]q, with customer_record)
// three times, one app per redaction action; %[2]q is the trail, which
// records arguments, and %[3]q the admin listener.
const redactionBroker = openProvider + `audit: {dir: %[2]q, arguments: {record: true}}
admin: {address: %[3]q}
apps:
  - name: masked
    type: mcpProxy
    upstream: {transport: stream, stream: {url: %[1]q}}
    redaction: {action: mask}
  - name: blocked
    type: mcpProxy
    upstream: {transport: stream, stream: {url: %[1]q}}
    redaction:
      action: audit
      tools: [{name: customer_record, action: block, detectors: [payment-card, iban]}]
  - name: watched
    type: mcpProxy
    upstream: {transport: stream, stream: {url: %[1]q}}
    redaction: {action: audit}
`

// A sample tool returns an AWS key, a private key block, a JWT, a card
// number (and one failing the Luhn check), an IBAN and an e-mail address.
// mask replaces each in the text and in structuredContent and leaves the
// look-alikes alone; block withholds the result; audit passes it; each
// audit record counts the findings by detector and holds none of them.
func TestRedaction(t *testing.T) {
	bin := buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	upstream := freeAddress(t)
	startProcess(t, upstream, bin, "upstream", "sample", "--listen", upstream, "--records-tool")
	trail, admin := filepath.Join(t.TempDir(), "audit"), freeAddress(t)
	c := newWireClient(t, startBroker(t, redactionBroker, "http://"+upstream+"/mcp", trail, admin)+"/mcp")
	c.initialize(`{}`)

	secrets := []string{"AKIAIOSFODNN7EXAMPLE", "BEGIN PRIVATE KEY", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", "4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00", "alice.martin@example.com"}
	lookAlikes := []string{"4111 1111 1111 1112", "order 1234-5678-9012-3456"}
	wantCounts := map[string]int{"aws-access-key": 2, "private-key": 2, "jwt": 2, "payment-card": 2, "iban": 2, "email": 2} // text and structuredContent

	r, e := call(t, c, "masked_customer_record", `{"account":"alice"}`)
	if e != nil || r["isError"] == true {
		t.Fatalf("masked: %v %v", r, e)
	}
	all, _ := json.Marshal(r)
	for _, s := range secrets {
		if strings.Contains(string(all), s) {
			t.Errorf("masked result still holds %q", s)
		}
	}
	for _, s := range lookAlikes {
		if !strings.Contains(resultText(r), s) {
			t.Errorf("masked result lost the look-alike %q", s)
		}
	}
	for _, kind := range []string{"aws-access-key", "private-key", "jwt", "payment-card", "iban", "email"} {
		if !strings.Contains(resultText(r), "[REDACTED:"+kind+"]") {
			t.Errorf("masked text has no [REDACTED:%s]:\n%s", kind, resultText(r))
		}
	}
	if sc, _ := r["structuredContent"].(map[string]any); sc["email"] != "[REDACTED:email]" || sc["otherCard"] != "4111 1111 1111 1112" || sc["account"] != "alice" {
		t.Errorf("masked structuredContent: %v", sc)
	}

	// Arguments are masked before the trail records them.
	call(t, c, "masked_get_balance", `{"account":"bob@example.org"}`)

	r, e = call(t, c, "blocked_customer_record", `{"account":"alice"}`)
	if e != nil || r["isError"] != true || !strings.Contains(resultText(r), "was withheld: it contained iban, payment-card") || r["structuredContent"] != nil {
		t.Errorf("blocked: %v %v", r, e)
	}
	if r, e = call(t, c, "blocked_get_balance", `{"account":"alice"}`); e != nil || r["isError"] == true {
		t.Errorf("a clean result of the blocking app: %v %v", r, e)
	}

	r, e = call(t, c, "watched_customer_record", `{"account":"alice"}`)
	if e != nil || !strings.Contains(resultText(r), "AKIAIOSFODNN7EXAMPLE") {
		t.Errorf("audited: %v %v", r, e)
	}

	records := map[string]*audit.Record{}
	raw := ""
	if err := audit.Query(trail, audit.Filter{}, func(rec *audit.Record) bool {
		if rec.Event == "tools/call" {
			records[rec.App+"/"+rec.UpstreamTool] = rec
			line, _ := json.Marshal(rec)
			raw += string(line)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	for app, want := range map[string]map[string]int{
		"masked/customer_record":  wantCounts,
		"masked/get_balance":      {"arguments:email": 1},
		"blocked/customer_record": {"payment-card": 2, "iban": 2},
		"watched/customer_record": wantCounts,
	} {
		rec := records[app]
		if rec == nil {
			t.Fatalf("no record of %s", app)
		}
		for kind, n := range want {
			if rec.Redacted[kind] != n {
				t.Errorf("%s: recorded %v, want %s: %d", app, rec.Redacted, kind, n)
			}
		}
	}
	for _, s := range append(secrets, "bob@example.org") {
		if strings.Contains(raw, s) {
			t.Errorf("the audit trail holds %q", s)
		}
	}
	if n := metricSum(t, "http://"+admin, "mcpbroker_redactions_total", map[string]string{"app": "masked", "detector": "email", "action": "mask"}); n != 3 {
		// Two in customer_record's result, one in get_balance's error,
		// which names the account it was asked for.
		t.Errorf("masked e-mail addresses counted: %v, want 3", n)
	}
}

// governedBroker governs the sample upstream (%[1]q) with a policy that
// reads the tool's definition: read-only tools only, and their results
// with e-mail addresses masked.
const governedBroker = openProvider + `apps:
  - name: ledger
    type: mcpProxy
    upstream: {transport: stream, stream: {url: %[1]q}}
    validation: {arguments: enforce}
    authorization:
      inbound:
        opa:
          name: read-only
          rego: |
            package orchestrator
            default result := {"allowed": false, "external_message": "only read-only tools"}
            result := {"allowed": true, "redact": ["email"]} if {
              input.tool.definition.annotations.readOnlyHint
              input.tool.pin == "unpinned"
            }
`

// A policy governs on the definition the broker holds (input.tool) and
// asks for redaction in its result.
func TestPolicyOnDefinitionAndRedaction(t *testing.T) {
	bin := buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	upstream := freeAddress(t)
	startProcess(t, upstream, bin, "upstream", "sample", "--listen", upstream, "--records-tool")
	c := newWireClient(t, startBroker(t, governedBroker, "http://"+upstream+"/mcp")+"/mcp")
	c.initialize(`{}`)
	r, e := call(t, c, "ledger_customer_record", `{"account":"alice"}`)
	if e != nil || r["isError"] == true {
		t.Fatalf("a read-only tool: %v %v", r, e)
	}
	text := resultText(r)
	if !strings.Contains(text, "[REDACTED:email]") || strings.Contains(text, "alice.martin@example.com") || !strings.Contains(text, "4111 1111 1111 1111") {
		t.Errorf("the policy asked for e-mail addresses only to be masked:\n%s", text)
	}
	_, e = call(t, c, "ledger_transfer", `{"from":"alice","to":"bob","amount":1}`)
	if e == nil || e["code"].(float64) != -32010 || e["message"] != "only read-only tools" {
		t.Errorf("a tool without readOnlyHint: %v", e)
	}
}
