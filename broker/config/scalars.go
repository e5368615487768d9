package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// Duration is a time.Duration written in YAML as a Go duration string
// ("500ms", "30s", "1h"). A bare number is rejected rather than guessed at:
// "30" could mean seconds or nanoseconds, and guessing wrong is silent.
type Duration time.Duration

// String returns the duration in Go notation, e.g. "1m30s".
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the duration the way it is read, so golden files and
// re-encoded configs stay readable.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a Go duration string.
func (d *Duration) UnmarshalText(text []byte) error {
	parsed, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	*d = Duration(parsed)
	return nil
}

// redacted replaces a non-empty secret wherever it could be printed.
const redacted = "[redacted]"

// Secret is a credential. In the file it is a literal, "{{ env.NAME }}" (read
// from the environment at load time) or "{{ file.PATH }}" (read from a file
// relative to the config file, trailing newline removed). Every way of
// printing or encoding a Secret yields "[redacted]", so a config dumped to a
// log or an error message never leaks it; only Value returns the secret.
//
// The value lives in an unexported field so that a conversion such as
// string(secret) does not compile and reflection-based printers cannot read it.
type Secret struct {
	value string
}

// NewSecret wraps a value obtained elsewhere, for configs built in code.
func NewSecret(value string) Secret { return Secret{value: value} }

// Value returns the secret itself. Call it only where the secret is used.
func (s Secret) Value() string { return s.value }

// IsZero reports whether no secret is set.
func (s Secret) IsZero() bool { return s.value == "" }

// String returns "[redacted]", or "" when no secret is set so that an unset
// secret is still recognizable in a dump.
func (s Secret) String() string {
	if s.value == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the field.
func (s Secret) GoString() string { return fmt.Sprintf("config.Secret(%q)", s.String()) }

// MarshalJSON encodes the redacted form.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalYAML encodes the redacted form.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// LogValue keeps log/slog from printing the secret.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

var (
	_ fmt.Stringer   = Secret{}
	_ fmt.GoStringer = Secret{}
	_ json.Marshaler = Secret{}
	_ slog.LogValuer = Secret{}
)
