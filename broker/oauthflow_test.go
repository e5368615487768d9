package broker_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mcpbroker/mcpbroker/apps/sample"
)

// selfIssuingLedger starts the sample ledger upstream, which accepts only
// tokens from the broker's own authorization server with its audience,
// and a broker at brokerAddress that is that authorization server, serves
// the ledger with delegated tool tokens and authenticates agents with the
// tokens it issues itself. It returns the broker's URL and the ledger's
// audience.
func selfIssuingLedger(t *testing.T, brokerAddress, clients string) (brokerURL, audience string) {
	t.Helper()
	return ledgerScenario(t, "self-issuing-ledger", brokerAddress, clients)
}

// ledgerScenario is selfIssuingLedger with the broker configured by the
// named scenario, which takes the same placeholders.
func ledgerScenario(t *testing.T, name, brokerAddress, clients string) (brokerURL, audience string) {
	t.Helper()
	bin := buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	issuer := "http://" + brokerAddress
	ledgerAddress := freeAddress(t)
	audience = "http://" + ledgerAddress + "/mcp"
	startProcess(t, ledgerAddress, bin, "upstream", "sample", "--listen", ledgerAddress,
		"--issuer", issuer, "--audience", audience)
	brokerURL = startBrokerAt(t, brokerAddress, scenario(t, name), filepath.Join(t.TempDir(), "broker.db"), issuer, demoPasswordHash, clients, audience)
	return brokerURL, audience
}

// A real MCP client (the TypeScript SDK) with no pre-shared token goes
// through the whole MCP authorization flow against the broker, then lists
// and calls tools; the upstream sees a delegated token for the user.
func TestMCPAuthorizationFlow(t *testing.T) {
	nodeTools(t)
	brokerURL, audience := selfIssuingLedger(t, freeAddress(t), "")
	out := runNode(t, "oauth-flow.mjs", "--url", brokerURL+"/mcp", "--username", "demo", "--password", "demo-password",
		"--tool", "ledger_whoami")
	var flow struct {
		Requests []struct {
			Method string `json:"method"`
			URL    string `json:"url"`
			Status int    `json:"status"`
		} `json:"requests"`
		Redirect struct {
			Error string `json:"error"`
			State bool   `json:"state"`
			Iss   string `json:"iss"`
		} `json:"redirect"`
		Registered struct {
			ClientID string `json:"client_id"`
		} `json:"registered"`
		Tokens struct {
			TokenType       string `json:"token_type"`
			Scope           string `json:"scope"`
			HasRefreshToken bool   `json:"has_refresh_token"`
		} `json:"tokens"`
		Tools  []string `json:"tools"`
		Result struct {
			IsError           bool           `json:"isError"`
			StructuredContent map[string]any `json:"structuredContent"`
		} `json:"result"`
	}
	if err := json.Unmarshal(out, &flow); err != nil {
		t.Fatalf("%v: %s", err, out)
	}

	// The steps of the MCP authorization flow, in this order.
	want := []string{
		"POST /mcp 401",
		"GET /.well-known/oauth-protected-resource/mcp 200",
		"GET /.well-known/oauth-authorization-server 200",
		"POST /register 201",
		"GET /authorize 200",
		"POST /token 200",
		"POST /mcp 200",
	}
	var seen []string
	for _, r := range flow.Requests {
		seen = append(seen, fmt.Sprintf("%s %s %d", r.Method, strings.TrimPrefix(r.URL, brokerURL), r.Status))
	}
	next := 0
	for _, step := range seen {
		if next < len(want) && step == want[next] {
			next++
		}
	}
	if next < len(want) {
		t.Fatalf("flow stopped before %q; requests:\n%s", want[next], strings.Join(seen, "\n"))
	}
	if flow.Redirect.Error != "" || !flow.Redirect.State || flow.Redirect.Iss != brokerURL {
		t.Errorf("authorization response: %+v, want a code, the state and iss=%s", flow.Redirect, brokerURL)
	}
	if flow.Registered.ClientID == "" || flow.Tokens.TokenType != "Bearer" || !flow.Tokens.HasRefreshToken {
		t.Errorf("registration %+v, tokens %+v", flow.Registered, flow.Tokens)
	}
	if !contains(flow.Tools, "ledger_whoami") || !contains(flow.Tools, "ledger_list_accounts") {
		t.Errorf("tools = %v", flow.Tools)
	}
	if flow.Result.IsError {
		t.Fatalf("whoami failed: %+v", flow.Result)
	}
	raw, _ := json.Marshal(flow.Result.StructuredContent)
	var seenByUpstream sample.Identity
	if err := json.Unmarshal(raw, &seenByUpstream); err != nil {
		t.Fatalf("whoami: %v: %s", err, raw)
	}
	claims := seenByUpstream.VerifiedClaims
	if !seenByUpstream.Verified || claims == nil || claims.Subject != "demo" || !slices.Equal(claims.Audience, []string{audience}) || claims.Scope != "ledger:read" {
		t.Fatalf("upstream saw %s, want a verified token for demo with aud %s and scope ledger:read", raw, audience)
	}
	if claims.Actor["sub"] != flow.Registered.ClientID {
		t.Errorf("upstream saw act %v, want sub %q (the registered agent)", claims.Actor, flow.Registered.ClientID)
	}
	if claims.ExpiresAt-claims.IssuedAt != 7 {
		t.Errorf("exp - iat = %d, want the tool's ttl 7", claims.ExpiresAt-claims.IssuedAt)
	}
}

