package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/mcpbroker/mcpbroker/broker/audit"
	"github.com/mcpbroker/mcpbroker/broker/telemetry"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// record writes the audit record of every request once its answer is
// decided and before it is sent, counts it, and logs it. With
// audit.durability sync the answer waits for the record to be on disk;
// when it cannot be written and audit.onFailure is refuse, the answer
// becomes the refusal (and the record of that is what was attempted). The
// record names the session by a digest (the id itself is a bearer of the
// session) and never holds tokens; arguments only as configured.
func (b *Broker) record(ctx context.Context, c *Call) error {
	if c.release != nil {
		c.release()
	}
	if c.Message.Kind() != jsonrpc.KindRequest {
		b.logCall(c)
		return nil
	}
	if c.Message.Method == "initialize" && c.Err == nil && c.State.opened.CompareAndSwap(false, true) {
		b.metrics.SessionOpened()
	}
	if b.audit != nil {
		// Without a trail no record is built: the call pays for none.
		r := b.auditRecord(ctx, c)
		if err := b.audit.write(ctx, r); err != nil {
			c.Err = err
			c.Reply.Message = jsonrpc.NewErrorResponse(c.Message.ID, errorObject(err))
			c.Reply.Refusal = nil
		}
	}
	status, code := replyOutcome(c)
	decision := "allowed"
	switch {
	case status >= 400:
		decision = "refused"
		b.metrics.Refusal(status)
	case asType(c.Err, new(*approvalRequired)):
		decision = "approval_required"
	case c.Decision != nil && !c.Decision.Allowed && c.approvalUsed == nil:
		decision = "denied"
	case errors.Is(c.Err, ErrRateLimited):
		decision = "refused"
	case code != 0:
		decision = "error"
	}
	app, tool := "", ""
	if c.App != nil {
		app, tool = c.App.Name, c.Name
	}
	b.metrics.Call(app, tool, c.Message.Method, decision, time.Since(c.Start).Seconds())
	b.logCall(c)
	return nil
}

// auditRecord is the record of a request: who, what, what was decided and
// what the client receives.
func (b *Broker) auditRecord(ctx context.Context, c *Call) *audit.Record {
	r := &audit.Record{
		Time:    c.Start,
		Kind:    audit.KindCall,
		Event:   c.Message.Method,
		TraceID: telemetry.TraceID(ctx),
		Session: c.State.digestOf(c.Session.ID),
		Method:  c.Message.Method,
	}
	switch c.Message.Method {
	case "initialize":
		r.Kind, r.Event = audit.KindSession, "session.opened"
		if c.Err != nil {
			r.Event = "session.refused"
		}
	case "tools/list", "prompts/list", "resources/list", "resources/templates/list":
		r.Kind = audit.KindList
		c.hiddenMu.Lock()
		r.Hidden = c.hidden
		if c.hiddenMore > 0 {
			r.Detail = strconv.Itoa(c.hiddenMore) + " more items hidden"
		}
		c.hiddenMu.Unlock()
	}
	if c.Request != nil && c.Request.HTTP != nil {
		r.Source = c.Request.HTTP.RemoteAddr
	}
	principalFields(r, c.Principal)
	if c.App != nil {
		r.App = c.App.Name
		r.UpstreamTool = c.Name
	}
	r.Tool = c.Params.Name
	if c.Message.Method == "tools/call" || c.Message.Method == "prompts/get" {
		if len(c.Params.Arguments) > 0 {
			r.ArgumentsDigest = audit.Digest(c.Params.Arguments)
		}
		r.Arguments = b.audit.recordArguments(c.Params.Arguments)
		if len(r.Arguments) > 0 && c.App != nil {
			r.Arguments = b.redactArguments(c, r.Arguments, r)
		}
	}
	if len(c.Redacted) > 0 {
		if r.Redacted == nil {
			r.Redacted = map[string]int{}
		}
		for k, n := range c.Redacted {
			r.Redacted[k] += n
		}
	}
	var held *pinRefusal
	if errors.As(c.Err, &held) {
		r.Pin = &audit.Pin{Kind: held.kind, Name: held.name, Status: held.pin, Reason: held.reason}
		if c.Definition != nil {
			r.Pin.Hash = c.Definition.Hash
		}
	}
	if d := c.Decision; d != nil {
		r.Decision = &audit.Decision{
			Allowed: d.Allowed, Reason: d.Reason, ExternalMessage: d.ExternalMessage,
			Policy: d.Policy, PolicyVersion: strconv.FormatUint(d.Version, 10), PolicyHash: "sha256:" + hex.EncodeToString(d.Hash[:]),
		}
	}
	r.Labels = c.Labels
	var required *approvalRequired
	var refused *approvalDenied
	switch {
	case errors.As(c.Err, &required):
		a := required.approval
		r.Approval = &audit.Approval{ID: a.ID, Status: "required", Approvers: a.Approvers, Deadline: a.Deadline}
	case errors.As(c.Err, &refused):
		a := refused.approval
		r.Approval = &audit.Approval{ID: a.ID, Status: "denied", Approvers: a.Approvers, By: a.DecidedBy}
	case c.approvalUsed != nil:
		a := c.approvalUsed
		r.Approval = &audit.Approval{ID: a.ID, Status: "used", Approvers: a.Approvers, By: a.DecidedBy}
	}
	if o := c.Outbound; o.set && o.token.Value != "" {
		t := o.token
		r.Outbound = &audit.Outbound{JTI: t.ID, Scope: t.Scopes, Expiry: t.Expiry}
		if t.Audience != "" {
			r.Outbound.Audience = []string{t.Audience}
		}
	}
	if c.Upstream > 0 {
		r.UpstreamMillis = float64(c.Upstream.Microseconds()) / 1000
	}
	if c.Err != nil {
		r.Detail = c.Err.Error()
	}
	r.Result = b.auditResult(c)
	return r
}

