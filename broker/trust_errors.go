package broker

import (
	"encoding/json"
	"fmt"
)

// toolFailure is a failure the model should read and correct, such as
// arguments that do not fit the tool's inputSchema: answered as a
// tools/call result with isError set, as the specification asks for
// input validation, never as a JSON-RPC error. reason is the audit
// record's short word for it.
type toolFailure struct {
	text   string
	reason string
}

func (e *toolFailure) Error() string { return e.text }

// result is the isError result that carries the failure's text.
func (e *toolFailure) result() json.RawMessage {
	content := []map[string]string{{"type": "text", "text": e.text}}
	raw, _ := json.Marshal(map[string]any{"content": content, "isError": true})
	return raw
}

// pinRefusal refuses a tool, prompt or template whose definition the
// app's tool pinning does not serve: changed since it was pinned, new and
// held for approval, or not clean. Answered as -32602, as a tool the
// upstream does not offer would be, naming the app and the tool.
type pinRefusal struct {
	app, kind, name string
	pin, reason     string
}

func (e *pinRefusal) Error() string {
	what := "is held"
	switch e.pin {
	case "changed":
		what = "changed since it was pinned"
	case "held":
		what = "is new and waits for an operator's approval"
	case "unclean":
		what = "was refused by the definition checks"
	}
	msg := fmt.Sprintf("%s %q of app %q is not served: its definition %s", e.kind, e.name, e.app, what)
	if e.reason != "" {
		msg += " (" + e.reason + ")"
	}
	return msg
}
