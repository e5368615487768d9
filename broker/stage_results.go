package broker

import (
	"context"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// checkResult holds a tools/call's result to the tool's outputSchema, when
// the app validates results: a result whose structuredContent does not fit
// becomes an isError result saying so (the upstream's answer is not
// passed on), and is audited as such. Error results are passed as they
// came.
func (b *Broker) checkResult(_ context.Context, c *Call) error {
	if c.Message.Method != "tools/call" || c.App == nil || c.Response == nil || c.Response.Error != nil {
		return nil
	}
	d := c.Definition
	if d == nil { // a call another replica admitted
		if d = c.App.Definitions.Get("tool", c.Name); d == nil {
			return nil
		}
	}
	t := c.gen.trust[c.App.Name]
	if t == nil || !t.results {
		return nil
	}
	structured, ok, err := jsonrpc.Member(c.Response.Result, "structuredContent")
	if err != nil || !ok {
		return nil // no structuredContent (or not an object): nothing to hold it to
	}
	if isError, found, _ := jsonrpc.Member(c.Response.Result, "isError"); found && string(isError) == "true" {
		return nil
	}
	compiled, err := b.compiledMember(d, "outputSchema")
	if err != nil {
		b.metrics.ValidationFailure(c.App.Name, "result")
		c.Response = nil
		return &toolFailure{text: "The result of " + c.Params.Name + " was withheld: the tool's output schema is not usable (" + err.Error() + ").", reason: "result"}
	}
	if compiled == nil {
		return nil
	}
	if failure := compiled.Validate(structured); failure != nil {
		b.metrics.ValidationFailure(c.App.Name, "result")
		c.Response = nil
		return &toolFailure{text: "The tool " + c.Params.Name + " returned a result that does not match its output schema: " + failure.Text(), reason: "result"}
	}
	return nil
}
