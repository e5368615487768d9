package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

	"github.com/mcpbroker/mcpbroker/broker/audit"
	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/broker/history"
	"github.com/mcpbroker/mcpbroker/exchange/authserver"
	"github.com/mcpbroker/mcpbroker/opa"
	"github.com/mcpbroker/mcpbroker/provider"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// Governing what a session does, beyond one call: the data labels apps
// and tools carry, the history of the session's calls the policies read
// (input.session), and the calls held until a person approves exactly
// them.

// governance is what a configuration says of labels, history and
// approvals.
type governance struct {
	apps map[string]*appGovernance
	// history bounds each session's history; nil when none is kept.
	history   *history.Limits
	approvals config.Approvals
}

type appGovernance struct {
	labels []string
	// tools are the tools the configuration names, with their labels
	// joined to the app's.
	tools map[string]*toolGovernance
}

type toolGovernance struct {
	labels   []string
	approval *config.ToolApproval
}

func newGovernance(cfg *config.Config) *governance {
	g := &governance{apps: map[string]*appGovernance{}, approvals: cfg.Approvals}
	if h := cfg.SessionHistory; h != nil {
		g.history = &history.Limits{MaxCalls: h.MaxCalls, Window: time.Duration(h.Window)}
	}
	for _, app := range cfg.Apps {
		if len(app.Labels) == 0 && len(app.Tools) == 0 {
			continue
		}
		ag := &appGovernance{labels: app.Labels, tools: map[string]*toolGovernance{}}
		for _, t := range app.Tools {
			labels := slices.Clone(app.Labels)
			for _, l := range t.Labels {
				if !slices.Contains(labels, l) {
					labels = append(labels, l)
				}
			}
			ag.tools[t.Name] = &toolGovernance{labels: labels, approval: t.Approval}
		}
		g.apps[app.Name] = ag
	}
	return g
}

// labelsOf are the configured labels of a call to app (of tool, for a
// tools/call). Shared: do not modify.
func (g *governance) labelsOf(app, tool string) []string {
	ag := g.apps[app]
	if ag == nil {
		return nil
	}
	if t := ag.tools[tool]; t != nil && tool != "" {
		return t.labels
	}
	return ag.labels
}

// toolApproval is the approval the configuration requires of tool's
// calls; nil for none.
func (g *governance) toolApproval(app, tool string) *opa.Approval {
	ag := g.apps[app]
	if ag == nil {
		return nil
	}
	t := ag.tools[tool]
	if t == nil || t.approval == nil || !t.approval.Required {
		return nil
	}
	return &opa.Approval{Reason: t.approval.Reason, Approvers: t.approval.Approvers, TTL: time.Duration(t.approval.TTL)}
}

// tracked reports whether calls of method go into the session's history:
// those that read or do something, by name.
func tracked(method string) bool {
	switch method {
	case "tools/call", "prompts/get", "resources/read":
		return true
	}
	return false
}

// ErrHistoryUnavailable: the session's history cannot be read or written,
// and the call is refused rather than decided or answered without it.
var ErrHistoryUnavailable = errors.New("the session's history is unavailable; try again later")

// historyKey names the history a call belongs to: its session's, by a
// digest of the id. A request without a session (the 2026-07-28 protocol)
// belongs to the history of its agent acting for its user, which no new
// token or request escapes; an anonymous one to its address's.
// It is worked out once per call: the policy, the approval and the
// history's entry all need it.
func (c *Call) historyKey() string {
	if c.history != "" {
		return c.history
	}
	h := sha256.New()
	switch {
	case c.Session != nil && c.Session.ID != "" && !c.Session.Transient():
		c.history = c.State.historyKeyOf(c.Session.ID)
		return c.history
	case c.Principal != nil:
		h.Write([]byte("agent\x00" + c.Principal.Issuer + "\x00" + c.Principal.Subject + "\x00" + c.Principal.ClientID))
	case c.Request != nil && c.Request.HTTP != nil:
		h.Write([]byte("address\x00" + sourceIP(c.Request.HTTP.RemoteAddr)))
	default:
		return ""
	}
	c.history = hex.EncodeToString(h.Sum(nil))
	return c.history
}

