package config

import (
	"fmt"
	"strings"
	"testing"
)

func twoAppsConfig(ledgerAudience, crmAudience string) string {
	app := func(name, port, audience string) string {
		return fmt.Sprintf(`
  - name: %s
    type: mcpProxy
    upstream: {transport: stream, stream: {url: "http://127.0.0.1:%s/mcp"}}
    authorization:
      outbound:
        type: tokenExchange
        tokenExchange:
          type: delegation
          idp: embedded
          audience: %s
          tools: [{name: "*", ttl: 5s}]`, name, port, audience)
	}
	return `version: 1
authProvider:
  enabled: true
  issuer: http://127.0.0.1:8080
  audiences: [http://127.0.0.1:8080/mcp]
  scopes: [ledger:read]
  login:
    users:
      - username: demo
        passwordHash: "$2a$12$sLCNs770uStfYzHR7HzBne890w4dmhjx3bW/hbHhhm6yTg3exJduS"
mcpProvider:
  enabled: true
  transports:
    stream: {enabled: true, path: /mcp, session: {enabled: true}}
  authorization:
    oauth:
      enabled: true
      servers:
        - wellKnownEndpoint: http://127.0.0.1:8080/.well-known/oauth-authorization-server
          tokenValidation: {method: jwt, expectedAudiences: [http://127.0.0.1:8080/mcp]}
apps:` + app("ledger", "9000", ledgerAudience) + app("crm", "9001", crmAudience) + "\n"
}

// Outbound tool tokens are minted by the embedded AS, which is also an
// inbound authorization server. Nothing stops an app's tokenExchange
// audience from being the broker's own resource (then every tool token
// the upstream receives is a valid agent token at the broker, a
// passthrough in reverse that reaches every other app), or two apps from
// sharing one audience (then a token minted for one upstream is accepted
// by the other). The checklist asks for a distinct aud per upstream.
func TestOutboundAudiencesAreDistinct(t *testing.T) {
	if _, err := Parse([]byte(twoAppsConfig("https://ledger.example/", "https://crm.example/")), "config.yaml"); err != nil {
		t.Fatalf("base config: %v", err)
	}
	for name, document := range map[string]string{
		"app audience is the broker's resource": twoAppsConfig("http://127.0.0.1:8080/mcp", "https://crm.example/"),
		"two apps share an audience":            twoAppsConfig("https://shared.example/", "https://shared.example/"),
	} {
		_, err := Parse([]byte(document), "config.yaml")
		if err == nil || !strings.Contains(err.Error(), "audience") {
			t.Errorf("%s: accepted (err %v)", name, err)
		}
	}
}
