// Package config owns the broker's configuration file: its structure (the
// Config tree, with keys that follow Strata Maverics so mcpProvider,
// connectors and apps blocks carry over unchanged), how it is read, its
// defaults, and the rules that make it valid.
//
// Loading is three separate steps, so each can be reasoned about and tested
// alone:
//
//  1. Decode. Parse walks the YAML node tree against the structs itself
//     rather than letting a YAML library fill them, so that it can collect
//     every problem with its path and line instead of stopping at the first:
//     unknown keys (with a suggestion), wrong types, bad durations, duplicate
//     keys. Input is bounded (1 MiB, 100k nodes counting alias expansion).
//     Secrets written as "{{ env.NAME }}" or "{{ file.PATH }}" are resolved
//     here, and only Secret fields are templated.
//  2. Defaults. ApplyDefaults fills zero values; see it for the list.
//  3. Validate. Validate checks values and the relations between them
//     (unique names, transport paths that do not overlap, tool namespaces
//     that route unambiguously, token exchanges that name a known identity
//     provider).
//
// All problems come back together as Problems, sorted by line, printed as
// "config.yaml:12: apps[0].name: must not be empty".
//
// The package has no side effects: it starts nothing, listens on nothing and
// never contacts the network. Apart from reading the file and the secrets it
// names, it touches nothing outside the Config, and Validate touches nothing
// at all. Building runtime objects from a Config is the job of the packages
// that own them. Secrets print as "[redacted]" however they are formatted or
// encoded.
package config
