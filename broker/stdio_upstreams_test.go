package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpbroker/mcpbroker/broker/audit"
	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

// stdioBroker fronts the official everything, filesystem and memory
// servers as stdio apps, run by the pinned Node (%[1]q, the node binary;
// %[2]q, the packages). The filesystem server may serve %[3]q; the memory
// server keeps its graph in %[4]q. %[5]q is the trail, %[6]q the admin
// listener. The policy refuses the filesystem's writes.
const stdioBroker = `
version: 1
mcpProvider:
  enabled: true
  authorization: {unauthenticated: {enabled: true}}
  transports:
    stream: {enabled: true, path: /mcp, session: {enabled: true, allowClientTermination: true}}
audit: {dir: %[5]q, durability: sync}
admin: {address: %[6]q}
apps:
  - name: everything
    type: mcpProxy
    upstream:
      transport: stdio
      stdio:
        command: %[1]q
        args: [%[2]q]
        env: [{name: EVERYTHING_MARKER, value: set-by-config}]
  - name: files
    type: mcpProxy
    upstream:
      transport: stdio
      stdio: {command: %[1]q, args: [%[7]q, %[3]q], isolation: perSubject}
    authorization:
      inbound:
        opa:
          name: read-only-files
          rego: |
            package orchestrator
            default result := {"allowed": false, "external_message": "files are read-only here"}
            result := {"allowed": true} if not startswith(object.get(input.request.mcp.tool.params, "name", ""), "write")
            result := {"allowed": true} if input.request.mcp.method != "tools/call"
  - name: memory
    type: mcpProxy
    upstream:
      transport: stdio
      stdio:
        command: %[1]q
        args: [%[8]q]
        env: [{name: MEMORY_FILE_PATH, value: %[4]q}]
`

// stdioServers returns the node binary and the entry points of the three
// official servers.
func stdioServers(t *testing.T) (node, everything, filesystem, memory string) {
	bin, modules := nodeTools(t)
	script := func(pkg, file string) string {
		return filepath.Join(modules, "@modelcontextprotocol", pkg, "dist", file)
	}
	node = filepath.Join(bin, "node")
	everything, filesystem, memory = script("server-everything", "index.js"), script("server-filesystem", "index.js"), script("server-memory", "index.js")
	for _, f := range []string{everything, filesystem, memory} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("official server not installed: %v", err)
		}
	}
	return
}

// processesRunning counts the processes whose command line holds marker.
func processesRunning(t *testing.T, marker string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc to count processes in")
	}
	n := 0
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if strings.Contains(string(cmdline), marker) {
			if stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); strings.Contains(string(stat), ") Z ") {
				t.Errorf("process %s is a zombie: %s", e.Name(), cmdline)
			}
			n++
		}
	}
	return n
}

