// Package schema holds what crosses the broker to a tool's own JSON
// Schemas: a tools/call's arguments to the tool's inputSchema (after
// bounds on their size, nesting and strings), a result's
// structuredContent to its outputSchema. Schemas are compiled once per
// definition (keyed by the caller, by the definition's hash) and kept in a
// bounded cache; a schema never reaches out: a $ref to anything but the
// schema itself fails to compile instead of being fetched.
//
// The default dialect is JSON Schema 2020-12, as MCP specifies for a schema
// without "$schema"; draft-07 (and the other drafts the validator knows)
// when "$schema" says so. Formats are asserted ("format": "email" is a
// check, not an annotation): a model that sends a malformed e-mail address
// is told so before the upstream sees it.
package schema
