package telemetry

import (
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Label values. Every label of every metric takes its values from a fixed
// set, or from names the broker's configuration and catalogue list; a value
// outside the set is counted as Other, so that what a client sends can never
// create series.
const (
	Other   = "other"
	Unknown = "unknown"

	// The decision on a call.
	DecisionAllowed = "allowed"
	DecisionDenied  = "denied"
	DecisionRefused = "refused"
	DecisionError   = "error"

	// The result of verifying a client's token.
	TokenValid       = "valid"
	TokenInvalid     = "invalid"
	TokenUnavailable = "unavailable"
	TokenMissing     = "missing"

	// The outcome of issuing a token for an upstream.
	ExchangeIssued  = "issued"
	ExchangeFailed  = "failed"
	ExchangeNoToken = "no_token"

	// The outcome of evaluating a policy.
	PolicyAllowed   = "allowed"
	PolicyDenied    = "denied"
	PolicyUndefined = "undefined"
	PolicyError     = "error"

	// The outcome of reloading the configuration.
	ReloadApplied  = "applied"
	ReloadRejected = "rejected"
)

// methodLabel is the method label of an MCP method name: the name itself
// when MCP defines it, Other otherwise. The returned strings are constants,
// so the caller's string is never retained.
func methodLabel(method string) string {
	switch method {
	case "initialize":
		return "initialize"
	case "ping":
		return "ping"
	case "tools/list":
		return "tools/list"
	case "tools/call":
		return "tools/call"
	case "resources/list":
		return "resources/list"
	case "resources/templates/list":
		return "resources/templates/list"
	case "resources/read":
		return "resources/read"
	case "resources/subscribe":
		return "resources/subscribe"
	case "resources/unsubscribe":
		return "resources/unsubscribe"
	case "prompts/list":
		return "prompts/list"
	case "prompts/get":
		return "prompts/get"
	case "completion/complete":
		return "completion/complete"
	case "logging/setLevel":
		return "logging/setLevel"
	case "roots/list":
		return "roots/list"
	case "sampling/createMessage":
		return "sampling/createMessage"
	case "elicitation/create":
		return "elicitation/create"
	case "tasks/get":
		return "tasks/get"
	case "tasks/list":
		return "tasks/list"
	case "tasks/result":
		return "tasks/result"
	case "tasks/cancel":
		return "tasks/cancel"
	case "notifications/initialized":
		return "notifications/initialized"
	case "notifications/cancelled":
		return "notifications/cancelled"
	case "notifications/progress":
		return "notifications/progress"
	case "notifications/message":
		return "notifications/message"
	case "notifications/roots/list_changed":
		return "notifications/roots/list_changed"
	case "notifications/tools/list_changed":
		return "notifications/tools/list_changed"
	case "notifications/resources/list_changed":
		return "notifications/resources/list_changed"
	case "notifications/resources/updated":
		return "notifications/resources/updated"
	case "notifications/prompts/list_changed":
		return "notifications/prompts/list_changed"
	case "notifications/tasks/status":
		return "notifications/tasks/status"
	}
	return Other
}

func decisionLabel(decision string) string {
	switch decision {
	case DecisionAllowed:
		return DecisionAllowed
	case DecisionDenied:
		return DecisionDenied
	case DecisionRefused:
		return DecisionRefused
	case DecisionError:
		return DecisionError
	}
	return Other
}

func exchangeLabel(outcome string) string {
	switch outcome {
	case ExchangeIssued:
		return ExchangeIssued
	case ExchangeFailed:
		return ExchangeFailed
	case ExchangeNoToken:
		return ExchangeNoToken
	}
	return Other
}

func policyOutcomeLabel(outcome string) string {
	switch outcome {
	case PolicyAllowed:
		return PolicyAllowed
	case PolicyDenied:
		return PolicyDenied
	case PolicyUndefined:
		return PolicyUndefined
	case PolicyError:
		return PolicyError
	}
	return Other
}

// verificationResults and reloadOutcomes are the label values of the
// metrics whose series all exist from the start.
var (
	verificationResults = []string{TokenValid, TokenInvalid, TokenUnavailable, TokenMissing, Other}
	reloadOutcomes      = []string{ReloadApplied, ReloadRejected, Other}
	refusalStatuses     = []int{400, 401, 403, 404, 405, 406, 408, 409, 413, 415, 421, 429, 500, 502, 503, 504}
)

func indexOf(values []string, v string) int {
	for i, s := range values {
		if s == v {
			return i
		}
	}
	return len(values) - 1 // Other, last of every list
}

// maxLabelLength bounds a label value taken from configuration or the
// catalogue; a longer one is counted as Other.
const maxLabelLength = 256

// acceptableLabel reports whether v, a name from configuration or the
// catalogue, may be a label value as it is: short, valid UTF-8 and printable.
func acceptableLabel(v string) bool {
	if len(v) > maxLabelLength || !utf8.ValidString(v) {
		return false
	}
	for _, r := range v {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// labelKey is the label values of one series, or of the series one call
// updates together.
type labelKey [4]string

// family holds the child metrics of a vector by their label values, so that
// a call finds them with one map read and no allocation. It admits at most
// limit keys; past that, and for values that are not acceptable labels,
// the open positions read Other, so a family never holds more than limit
// keys plus those made of Other and fixed-set values.
type family[V any] struct {
	mu    sync.RWMutex
	byKey map[labelKey]V
	limit int
	open  []int // positions whose values come from configuration or the catalogue
	build func(labelKey) V
}

func newFamily[V any](limit int, open []int, build func(labelKey) V) *family[V] {
	return &family[V]{byKey: make(map[labelKey]V), limit: limit, open: open, build: build}
}

func (f *family[V]) get(k labelKey) V {
	f.mu.RLock()
	v, ok := f.byKey[k]
	f.mu.RUnlock()
	if ok {
		return v
	}
	return f.add(k)
}

func (f *family[V]) add(k labelKey) V {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.byKey[k]; ok {
		return v
	}
	spill := len(f.byKey) >= f.limit
	for _, i := range f.open {
		if !acceptableLabel(k[i]) {
			spill = true
		}
	}
	if spill {
		for _, i := range f.open {
			k[i] = Other
		}
		if v, ok := f.byKey[k]; ok {
			return v
		}
	} else {
		// The caller's strings may share memory with a request body.
		for i := range k {
			k[i] = strings.Clone(k[i])
		}
	}
	v := f.build(k)
	f.byKey[k] = v
	return v
}

func (f *family[V]) size() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.byKey)
}
