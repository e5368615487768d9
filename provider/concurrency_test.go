package provider

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// TestConcurrentSessions runs 50 sessions of different subjects, each with
// 20 concurrent requests over JSON and SSE, some with related messages,
// while every fifth session also listens on its GET stream. Run with -race.
func TestConcurrentSessions(t *testing.T) {
	const sessions, requests = 50, 20
	h := newHarness(t, nil)
	var wg sync.WaitGroup
	errs := make(chan error, sessions*requests*2)
	for i := 0; i < sessions; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			subject := fmt.Sprintf("user-%d", i)
			resp, body := h.doBody(call{subject: subject, body: initializeBody(1, "2025-03-26", "")})
			if resp.StatusCode != http.StatusOK {
				errs <- fmt.Errorf("%s initialize: %d %s", subject, resp.StatusCode, body)
				return
			}
			sid := resp.Header.Get("Mcp-Session-Id")

			var get *http.Response
			if i%5 == 0 {
				get = h.do(call{method: http.MethodGet, subject: subject, session: sid})
				defer get.Body.Close()
				if get.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("%s GET: %d", subject, get.StatusCode)
					return
				}
			}

			var inner sync.WaitGroup
			for j := 0; j < requests; j++ {
				inner.Add(1)
				go func() {
					defer inner.Done()
					id := 100 + j
					c := call{subject: subject, session: sid}
					switch j % 4 {
					case 0:
						c.accept = "application/json"
						c.body = requestBody(id, "whoami", "")
					case 1:
						c.body = requestBody(id, "echo", fmt.Sprintf(`{"who":%q,"j":%d}`, subject, j))
					case 2:
						c.body = requestBody(id, "stream", `{"n":2}`)
					case 3:
						c.body = fmt.Sprintf(`[%s,{"jsonrpc":"2.0","method":"notifications/x"},%s]`,
							requestBody(id, "echo", fmt.Sprintf(`{"who":%q}`, subject)), requestBody(id+1000, "whoami", ""))
					}
					resp, body := h.doBody(c)
					if resp.StatusCode != http.StatusOK {
						errs <- fmt.Errorf("%s request %d: %d %s", subject, j, resp.StatusCode, body)
						return
					}
					if err := checkConcurrentAnswer(resp, body, subject, id, j); err != nil {
						errs <- fmt.Errorf("%s request %d: %v", subject, j, err)
					}
				}()
			}
			inner.Wait()
		}()
	}
	// Meanwhile, notify every listening session.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 0; k < sessions/5; k++ {
			select {
			case l := <-h.d.listens:
				n, _ := jsonrpc.NewNotification("notifications/tools/list_changed", nil)
				l.s.Notify(n)
			case <-time.After(waitLong):
				errs <- fmt.Errorf("only %d of %d GET streams listened", k, sessions/5)
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func checkConcurrentAnswer(resp *http.Response, body []byte, subject string, id, j int) error {
	msgs, err := messagesOf(resp, body)
	if err != nil {
		return err
	}
	var answers []*jsonrpc.Message
	for _, m := range msgs {
		if m.Kind() == jsonrpc.KindResponse {
			answers = append(answers, m)
		}
	}
	want := 1
	if j%4 == 3 {
		want = 2
	}
	if len(answers) != want {
		return fmt.Errorf("%d answers, want %d: %s", len(answers), want, body)
	}
	for _, a := range answers {
		if a.Error != nil {
			return fmt.Errorf("error answer %s", a.Encode())
		}
		if a.ID.Raw() != fmt.Sprint(id) && a.ID.Raw() != fmt.Sprint(id+1000) {
			return fmt.Errorf("answer for id %s, want %d", a.ID.Raw(), id)
		}
		var v struct{ Who, Subject string }
		_ = json.Unmarshal(a.Result, &v)
		if (v.Who != "" && v.Who != subject) || (v.Subject != "" && v.Subject != subject) {
			return fmt.Errorf("answer belongs to another session: %s", a.Result)
		}
	}
	return nil
}

// messagesOf is responseMessages without a *testing.T, for goroutines.
func messagesOf(resp *http.Response, body []byte) (msgs []*jsonrpc.Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	ct := resp.Header.Get("Content-Type")
	if ct == "application/json" {
		ms, es, _, err := jsonrpc.DecodeBatch(body, 0)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			if e != nil {
				return nil, e
			}
		}
		return ms, nil
	}
	if ct != "text/event-stream" {
		return nil, fmt.Errorf("Content-Type %q", ct)
	}
	var out []*jsonrpc.Message
	for _, block := range splitEvents(string(body)) {
		m, err := jsonrpc.Decode([]byte(block))
		if err != nil {
			return nil, fmt.Errorf("event %q: %v", block, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// splitEvents returns the data of each event of a complete SSE body.
func splitEvents(body string) []string {
	var out, data []string
	for _, line := range strings.Split(body, "\n") {
		if line == "" {
			if data != nil {
				out = append(out, strings.Join(data, "\n"))
			}
			data = nil
			continue
		}
		if v, ok := strings.CutPrefix(line, "data:"); ok {
			data = append(data, strings.TrimPrefix(v, " "))
		}
	}
	return out
}

// TestConcurrentGETsOneStream: of many simultaneous GETs on one session,
// exactly one gets the stream; the others get 409, not a 200 stream that
// ends at once.
func TestConcurrentGETsOneStream(t *testing.T) {
	h := newHarness(t, nil)
	for round := 0; round < 100; round++ {
		sid := h.initialize("alice", "2025-06-18")
		const n = 16
		statuses := make(chan int, n)
		var ok200 []*http.Response
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := h.client.Do(h.request(call{method: http.MethodGet, subject: "alice", session: sid}))
				if err != nil {
					statuses <- -1
					return
				}
				statuses <- resp.StatusCode
				if resp.StatusCode == http.StatusOK {
					mu.Lock()
					ok200 = append(ok200, resp)
					mu.Unlock()
				} else {
					resp.Body.Close()
				}
			}()
		}
		wg.Wait()
		close(statuses)
		counts := make(map[int]int)
		for s := range statuses {
			counts[s]++
		}
		for _, r := range ok200 {
			r.Body.Close()
		}
		if counts[http.StatusOK] != 1 || counts[http.StatusConflict] != n-1 {
			t.Fatalf("round %d: statuses %v, want one 200 and %d × 409", round, counts, n-1)
		}
	}
}
