package provider

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// maxResourceSubscriptions bounds the resources one listen watches;
// maxListensPerUser and maxListens the listens open at once, for one user
// (or anonymous address) and in all: each holds a connection, and
// upstream sessions and their streams.
const (
	maxResourceSubscriptions = 64
	maxListensPerUser        = 16
	maxListens               = 2000
)

// admitListen counts a listen in, within the bounds; the returned func
// counts it out.
func (p *Provider) admitListen(user string) (func(), *HTTPError) {
	p.heldMu.Lock()
	defer p.heldMu.Unlock()
	if p.listens == nil {
		p.listens = make(map[string]int)
	}
	if p.listening >= maxListens {
		return nil, httpError(http.StatusServiceUnavailable, jsonrpc.CodeServerError, "too many subscriptions/listen streams open; retry later")
	}
	if p.listens[user] >= maxListensPerUser {
		return nil, httpError(http.StatusTooManyRequests, jsonrpc.CodeServerError, "too many subscriptions/listen streams open for this user ("+strconv.Itoa(maxListensPerUser)+"); close one first")
	}
	p.listening++
	p.listens[user]++
	return func() {
		p.heldMu.Lock()
		defer p.heldMu.Unlock()
		p.listening--
		if p.listens[user]--; p.listens[user] <= 0 {
			delete(p.listens, user)
		}
	}, nil
}

// ListenRequest is what a modern client asks to hear of on a
// subscriptions/listen stream; the dispatcher answers the request with
// the part it grants, as {"notifications": ListenRequest}.
type ListenRequest struct {
	ToolsListChanged      bool     `json:"toolsListChanged,omitempty"`
	PromptsListChanged    bool     `json:"promptsListChanged,omitempty"`
	ResourcesListChanged  bool     `json:"resourcesListChanged,omitempty"`
	ResourceSubscriptions []string `json:"resourceSubscriptions,omitempty"`
}

// listenModern serves subscriptions/listen: the dispatcher decides what
// is granted (and subscribes to the resources upstream); the stream then
// acknowledges it and carries only those notifications, each naming the
// listen request, until the client closes it.
func (p *Provider) listenModern(w http.ResponseWriter, r *http.Request, id *Identity, s *Session, m *jsonrpc.Message) {
	defer p.endTransient(s)
	var params struct {
		Notifications *ListenRequest `json:"notifications"`
	}
	if err := json.Unmarshal(m.Params, &params); err != nil || params.Notifications == nil {
		writeHTTPErrorFor(w, httpError(http.StatusBadRequest, jsonrpc.CodeInvalidParams, "invalid params: notifications is required"), m.ID)
		return
	}
	if n := len(params.Notifications.ResourceSubscriptions); n > maxResourceSubscriptions {
		writeHTTPErrorFor(w, httpError(http.StatusBadRequest, jsonrpc.CodeInvalidParams, "invalid params: at most "+strconv.Itoa(maxResourceSubscriptions)+" resourceSubscriptions per listen"), m.ID)
		return
	}
	if !acceptsType(r.Header.Get("Accept"), "text/event-stream") {
		writeHTTPErrorFor(w, httpError(http.StatusNotAcceptable, jsonrpc.CodeInvalidRequest, "not acceptable: subscriptions/listen answers with text/event-stream"), m.ID)
		return
	}
	release, herr := p.admitListen(heldUser(id))
	if herr != nil {
		writeHTTPErrorFor(w, herr, m.ID)
		return
	}
	defer release()
	reply := p.dispatcher.Dispatch(s.context(), &Request{Message: m, Session: s, HTTP: r, Identity: id})
	if reply.Refusal != nil {
		writeHTTPErrorFor(w, reply.Refusal, m.ID)
		return
	}
	resp := reply.Message
	var granted struct {
		Notifications ListenRequest `json:"notifications"`
	}
	if resp == nil || resp.Error != nil || json.Unmarshal(resp.Result, &granted) != nil {
		e := jsonrpc.NewError(jsonrpc.CodeInternalError, "internal error")
		if resp != nil && resp.Error != nil {
			e = resp.Error
		}
		status := modernErrorStatus(e.Code)
		if status == 0 {
			status = http.StatusOK
		}
		writeJSON(w, status, jsonrpc.NewErrorResponse(m.ID, e).Encode())
		return
	}
	subscriptionID := json.RawMessage(m.ID.Raw())
	watched := make(map[string]bool, len(granted.Notifications.ResourceSubscriptions))
	for _, uri := range granted.Notifications.ResourceSubscriptions {
		watched[uri] = true
	}
	g := granted.Notifications
	s.mu.Lock()
	s.filter = func(n *jsonrpc.Message) *jsonrpc.Message {
		if n.Kind() != jsonrpc.KindNotification {
			return nil // no server-to-client requests in this protocol
		}
		switch n.Method {
		case "notifications/tools/list_changed":
			if !g.ToolsListChanged {
				return nil
			}
		case "notifications/prompts/list_changed":
			if !g.PromptsListChanged {
				return nil
			}
		case "notifications/resources/list_changed":
			if !g.ResourcesListChanged {
				return nil
			}
		case "notifications/resources/updated":
			var u struct {
				URI string `json:"uri"`
			}
			if json.Unmarshal(n.Params, &u) != nil || !watched[u.URI] {
				return nil
			}
		default:
			return nil
		}
		params, err := jsonrpc.SetMetaMember(n.Params, MetaSubscriptionID, subscriptionID)
		if err != nil {
			return nil
		}
		return &jsonrpc.Message{Method: n.Method, Params: params}
	}
	s.mu.Unlock()

	ack, _ := jsonrpc.Marshal(map[string]any{"notifications": g})
	ack, _ = jsonrpc.SetMetaMember(ack, MetaSubscriptionID, subscriptionID)
	st := s.standaloneStream()
	conn := newSSEConn(w, false)
	st.attachOpen(conn, st.lastSeq())
	st.send((&jsonrpc.Message{Method: "notifications/subscriptions/acknowledged", Params: ack}).Encode(), false)
	ctx, cancel := context.WithCancel(s.context())
	defer cancel()
	p.dispatcher.Listen(ctx, s)
	p.hold(r, st, conn, ctx, p.opts.StreamKeepAlive)
}
