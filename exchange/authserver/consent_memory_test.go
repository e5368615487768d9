package authserver

import (
	"net/http"
	"testing"
)

// Remembered consent pairs scopes with the resource they were approved
// for: "ledger:write on the ledger" and "mcp on the broker" do not add up
// to "ledger:write on the broker", which the user never saw.
func TestConsentIsPerResource(t *testing.T) {
	ts := newTestServer(t)
	_, challenge := newPKCE()
	request := func(scope, resource string) string {
		return ts.authorizeURL(authorizeRequest{clientID: "agent", redirectURI: agentRedirect, scope: scope,
			state: "state-12345", resource: resource, challenge: challenge, method: "S256"})
	}
	broker := ts.issuer + "/mcp"
	newBrowser(t).authorize(request("ledger:write", ledgerAudience), "alice", "alice-password", "allow")
	newBrowser(t).authorize(request("mcp", broker), "alice", "alice-password", "allow")

	p := newBrowser(t).login(request("mcp ledger:write", broker), "alice", "alice-password")
	if !isConsentPage(p) {
		t.Errorf("ledger:write for %s was never approved, yet no consent was asked (status %d, Location %v)",
			broker, p.status, p.location)
	}
	// What was approved for a resource is remembered for it.
	for _, approved := range [][2]string{{"ledger:write", ledgerAudience}, {"mcp", broker}} {
		p := newBrowser(t).login(request(approved[0], approved[1]), "alice", "alice-password")
		if p.status != http.StatusSeeOther || p.location == nil || p.location.Query().Get("code") == "" {
			t.Errorf("%s on %s was approved before, yet: %d %v", approved[0], approved[1], p.status, p.location)
		}
	}
}
