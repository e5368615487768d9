package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// record logs every call once it is served. The record names the session
// by a digest (the id itself is a bearer of the session) and never holds
// tokens or arguments.
func (b *Broker) record(_ context.Context, c *Call) error {
	resp, err := c.Reply.Message, c.Err
	level := slog.LevelInfo
	if c.Message.Kind() != jsonrpc.KindRequest {
		level = slog.LevelDebug
	}
	ctx := context.Background()
	if !b.log.Enabled(ctx, level) {
		return nil
	}
	attrs := []slog.Attr{
		slog.String("kind", c.Message.Kind().String()),
		slog.String("method", c.Message.Method),
		slog.String("session", c.State.digestOf(c.Session.ID)),
		slog.Duration("duration", time.Since(c.Start)),
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
	if resp != nil && resp.Error != nil {
		attrs = append(attrs, slog.Int64("code", resp.Error.Code))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	b.log.LogAttrs(ctx, level, "mcp", attrs...)
	return nil
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
