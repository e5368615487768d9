package broker

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/mcpbroker/mcpbroker/apps/schema"

	"github.com/mcpbroker/mcpbroker/apps"
	"github.com/mcpbroker/mcpbroker/apps/pins"
	"github.com/mcpbroker/mcpbroker/apps/upstream"
	"github.com/mcpbroker/mcpbroker/provider"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// maxDefinitionPages bounds the pages of an app's tools a call lists to
// find its tool's definition.
const maxDefinitionPages = 10

// validate holds a tools/call to what the broker knows of its tool, before
// the policy sees it: under tool pinning, the tool's definition must be
// served (unchanged since it was pinned, approved, clean); under argument
// validation, the arguments must fit the argument limits and the tool's
// inputSchema, or the call is answered with an isError result naming
// what does not fit, which the model can correct. Either way the upstream
// is not asked. The definition found is what the policy sees as
// input.tool.
func (b *Broker) validate(ctx context.Context, c *Call) error {
	if c.App == nil {
		return nil
	}
	switch c.Message.Method {
	case "tools/call", "prompts/get", "resources/read":
	default:
		return nil
	}
	if c.Session.Modern() && c.Message.Method == "tools/call" {
		if err := b.checkParamHeaders(ctx, c); err != nil {
			return err
		}
	}
	t := c.gen.trust[c.App.Name]
	if !t.definitions() {
		return nil
	}
	switch c.Message.Method {
	case "prompts/get":
		return b.checkPrompt(ctx, c, t)
	case "resources/read":
		return b.checkTemplate(ctx, c, t)
	}
	d, err := b.definition(ctx, c, kindTool, c.Name)
	if err != nil {
		return err
	}
	if d == nil {
		if t.pinning.Mode == pins.ModeEnforce {
			return &pinRefusal{app: c.App.Name, kind: "tool", name: c.Name, pin: "held", reason: "the upstream does not list it"}
		}
		return nil // the upstream answers for a tool it does not list
	}
	c.Definition = d
	if !d.Serve {
		return &pinRefusal{app: c.App.Name, kind: "tool", name: c.Name, pin: d.Pin, reason: d.Reason}
	}
	if !t.arguments {
		return nil
	}
	args := []byte(c.Params.Arguments)
	if len(args) == 0 {
		args = []byte("{}")
	}
	if failure := schema.CheckLimits(args, t.limits); failure != nil {
		return b.invalidArguments(c, failure)
	}
	compiled, err := b.inputSchema(d)
	if err != nil {
		// A schema the broker cannot compile validates nothing: the tool
		// is not called on trust.
		return &toolFailure{text: "The tool " + c.Params.Name + " cannot be called: its input schema is not usable (" + err.Error() + ").", reason: "schema"}
	}
	if compiled == nil {
		return nil // the definition declares no inputSchema
	}
	if failure := compiled.Validate(args); failure != nil {
		return b.invalidArguments(c, failure)
	}
	return nil
}

func (b *Broker) invalidArguments(c *Call, failure *schema.Failure) error {
	b.metrics.ValidationFailure(c.App.Name, "arguments")
	return &toolFailure{text: "Invalid arguments for tool " + c.Params.Name + ": " + failure.Text(), reason: "arguments"}
}

// definition is the app's latest definition of kind and name, listed now
// (through the app's list cache, as this caller) when the app has none.
func (b *Broker) definition(ctx context.Context, c *Call, k listKind, name string) (*apps.Definition, error) {
	kind := string(pinKinds[k])
	if d := c.App.Definitions.Get(kind, name); d != nil {
		return d, nil
	}
	cursor := ""
	for range maxDefinitionPages {
		page, err := b.listApp(ctx, c, c.App, k, cursor)
		if errors.Is(err, errNotSupported) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if d := c.App.Definitions.Get(kind, name); d != nil {
			return d, nil
		}
		if cursor = page.Next; cursor == "" {
			break
		}
	}
	return nil, nil
}

// inputSchema is the compiled inputSchema of a tool's definition; nil when
// it declares none.
func (b *Broker) inputSchema(d *apps.Definition) (*schema.Compiled, error) {
	return b.compiledMember(d, "inputSchema")
}

// checkPrompt refuses a prompts/get of a prompt whose definition tool
// pinning does not serve, as a tools/call of such a tool is.
func (b *Broker) checkPrompt(ctx context.Context, c *Call, t *appTrust) error {
	if t.pinning.Mode == pins.ModeOff {
		return nil
	}
	d, err := b.definition(ctx, c, kindPrompt, c.Name)
	if err != nil {
		return err
	}
	switch {
	case d == nil && t.pinning.Mode == pins.ModeEnforce:
		return &pinRefusal{app: c.App.Name, kind: "prompt", name: c.Name, pin: "held", reason: "the upstream does not list it"}
	case d != nil && !d.Serve:
		return &pinRefusal{app: c.App.Name, kind: "prompt", name: c.Name, pin: d.Pin, reason: d.Reason}
	}
	return nil
}

// checkTemplate refuses a resources/read of a URI under a resource
// template that tool pinning does not serve: the template a URI belongs
// to is the listed one with the longest literal beginning it starts with.
// URIs no listed template covers (the app's plain resources) pass.
func (b *Broker) checkTemplate(ctx context.Context, c *Call, t *appTrust) error {
	if t.pinning.Mode == pins.ModeOff {
		return nil
	}
	d := c.App.Definitions.Template(c.Params.URI)
	if d == nil {
		// The templates were not listed since they last changed: list
		// them (through the app's list cache), so that a held one is
		// known before a URI under it is read.
		if _, err := b.listApp(ctx, c, c.App, kindTemplate, ""); err != nil && !errors.Is(err, errNotSupported) {
			return err
		}
		d = c.App.Definitions.Template(c.Params.URI)
	}
	if d != nil && !d.Serve {
		return &pinRefusal{app: c.App.Name, kind: "resource template", name: d.Name, pin: d.Pin, reason: d.Reason}
	}
	return nil
}

// checkParamHeaders holds a modern client's Mcp-Param headers to the
// arguments they repeat, as the tool's definition marks them: what sits
// in front of the broker may have routed on them, so they must say what
// the body says. The upstream gets headers the broker made from the
// arguments (forwardRequest), never the client's.
func (b *Broker) checkParamHeaders(ctx context.Context, c *Call) error {
	if c.Request.HTTP == nil {
		return nil
	}
	d := c.App.Definitions.Get(string(pinKinds[kindTool]), c.Name)
	if d == nil {
		if !hasParamHeader(c.Request.HTTP.Header) && !c.App.Modern() {
			// Nothing to check against what no listing showed marked.
			return nil
		}
		var err error
		if d, err = b.definition(ctx, c, kindTool, c.Name); err != nil || d == nil {
			return err
		}
	}
	if err := upstream.CheckParamHeaders(c.Request.HTTP.Header, upstream.ParamHeaders(d.Raw), c.Message.Params); err != nil {
		return jsonrpc.NewError(provider.CodeHeaderMismatch, err.Error())
	}
	return nil
}

func hasParamHeader(h http.Header) bool {
	for k := range h {
		if strings.HasPrefix(k, upstream.ParamHeaderPrefix) {
			return true
		}
	}
	return false
}
