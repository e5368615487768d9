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
// Icons and _meta are still put to the definition checks (Hygiene): a
// client may show them, and hidden characters have no business anywhere.
//
// Pins live in a Store: bbolt for a single broker (bucket "pins", key app
// NUL kind NUL name), Redis so that replicas agree (one hash per app,
// <prefix>pins:<app>, field kind NUL name, no TTL). A new definition is
// pinned (or held) by the first replica that sees it: create-if-absent, a
// bbolt transaction or HSETNX. Every other write is a compare-and-set on
// the pin's revision, so a replica recording a changed definition cannot
// undo an approval or revive a revoked pin made meanwhile.
//
// Pins declared in the configuration (Policy.Declared) win over the store;
// nothing is stored for them, and Approve and Revoke refuse to touch them.
//
// Verdicts read from the store are remembered in the process for memoTTL
// (5s): an approval or revocation made through this process takes effect
// at once, one made through another replica here at the latest after
// memoTTL (the broker also drops its lists when an operator decides, so
// the next listing asks again). The checks of the definition itself run
// at every Check; a clean one costs no allocation there.
package pins
