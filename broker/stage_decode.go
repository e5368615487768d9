package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// decode reads the parameters the broker routes by. The rest of the
// parameters are forwarded untouched.
func (b *Broker) decode(_ context.Context, c *Call) error {
	p := bytes.TrimSpace(c.Message.Params)
	if len(p) == 0 || c.Message.Method == "" {
		return nil
	}
	if p[0] != '{' {
		return fmt.Errorf("%w: params must be an object", ErrInvalidParams)
	}
	// The params are forwarded as they came: no member may be read one way
	// here and another way upstream.
	if err := jsonrpc.CheckMembers(p); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidParams, err)
	}
	if err := jsonrpc.Unmarshal(p, &c.Params); err != nil {
		return fmt.Errorf("%w: %s", ErrInvalidParams, jsonProblem(err))
	}
	return nil
}

// jsonProblem describes a decoding failure without echoing input.
func jsonProblem(err error) string {
	var typeErr *json.UnmarshalTypeError
	if ok := asType(err, &typeErr); ok && typeErr.Field != "" {
		return typeErr.Field + " has the wrong type"
	}
	return "malformed params"
}
