// Package telemetry owns what the broker tells its operators about itself:
// Prometheus metrics in the broker's own registry, OpenTelemetry traces
// exported over OTLP/HTTP with W3C trace context, and the admin listener's
// endpoints.
//
// # Admin listener
//
// AdminHandler serves, for GET and HEAD only:
//
//	/metrics   the metrics below, in the Prometheus text format
//	/healthz   200 {"status":"ok"} while the process serves
//	/readyz    200 {"status":"ready"} or {"status":"degraded"} (a check that is
//	           not required fails), 503 {"status":"not_ready"} (a required
//	           check fails) or {"status":"draining"} (shutting down), with each
//	           check's result: {"checks":{"name":{"ok":false,"required":true,"error":"..."}}}
//
// Every other path is 404. The checks of /readyz run in parallel, each for
// at most 2 seconds, and one run answers every request for a second, so
// scraping /readyz often does not load what the checks reach. Error texts
// are cut to 256 bytes, with URL user information and query strings,
// bearer credentials, JWTs and fields named like secrets taken out.
//
// # Metrics
//
// Each metric, with its labels:
//
//	mcpbroker_calls_total{app,tool,method,decision}         counter    client messages served
//	mcpbroker_call_duration_seconds{app,method}             histogram  time from a client message to its reply
//	mcpbroker_stage_duration_seconds{stage}                 histogram  time in each pipeline stage
//	mcpbroker_upstream_duration_seconds{app}                histogram  time an upstream took to answer
//	mcpbroker_upstream_errors_total{app}                    counter    upstream requests that failed without an answer
//	mcpbroker_upstream_up{app}                              gauge      1 while the broker holds a working connection to the app's upstream
//	mcpbroker_token_verifications_total{result,cached}      counter    client tokens verified
//	mcpbroker_token_exchanges_total{app,outcome}            counter    tokens asked for an upstream
//	mcpbroker_policy_evaluations_total{policy,outcome}      counter    policy evaluations
//	mcpbroker_policy_evaluation_duration_seconds{policy}    histogram  time a policy evaluation took
//	mcpbroker_config_reloads_total{outcome}                 counter    configuration and policy reloads
//	mcpbroker_sessions_open                                 gauge      client sessions open
//	mcpbroker_audit_batch_records                           histogram  audit records written in one batch
//	mcpbroker_audit_fsync_seconds                           histogram  time to write and sync an audit batch
//	mcpbroker_audit_write_failures_total                    counter    audit batches that could not be written
//	mcpbroker_audit_queue_depth                             gauge      audit records waiting to be written
//	mcpbroker_audit_records_unwritten_total                 counter    audit records lost while calls went on (onFailure: continue)
//	mcpbroker_auth_events_total{event}                      counter    events of the embedded authorization server
//	mcpbroker_http_refusals_total{status}                   counter    client requests refused with an HTTP error status
//	mcpbroker_replica_handoffs_total{event}                 counter    what replicas sharing sessions hand each other
//	mcpbroker_sessions_refused_total{cap}                   counter    sessions refused for a cap (total, subject, address)
//	mcpbroker_held_calls_total{event}                       counter    sessionless calls held for the client's answers: held, resumed, refused, expired, cancelled, unknown
//	mcpbroker_approvals_total{event}                        counter    calls that needed approval: required, used, denied, too_many
//	mcpbroker_session_history_failures_total{op}            counter    session history reads and writes that failed (calls refused): read, write
//	mcpbroker_list_cache_total{app,outcome}                 counter    list pages a listing needed: hit, miss, joined, disabled
//	mcpbroker_list_changes_total{app,list}                  counter    list_changed notifications from an app's upstream
//	mcpbroker_pin_events_total{app,kind,status}             counter    definitions tool pinning held or refused, pins approved or revoked
//	mcpbroker_validation_failures_total{app,what}           counter    calls answered isError for arguments or results off their schema
//	mcpbroker_redactions_total{app,detector,action}         counter    redaction findings in results
//
// The Go runtime (go_*), the process (process_*) and the /metrics handler
// itself (promhttp_*) are reported too.
//
// # Label values
//
// No label takes a value a client chooses:
//
//	app, tool   names from the catalogue; "" where a message names none
//	method      the MCP method names (initialize, tools/call, resources/read,
//	            notifications/..., ...); any other method is "other"
//	decision    allowed, denied, refused, error
//	stage       the pipeline's stage names
//	result      valid, invalid, unavailable, missing
//	cached      true, false
//	outcome     exchanges: issued, failed, no_token; policies: allowed,
//	            denied, undefined, error; reloads: applied, rejected
//	policy      the configured policies' names
//	event       the authorization server's event names
//	status      400, 401, 403, 404, 405, 406, 408, 409, 413, 415, 421, 429,
//	            500, 502, 503, 504
//
// A value outside its set is counted as "other". Names from configuration
// and the catalogue that are longer than 256 bytes or not printable UTF-8
// are "other" too, and each metric admits a bounded number of them (8192
// app, tool, method and decision combinations for calls; 1024 apps; 64
// stages or events; 256 policy and outcome pairs): past that, new names are
// counted as "other", so an upstream that lists tools without end cannot
// make the broker hold series without end.
//
// # Traces
//
// NewTracing exports spans over OTLP/HTTP (protobuf) to the configured
// endpoint or, without one, as the standard OTEL_EXPORTER_OTLP_* and
// OTEL_TRACES_* variables say; with neither, tracing is off and starting a
// span costs nothing. The broker continues a client's W3C trace context
// (traceparent, tracestate) and passes it on to upstreams in HTTP headers
// and in the params._meta object of MCP messages.
package telemetry