// historyKeyOf is the history key of the session with id.
func (st *sessionState) historyKeyOf(id string) string {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.historyKey == "" {
		sum := sha256.Sum256([]byte("session\x00" + id))
		st.historyKey = hex.EncodeToString(sum[:])
	}
	return st.historyKey
}

// completeElicitation tells the sessions of history key that declared
// URL elicitation, and listen on this replica, that the approval id was
// answered (notifications/elicitation/complete): a client may retry
// without waiting for its user to say so.
func (b *Broker) completeElicitation(key, id string) {
	params, _ := json.Marshal(struct {
		ElicitationID string `json:"elicitationId"`
	}{id})
	b.sessions.Range(func(k, v any) bool {
		s, st := k.(*provider.Session), v.(*sessionState)
		if s.ID == "" || s.Transient() || !st.capabilities.elicitationModes["url"] || st.historyKeyOf(s.ID) != key {
			return true
		}
		s.Notify(&jsonrpc.Message{Method: "notifications/elicitation/complete", Params: params})
		return true
	})
}

// sessionInput is input.session for a call.
func (b *Broker) sessionInput(ctx context.Context, c *Call) (*opa.Session, error) {
	limits := c.gen.gov.history
	if limits == nil || b.history == nil {
		return nil, ErrHistoryUnavailable
	}
	key := c.historyKey()
	if key == "" {
		return &opa.Session{}, nil
	}
	entries, err := b.history.Read(ctx, key, *limits, time.Now())
	if err != nil {
		b.log.Error("session history cannot be read; the call is refused", "error", err)
		b.metrics.HistoryFailure("read")
		return nil, fmt.Errorf("%w: %w", ErrHistoryUnavailable, err)
	}
	s := &opa.Session{Calls: make([]opa.SessionCall, len(entries)), Labels: history.Labels(entries)}
	for i, e := range entries {
		s.Calls[i] = opa.SessionCall{Method: e.Method, App: e.App, Name: e.Name, Decision: e.Decision, Time: e.Time, Labels: e.Labels}
	}
	return s, nil
}

// remember adds a call that reached the policy to its session's history,
// before its answer leaves. A call let through whose entry cannot be
// written is answered with an error instead of its result: a later call
// must not be decided on a history that lacks what this one read.
func (b *Broker) remember(ctx context.Context, c *Call) error {
	limits := c.gen.gov.history
	if !c.tracked || limits == nil || c.Message.Kind() != jsonrpc.KindRequest {
		return nil
	}
	decision := history.Allowed
	var required *approvalRequired
	var denied *denial
	var refused *approvalDenied
	switch {
	case c.Err == nil:
	case errors.As(c.Err, &required):
		decision = history.ApprovalRequired
	case errors.As(c.Err, &denied), errors.As(c.Err, &refused):
		decision = history.Denied
	case !c.passed:
		return nil // refused before the policy decided: nothing happened
	default:
		decision = history.Failed
	}
	key := c.historyKey()
	if key == "" {
		return nil
	}
	if b.history == nil {
		b.metrics.HistoryFailure("write")
		if decision == history.Allowed {
			return ErrHistoryUnavailable
		}
		return nil
	}
	name := c.Params.Name
	if c.Message.Method == "resources/read" {
		name = c.Params.URI
	} else if c.Name != "" {
		name = c.Name
	}
	e := history.Entry{Method: c.Message.Method, Name: name, Decision: decision, Time: time.Now().Unix(), Labels: c.Labels}
	if c.App != nil {
		e.App = c.App.Name
	}
	if err := b.history.Append(ctx, key, e, *limits); err != nil {
		b.log.Error("session history cannot be written", "decision", decision, "error", err)
		b.metrics.HistoryFailure("write")
		if decision == history.Allowed || decision == history.Failed {
			// Refuse, as the audit trail does: what the call read must not
			// leave without the history knowing.
			c.Response = nil
			return fmt.Errorf("%w: %w", ErrHistoryUnavailable, err)
		}
	}
	return nil
}

