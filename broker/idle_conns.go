package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"github.com/mcpbroker/mcpbroker/apps"
	"github.com/mcpbroker/mcpbroker/provider"
)

// A request without a session (2026-07-28, or an endpoint without
// sessions) that needs a sessionful upstream would open an upstream
// session for itself and end it after: initialize, initialized and
// DELETE around every call. Instead, the upstream sessions such requests
// opened are kept a short while when they end, for the next request of
// the same agent token (or, unauthenticated, the same address) with the
// same capabilities and client: the upstream sees one agent's requests
// on one of its sessions, as it would from a client with a session.
const (
	idleConnTTL        = 30 * time.Second
	maxIdleConnsPerKey = 16
	maxIdleConns       = 1024
)

// idleKey is whose upstream session one is: the app, the agent (its
// token's digest, or its address), and the client's declared facts.
type idleKey struct {
	app    *apps.App
	holder string
}

type idleConn struct {
	conn  *apps.Conn
	since time.Time
}

type idleConns struct {
	mu    sync.Mutex
	byKey map[idleKey][]idleConn
	n     int
	sweep *time.Timer
}

// holderOf names whose upstream sessions a sessionless request may
// reuse: "" when none (no agent token and no address).
func holderOf(s *provider.Session, c *Call) string {
	h := sha256.New()
	switch {
	case c != nil && c.agentToken != "":
		h.Write([]byte("token\x00"))
		h.Write([]byte(c.agentToken))
	case c != nil && c.Request != nil && c.Request.Identity != nil && c.Request.Identity.Address != "":
		h.Write([]byte("address\x00" + c.Request.Identity.Address + "\x00" + s.Subject))
	default:
		return ""
	}
	h.Write([]byte{0})
	h.Write(s.ClientCapabilities)
	h.Write([]byte{0})
	h.Write(s.ClientInfo)
	return hex.EncodeToString(h.Sum(nil))
}

// take returns a kept upstream session of key, nil when none.
func (ic *idleConns) take(key idleKey) *apps.Conn {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	list := ic.byKey[key]
	for len(list) > 0 {
		last := list[len(list)-1]
		list = list[:len(list)-1]
		ic.n--
		if time.Since(last.since) < idleConnTTL {
			ic.setLocked(key, list)
			return last.conn
		}
		go closeConn(last.conn)
	}
	ic.setLocked(key, list)
	return nil
}

func (ic *idleConns) setLocked(key idleKey, list []idleConn) {
	if len(list) == 0 {
		delete(ic.byKey, key)
		return
	}
	ic.byKey[key] = list
}

// put keeps an upstream session for reuse; false when the bounds say no,
// and the caller ends it.
func (ic *idleConns) put(key idleKey, conn *apps.Conn) bool {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if ic.byKey == nil {
		ic.byKey = make(map[idleKey][]idleConn)
	}
	if ic.n >= maxIdleConns || len(ic.byKey[key]) >= maxIdleConnsPerKey {
		return false
	}
	ic.byKey[key] = append(ic.byKey[key], idleConn{conn: conn, since: time.Now()})
	ic.n++
	if ic.sweep == nil {
		ic.sweep = time.AfterFunc(idleConnTTL, ic.expire)
	}
	return true
}

// expire ends the upstream sessions kept longer than idleConnTTL.
func (ic *idleConns) expire() {
	ic.mu.Lock()
	var stale []*apps.Conn
	for key, list := range ic.byKey {
		kept := list[:0]
		for _, c := range list {
			if time.Since(c.since) >= idleConnTTL {
				stale = append(stale, c.conn)
				ic.n--
			} else {
				kept = append(kept, c)
			}
		}
		ic.setLocked(key, kept)
	}
	ic.sweep = nil
	if ic.n > 0 {
		ic.sweep = time.AfterFunc(idleConnTTL/2, ic.expire)
	}
	ic.mu.Unlock()
	for _, c := range stale {
		closeConn(c)
	}
}

// closeAll ends every kept upstream session, as the broker stops.
func (ic *idleConns) closeAll() {
	ic.mu.Lock()
	var all []*apps.Conn
	for _, list := range ic.byKey {
		for _, c := range list {
			all = append(all, c.conn)
		}
	}
	ic.byKey, ic.n = nil, 0
	if ic.sweep != nil {
		ic.sweep.Stop()
		ic.sweep = nil
	}
	ic.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = c.Close(ctx)
		}()
	}
	wg.Wait()
}

// reusable reports whether an upstream session may serve another request
// later: a Streamable HTTP session with an id (a process's or a held
// stream's are not kept; a modern upstream needs none).
func reusable(conn *apps.Conn) bool {
	id, _ := conn.Ref()
	return id != "" && conn.App.HTTPSessions()
}
