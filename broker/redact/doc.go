// Package redact finds secrets and personal data in text, and masks them:
// what the broker applies to tool results (text content, embedded
// resources, structuredContent) and to arguments before the audit trail
// records them.
//
// It is a pattern matcher for well-known shapes, not data-loss prevention:
// credentials with a recognizable form (cloud and platform keys, private
// key blocks, JWTs), and personal data whose form can be checked (payment
// card numbers by their issuer prefix and Luhn check digit, IBANs by their
// country's length and mod-97 check, e-mail addresses, E.164 phone
// numbers, US social security numbers by their assignment rules). A number
// that fails its check is left alone, as is text that only looks like a
// secret; a secret in no known shape is not found.
//
// Each detector looks for the few bytes every match must contain before it
// runs anything costlier, so text with nothing to find is scanned once per
// detector and allocates nothing.
package redact
