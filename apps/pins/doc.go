// Package pins holds an upstream's definitions (tools, prompts, resource
// templates) to what was reviewed: per app and definition, the SHA-256 of
// the definition's canonical form is pinned, and a definition that differs
// from its pin (a "rug pull"), that is new and not yet approved, or that
// hides characters a reviewer cannot see, is reported and, in enforce
// mode, not served.
//
// What is pinned is what a model reads and what a call is checked against:
// a tool's name, title, description, inputSchema, outputSchema and
// annotations; a prompt's name, title, description and arguments; a
// template's uriTemplate, name, title, description and mimeType. Icons
// and _meta are presentation and extension data the broker does not judge;
// changing them changes no pin. The canonical form is RFC 8785 (JSON
// Canonicalization Scheme): members sorted, no whitespace, numbers as
// ECMAScript prints them, so a definition re-serialized by another
// library keeps its hash.
//
// Pins live in a Store: bbolt for a single broker, Redis so that replicas
// agree. A new definition is pinned by the first replica that sees it
// (create-if-absent). Verdicts are remembered in the process for a few
// seconds: an approval made through this process takes effect at once,
// one made through another replica at the latest after memoTTL.
package pins