// approvalRequired: the call waits for a person's approval at url.
type approvalRequired struct {
	approval *authserver.Approval
	url      string
	// said is the policy's external_message, when it gave one.
	said string
}

func (e *approvalRequired) Error() string {
	return "this call needs approval: " + e.message()
}

func (e *approvalRequired) message() string {
	m := "this call needs your approval"
	if e.approval.Approvers != authserver.ApproversSelf {
		m = "this call needs the approval of a member of " + e.approval.Approvers
	}
	if e.said != "" {
		m = e.said + ": " + m
	}
	if e.approval.Reason != "" {
		m += " (" + e.approval.Reason + ")"
	}
	return m + "; open the link to answer, then make the same call again"
}

// CodeURLElicitationRequired is MCP's URLElicitationRequiredError
// (2025-11-25): the request needs the user to visit a URL first.
const CodeURLElicitationRequired = -32042

// rpcError is the URLElicitationRequiredError pointing to the approval
// page.
func (e *approvalRequired) rpcError() *jsonrpc.Error {
	type elicitation struct {
		Mode          string `json:"mode"`
		ElicitationID string `json:"elicitationId"`
		URL           string `json:"url"`
		Message       string `json:"message"`
	}
	data, _ := json.Marshal(struct {
		Elicitations []elicitation `json:"elicitations"`
	}{[]elicitation{{Mode: "url", ElicitationID: e.approval.ID, URL: e.url, Message: e.message()}}})
	err := jsonrpc.NewError(CodeURLElicitationRequired, "URL elicitation required: "+e.message())
	err.Data = data
	return err
}

// approvalDenied: the approver denied this very call.
type approvalDenied struct{ approval *authserver.Approval }

func (e *approvalDenied) Error() string {
	return "the approver denied this call"
}

// Refusals of calls that need approval and cannot have it.
var (
	ErrApprovalUnavailable = errors.New("this call needs a person's approval, which needs the Auth Provider (authProvider.enabled)")
	ErrApprovalAnonymous   = errors.New("this call needs a person's approval, which needs an authenticated user")
	ErrApprovalForeignUser = errors.New("this call needs the approval of the user it is made for, who must be a user of the broker's Auth Provider")
	ErrApprovalsDown       = errors.New("approvals cannot be read or recorded right now; try again later")
	ErrTooManyApprovals    = errors.New("too many calls are waiting for approval for this user; answer or let them expire first")
	ErrApprovalTooLarge    = fmt.Errorf("this call needs approval, and its arguments are over %d bytes: too large to show an approver", authserver.MaxApprovalArguments)
)

