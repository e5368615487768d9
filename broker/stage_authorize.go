package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/mcpbroker/mcpbroker/apps"
	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/broker/telemetry"
	"github.com/mcpbroker/mcpbroker/opa"
	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// ErrForbidden is a request the app's policy refused.
var ErrForbidden = errors.New("forbidden by policy")

// authorizer holds each app's inbound policy.
type authorizer struct {
	policies map[string]*opa.Policy // by app name; apps without one are not governed
	// reloads is each policy's last reload, for the console.
	reloadsMu sync.Mutex
	reloads   map[string]policyReload
	// identities converts each verified principal once for the policy
	// input; the token cache hands out the same principal per token.
	identities *lru.Cache[*oauth.Principal, *opa.Identity]
}

// denial carries a policy's refusal to the renderer.
type denial struct {
	decision opa.Decision
}

func (d *denial) Error() string { return "forbidden by policy: " + d.decision.Reason }
func (d *denial) Unwrap() error { return ErrForbidden }

// newAuthorizer compiles every app's inbound policy; file paths are
// relative to baseDir (the configuration file's folder).
func newAuthorizer(ctx context.Context, cfg *config.Config, baseDir string, b *Broker) (*authorizer, error) {
	a := &authorizer{policies: make(map[string]*opa.Policy)}
	a.identities, _ = lru.New[*oauth.Principal, *opa.Identity](10000)
	var problems []error
	for i, app := range cfg.Apps {
		if app.Authorization == nil || app.Authorization.Inbound == nil || app.Authorization.Inbound.OPA == nil {
			b.log.Warn("app has no inbound policy: every authenticated agent may use all its tools", "app", app.Name)
			continue
		}
		src := policySource(app.Authorization.Inbound.OPA, baseDir)
		p, err := opa.Compile(ctx, src, opa.Options{Logger: b.log})
		if err != nil {
			problems = append(problems, fmt.Errorf("apps[%d].authorization.inbound.opa: %w", i, err))
			continue
		}
		a.policies[app.Name] = p
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	return a, nil
}

// policySource turns configuration into a policy source.
func policySource(p *config.OPAPolicy, baseDir string) opa.Source {
	src := opa.Source{Name: p.Name, Rego: p.Rego, File: p.File}
	if src.File != "" && !filepath.IsAbs(src.File) && baseDir != "" {
		src.File = filepath.Join(baseDir, src.File)
	}
	return src
}

// policyReload is when a policy was last reloaded, and how.
type policyReload struct {
	At    time.Time
	Error string
}

// lastReload is the app's policy's last reload; zero when none yet.
func (a *authorizer) lastReload(app string) policyReload {
	a.reloadsMu.Lock()
	defer a.reloadsMu.Unlock()
	return a.reloads[app]
}

// watch reloads file policies when they change, until ctx ends. A policy
// that no longer compiles is reported and the previous one keeps serving.
func (a *authorizer) watch(ctx context.Context, b *Broker) {
	for app, p := range a.policies {
		go p.Watch(ctx, 0, func(err error) {
			a.reloadsMu.Lock()
			if a.reloads == nil {
				a.reloads = map[string]policyReload{}
			}
			r := policyReload{At: time.Now()}
			if err != nil {
				r.Error = err.Error()
			}
			a.reloads[app] = r
			a.reloadsMu.Unlock()
			if err != nil {
				b.log.Error("policy reload failed; the previous policy keeps serving", "app", app, "error", err)
				return
			}
			b.log.Info("policy reloaded", "app", app, "version", p.Version())
		})
	}
}

// identity is the policy's view of who calls.
func (a *authorizer) identity(p *oauth.Principal) *opa.Identity {
	if p == nil {
		return nil
	}
	if id, ok := a.identities.Get(p); ok {
		return id
	}
	id := &opa.Identity{
		Claims: p.Claims, Subject: p.Subject, Issuer: p.Issuer, Groups: p.Groups, Scopes: p.Scopes,
		ClientID: p.ClientID, ActorChain: p.Actor.Names(),
	}
	a.identities.Add(p, id)
	return id
}

// input is the policy input for a call; purpose is "call" or "list".
func (a *authorizer) input(c *Call, app *apps.App, purpose string) *opa.Input {
	in := &opa.Input{
		Method:   c.Message.Method,
		App:      app.Name,
		Purpose:  purpose,
		Identity: a.identity(c.Principal),
	}
	if purpose == opa.PurposeCall {
		in.Limit = c.limit
	}
	if r := c.Request.HTTP; r != nil {
		in.HTTPMethod, in.Path, in.Headers, in.SourceIP = r.Method, r.URL.Path, r.Header, sourceIP(r.RemoteAddr)
	}
	return in
}

// authorize asks the app's policy about a call routed to it. Lists are
// filtered item by item when they are collected (lists.go).
func (b *Broker) authorize(ctx context.Context, c *Call) error {
	if c.Route != routeApp || c.Message.Method == "" || c.App == nil {
		return nil
	}
	if tracked(c.Message.Method) {
		c.tracked = c.gen.gov.history != nil
		tool := ""
		if c.Message.Method == "tools/call" {
			tool = c.Name
		}
		c.Labels = c.gen.gov.labelsOf(c.App.Name, tool)
	}
	if c.gen.authz == nil {
		return nil
	}
	p := c.gen.authz.policies[c.App.Name]
	if p == nil {
		return nil
	}
	in := c.gen.authz.input(c, c.App, "call")
	switch c.Message.Method {
	case "tools/call":
		in.ToolName, in.Arguments = c.Name, c.Params.Arguments
		if c.Definition != nil {
			in.Tool = b.toolFacts(c.Definition)
		}
	case "prompts/get":
		in.PromptName, in.Arguments = c.Name, c.Params.Arguments
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		in.ResourceURI = c.Params.URI
	case "completion/complete":
		if c.Params.Ref != nil && c.Params.Ref.Type == "ref/prompt" {
			in.PromptName = c.Name
		} else if c.Params.Ref != nil {
			in.ResourceURI = c.Params.Ref.URI
		}
	default:
		return nil // notifications and answers to the upstream's own requests
	}
	in.Labels = c.Labels
	if c.tracked && p.ReadsSession() {
		var err error
		if in.Session, err = b.sessionInput(ctx, c); err != nil {
			return err
		}
	}
	start := time.Now()
	d := p.Decide(ctx, in)
	c.Decision = &d
	if len(d.Labels) > 0 {
		c.Labels = append(slices.Clone(c.Labels), d.Labels...)
	}
	outcome := telemetry.PolicyAllowed
	switch {
	case d.Reason == opa.ReasonTimeout:
		outcome = telemetry.PolicyError
	case !d.Allowed:
		outcome = telemetry.PolicyDenied
	}
	b.metrics.PolicyEvaluation(d.Policy, outcome, time.Since(start).Seconds())
	switch {
	case d.Reason == opa.ReasonTimeout:
		return fmt.Errorf("%w: %s", ErrPolicyTimeout, c.App.Name)
	case !d.Allowed && d.Approval != nil:
		// Allowed once a person approves exactly this call (approve).
		approval := *d.Approval
		c.approval = &approval
	case !d.Allowed:
		return &denial{decision: d}
	}
	return nil
}

// listPolicy asks an app's policy which items of its list a caller is
// shown: one input for the whole list, its name changed for each item.
type listPolicy struct {
	policy *opa.Policy
	in     *opa.Input
	kind   listKind
}

// listPolicyFor returns the app's list policy for this caller; nil when
// the app has no policy and every item is shown.
func (c *Call) listPolicyFor(app *apps.App, k listKind) *listPolicy {
	if c.gen.authz == nil {
		return nil
	}
	p := c.gen.authz.policies[app.Name]
	if p == nil {
		return nil
	}
	in := c.gen.authz.input(c, app, "list")
	switch k {
	case kindTool:
		in.Method = "tools/call"
	case kindPrompt:
		in.Method = "prompts/get"
	default:
		in.Method = "resources/read"
	}
	return &listPolicy{policy: p, in: in, kind: k}
}

// allowed asks whether the item named name (a tool's or prompt's name, a
// resource's URI or template) is shown.
func (lp *listPolicy) allowed(ctx context.Context, name string) bool {
	switch lp.kind {
	case kindTool:
		lp.in.ToolName = name
	case kindPrompt:
		lp.in.PromptName = name
	default:
		lp.in.ResourceURI = name
	}
	return lp.policy.Decide(ctx, lp.in).Allowed
}

// sourceIP is the client address of a request, without the port.
func sourceIP(remoteAddr string) string {
	if host, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return host
	}
	return remoteAddr
}
