// Package apps owns the upstream applications the broker fronts: the
// catalog built from configuration, tool and prompt namespacing, and for
// mcpProxy apps the upstream sessions opened on behalf of each client
// session. The Streamable HTTP client itself lives in apps/upstream.
package apps
