// Package opa owns the broker's inbound authorization: it compiles an app's
// Rego policy once, answers "may this call proceed?" on every MCP request,
// and reloads file policies when they change.
//
// A policy is a Rego module in package orchestrator whose rule result is an
// object:
//
//	{"allowed": true, "external_message": "shown to the agent", "scopes": ["item:Get"]}
//
// Only allowed == true allows; an undefined result, a non-boolean allowed,
// an evaluation error, a panic or a timeout all deny, and [Decision.Reason]
// says which. Policies may use Rego v1 or the pre-1.0 syntax Strata's
// published policies use (rule bodies without if, default result["allowed"]
// := false); a module that does not parse as v1 is parsed as v0.
//
// The input keeps Strata's paths and adds the verified identity:
//
//	input.request.mcp.method                     "tools/call", "tools/list", "resources/read", ...
//	input.request.mcp.tool.params.name           tool name, namespace prefix already stripped
//	input.request.mcp.tool.params.arguments      the call's arguments
//	input.request.mcp.resource.params.uri
//	input.request.mcp.prompt.params.{name,arguments}
//	input.request.http.{method,path,headers}     headers: Go-canonical name -> comma-joined string
//	input.source.ip
//	input.app.name
//	input.purpose                                "call" or "list"
//	input.token.claims                           every validated claim of the inbound token
//	input.subject                                {"sub", "iss", "groups", "scopes"}
//	input.actor                                  {"client_id", "sub", "chain"}
//	input.tool                                   {"definition", "hash", "pin"}: the definition the broker holds for a called tool
//	input.labels                                 the call's data labels: its app's and its tool's (apps[].labels, apps[].tools[].labels)
//	input.session                                {"calls": [{"method", "app", "name", "decision", "time", "labels"}], "labels"}:
//	                                             the session's earlier calls, oldest first, within sessionHistory's bounds, and the
//	                                             labels of those that were let through; calls only, when sessionHistory is on
//
// A result may also carry "labels" (added to the call's in the session's
// history) and, with "allowed": false, "approval": {"reason", "approvers":
// "self" or a group, "ttl": "15m" or seconds}, which holds the call until a
// person approves exactly it.
//
// Fields that are empty in [Input] are absent, and token, subject and actor
// are absent for anonymous calls.
//
// Decide is on the hot path. The query is prepared once per compilation; the
// input is built directly as an AST value rather than through JSON, and only
// the parts the policy can read are built (found by walking the compiled
// policy's references to input); each [Identity] is converted once and kept
// by pointer; list decisions, which a tools/list asks once per tool, are
// cached per identity, app, item, source address and policy version, so
// what a list shows does not follow headers. Call decisions are never
// cached, because arguments, headers and the source address vary per call.
package opa