// approve holds a call that needs a person's yes, unless that yes was
// given for exactly this call and not used yet; then the call goes on and
// the approval is spent.
func (b *Broker) approve(ctx context.Context, c *Call) error {
	need := c.approval
	if need == nil && c.Message.Method == "tools/call" && c.App != nil {
		need = c.gen.gov.toolApproval(c.App.Name, c.Name)
	}
	if need == nil {
		c.passed = c.Route == routeApp
		return nil
	}
	if need.TTL == 0 {
		need.TTL = time.Duration(c.gen.gov.approvals.TTL)
	}
	if need.Approvers == "" {
		need.Approvers = authserver.ApproversSelf
	}
	c.approval = need
	if b.authProvider == nil {
		return ErrApprovalUnavailable
	}
	if c.Principal == nil || c.Principal.Subject == "" || c.Principal.Subject == c.Principal.ClientID {
		return ErrApprovalAnonymous // no user, or an agent on its own behalf
	}
	// Approvers sign in as the Auth Provider's users: the user of a token
	// from another issuer is not one of them, and cannot approve for
	// themselves nor be told apart from an approver of the same name.
	subject := c.Principal.Subject
	if c.Principal.Issuer != b.cfg.AuthProvider.Issuer {
		if need.Approvers == authserver.ApproversSelf {
			return ErrApprovalForeignUser
		}
		subject = c.Principal.Issuer + " " + subject
	}
	name := c.Params.Name
	if c.Message.Method == "resources/read" {
		name = c.Params.URI
	}
	req := authserver.ApprovalRequest{
		Session: c.historyKey(), Subject: subject, Client: c.Principal.ClientID,
		App: c.App.Name, Tool: name, Reason: need.Reason, Approvers: need.Approvers, TTL: need.TTL,
		MaxPending: c.gen.gov.approvals.MaxPendingPerUser,
	}
	if len(c.Params.Arguments) > 0 {
		req.ArgumentsDigest = audit.Digest(c.Params.Arguments)
	}
	server := b.authProvider.server
	found, status, err := server.UseApproval(ctx, req)
	if err != nil {
		b.log.Error("approvals cannot be read", "error", err)
		return fmt.Errorf("%w: %w", ErrApprovalsDown, err)
	}
	switch status {
	case authserver.ApprovalApproved:
		c.approvalUsed = found
		c.passed = true
		b.metrics.Approval("used")
		return nil
	case authserver.ApprovalDenied:
		b.metrics.Approval("denied")
		return &approvalDenied{approval: found}
	}
	req.Arguments = b.approvalArguments(c)
	a, err := server.RequestApproval(ctx, req)
	switch {
	case errors.Is(err, authserver.ErrTooManyApprovals):
		b.metrics.Approval("too_many")
		return ErrTooManyApprovals
	case errors.Is(err, authserver.ErrArgumentsTooLarge):
		return ErrApprovalTooLarge
	case err != nil:
		b.log.Error("an approval cannot be recorded", "error", err)
		return fmt.Errorf("%w: %w", ErrApprovalsDown, err)
	}
	b.metrics.Approval("required")
	required := &approvalRequired{approval: a, url: server.ApprovalURL(a)}
	if c.Decision != nil {
		required.said = c.Decision.ExternalMessage
	}
	return required
}

// approvalArguments are the call's arguments as the approver sees them:
// redacted as the audit trail records them (audit.arguments.redact, then
// the app's redaction).
func (b *Broker) approvalArguments(c *Call) json.RawMessage {
	raw := c.Params.Arguments
	if len(raw) == 0 {
		return nil
	}
	shown := b.audit.redactedArguments(raw)
	if shown == nil {
		shown = raw
	}
	return b.redactArguments(c, shown, &audit.Record{})
}

// newHistory opens the session history where the other state is: Redis
// when replicas share it, else the bbolt store. Without either, none is
// kept, and a configuration that asks for it is refused.
func newHistory(cfg *config.Config, db *bolt.DB, client redis.UniversalClient, log *slog.Logger) (history.Store, context.CancelFunc, error) {
	switch {
	case client != nil:
		return history.NewRedis(client, cfg.Storage.Redis.KeyPrefix), nil, nil
	case db != nil:
		window, calls := config.DefaultHistoryWindow, config.DefaultHistoryCalls
		if h := cfg.SessionHistory; h != nil {
			window, calls = h.Window, h.MaxCalls
		}
		ctx, cancel := context.WithCancel(context.Background())
		s, err := history.NewBolt(ctx, db, time.Duration(window), calls, log)
		if err != nil {
			cancel()
			return nil, nil, fmt.Errorf("broker: session history: %w", err)
		}
		return s, cancel, nil
	case cfg.SessionHistory != nil:
		return nil, nil, errors.New("broker: sessionHistory needs a store (storage.bolt or storage.redis)")
	}
	return nil, nil, nil
}
