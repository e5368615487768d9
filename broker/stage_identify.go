package broker

import (
	"context"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// identify takes up who authentication established: the call's principal,
// which the session remembers as its latest agent for upstream requests
// outside any call (the GET stream, DELETE); with connectors, the agent's
// own token, which identity-only tokens are exchanged for.
func (b *Broker) identify(_ context.Context, c *Call) error {
	if r := c.Request.HTTP; r != nil {
		c.Principal = oauth.PrincipalFrom(r.Context())
	}
	if c.gen.outbound == nil || c.Principal == nil {
		return nil
	}
	c.State.agent.Store(c.Principal)
	if c.gen.outbound.ExchangesAgentToken() {
		c.agentToken = c.subjectToken()
	}
	return nil
}
