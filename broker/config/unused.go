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
	for i, app := range c.Apps {
		notes = append(notes, app.unusedTrust(fmt.Sprintf("apps[%d]", i))...)
	}
	slices.Sort(notes)
	return notes
}

// unusedTrust names the tool pinning and validation settings an app gives
// that its modes leave without effect: limits changed from their defaults
// while the check they bound is off.
func (app *App) unusedTrust(path string) []string {
	var notes []string
	if p := app.ToolPinning; p != nil && p.Mode == PinningOff {
		if p.TrustOnFirstUse != nil && !*p.TrustOnFirstUse {
			notes = append(notes, path+`.toolPinning.trustOnFirstUse has no effect: toolPinning.mode is "off"`)
		}
		if p.Limits != (DefinitionLimits{DescriptionBytes: defaultDescriptionBytes, SchemaBytes: defaultSchemaBytes, DefinitionBytes: defaultDefinitionBytes}) {
			notes = append(notes, path+`.toolPinning.limits has no effect: toolPinning.mode is "off"`)
		}
	}
	if v := app.Validation; v != nil && v.Arguments == PinningOff &&
		v.Limits != (ValidationLimits{ArgumentBytes: defaultArgumentBytes, Depth: defaultArgumentDepth, StringBytes: defaultArgumentStringBytes}) {
		notes = append(notes, path+`.validation.limits has no effect: validation.arguments is "off"`)
	}
	return notes
}
