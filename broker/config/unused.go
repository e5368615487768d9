package config

import (
	"fmt"
	"slices"
)

// Unused names the settings a valid configuration gives that take no
// effect in it, and why: kept so that a file written for Strata loads
// unchanged, but never silently. `mcpbroker check` prints them, and the
// broker logs them at start.
func (c *Config) Unused() []string {
	var notes []string
	login := ""
	if c.AuthProvider != nil && c.AuthProvider.Enabled {
		login = c.AuthProvider.Login.Connector
	}
	for i, connector := range c.Connectors {
		if connector.Name == login {
			continue
		}
		path := fmt.Sprintf("connectors[%d]", i)
		for key, set := range map[string]bool{
			"oauthLoginRedirect":  connector.OAuthLoginRedirect != nil,
			"oauthLogoutRedirect": connector.OAuthLogoutRedirect != nil,
			"scopes":              len(connector.Scopes) > 0,
			"offlineAccess":       connector.OfflineAccess,
			"disablePKCE":         connector.DisablePKCE,
		} {
			if set {
				notes = append(notes, fmt.Sprintf("%s.%s has no effect: it shapes the sign-in of users, and %q does not sign users in here (authProvider.login.connector)", path, key, connector.Name))
			}
		}
	}
	slices.Sort(notes)
	return notes
}
