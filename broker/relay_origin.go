package broker

import (
	"github.com/mcpbroker/mcpbroker/apps"
	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// noteURLElicitation remembers the URL elicitation an upstream's request
// to the client starts, so its completion can be relayed (only from that
// upstream, once: apps.ClientSession); it returns the elicitation's id.
func (st *sessionState) noteURLElicitation(conn *apps.Conn, m *jsonrpc.Message) (string, bool) {
	if m.Method != "elicitation/create" {
		return "", false
	}
	var p struct {
		ElicitationID string `json:"elicitationId"`
	}
	if mode, _ := elicitationMode(m.Params); mode != "url" || jsonrpc.Unmarshal(m.Params, &p) != nil {
		return "", false
	}
	return p.ElicitationID, st.NoteElicitation(conn, p.ElicitationID)
}
