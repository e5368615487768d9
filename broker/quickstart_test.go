package broker_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The README's walkthrough against the configuration `make run` uses
// (testdata/quickstart.yaml, on free ports): get a token as the demo user,
// list tools, call an allowed and a denied tool, and see the delegated
// identity at the upstream.
func TestQuickstartWalkthrough(t *testing.T) {
	bin := buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	brokerAddress, ledgerAddress := freeAddress(t), freeAddress(t)
	issuer := "http://" + brokerAddress
	ledgerAudience := "http://" + ledgerAddress + "/mcp"

	raw, err := os.ReadFile("../testdata/quickstart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	policies, err := filepath.Abs("../policies")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	callbackAddress := freeAddress(t)
	quickstart := strings.NewReplacer(
		"127.0.0.1:53682", callbackAddress,
		"127.0.0.1:8080", brokerAddress,
		"127.0.0.1:9000", ledgerAddress,
		"../data/quickstart.db", filepath.Join(dir, "quickstart.db"),
		"../data/audit", filepath.Join(dir, "audit"),
		"127.0.0.1:9464", freeAddress(t),
		"../policies", policies,
	).Replace(string(raw))
	configPath := filepath.Join(dir, "quickstart.yaml")
	writeFile(t, configPath, quickstart)

	startProcess(t, ledgerAddress, bin, "upstream", "sample", "--listen", ledgerAddress,
		"--issuer", issuer, "--audience", ledgerAudience)
	startProcess(t, brokerAddress, bin, "serve", "--config", configPath)

	// 1. A token for the demo user, through the demo agent: the
	// authorization code flow with PKCE, the login form filled by the CLI.
	login := exec.Command(bin, "token", "login", "--issuer", issuer,
		"--client-id", "demo-agent", "--client-secret", "demo-agent-secret-not-for-production",
		"--scope", "ledger:read", "--resource", issuer+"/mcp",
		"--username", "demo", "--password-stdin", "--port", strings.TrimPrefix(callbackAddress, "127.0.0.1:"))
	login.Stdin = strings.NewReader("demo-password\n")
	var loginErr strings.Builder
	login.Stderr = &loginErr
	out, err := login.Output()
	if err != nil {
		t.Fatalf("token login: %v\n%s", err, loginErr.String())
	}
	var issued struct {
		AccessToken string `json:"access_token"`
		Scope       string `json:"scope"`
	}
	if err := json.Unmarshal(out, &issued); err != nil || issued.AccessToken == "" {
		t.Fatalf("token login printed %q: %v", out, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	session := connectWithToken(t, ctx, issuer+"/mcp", issued.AccessToken)

	// 2. The ledger's tools, prefixed.
	names := toolNames(t, ctx, session)
	for _, name := range []string{"ledger_whoami", "ledger_transfer", "ledger_get_balance"} {
		if !names[name] {
			t.Errorf("tools/list lacks %s: %v", name, names)
		}
	}

	// 3. An allowed call, and the identity the upstream saw: the user,
	// acted for by the agent, in a token minted for the ledger alone.
	seen := whoami(t, ctx, session, "ledger_whoami")
	claims := seen.VerifiedClaims
	if !seen.Verified || claims == nil || claims.Subject != "demo" || claims.Actor["sub"] != "demo-agent" ||
		!slices.Equal(claims.Audience, []string{ledgerAudience}) || claims.Scope != "ledger:read" || claims.ExpiresAt-claims.IssuedAt != 5 {
		t.Errorf("the ledger saw %+v", seen)
	}

	// 4. A call the shipped policy denies.
	denied, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "ledger_transfer",
		Arguments: map[string]any{"from": "alice", "to": "bob", "amount": 5000}})
	if err == nil || !strings.Contains(err.Error(), "transfer is limited to an amount of 1000") {
		t.Errorf("transfer of 5000: %v, %+v; want the policy's denial", err, denied)
	}

	// 5. A call allowed by policy whose tool needs a scope the user's token
	// lacks: 403 insufficient_scope naming it (step-up), beside the scope
	// the session's earlier calls used, so that a client replacing its
	// scopes with the challenge's keeps reading.
	// The Go SDK speaks 2026-07-28 to the broker: no session, and the
	// request made that way.
	if session.ID() != "" || session.InitializeResult().ProtocolVersion != "2026-07-28" {
		t.Fatalf("the Go SDK negotiated %q with session %q, want 2026-07-28 without one", session.InitializeResult().ProtocolVersion, session.ID())
	}
	body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"ledger_transfer","arguments":{"from":"alice","to":"bob","amount":10},` +
		`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	request, _ := http.NewRequest(http.MethodPost, issuer+"/mcp", strings.NewReader(body))
	request.Header.Set("Authorization", "Bearer "+issued.AccessToken)
	request.Header.Set("Content-Type", "application/json")
	request.Header.Set("Accept", "application/json, text/event-stream")
	request.Header.Set("MCP-Protocol-Version", "2026-07-28")
	request.Header.Set("Mcp-Method", "tools/call")
	request.Header.Set("Mcp-Name", "ledger_transfer")
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		t.Fatal(err)
	}
	var refused struct {
		ID    int `json:"id"`
		Error struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	json.NewDecoder(response.Body).Decode(&refused)
	response.Body.Close()
	if refused.ID != 7 || refused.Error.Code == 0 {
		t.Errorf("403 body %+v, want a JSON-RPC error answering id 7", refused)
	}
	if challenge := response.Header.Get("WWW-Authenticate"); response.StatusCode != http.StatusForbidden ||
		!strings.Contains(challenge, `error="insufficient_scope"`) || !strings.Contains(challenge, `scope="ledger:read ledger:write"`) {
		t.Errorf("transfer without ledger:write: %d %q", response.StatusCode, challenge)
	}

	// 6. The agent on its own behalf: client credentials.
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"ledger:read"}, "resource": {issuer + "/mcp"}}
	request, _ = http.NewRequest(http.MethodPost, issuer+"/token", strings.NewReader(form.Encode()))
	request.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	request.SetBasicAuth("demo-agent", "demo-agent-secret-not-for-production")
	response, err = http.DefaultClient.Do(request)
	if err != nil {
		t.Fatal(err)
	}
	var agentToken struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(response.Body).Decode(&agentToken)
	response.Body.Close()
	agent := connectWithToken(t, ctx, issuer+"/mcp", agentToken.AccessToken)
	if seen := whoami(t, ctx, agent, "ledger_whoami"); seen.VerifiedClaims == nil || seen.VerifiedClaims.Subject != "demo-agent" {
		t.Errorf("client credentials: the ledger saw %+v", seen)
	}
}