// The official npm servers as stdio apps behind the broker: a Go SDK
// client lists and calls their tools, reads a resource and gets a prompt,
// with policy and audit applied; a server killed mid-call gives a clean
// error and the next call works; sessions that end take their processes
// with them.
func TestOfficialServersOverStdio(t *testing.T) {
	node, everything, filesystem, memory := stdioServers(t)
	dir := t.TempDir()
	shared := filepath.Join(dir, "shared")
	if err := os.MkdirAll(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(shared, "hello.txt"), []byte("hello from a stdio app\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	trail, admin := filepath.Join(dir, "audit"), freeAddress(t)
	graph := filepath.Join(dir, "memory.json")
	base := startBroker(t, stdioBroker, node, everything, shared, graph, trail, admin, filesystem, memory)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	connect := func() *mcp.ClientSession {
		t.Helper()
		client := mcp.NewClient(&mcp.Implementation{Name: "stdio-test", Version: "1"}, nil)
		s, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: base + "/mcp"}, sessionful)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		return s
	}
	session := connect()
	defer session.Close()

	names := toolNames(t, ctx, session)
	for _, want := range []string{"everything_echo", "everything_get-env", "files_read_text_file", "memory_create_entities", "memory_read_graph"} {
		if !names[want] {
			t.Errorf("tools/list lacks %s", want)
		}
	}
	if names["files_write_file"] {
		t.Error("tools/list shows files_write_file, which the policy refuses")
	}

	if res := callTool(t, ctx, session, "everything_echo", map[string]any{"message": "through the broker"}); res.IsError || !strings.Contains(text(res), "through the broker") {
		t.Errorf("echo: %s", text(res))
	}
	// The process gets its configured environment and the few variables
	// it needs, nothing else of the broker's.
	env := text(callTool(t, ctx, session, "everything_get-env", map[string]any{}))
	if !strings.Contains(env, "set-by-config") || !strings.Contains(env, "PATH") {
		t.Errorf("get-env lacks the configured variable or PATH: %s", env)
	}
	for _, leaked := range []string{"MCPBROKER_NODE_MODULES", "GOPATH", "GOFLAGS"} {
		if os.Getenv(leaked) != "" && strings.Contains(env, leaked) {
			t.Errorf("the broker's %s reached the stdio server", leaked)
		}
	}
	if res := callTool(t, ctx, session, "files_read_text_file", map[string]any{"path": filepath.Join(shared, "hello.txt")}); res.IsError || !strings.Contains(text(res), "hello from a stdio app") {
		t.Errorf("read_text_file: %s", text(res))
	}
	_, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "files_write_file", Arguments: map[string]any{"path": filepath.Join(shared, "x.txt"), "content": "no"}})
	if err == nil || !strings.Contains(err.Error(), "files are read-only here") {
		t.Errorf("write_file: want the policy's refusal, got %v", err)
	}
	if _, err := os.Stat(filepath.Join(shared, "x.txt")); err == nil {
		t.Error("the refused write happened")
	}
	if res := callTool(t, ctx, session, "memory_create_entities", map[string]any{"entities": []any{map[string]any{"name": "broker", "entityType": "software", "observations": []any{"speaks stdio"}}}}); res.IsError {
		t.Errorf("create_entities: %s", text(res))
	}
	if res := callTool(t, ctx, session, "memory_read_graph", map[string]any{}); !strings.Contains(text(res), "speaks stdio") {
		t.Errorf("read_graph: %s", text(res))
	}

	resources, err := session.ListResources(ctx, nil)
	if err != nil || len(resources.Resources) == 0 {
		t.Fatalf("resources/list: %v %v", resources, err)
	}
	read, err := session.ReadResource(ctx, &mcp.ReadResourceParams{URI: resources.Resources[0].URI})
	if err != nil || len(read.Contents) == 0 {
		t.Errorf("resources/read %s: %v %v", resources.Resources[0].URI, read, err)
	}
	prompt, err := session.GetPrompt(ctx, &mcp.GetPromptParams{Name: "everything_args-prompt", Arguments: map[string]string{"city": "Lyon"}})
	if err != nil || len(prompt.Messages) == 0 {
		t.Errorf("prompts/get: %v %v", prompt, err)
	}

	// Every call is in the trail; where a policy decided, its decision.
	decisions := map[string]string{}
	if err := audit.Query(trail, audit.Filter{}, func(rec *audit.Record) bool {
		if rec.Event == "tools/call" {
			decisions[rec.App+"/"+rec.UpstreamTool] = "no policy"
			if rec.Decision != nil {
				decisions[rec.App+"/"+rec.UpstreamTool] = map[bool]string{true: "allow", false: "deny"}[rec.Decision.Allowed]
			}
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"everything/echo": "no policy", "files/read_text_file": "allow", "files/write_file": "deny", "memory/read_graph": "no policy"} {
		if decisions[key] != want {
			t.Errorf("trail: %s decided %q, want %q (all: %v)", key, decisions[key], want, decisions)
		}
	}

	t.Run("a server killed mid-call", func(t *testing.T) {
		type outcome struct {
			res *mcp.CallToolResult
			err error
		}
		done := make(chan outcome, 1)
		go func() {
			res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "everything_trigger-long-running-operation", Arguments: map[string]any{"duration": 30, "steps": 30}})
			done <- outcome{res, err}
		}()
		var pid int
		eventually(t, "the everything server to run the long operation", func() bool {
			pid = serverPid(t, everything)
			return pid != 0
		})
		time.Sleep(300 * time.Millisecond)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		select {
		case o := <-done:
			if o.err == nil {
				t.Fatalf("the call survived its server: %v", text(o.res))
			}
			var rpcErr *jsonrpc.Error
			if !errors.As(o.err, &rpcErr) || rpcErr.Code != -32000 {
				t.Errorf("want the JSON-RPC error -32000 (upstream unavailable), got %v", o.err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the call did not end when its server died")
		}
		if res := callTool(t, ctx, session, "everything_echo", map[string]any{"message": "again"}); res.IsError || !strings.Contains(text(res), "again") {
			t.Errorf("the call after the crash: %s", text(res))
		}
	})

	t.Run("ended sessions leave no process", func(t *testing.T) {
		const sessions, parallel = 200, 8
		var wg sync.WaitGroup
		errs := make(chan error, sessions)
		sem := make(chan struct{}, parallel)
		for i := range sessions {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				client := mcp.NewClient(&mcp.Implementation{Name: "short", Version: "1"}, nil)
				s, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: base + "/mcp"}, sessionful)
				if err != nil {
					errs <- err
					return
				}
				defer s.Close()
				res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "memory_search_nodes", Arguments: map[string]any{"query": fmt.Sprint("n", i)}})
				if err != nil || res.IsError {
					errs <- fmt.Errorf("session %d: %v", i, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		// The first session still holds one memory process; the others'
		// ended with them.
		eventually(t, "the ended sessions' processes to stop", func() bool { return processesRunning(t, memory) <= 1 })
		if n := metricSum(t, "http://"+admin, "mcpbroker_stdio_processes", map[string]string{"app": "memory"}); n > 1 {
			t.Errorf("the broker counts %v memory processes", n)
		}
	})

	session.Close()
	eventually(t, "the last session's processes to stop", func() bool { return processesRunning(t, memory) == 0 && processesRunning(t, everything) == 0 })
}

