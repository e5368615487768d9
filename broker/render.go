package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/mcpbroker/mcpbroker/exchange"
	"github.com/mcpbroker/mcpbroker/provider"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
	"github.com/mcpbroker/mcpbroker/provider/oauth"
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
	var failure *toolFailure
	if errors.As(err, &failure) {
		return &jsonrpc.Message{ID: c.Message.ID, Result: failure.result()}
	}
	return jsonrpc.NewErrorResponse(c.Message.ID, errorObject(err))
}

// CodeForbidden is the JSON-RPC error of a request a policy refused. It is
// in the implementation-defined range and clear of the codes SDKs give
// meanings of their own (-32001, -32003 to -32005).
const CodeForbidden = -32010

// errorObject maps pipeline failures to JSON-RPC errors.
func errorObject(err error) *jsonrpc.Error {
	var rpcErr *jsonrpc.Error
	var denied *denial
	var scope *exchange.ScopeError
	var failed *exchange.IssueError
	var limited *rateLimitError
	var held *pinRefusal
	var required *approvalRequired
	var refused *approvalDenied
	switch {
	case errors.As(err, &required):
		return required.rpcError()
	case errors.As(err, &refused):
		return jsonrpc.NewError(CodeForbidden, refused.Error())
	case errors.Is(err, ErrApprovalUnavailable), errors.Is(err, ErrApprovalAnonymous), errors.Is(err, ErrApprovalTooLarge),
		errors.Is(err, ErrApprovalForeignUser):
		return jsonrpc.NewError(CodeForbidden, err.Error())
	case errors.Is(err, ErrTooManyApprovals):
		return jsonrpc.NewError(CodeForbidden, ErrTooManyApprovals.Error())
	case errors.Is(err, ErrApprovalsDown):
		return jsonrpc.NewError(jsonrpc.CodeServerError, ErrApprovalsDown.Error())
	case errors.Is(err, ErrHistoryUnavailable):
		return jsonrpc.NewError(jsonrpc.CodeServerError, ErrHistoryUnavailable.Error())
	case errors.As(err, &held):
		return jsonrpc.NewError(jsonrpc.CodeInvalidParams, held.Error())
	case errors.As(err, &limited):
		return limited.rpcError()
	case errors.Is(err, ErrLimitsUnavailable):
		return jsonrpc.NewError(jsonrpc.CodeServerError, ErrLimitsUnavailable.Error())
	case errors.As(err, &scope):
		// Where the HTTP status was already sent (the legacy transport),
		// this is all the agent gets of the step-up challenge.
		return jsonrpc.NewError(CodeForbidden, `insufficient scope: this tool needs scope "`+strings.Join(scope.Scopes, " ")+`"`)
	case errors.As(err, &failed):
		// The upstream was never contacted; say why in OAuth's words only.
		return jsonrpc.NewError(jsonrpc.CodeServerError, exchangeFailureMessage(failed))
	case errors.Is(err, ErrShuttingDown):
		return jsonrpc.NewError(jsonrpc.CodeServerError, ErrShuttingDown.Error())
	case errors.Is(err, ErrAuditUnavailable):
		return jsonrpc.NewError(jsonrpc.CodeServerError, ErrAuditUnavailable.Error())
	case errors.Is(err, ErrNoAgent):
		return jsonrpc.NewError(jsonrpc.CodeServerError, ErrNoAgent.Error())
	case errors.Is(err, ErrPolicyTimeout):
		return jsonrpc.NewError(jsonrpc.CodeServerError, ErrPolicyTimeout.Error())
	case errors.As(err, &denied):
		// The policy's own words, and nothing about why or what else.
		message := denied.decision.ExternalMessage
		if message == "" {
			message = "access denied"
		}
		return jsonrpc.NewError(CodeForbidden, message)
	case errors.Is(err, ErrInvalidParams), errors.Is(err, ErrUnknownTool), errors.Is(err, ErrUnknownPrompt),
		errors.Is(err, ErrInvalidCursor), errors.Is(err, ErrAlreadyInitialized):
		return jsonrpc.NewError(jsonrpc.CodeInvalidParams, err.Error())
	case errors.Is(err, ErrNotInitialized):
		return jsonrpc.NewError(jsonrpc.CodeInvalidRequest, err.Error())
	case errors.Is(err, ErrMethodNotFound):
		return jsonrpc.NewError(jsonrpc.CodeMethodNotFound, err.Error())
	case errors.Is(err, ErrResourceNotFound):
		return jsonrpc.NewError(jsonrpc.CodeResourceNotFound, err.Error())
	case errors.Is(err, ErrUpstreamTimeout):
		return jsonrpc.NewError(jsonrpc.CodeServerError, "upstream timed out")
	case errors.Is(err, ErrUpstreamFailed):
		return jsonrpc.NewError(jsonrpc.CodeServerError, "upstream unavailable"+tlsFailure(err))
	case errors.As(err, &rpcErr):
		return rpcErr
	}
	return jsonrpc.NewError(jsonrpc.CodeInternalError, "internal error")
}

// tlsFailure says why a TLS connection to an upstream failed, in terms an
// operator acts on and that name nothing of the upstream; empty for other
// failures.
func tlsFailure(err error) string {
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		alert            tls.AlertError
		remoteAlert      *net.OpError
	)
	switch {
	case errors.As(err, &unknownAuthority):
		return ": its TLS certificate is not issued by a trusted CA (upstream.tls.caFile)"
	case errors.As(err, &hostname):
		return ": its TLS certificate is not for its name (upstream.tls.serverName)"
	case errors.As(err, &invalid):
		return ": its TLS certificate is not valid (expired, or not for a server)"
	case errors.As(err, &alert), errors.As(err, &remoteAlert) && remoteAlert.Op == "remote error", errors.Is(err, errClientCertRequested):
		return ": it refused the TLS handshake (it may require a client certificate: upstream.tls.certFile)"
	}
	return ""
}