// principalFields fills in who a record is about.
func principalFields(r *audit.Record, p *oauth.Principal) {
	if p == nil {
		return
	}
	r.Subject, r.Issuer, r.Client = p.Subject, p.Issuer, p.ClientID
	r.Actors = p.Actor.Names()
}

// replyOutcome is what the client receives, in brief: the status of a
// refusal sent as the HTTP answer with its JSON-RPC code, else 200 and the
// response's error code (0 for a result); status 0 when the client
// expects no answer (it cancelled).
func replyOutcome(c *Call) (status int, code int64) {
	switch refusal := c.Reply.Refusal; {
	case refusal != nil && c.Request != nil && c.Request.Refusable():
		return refusal.Status, refusal.Code
	case c.Reply.Message != nil:
		if e := c.Reply.Message.Error; e != nil {
			return http.StatusOK, e.Code
		}
		return http.StatusOK, 0
	}
	return 0, 0
}

// encodeBuffers hold the encodings auditResult hashes; maxPooledEncoding
// bounds what one keeps.
var encodeBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

const maxPooledEncoding = 1 << 20

// auditResult is what the client receives: the refusal when it is sent as
// the HTTP answer, else the JSON-RPC response, by size and SHA-256 of the
// bytes sent.
func (b *Broker) auditResult(c *Call) *audit.Result {
	r := &audit.Result{HTTPStatus: http.StatusOK}
	var body []byte
	switch refusal := c.Reply.Refusal; {
	case refusal != nil && c.Request != nil && c.Request.Refusable():
		r.HTTPStatus, r.RPCCode = refusal.Status, refusal.Code
		body = refusal.Body(c.Message.ID)
	case c.Reply.Message != nil:
		m := c.Reply.Message
		// Hashed from a reused buffer: a large answer (a list) is not
		// copied into a new one for every record.
		buf := encodeBuffers.Get().(*[]byte)
		body = m.Append((*buf)[:0])
		defer func() {
			if cap(body) <= maxPooledEncoding {
				*buf = body[:0]
				encodeBuffers.Put(buf)
			}
		}()
		if m.Error != nil {
			r.RPCCode = m.Error.Code
		} else if isError, ok, _ := jsonrpc.Member(m.Result, "isError"); ok && string(isError) == "true" {
			r.IsError = true
		}
	default:
		// Cancelled by the client: it expects, and gets, no answer.
		r.HTTPStatus = 0
		return r
	}
	sum := sha256.Sum256(body)
	r.Bytes, r.Digest = len(body), "sha256:"+hex.EncodeToString(sum[:])
	return r
}

// logCall logs every message once it is served; requests at info,
// notifications and responses at debug.
func (b *Broker) logCall(c *Call) {
	resp, err := c.Reply.Message, c.Err
	level := slog.LevelInfo
	if c.Message.Kind() != jsonrpc.KindRequest {
		level = slog.LevelDebug
	}
	ctx := context.Background()
	if !b.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("kind", c.Message.Kind().String()),
		slog.String("method", c.Message.Method),
		slog.String("session", c.State.digestOf(c.Session.ID)),
		slog.Duration("duration", time.Since(c.Start)),
	}
	if c.traceID != "" {
		attrs = append(attrs, slog.String("trace_id", c.traceID))
	}
	if p := c.Principal; p != nil {
		attrs = append(attrs, slog.String("subject", p.Subject), slog.String("client", p.ClientID))
	}
	if c.App != nil {
		attrs = append(attrs, slog.String("app", c.App.Name))
	}
	if c.Name != "" {
		attrs = append(attrs, slog.String("name", c.Name))
	}
	if d := c.Decision; d != nil {
		attrs = append(attrs, slog.Bool("allowed", d.Allowed), slog.String("reason", d.Reason), slog.Uint64("policy", d.Version))
	}
	if c.Upstream > 0 {
		attrs = append(attrs, slog.Duration("upstream", c.Upstream))
	}
	switch refusal := c.Reply.Refusal; {
	case refusal != nil && c.Request != nil && c.Request.Refusable():
		attrs = append(attrs, slog.Int("status", refusal.Status))
	case resp != nil && resp.Error != nil:
		attrs = append(attrs, slog.Int64("code", resp.Error.Code))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	b.log.LogAttrs(ctx, level, "mcp", attrs...)
}

// digestOf returns the session's digest, computed once per session.
func (st *sessionState) digestOf(id string) string {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.digest == "" {
		st.digest = sessionDigest(id)
	}
	return st.digest
}

func sessionDigest(id string) string {
	if id == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:6])
}
