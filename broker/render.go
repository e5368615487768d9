package broker

import (
	"errors"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// render turns the outcome of a call into the client's response: the
// upstream's own response when there is one (errors and isError results
// pass through as they came), otherwise a JSON-RPC error that says what
// went wrong in the protocol's terms and nothing more.
func render(c *Call, err error) *jsonrpc.Message {
	if c.Message.Kind() != jsonrpc.KindRequest || errors.Is(err, ErrCancelled) {
		return nil
	}
	if err == nil {
		if c.Response == nil {
			return jsonrpc.NewErrorResponse(c.Message.ID, jsonrpc.NewError(jsonrpc.CodeInternalError, "internal error"))
		}
		resp := *c.Response
		resp.ID = c.Message.ID
		return &resp
	}
	return jsonrpc.NewErrorResponse(c.Message.ID, errorObject(err))
}

// errorObject maps pipeline failures to JSON-RPC errors.
func errorObject(err error) *jsonrpc.Error {
	var rpcErr *jsonrpc.Error
	switch {
	case errors.Is(err, ErrInvalidParams), errors.Is(err, ErrUnknownTool), errors.Is(err, ErrUnknownPrompt),
		errors.Is(err, ErrInvalidCursor), errors.Is(err, ErrAlreadyInitialized):
		return jsonrpc.NewError(jsonrpc.CodeInvalidParams, err.Error())
	case errors.Is(err, ErrMethodNotFound):
		return jsonrpc.NewError(jsonrpc.CodeMethodNotFound, err.Error())
	case errors.Is(err, ErrResourceNotFound):
		return jsonrpc.NewError(jsonrpc.CodeResourceNotFound, err.Error())
	case errors.Is(err, ErrUpstreamTimeout):
		return jsonrpc.NewError(jsonrpc.CodeServerError, "upstream timed out")
	case errors.Is(err, ErrUpstreamFailed):
		return jsonrpc.NewError(jsonrpc.CodeServerError, "upstream unavailable")
	case errors.As(err, &rpcErr):
		return rpcErr
	}
	return jsonrpc.NewError(jsonrpc.CodeInternalError, "internal error")
}

// asType is errors.As for callers that only need the yes or no.
func asType[T any](err error, target *T) bool { return errors.As(err, target) }