func contains(list []string, s string) bool { return slices.Contains(list, s) }

// A preflight carries no token: with authentication on, the MCP endpoint
// answers an allowed origin's preflight, and still challenges the request
// that follows without a token, in a way the page can read.
func TestPreflightBeforeAuthentication(t *testing.T) {
	brokerURL, _ := selfIssuingLedger(t, freeAddress(t), "")
	const app = "http://localhost:6274"
	request, _ := http.NewRequest(http.MethodOptions, brokerURL+"/mcp", nil)
	request.Header.Set("Origin", app)
	request.Header.Set("Access-Control-Request-Method", "POST")
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		t.Fatal(err)
	}
	response.Body.Close()
	if response.StatusCode != http.StatusNoContent || response.Header.Get("Access-Control-Allow-Origin") != app {
		t.Errorf("preflight: %d %v", response.StatusCode, response.Header)
	}
	request, _ = http.NewRequest(http.MethodPost, brokerURL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	request.Header.Set("Origin", app)
	request.Header.Set("Content-Type", "application/json")
	request.Header.Set("Accept", "application/json, text/event-stream")
	response, err = http.DefaultClient.Do(request)
	if err != nil {
		t.Fatal(err)
	}
	response.Body.Close()
	if response.StatusCode != http.StatusUnauthorized || response.Header.Get("Access-Control-Allow-Origin") != app ||
		!strings.Contains(response.Header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
		t.Errorf("unauthenticated POST: %d %v", response.StatusCode, response.Header)
	}
}

// The TypeScript SDK's client steps up within a session: signed in with
// ledger:read, it calls a read tool, is refused a transfer (403
// insufficient_scope naming ledger:read and ledger:write), tries a refresh
// (which the Auth Provider refuses: the grant was found short), asks the
// user for the challenge's scopes, and then both the transfer and the
// read tool succeed in the same session: the SDK replaces its scopes with
// the challenge's, which keep what the session used.
func TestStepUpKeepsWhatTheSessionUses(t *testing.T) {
	nodeTools(t)
	// Registered dynamically, with the scope of the first challenge
	// (ledger:read), as a new user's client would.
	brokerURL, _ := ledgerScenario(t, "step-up-ledger", freeAddress(t), "")
	out := runNode(t, "step-up.mjs", "--url", brokerURL+"/mcp", "--username", "demo", "--password", "demo-password",
		"--tool", "ledger_list_accounts", "--write-tool", "ledger_transfer", "--write-arguments", `{"from":"alice","to":"bob","amount":5}`)
	var flow struct {
		Scopes    []string               `json:"scopes"`
		StepUp    string                 `json:"stepUpScope"`
		Read      struct{ IsError bool } `json:"read"`
		Write     struct{ IsError bool } `json:"write"`
		ReadAgain struct{ IsError bool } `json:"readAgain"`
		Session   []string               `json:"session"`
	}
	if err := json.Unmarshal(out, &flow); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(flow.Scopes) != 2 || flow.Scopes[0] != "ledger:read" {
		t.Fatalf("scopes %v, want ledger:read at sign-in, then a step-up: %s", flow.Scopes, out)
	}
	if flow.StepUp != "ledger:read ledger:write" || !strings.Contains(flow.Scopes[1], "ledger:read") || !strings.Contains(flow.Scopes[1], "ledger:write") {
		t.Errorf("the step-up asked for %q and got %q, want both scopes", flow.StepUp, flow.Scopes[1])
	}
	if flow.Read.IsError || flow.Write.IsError || flow.ReadAgain.IsError {
		t.Errorf("read ok %v, write ok %v, read again ok %v: %s", !flow.Read.IsError, !flow.Write.IsError, !flow.ReadAgain.IsError, out)
	}
	if len(flow.Session) != 2 || flow.Session[0] == "" || flow.Session[0] != flow.Session[1] {
		t.Errorf("sessions %v, want one session throughout", flow.Session)
	}
}