// exchangeFailureMessage names the OAuth error code an identity provider
// answered, or nothing more than that the exchange failed.
func exchangeFailureMessage(e *exchange.IssueError) string {
	var oauthErr *exchange.OAuthError
	if errors.As(e.Err, &oauthErr) {
		return ErrExchangeFailed.Error() + ": " + oauthErr.ErrorField
	}
	if errors.Is(e.Err, exchange.ErrAgentTokenExpiring) {
		return ErrExchangeFailed.Error() + ": " + exchange.ErrAgentTokenExpiring.Error()
	}
	return ErrExchangeFailed.Error()
}

// refusal is the HTTP answer to a request refused the way a resource
// server refuses one — a token without the scopes a tool needs gets 403
// with a step-up challenge, a token about to expire 401 invalid_token as
// an expired one would — or nil when the JSON-RPC error is the answer.
func (b *Broker) refusal(c *Call, err error) *provider.HTTPError {
	var limited *rateLimitError
	if errors.As(err, &limited) {
		// 429 with Retry-After where HTTP can say it; the JSON-RPC error,
		// with the same delay in its data, everywhere else.
		rpc := limited.rpcError()
		return &provider.HTTPError{Status: http.StatusTooManyRequests, Code: rpc.Code, Message: rpc.Message,
			Header: http.Header{"Retry-After": {limited.retryAfterSeconds()}}}
	}
	if c.gen.auth == nil || c.Request == nil || c.Request.HTTP == nil ||
		!(errors.Is(err, errInsufficientScope) || errors.Is(err, exchange.ErrAgentTokenExpiring)) {
		return nil
	}
	var tool *exchange.ScopeError
	if errors.As(err, &tool) && c.Principal != nil {
		// Everything the client needs to keep working: the scopes the
		// broker requires of every token, those the session's calls use
		// that its token holds (without a session, all it holds), and
		// the missing ones. A client that
		// replaces its scope set with the challenge's loses nothing.
		scopes := slices.Clone(c.gen.auth.requiredScopes)
		kept := c.State.scopesInUse(c.Principal.Scopes)
		if c.Session.Transient() {
			// No session remembers what its calls used: every scope
			// the token holds is kept.
			kept = c.Principal.Scopes
		}
		for _, s := range append(slices.Clone(kept), tool.Scopes...) {
			if !slices.Contains(scopes, s) {
				scopes = append(scopes, s)
			}
		}
		err = &exchange.ScopeError{Scopes: scopes}
		b.authProvider.askStepUp(c.Principal.Issuer, c.Principal.TokenID)
	}
	return b.challenge(c.gen.auth, c.Request.HTTP, err)
}

// asType is errors.As for callers that only need the yes or no.
func asType[T any](err error, target *T) bool { return errors.As(err, target) }

// challenge renders an authentication failure as the OAuth resource server
// answer (RFC 6750, RFC 9728): 401 with a Bearer challenge that points to
// the Protected Resource Metadata, 403 for missing scope, 400 for a request
// that carries its token the wrong way, 503 when tokens cannot be checked.
func (b *Broker) challenge(auth *authenticator, r *http.Request, err error) *provider.HTTPError {
	params := []string{}
	status := http.StatusUnauthorized
	message := "unauthorized"
	switch {
	case errors.Is(err, oauth.ErrNoToken):
		if len(auth.requiredScopes) > 0 {
			params = append(params, `scope="`+strings.Join(auth.requiredScopes, " ")+`"`)
		}
	case errors.Is(err, errTokenInQuery), errors.Is(err, oauth.ErrMalformed):
		status, message = http.StatusBadRequest, "invalid request: "+err.Error()
		params = append(params, `error="invalid_request"`, `error_description="`+quoteSafe(err.Error())+`"`)
	case errors.Is(err, errInsufficientScope):
		scopes := auth.requiredScopes
		var tool *exchange.ScopeError
		if errors.As(err, &tool) {
			scopes = tool.Scopes
		}
		status, message = http.StatusForbidden, "forbidden: insufficient scope"
		params = append(params, `error="insufficient_scope"`, `scope="`+strings.Join(scopes, " ")+`"`)
	case errors.Is(err, oauth.ErrUnavailable):
		return &provider.HTTPError{Status: http.StatusServiceUnavailable, Code: jsonrpc.CodeServerError,
			Message: "authorization server unavailable", Header: http.Header{"Retry-After": {"5"}}}
	default:
		message = "invalid token"
		params = append(params, `error="invalid_token"`, `error_description="the access token is not valid"`)
	}
	if u := b.provider.ResourceMetadataURL(r); u != "" {
		params = append(params, `resource_metadata="`+u+`"`)
	}
	value := "Bearer"
	if len(params) > 0 {
		value += " " + strings.Join(params, ", ")
	}
	return &provider.HTTPError{Status: status, Code: jsonrpc.CodeServerError, Message: message,
		Header: http.Header{"Www-Authenticate": {value}}}
}

// quoteSafe keeps a message inside a quoted-string.
func quoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r > 0x7e {
			return '\''
		}
		return r
	}, s)
}
