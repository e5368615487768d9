package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"

	"github.com/mcpbroker/mcpbroker/broker/audit"
	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/broker/redact"
	"github.com/mcpbroker/mcpbroker/opa"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// redactResult searches a tools/call's result for secrets and personal
// data, as the app's redaction for the tool says, or as the policy asked
// (result.redact, masked): the text of its content, the text of embedded
// resources and its structuredContent. mask replaces each finding with
// [REDACTED:<detector>]; block replaces a result with findings by an
// isError result that names the detectors; audit passes it unchanged.
// Either way the audit record counts the findings by detector, never
// their values.
func (b *Broker) redactResult(_ context.Context, c *Call) error {
	if c.Message.Method != "tools/call" || c.App == nil || c.Response == nil || c.Response.Error != nil {
		return nil
	}
	r, ok := b.redactionFor(c)
	if !ok {
		return nil
	}
	result, counts, err := redactToolResult(c.Response.Result, r.set, r.action == config.RedactMask)
	if err != nil {
		// A result the broker cannot read is not passed on unread.
		b.log.Warn("redaction: result not readable", "app", c.App.Name, "tool", c.Name, "error", err)
		c.Response = nil
		return &toolFailure{text: "The result of " + c.Params.Name + " could not be checked for sensitive data and was withheld.", reason: "redaction"}
	}
	if len(counts) == 0 {
		return nil
	}
	c.Redacted = make(map[string]int, len(counts))
	for kind, n := range counts {
		c.Redacted[string(kind)] = n
		b.metrics.Redacted(c.App.Name, string(kind), r.action, n)
	}
	switch r.action {
	case config.RedactMask:
		resp := *c.Response
		resp.Result = result
		c.Response = &resp
	case config.RedactBlock:
		c.Response = nil
		return &toolFailure{text: "The result of " + c.Params.Name + " was withheld: it contained " + foundKinds(counts) + ".", reason: "redaction"}
	}
	return nil
}

// redactionFor is the redaction a call's result gets: the policy's, when
// it asked, else the app's for the tool.
func (b *Broker) redactionFor(c *Call) (toolRedaction, bool) {
	if d := c.Decision; d != nil && len(d.Redact) > 0 {
		return b.policyRedaction(d.Redact), true
	}
	t := c.gen.trust[c.App.Name]
	if t == nil || t.redaction == nil {
		return toolRedaction{}, false
	}
	return t.redaction.forTool(c.Name), true
}

// policyRedaction is the masking a policy asked for; detectors it names
// that do not exist are left out (the policy's author sees them in the
// log), and none left means every detector.
func (b *Broker) policyRedaction(names []string) toolRedaction {
	var kinds []redact.Kind
	if !slices.Contains(names, opa.RedactAll) {
		known := redact.Kinds()
		for _, n := range names {
			if slices.Contains(known, redact.Kind(n)) {
				kinds = append(kinds, redact.Kind(n))
			} else {
				b.log.Warn("policy asked to redact with an unknown detector", "detector", n)
			}
		}
	}
	set, err := redact.NewSet(kinds)
	if err != nil {
		set, _ = redact.NewSet(nil)
	}
	return toolRedaction{set: set, action: config.RedactMask}
}

func foundKinds(counts redact.Counts) string {
	kinds := slices.Sorted(maps.Keys(counts))
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}

// redactToolResult finds (and, with mask, masks) what set detects in a
// tools/call result: each content item's text, an embedded resource's
// text, and structuredContent. Other members pass as they are; a result
// with nothing found comes back as it was, copied nowhere.
func redactToolResult(result json.RawMessage, set *redact.Set, mask bool) (json.RawMessage, redact.Counts, error) {
	counts := redact.Counts{}
	out := result
	content, ok, err := jsonrpc.Member(result, "content")
	if err != nil {
		return nil, nil, err
	}
	if ok {
		var items [][]byte
		changed := false
		err := jsonrpc.Elements(content, func(item []byte) error {
			masked := item
			for _, path := range [][]string{{"text"}, {"resource", "text"}} {
				m, n, err := redactMember(masked, path, set, mask)
				if err != nil {
					return err
				}
				addCounts(counts, n)
				masked = m
			}
			changed = changed || len(masked) != len(item) || &masked[0] != &item[0]
			items = append(items, masked)
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
		if changed {
			joined := append([]byte{'['}, bytes.Join(items, []byte{','})...)
			if out, err = jsonrpc.SetMember(out, "content", append(joined, ']')); err != nil {
				return nil, nil, err
			}
		}
	}
	if structured, ok, err := jsonrpc.Member(out, "structuredContent"); err != nil {
		return nil, nil, err
	} else if ok {
		masked, n, err := scanJSON(structured, set, mask)
		if err != nil {
			return nil, nil, err
		}
		addCounts(counts, n)
		if len(n) > 0 && mask {
			if out, err = jsonrpc.SetMember(out, "structuredContent", masked); err != nil {
				return nil, nil, err
			}
		}
	}
	return out, counts, nil
}

// redactMember scans the string at path in obj; obj comes back with it
// masked when mask is set and something was found, else as it was.
func redactMember(obj []byte, path []string, set *redact.Set, mask bool) ([]byte, redact.Counts, error) {
	value, ok, err := jsonrpc.Member(obj, path[0])
	if err != nil || !ok {
		return obj, nil, nil // not an object with that member: nothing to scan
	}
	if len(path) > 1 {
		inner, n, err := redactMember(value, path[1:], set, mask)
		if err != nil || len(n) == 0 || !mask {
			return obj, n, err
		}
		out, err := jsonrpc.SetMember(obj, path[0], inner)
		return out, n, err
	}
	if len(value) < 2 || value[0] != '"' {
		return obj, nil, nil // not a string
	}
	var text string
	if bytes.IndexByte(value, '\\') < 0 {
		text = string(value[1 : len(value)-1])
	} else if json.Unmarshal(value, &text) != nil {
		return obj, nil, nil
	}
	found := set.Find(text)
	if len(found) == 0 {
		return obj, nil, nil
	}
	n := redact.Counts{}
	for _, f := range found {
		n[f.Kind]++
	}
	if !mask {
		return obj, n, nil
	}
	masked, _ := redact.MaskFindings(text, found)
	encoded, _ := jsonrpc.Marshal(masked)
	out, err := jsonrpc.SetMember(obj, path[0], encoded)
	return out, n, err
}

// scanJSON finds, or with mask masks, in every string of a JSON value.
func scanJSON(doc []byte, set *redact.Set, mask bool) ([]byte, redact.Counts, error) {
	if !mask {
		n, err := set.FindJSON(doc)
		return doc, n, err
	}
	return set.MaskJSON(doc)
}

func addCounts(total, n redact.Counts) {
	for k, v := range n {
		total[k] += v
	}
}

// redactArguments masks what the app's redaction for the tool detects in
// arguments about to be recorded, whatever the action (the trail keeps no
// secrets), and counts the findings into r.
func (b *Broker) redactArguments(c *Call, args json.RawMessage, r *audit.Record) json.RawMessage {
	t := c.gen.trust[c.App.Name]
	if t == nil || t.redaction == nil {
		return args
	}
	masked, counts, err := t.redaction.forTool(c.Name).set.MaskJSON(args)
	if err != nil {
		return nil // not recorded rather than recorded unread
	}
	if len(counts) > 0 {
		if r.Redacted == nil {
			r.Redacted = map[string]int{}
		}
		for k, n := range counts {
			r.Redacted["arguments:"+string(k)] += n
		}
	}
	return masked
}