// sessionful makes a Go SDK client open a session (2025-11-25): the
// processes of perSession apps live and end with sessions. Requests
// without one (2026-07-28) share their subject's process instead.
var sessionful = &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"}

// serverPid finds the process running script.
func serverPid(t *testing.T, script string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); strings.Contains(string(cmdline), script) {
			return pid
		}
	}
	return 0
}

// identityBroker authenticates agents with tokens of the issuer %[1]q for
// the resource %[2]q and fronts the sample ledger on standard streams
// (%[3]q upstream sample --stdio).
const identityBroker = `
version: 1
mcpProvider:
  enabled: true
  transports:
    stream: {enabled: true, path: /mcp, session: {enabled: true}}
  authorization:
    oauth:
      enabled: true
      servers:
        - wellKnownEndpoint: %[1]q
          tokenValidation: {method: jwt, expectedAudiences: [%[2]q]}
apps:
  - name: local
    type: mcpProxy
    upstream:
      transport: stdio
      stdio: {command: %[3]q, args: [upstream, sample, --stdio], isolation: perSubject}
`

// A stdio upstream is told who calls in _meta: the agent's subject,
// client and act chain, from its verified token; what a client wrote
// under the same key does not reach it.
func TestStdioUpstreamToldTheCaller(t *testing.T) {
	as := oauthtest.NewIssuer(t, nil)
	bin := buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	addr := freeAddress(t)
	resource := "http://" + addr + "/mcp"
	startBrokerAt(t, addr, identityBroker, as.MetadataURL(), resource, bin)

	claims := agentClaims(as, resource, "alice", "agent-1")
	claims["act"] = map[string]any{"sub": "orchestrator"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	session := connectWithToken(t, ctx, resource, as.Mint(t, claims))

	got := whoami(t, ctx, session, "local_whoami")
	told := got.BrokerIdentity
	if got.AuthorizationPresent || told == nil {
		t.Fatalf("want the identity in _meta and no header: %+v", got)
	}
	act, _ := told["act"].(map[string]any)
	if told["sub"] != "alice" || told["client_id"] != "agent-1" || told["iss"] != as.ID || act["sub"] != "orchestrator" {
		t.Errorf("identity told: %v", told)
	}

	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "local_whoami", Arguments: map[string]any{},
		Meta: mcp.Meta{"io.mcpbroker/identity": map[string]any{"sub": "root"}}})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(res.StructuredContent)
	if strings.Contains(string(raw), "root") || !strings.Contains(string(raw), "alice") {
		t.Errorf("a client's own identity claim reached the upstream: %s", raw)
	}
}
