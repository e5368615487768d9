package broker

import (
	"testing"

	"github.com/mcpbroker/mcpbroker/exchange"
)

// An agent whose token has less than a second left gets no tool token; the
// call is refused as one with an expired token would be.
func TestAgentTokenExpiringRendered(t *testing.T) {
	rendered := errorObject(&exchange.IssueError{App: "ledger", Err: exchange.ErrAgentTokenExpiring})
	if rendered.Code != -32000 || rendered.Message != "token exchange failed: the agent's token expires now" {
		t.Errorf("rendered as %d %q", rendered.Code, rendered.Message)
	}
}
