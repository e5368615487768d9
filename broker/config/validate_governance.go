package config

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// What governs a session beyond one call: the labels apps and tools carry,
// the history policies read, and the calls held for a person's approval.

// labelPattern is a data label: lower-case words a policy compares.
var labelPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._:-]{0,63}$`)

// Bounds of the history and approvals.
const (
	maxLabels         = 32
	maxHistoryCalls   = 1000
	maxHistoryWindow  = 7 * 24 * time.Hour
	maxApprovalTTL    = 24 * time.Hour
	maxPendingPerUser = 1000
	maxReasonBytes    = 500
)

func (v *validator) labels(path string, labels []string) {
	if len(labels) > maxLabels {
		v.add(path, fmt.Sprintf("at most %d labels, got %d", maxLabels, len(labels)))
	}
	seen := map[string]bool{}
	for i, label := range labels {
		switch {
		case !labelPattern.MatchString(label):
			v.add(index(path, i), fmt.Sprintf(`want 1 to 64 lower-case letters, digits, ".", "_", ":" or "-", starting with a letter or digit, got %s`, quote(label)))
		case seen[label]:
			v.add(index(path, i), fmt.Sprintf("duplicate label %s", quote(label)))
		}
		seen[label] = true
	}
}

// appTools checks apps[i].tools.
func (v *validator) appTools(path string, tools []AppTool) {
	seen := map[string]int{}
	for i, t := range tools {
		at := index(path, i)
		switch first, duplicate := seen[t.Name]; {
		case t.Name == "":
			v.add(field(at, "name"), "must not be empty: the tool's upstream name, without the app's prefix")
		case duplicate:
			v.add(field(at, "name"), fmt.Sprintf("duplicate tool %s, also %s", quote(t.Name), index(path, first)))
		default:
			seen[t.Name] = i
		}
		v.labels(field(at, "labels"), t.Labels)
		if t.Approval != nil {
			v.toolApproval(field(at, "approval"), t.Approval)
		}
		if len(t.Labels) == 0 && t.Approval == nil {
			v.add(at, "says nothing of the tool: give labels or approval")
		}
	}
}

func (v *validator) toolApproval(path string, a *ToolApproval) {
	if !a.Required {
		v.add(field(path, "required"), "must be true: leave approval out for a tool that needs none")
	}
	if a.Approvers == "" {
		v.add(field(path, "approvers"), `must not be empty: "self" or a group name`)
	}
	if ttl := time.Duration(a.TTL); ttl != 0 && (ttl < time.Second || ttl > maxApprovalTTL) {
		v.add(field(path, "ttl"), fmt.Sprintf("want between 1s and %s, got %s", maxApprovalTTL, a.TTL))
	}
	if len(a.Reason) > maxReasonBytes {
		v.add(field(path, "reason"), fmt.Sprintf("at most %d bytes, got %d", maxReasonBytes, len(a.Reason)))
	}
	if ap := v.config.AuthProvider; ap == nil || !ap.Enabled {
		v.add(path, "needs authProvider.enabled: the approver signs in and answers at the Auth Provider's approval page")
	}
}

func (v *validator) sessionHistory(h *SessionHistory) {
	if h == nil {
		return
	}
	if h.MaxCalls < 1 || h.MaxCalls > maxHistoryCalls {
		v.add("sessionHistory.maxCalls", fmt.Sprintf("want 1 to %d, got %d", maxHistoryCalls, h.MaxCalls))
	}
	if time.Duration(h.Window) < time.Second || time.Duration(h.Window) > maxHistoryWindow {
		v.add("sessionHistory.window", fmt.Sprintf("want between 1s and %s, got %s", maxHistoryWindow, h.Window))
	}
}

func (v *validator) approvals(a *Approvals) {
	if time.Duration(a.TTL) < time.Second || time.Duration(a.TTL) > maxApprovalTTL {
		v.add("approvals.ttl", fmt.Sprintf("want between 1s and %s, got %s", maxApprovalTTL, a.TTL))
	}
	if a.MaxPendingPerUser < 1 || a.MaxPendingPerUser > maxPendingPerUser {
		v.add("approvals.maxPendingPerUser", fmt.Sprintf("want 1 to %d, got %d", maxPendingPerUser, a.MaxPendingPerUser))
	}
}

func (v *validator) console(c *Console) {
	if !c.Enabled {
		return
	}
	switch c.Listener {
	case ConsoleOnAdmin:
		if v.config.Admin.Disabled {
			v.add("console.listener", `the admin listener is off (admin.disabled): say listener: main, or turn it on`)
		}
	case ConsoleOnMain:
		taken := []string{"/authorize", "/token", "/register", "/introspect", "/revoke", "/jwks.json", "/callback", "/logout", "/approvals", "/.well-known"}
		if s := v.config.MCPProvider.Transports.Stream; s != nil {
			taken = append(taken, s.Path)
		}
		if s := v.config.MCPProvider.Transports.SSE; s != nil {
			taken = append(taken, s.Path, s.MessagePath)
		}
		for _, p := range taken {
			if p != "" && (c.Path == p || strings.HasPrefix(p, c.Path+"/") || strings.HasPrefix(c.Path, p+"/")) {
				v.add("console.path", fmt.Sprintf("%s is served by the main listener already", p))
			}
		}
	default:
		v.add("console.listener", fmt.Sprintf(`want "admin" or "main", got %s`, quote(c.Listener)))
	}
	if !strings.HasPrefix(c.Path, "/") || strings.HasSuffix(c.Path, "/") || strings.ContainsAny(c.Path, "?#{}* ") || len(c.Path) < 2 {
		v.add("console.path", fmt.Sprintf(`want a path such as "/console", without a trailing slash, got %s`, quote(c.Path)))
	}
	for _, taken := range []string{"/metrics", "/healthz", "/readyz", "/pins"} {
		if c.Listener == ConsoleOnAdmin && (c.Path == taken || strings.HasPrefix(c.Path, taken+"/")) {
			v.add("console.path", fmt.Sprintf("%s is the admin listener's own", taken))
		}
	}
	if u, err := url.Parse(c.URL); err != nil || !u.IsAbs() || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		v.add("console.url", fmt.Sprintf("want the console's absolute URL, got %s", quote(c.URL)))
	} else if u.Scheme != "https" && !(u.Scheme == "http" && oauth.IsLoopbackHost(u.Hostname())) {
		v.add("console.url", fmt.Sprintf("must be https (http only on loopback): the session cookie crosses it, got %s", quote(c.URL)))
	}
	if len(c.Operators) == 0 && len(c.Viewers) == 0 {
		v.add("console", "operators or viewers must name at least one group: no one else may sign in")
	}
	for i, g := range c.Operators {
		if g == "" {
			v.add(index("console.operators", i), "must not be empty")
		}
	}
	for i, g := range c.Viewers {
		if g == "" {
			v.add(index("console.viewers", i), "must not be empty")
		}
	}
	if c.SessionTTL < Duration(time.Minute) || c.SessionTTL > Duration(24*time.Hour) {
		v.add("console.sessionTTL", fmt.Sprintf("want between 1m and 24h, got %s", c.SessionTTL))
	}
	if c.TraceURL != "" {
		u, err := url.Parse(strings.ReplaceAll(c.TraceURL, "{traceId}", "0"))
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || !strings.Contains(c.TraceURL, "{traceId}") {
			v.add("console.traceURL", fmt.Sprintf("want an http(s) URL with {traceId} in it, got %s", quote(c.TraceURL)))
		}
	}
	switch name := c.SignIn.Connector; {
	case name == "":
		if ap := v.config.AuthProvider; ap == nil || !ap.Enabled {
			v.add("console.signIn", "people sign in at the embedded Auth Provider, which is off: enable authProvider or name an OIDC connector")
		}
	default:
		if conn := v.config.Connector(name); conn == nil || conn.Type != "oidc" {
			v.add("console.signIn.connector", fmt.Sprintf("no OIDC connector named %s", quote(name)))
		}
	}
}

func (v *validator) idJagIssuing(path string, j *IDJAGIssuing) {
	if j == nil {
		return
	}
	if j.TTL < Duration(10*time.Second) || j.TTL > Duration(10*time.Minute) {
		v.add(field(path, "ttl"), fmt.Sprintf("want between 10s and 10m: a grant is short-lived, got %s", j.TTL))
	}
	if len(j.Resources) == 0 {
		v.add(field(path, "resources"), "name at least one resource application")
	}
	names := map[string]bool{}
	for i, r := range j.Resources {
		at := index(field(path, "resources"), i)
		if r.Name == "" || names[r.Name] {
			v.add(field(at, "name"), fmt.Sprintf("want a name of its own, got %s", quote(r.Name)))
		}
		names[r.Name] = true
		if message := endpointProblem(r.Audience); message != "" {
			v.add(field(at, "audience"), "the resource application's authorization server issuer: "+message)
		}
		if len(r.Resources) == 0 {
			v.add(field(at, "resources"), "name at least one resource")
		}
		for k, res := range r.Resources {
			if message := absoluteURIProblem(res); message != "" {
				v.add(index(field(at, "resources"), k), message)
			}
		}
		for k, scope := range r.Scopes {
			if !isScopeToken(scope) {
				v.add(index(field(at, "scopes"), k), fmt.Sprintf("not a scope token (RFC 6749 §3.3): %s", quote(scope)))
			}
		}
	}
	switch p := j.Policy; {
	case p == nil:
		v.add(field(path, "policy"), "required: a policy decides which clients and users may have grants for which applications")
	case p.Name == "":
		v.add(field(path, "policy.name"), "required")
	case (p.Rego == "") == (p.File == ""):
		v.add(field(path, "policy"), "set one of rego (the policy inline) or file")
	}
}

func (v *validator) outboundIDJAG(path string, j *IDJAGOutbound) {
	if j == nil {
		v.add(path, `required when type is "idJag"`)
		return
	}
	if oauth := v.config.MCPProvider.Authorization.OAuth; oauth == nil || !oauth.Enabled {
		v.add(path, "grants are issued for the authenticated user; enable mcpProvider.authorization.oauth")
	}
	if j.IDP != EmbeddedIdentityProvider {
		v.add(field(path, "idp"), fmt.Sprintf(`want "embedded" (the Auth Provider issues the grants), got %s`, quote(j.IDP)))
	}
	if message := endpointProblem(j.Issuer); message != "" {
		v.add(field(path, "issuer"), message)
	}
	if message := absoluteURIProblem(j.Resource); message != "" {
		v.add(field(path, "resource"), message)
	}
	if j.ClientID == "" {
		v.add(field(path, "clientID"), "required: the broker's client at the upstream's authorization server")
	}
	for i, scope := range j.Scopes {
		if !isScopeToken(scope) {
			v.add(index(field(path, "scopes"), i), fmt.Sprintf("not a scope token (RFC 6749 §3.3): %s", quote(scope)))
		}
	}
	ap := v.config.AuthProvider
	if ap == nil || !ap.Enabled || ap.IDJAG == nil {
		v.add(field(path, "idp"), "the embedded Auth Provider issues no grants: set authProvider.idJag")
		return
	}
	for _, r := range ap.IDJAG.Resources {
		for _, res := range r.Resources {
			if r.Audience == j.Issuer && res == j.Resource {
				return
			}
		}
	}
	v.add(path, fmt.Sprintf("no resource application of authProvider.idJag has audience %s and resource %s", quote(j.Issuer), quote(j.Resource)))
}
