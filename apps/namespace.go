package apps

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// MaxNameLength is the longest tool or prompt name clients are shown.
const MaxNameLength = 64

// validNameChar reports whether c may appear in a tool name shown to
// clients ([A-Za-z0-9_.-]).
func validNameChar(c byte) bool {
	return c == '_' || c == '-' || c == '.' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func validName(s string) bool {
	if s == "" || len(s) > MaxNameLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !validNameChar(s[i]) {
			return false
		}
	}
	return true
}

// exposedName is the name a client sees for an upstream name under prefix.
// When prefix+name would be too long or hold characters outside the
// allowed set, the name is shortened and made unique with a hash of the
// original, the same way every time, so any replica derives the same name.
func exposedName(prefix, name string) (exposed string, mangled bool) {
	if prefix == "" {
		return name, false // namespacing off: names pass as the upstream gives them
	}
	full := prefix + name
	if validName(full) {
		return full, false
	}
	sum := sha256.Sum256([]byte(name))
	suffix := "_" + hex.EncodeToString(sum[:hashBytes])
	var b strings.Builder
	b.WriteString(prefix)
	for i := 0; i < len(name) && b.Len() < MaxNameLength-len(suffix); i++ {
		if validNameChar(name[i]) {
			b.WriteByte(name[i])
		} else {
			b.WriteByte('_')
		}
	}
	b.WriteString(suffix)
	return b.String(), true
}

// hashBytes of the name's SHA-256 make the suffix of a shortened name.
const hashBytes = 4

// hasHashSuffix reports whether name ends as a shortened name does: an
// underscore and 2*hashBytes lowercase hex digits.
func hasHashSuffix(name string) bool {
	n := len(name) - 2*hashBytes - 1
	if n < 0 || name[n] != '_' {
		return false
	}
	for i := n + 1; i < len(name); i++ {
		if c := name[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
