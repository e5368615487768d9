package config

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/mcpbroker/mcpbroker/broker/redact"
)

// What the broker does not take on trust from an upstream: its
// definitions (toolPinning), the arguments its tools are sent and the
// structuredContent they answer (validation), and what its results carry
// (redaction).

// Bounds of toolPinning.limits: a definition must have room for a
// description and a schema; above a few MiB it is no tool a model can
// read.
const (
	maxDescriptionBytes = 1 << 20
	maxSchemaBytes      = 4 << 20
	maxDefinitionBytes  = 8 << 20
	// maxArgumentDepth is the strict decoder's own nesting bound.
	maxArgumentDepth = 512
)

var sha256Pattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// pinKinds are what toolPinning.pins[].kind may name.
var pinKinds = []string{"tool", "prompt", "resourceTemplate"}

func (v *validator) toolPinning(path string, p *ToolPinning) {
	switch p.Mode {
	case PinningEnforce, PinningWarn, PinningOff:
	default:
		v.add(field(path, "mode"), fmt.Sprintf(`want "enforce", "warn" or "off", got %s`, quote(p.Mode)))
	}
	limits := field(path, "limits")
	v.byteLimit(field(limits, "descriptionBytes"), p.Limits.DescriptionBytes, 1, maxDescriptionBytes)
	v.byteLimit(field(limits, "schemaBytes"), p.Limits.SchemaBytes, 1, maxSchemaBytes)
	v.byteLimit(field(limits, "definitionBytes"), p.Limits.DefinitionBytes, 1, maxDefinitionBytes)
	if p.Limits.DefinitionBytes > 0 && p.Limits.DefinitionBytes < p.Limits.DescriptionBytes {
		v.add(field(limits, "definitionBytes"), fmt.Sprintf("must be at least descriptionBytes (%d), got %d", p.Limits.DescriptionBytes, p.Limits.DefinitionBytes))
	}
	seen := map[string]int{}
	for i, pin := range p.Pins {
		at := index(field(path, "pins"), i)
		kindKnown := false
		for _, k := range pinKinds {
			kindKnown = kindKnown || pin.Kind == k
		}
		if !kindKnown {
			v.add(field(at, "kind"), fmt.Sprintf(`want "tool", "prompt" or "resourceTemplate", got %s`, quote(pin.Kind)))
		}
		if strings.TrimSpace(pin.Name) == "" {
			v.add(field(at, "name"), "must not be empty")
		}
		if !sha256Pattern.MatchString(pin.SHA256) {
			v.add(field(at, "sha256"), fmt.Sprintf("want 64 lowercase hex digits, as `mcpbroker tools list` shows them, got %s", quote(pin.SHA256)))
		}
		key := pin.Kind + "\x00" + pin.Name
		if first, dup := seen[key]; dup {
			v.add(field(at, "name"), fmt.Sprintf("%s %s is pinned twice, also in pins[%d]", pin.Kind, quote(pin.Name), first))
		} else {
			seen[key] = i
		}
	}
	if p.Mode == PinningOff && len(p.Pins) > 0 {
		v.add(field(path, "pins"), `pins are declared but mode is "off": set mode to "enforce" or "warn", or remove them`)
	}
}

func (v *validator) validation(path string, val *Validation, maxBody int) {
	for _, m := range []struct{ name, value string }{{"arguments", val.Arguments}, {"results", val.Results}} {
		switch m.value {
		case PinningEnforce, PinningOff:
		default:
			v.add(field(path, m.name), fmt.Sprintf(`want "enforce" or "off", got %s`, quote(m.value)))
		}
	}
	limits := field(path, "limits")
	if maxBody <= 0 {
		maxBody = maxBodyBytes
	}
	v.byteLimit(field(limits, "argumentBytes"), val.Limits.ArgumentBytes, 2, maxBody)
	if val.Limits.Depth < 1 || val.Limits.Depth > maxArgumentDepth {
		v.add(field(limits, "depth"), fmt.Sprintf("must be between 1 and %d, got %d", maxArgumentDepth, val.Limits.Depth))
	}
	v.byteLimit(field(limits, "stringBytes"), val.Limits.StringBytes, 1, maxBody)
}

func (v *validator) redaction(path string, r *Redaction) {
	v.detectors(field(path, "detectors"), r.Detectors)
	v.redactAction(field(path, "action"), r.Action)
	seen := map[string]int{}
	for i, t := range r.Tools {
		at := index(field(path, "tools"), i)
		if t.Name == "" {
			v.add(field(at, "name"), "must not be empty")
		} else if first, dup := seen[t.Name]; dup {
			v.add(field(at, "name"), fmt.Sprintf("duplicate tool %s, also in tools[%d]", quote(t.Name), first))
		} else {
			seen[t.Name] = i
		}
		v.detectors(field(at, "detectors"), t.Detectors)
		v.redactAction(field(at, "action"), t.Action)
	}
}

func (v *validator) redactAction(path, action string) {
	switch action {
	case RedactMask, RedactBlock, RedactAudit:
	default:
		v.add(path, fmt.Sprintf(`want "mask", "block" or "audit", got %s`, quote(action)))
	}
}

func (v *validator) detectors(path string, names []string) {
	known := DetectorNames()
	for i, name := range names {
		found := false
		for _, k := range known {
			found = found || name == k
		}
		if !found {
			v.add(index(path, i), fmt.Sprintf("unknown detector %s; known: %s", quote(name), strings.Join(known, ", ")))
		}
	}
}

func (v *validator) byteLimit(path string, value, least, most int) {
	if value < least || value > most {
		v.add(path, fmt.Sprintf("must be between %d and %d bytes, got %d", least, most, value))
	}
}

// DetectorNames are the names redaction detectors may be given.
func DetectorNames() []string {
	kinds := redact.Kinds()
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = string(k)
	}
	return names
}
