package broker_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Rate limits: of many concurrent calls exactly the budget is admitted,
// the refusal says when to retry (429 with Retry-After on a plain POST,
// the JSON-RPC error's data otherwise), the most specific rule applies,
// a shared rule is shared, and an app's limit of calls in flight refuses
// a second call while a slow one runs.
func TestRateLimits(t *testing.T) {
	upstream, _ := countingUpstream(t)
	brokerURL := startBroker(t, scenario(t, "rate-limited"), upstream)
	client := func() *wireClient {
		c := newWireClient(t, brokerURL+"/mcp")
		c.header.Set("Accept", "application/json")
		c.initialize(`{}`)
		return c
	}
	call := func(c *wireClient, id int, tool string) answer {
		return c.send(tool, `{"jsonrpc":"2.0","id":`+strconv.Itoa(id)+`,"method":"tools/call","params":{"name":"ledger_`+tool+`","arguments":{"account":"alice"}}}`)
	}

	// 20 concurrent get_balance calls of one caller: 5 admitted (the
	// concurrency limit of 1 turns some away too, so retry those).
	c := client()
	var admitted, limited atomic.Int64
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				a := call(c, 100+i, "get_balance")
				switch {
				case a.status == http.StatusOK && a.rpcCode() == 0:
					admitted.Add(1)
					return
				case a.status == http.StatusTooManyRequests && strings.Contains(string(a.body), "in flight"):
					continue // the app's one place was taken; the rate was not spent
				case a.status == http.StatusTooManyRequests:
					limited.Add(1)
					return
				default:
					t.Errorf("unexpected answer %d %s", a.status, a.body)
					return
				}
			}
		}()
	}
	wg.Wait()
	if admitted.Load() != 5 || limited.Load() != 15 {
		t.Errorf("%d admitted, %d limited; want exactly 5 and 15", admitted.Load(), limited.Load())
	}
	resp := c.post(`{"jsonrpc":"2.0","id":200,"method":"tools/call","params":{"name":"ledger_get_balance","arguments":{"account":"alice"}}}`)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("over the budget: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	var refused struct {
		Error *struct {
			Code    int64  `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	body := call(c, 300, "get_balance").body
	if err := json.Unmarshal(body, &refused); err != nil || refused.Error == nil || refused.Error.Code != -32011 || !strings.Contains(refused.Error.Message, `"balances"`) {
		t.Errorf("the refusal's body: %s", body)
	}

	// While a slow call holds the app's one place, another is turned away
	// without spending its budget.
	slow := client()
	done := make(chan answer, 1)
	go func() {
		done <- slow.send("slow", `{"jsonrpc":"2.0","id":350,"method":"tools/call","params":{"name":"ledger_slow_count","arguments":{"n":20,"delay_ms":100}}}`)
	}()
	other := client()
	eventually(t, "a call is turned away while the slow one runs", func() bool {
		a := call(other, 360, "list_accounts")
		return a.status == http.StatusTooManyRequests && strings.Contains(string(a.body), `too many calls in flight to app \"ledger\"`)
	})
	if a := <-done; a.status != http.StatusOK || a.rpcCode() != 0 {
		t.Errorf("the slow call: %d %s", a.status, a.body)
	}

	// Other tools fall under the general rule, per caller: another
	// session of the same (anonymous) caller shares it.
	if a := call(client(), 400, "list_accounts"); a.rpcCode() != 0 || a.status != http.StatusOK {
		t.Errorf("list_accounts under the general rule: %d %s", a.status, a.body)
	}
	// whoami's budget of 2 is shared by everyone.
	first, second := client(), client()
	for i, s := range []*wireClient{first, second} {
		if a := call(s, 500+i, "whoami"); a.status != http.StatusOK {
			t.Errorf("whoami %d: %d %s", i, a.status, a.body)
		}
	}
	if a := call(client(), 502, "whoami"); a.status != http.StatusTooManyRequests {
		t.Errorf("a third whoami from a third session: %d %s, want 429", a.status, a.body)
	}
}

// The policy sees what is left of the call's budget (input.limit).
func TestPolicySeesTheRemainingBudget(t *testing.T) {
	upstream, _ := countingUpstream(t)
	c := newWireClient(t, startBroker(t, scenario(t, "rate-limited-policy"), upstream)+"/mcp")
	c.header.Set("Accept", "application/json")
	c.initialize(`{}`)
	var got []string
	for i := range 4 {
		a := c.send("call", `{"jsonrpc":"2.0","id":`+strconv.Itoa(i)+`,"method":"tools/call","params":{"name":"ledger_list_accounts","arguments":{}}}`)
		got = append(got, strconv.Itoa(a.status)+" "+strconv.FormatInt(a.rpcCode(), 10))
		if i == 2 && !strings.Contains(string(a.body), "the last call of small is kept") {
			t.Errorf("the third call: %s", a.body)
		}
	}
	if want := []string{"200 0", "200 0", "200 -32010", "429 -32011"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("got %v, want %v", got, want)
	}
}
