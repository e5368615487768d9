package broker_test

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/mcpbroker/mcpbroker/broker/limit/redistest"
	"github.com/mcpbroker/mcpbroker/provider/oauth/oauthtest"
)

// Budgets of each kind hold over three replicas sharing Redis: many
// concurrent calls, spread over the replicas, admit exactly the budget of
// each subject (per subject), of one tool for everyone (per tool) and of
// an app's other tools together (per app), never more.
func TestReplicaRateLimitsOfEachKind(t *testing.T) {
	server := redistest.Start(t)
	upstream, _ := countingUpstream(t)
	as := oauthtest.NewIssuer(t, nil)
	const resource = "http://replicas.test/mcp"
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	var replicas []string
	for range 3 {
		replicas = append(replicas, startBroker(t, scenario(t, "replica-limits"), server.Addr(), base64.StdEncoding.EncodeToString(key), as.ID, resource, upstream)+"/mcp")
	}
	clients := map[string]*wireClient{}
	for _, subject := range []string{"alice", "bob", "carol"} {
		c := newWireClient(t, replicas[0])
		c.header.Set("Accept", "application/json")
		c.header.Set("Authorization", "Bearer "+as.Mint(t, agentClaims(as, resource, subject, "agent-1")))
		c.initialize(`{}`)
		clients[subject] = c
	}

	// calls sends n concurrent calls of tool per subject, round-robin over
	// the replicas, and counts the admitted and the limited per subject.
	calls := func(tool string, n int, subjects ...string) map[string][2]int {
		var mu sync.Mutex
		counts := map[string][2]int{}
		var wg sync.WaitGroup
		for _, subject := range subjects {
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := *clients[subject]
					c.url = replicas[i%3]
					a := c.send(tool, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"ledger_%s","arguments":{"account":"alice"}}}`, i, tool))
					mu.Lock()
					defer mu.Unlock()
					tally := counts[subject]
					switch {
					case a.status == http.StatusOK && a.rpcCode() == 0:
						tally[0]++
					case a.status == http.StatusTooManyRequests:
						tally[1]++
					default:
						t.Errorf("%s %s via replica %d: %d %s", subject, tool, i%3, a.status, a.body)
					}
					counts[subject] = tally
				}()
			}
		}
		wg.Wait()
		return counts
	}

	// Per subject: each of alice and bob gets 4 of 12.
	for subject, tally := range calls("get_balance", 12, "alice", "bob") {
		if tally != [2]int{4, 8} {
			t.Errorf("get_balance per subject, %s: %d admitted, %d limited; want 4 and 8", subject, tally[0], tally[1])
		}
	}
	// Per tool: 6 in all, whoever calls.
	admitted := 0
	for _, tally := range calls("list_accounts", 5, "alice", "bob", "carol") {
		admitted += tally[0]
	}
	if admitted != 6 {
		t.Errorf("list_accounts per tool: %d admitted of 15, want 6", admitted)
	}
	// Per app: the ledger's other tools share 5.
	admitted = 0
	for _, tally := range calls("whoami", 4, "alice", "bob", "carol") {
		admitted += tally[0]
	}
	if admitted != 5 {
		t.Errorf("the ledger's other tools per app: %d admitted of 12, want 5", admitted)
	}
	// carol's get_balance budget is her own, untouched by the others.
	if tally := calls("get_balance", 4, "carol")["carol"]; tally != [2]int{4, 0} {
		t.Errorf("carol's get_balance: %v, want all 4 admitted", tally)
	}
}
