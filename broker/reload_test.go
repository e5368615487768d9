package broker_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// A reload under load: calls keep being answered while SIGHUP applies a
// valid change (a third app), a broken file is rejected with the running
// configuration still serving, and an app removed while a session uses
// it answers its tools with an error that says so, the others unharmed.
func TestReloadUnderLoad(t *testing.T) {
	bin := buildBinary(t, "github.com/mcpbroker/mcpbroker/cmd/mcpbroker")
	ledgerAddr, shopAddr, extraAddr := freeAddress(t), freeAddress(t), freeAddress(t)
	for _, addr := range []string{ledgerAddr, shopAddr, extraAddr} {
		startProcess(t, addr, bin, "upstream", "sample", "--listen", addr)
	}
	brokerAddr, adminAddr := freeAddress(t), freeAddress(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "broker.yaml")
	write := func(extra string, drop string) {
		text := fmt.Sprintf(scenario(t, "reloadable"), brokerAddr, adminAddr, filepath.Join(dir, "audit"), ledgerAddr, shopAddr, extra)
		if drop != "" {
			text = strings.Replace(text, drop, "", 1)
		}
		writeFile(t, path, text)
	}
	write("", "")
	broker := startProcess(t, brokerAddr, bin, "serve", "--config", path)
	url := "http://" + brokerAddr + "/mcp"
	hangup := func() {
		if err := broker.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	// Load: four sessions calling ledger and shop tools without pause.
	var failures, calls atomic.Int64
	var firstFailure sync.Once
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newWireClient(t, url)
			c.header.Set("Accept", "application/json")
			c.initialize(`{}`)
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				tool := []string{"ledger_get_balance", "shop_get_balance"}[n%2]
				a := c.send(tool, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":{"account":"alice"}}}`, n, tool))
				calls.Add(1)
				if a.status != http.StatusOK || a.rpcCode() != 0 {
					failures.Add(1)
					firstFailure.Do(func() { t.Errorf("session %d, %s: %d %s", i, tool, a.status, a.body) })
				}
			}
		}()
	}

	lists := newWireClient(t, url)
	lists.header.Set("Accept", "application/json")
	lists.initialize(`{}`)
	toolNames := func() string {
		return string(lists.send("list", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`).body)
	}
	// The session listens on its GET stream for list changes.
	listChanged := openGETStream(t, lists)

	// A valid change: a third app appears.
	write(`  - name: extra
    type: mcpProxy
    upstream: {transport: stream, stream: {url: "http://`+extraAddr+`/mcp"}}`, "")
	hangup()
	eventually(t, "the added app's tools are listed", func() bool { return strings.Contains(toolNames(), `"extra_get_balance"`) })
	awaitListChanged(t, listChanged, "after an app was added")

	// A broken file: rejected, and the running configuration serves on.
	writeFile(t, path, "version: 1\napps: [{name: broken, type: nonsense}]\n")
	hangup()
	eventually(t, "the broken file is counted as rejected", func() bool { return reloads(t, adminAddr, "rejected") == 1 })
	if !strings.Contains(toolNames(), `"extra_get_balance"`) {
		t.Error("a rejected reload changed what is served")
	}

	// shop is removed while the load's sessions use it.
	write("", `  - name: shop
    type: mcpProxy
    upstream: {transport: stream, stream: {url: "http://`+shopAddr+`/mcp"}}
`)
	close(stop)
	wg.Wait()
	hangup()
	eventually(t, "the removed app's tools are gone", func() bool { return !strings.Contains(toolNames(), `"shop_get_balance"`) })
	removed := lists.send("shop", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"shop_get_balance","arguments":{"account":"alice"}}}`)
	var answer struct {
		Error *struct {
			Code    int64  `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(removed.body, &answer); err != nil || answer.Error == nil || answer.Error.Code != -32602 || !strings.Contains(answer.Error.Message, `app "shop" was removed`) {
		t.Errorf("a removed app's tool: %s", removed.body)
	}
	if kept := lists.send("ledger", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"ledger_get_balance","arguments":{"account":"alice"}}}`); kept.rpcCode() != 0 {
		t.Errorf("ledger after the reload: %s", kept.body)
	}
	if applied := reloads(t, adminAddr, "applied"); applied != 2 {
		t.Errorf("%v reloads applied, want 2", applied)
	}
	if failures.Load() > 0 || calls.Load() == 0 {
		t.Errorf("%d of %d calls under load failed", failures.Load(), calls.Load())
	}
}

// reloads reads mcpbroker_config_reloads_total{outcome} from the admin
// listener.
func reloads(t *testing.T, adminAddr, outcome string) float64 {
	return metricSum(t, "http://"+adminAddr, "mcpbroker_config_reloads_total", map[string]string{"outcome": outcome})
}
