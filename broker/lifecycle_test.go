package broker_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/broker/audit"
)

// A broker killed outright while it answers calls leaves a trail that
// holds the record of every answer a client received, byte for byte, and
// that verifies; started again on it, the broker continues the chain.
func TestAuditTrailSurvivesSIGKILL(t *testing.T) {
	b := startAuditedBroker(t)
	token := b.token(t, "mcp:tools ledger:read")

	const clients = 8
	sessions := make([]*wireClient, clients)
	for i := range sessions {
		sessions[i] = jsonClient(t, b.url, token)
		sessions[i].initialize(`{}`)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: clients}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 15 * time.Second}

	// Each client calls until the broker is gone; the client whose answer
	// is the 1500th kills it the moment that answer is read, while the
	// others' calls are in flight. Request ids are unique across the test,
	// so each answer, and its digest, is too.
	const answers = 1500
	var (
		mu       sync.Mutex
		received []answer
		cut      int // calls in flight when the broker was killed
		wg       sync.WaitGroup
	)
	for i, c := range sessions {
		wg.Go(func() {
			for n := 1; ; n++ {
				id := (i+1)*1_000_000 + n
				a, err := c.try(client, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"ledger_get_balance","arguments":{"account":"alice"}}}`, id))
				mu.Lock()
				if err != nil {
					if !errors.Is(err, syscall.ECONNREFUSED) {
						cut++
					}
					mu.Unlock()
					return
				}
				a.what = fmt.Sprintf("call %d", id)
				received = append(received, a)
				if len(received) == answers {
					_ = b.broker.Process.Kill()
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	b.kill(t) // when the clients stopped short of it
	if len(received) < answers {
		t.Fatalf("the clients stopped after %d answers", len(received))
	}
	t.Logf("%d calls answered, %d cut by the kill", len(received), cut)

	torn := verifyAfterCrash(t, b)
	before := trailRecords(t, b.trail(), torn)
	byDigest := make(map[string]*audit.Record, len(before))
	for _, r := range before {
		if r.Result != nil && r.Result.Digest != "" {
			byDigest[r.Result.Digest] = r
		}
	}
	unrecorded := 0
	for _, a := range received {
		if a.status != http.StatusOK || a.rpcCode() != 0 {
			t.Errorf("%s: status %d: %s", a.what, a.status, a.body)
			continue
		}
		r := byDigest[a.digest()]
		if r == nil || r.Event != "tools/call" || r.Result.Bytes != len(a.body) {
			if unrecorded++; unrecorded <= 3 {
				t.Errorf("%s: the client received %s, and no record says so (%+v)", a.what, a.body, r)
			}
		}
	}
	if unrecorded > 0 {
		t.Fatalf("%d of %d answers the clients received have no record", unrecorded, len(received))
	}

	// Started again on the same trail, the broker continues its chain.
	last := before[len(before)-1]
	b.restart(t, nil)
	c := jsonClient(t, b.url, b.token(t, "mcp:tools ledger:read"))
	c.initialize(`{}`)
	again := c.send("after restart", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ledger_get_balance","arguments":{"account":"alice"}}}`)
	if again.status != http.StatusOK || again.rpcCode() != 0 {
		t.Fatalf("after restart: status %d: %s", again.status, again.body)
	}
	b.stop(t)

	after := trailRecords(t, b.trail(), false)
	if len(after) <= len(before) {
		t.Fatalf("the trail has %d records after the restart, %d before", len(after), len(before))
	}
	for i, r := range before {
		if after[i].ID != r.ID || after[i].Seq != r.Seq {
			t.Fatalf("record %d changed across the restart: seq %d id %s, was seq %d id %s", i, after[i].Seq, after[i].ID, r.Seq, r.ID)
		}
	}
	next := after[len(before)]
	if next.Seq != last.Seq+1 {
		t.Errorf("the first record after the restart has seq %d, the last before it %d", next.Seq, last.Seq)
	}
	if recovered := next.Kind == audit.KindTrail && next.Event == audit.EventRecovered; recovered != torn {
		t.Errorf("the trail was torn: %v; the first record after the restart: %s %s", torn, next.Kind, next.Event)
	}
	found := false
	for _, r := range after[len(before):] {
		found = found || r.Result != nil && r.Result.Digest == again.digest()
	}
	if !found {
		t.Errorf("no record of the call answered after the restart")
	}
	auditVerify(t, b, 0)
}

// SIGTERM stops the broker gracefully: the call in flight is answered
// with its result and recorded, no new session opens meanwhile, and the
// process exits 0 saying so.
func TestSIGTERMAnswersCallsInFlight(t *testing.T) {
	// The scenario keeps the default shutdown timeout; the broker is run
	// again with one well beyond what the slow call needs.
	b := startAuditedBroker(t)
	b.kill(t)
	b.restart(t, func(config string) string {
		return strings.Replace(config, "http: {", "http: {shutdownTimeout: 20s, ", 1)
	})
	c := jsonClient(t, b.url, b.token(t, "mcp:tools ledger:read"))
	c.initialize(`{}`)

	// The exchange stage is the last before the call goes upstream: once
	// it has run for the slow call, the call is in flight.
	exchanged := stageRuns(t, b.admin, "exchange")
	type result struct {
		answer answer
		err    error
	}
	answered := make(chan result, 1)
	go func() {
		a, err := c.try(http.DefaultClient, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"ledger_slow_count","arguments":{"n":5,"delay_ms":300}}}`)
		answered <- result{a, err}
	}()
	eventually(t, "the slow call to be forwarded", func() bool { return stageRuns(t, b.admin, "exchange") > exchanged })
	if err := b.broker.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the broker to begin shutting down", func() bool { return strings.Contains(b.logs(), "shutting down") })

	// While it drains, no new session opens.
	late := newWireClient(t, b.url)
	late.header = c.header.Clone()
	opened, err := late.try(&http.Client{Transport: &http.Transport{}, Timeout: 15 * time.Second},
		`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"late","version":"1"}}}`)
	if err == nil && opened.status == http.StatusOK && opened.rpcCode() == 0 {
		t.Errorf("a session opened while the broker drained: %s", opened.body)
	}

	var got result
	select {
	case got = <-answered:
	case <-time.After(20 * time.Second):
		t.Fatal("the call in flight was not answered")
	}
	if got.err != nil {
		t.Fatalf("the call in flight was cut: %v", got.err)
	}
	a := got.answer
	if a.status != http.StatusOK || a.rpcCode() != 0 || !strings.Contains(string(a.body), "counted 5") {
		t.Fatalf("the call in flight was answered %d: %s", a.status, a.body)
	}
	if err := b.wait(t); err != nil {
		t.Errorf("the broker exited with %v", err)
	}
	logs := b.logs()
	for _, step := range []string{
		`msg="shutting down: no new connections or sessions" in_flight=1`,
		"shutting down: every request in flight was answered",
		"shutting down: sessions ended",
		"shutdown complete",
	} {
		if !strings.Contains(logs, step) {
			t.Errorf("the log does not say %q", step)
		}
	}

	found := false
	for _, r := range trailRecords(t, b.trail(), false) {
		if r.Result != nil && r.Result.Digest == a.digest() {
			found = r.Tool == "ledger_slow_count" && r.Result.Bytes == len(a.body)
		}
	}
	if !found {
		t.Errorf("the trail has no record of the answer the client received: %s", a.body)
	}
	auditVerify(t, b, 0)
}

// try posts one message in c's session and returns the answer, or the
// error that cut it short. Unlike send it may run on any goroutine.
func (c *wireClient) try(client *http.Client, body string) (answer, error) {
	req, err := c.request(body)
	if err != nil {
		return answer{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	return answer{status: resp.StatusCode, body: raw}, nil
}

// kill ends the broker process at once, as a crash would.
func (b *auditedBroker) kill(t *testing.T) {
	t.Helper()
	if err := b.broker.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	_ = b.wait(t)
}

// stop asks the broker process to shut down and waits until it has.
func (b *auditedBroker) stop(t *testing.T) {
	t.Helper()
	if err := b.broker.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := b.wait(t); err != nil {
		t.Fatalf("the broker exited with %v", err)
	}
}

// wait waits for the broker process to exit, for up to 30 s, and returns
// how it exited.
func (b *auditedBroker) wait(t *testing.T) error {
	t.Helper()
	exited := make(chan error, 1)
	go func() { exited <- b.broker.Wait() }()
	select {
	case err := <-exited:
		return err
	case <-time.After(30 * time.Second):
		_ = b.broker.Process.Kill()
		<-exited
		t.Fatal("the broker process did not exit")
		return nil
	}
}

// restart starts the broker process again, once the last one has exited,
// on the same addresses and trail; edit, when set, changes the
// configuration first.
func (b *auditedBroker) restart(t *testing.T, edit func(config string) string) {
	t.Helper()
	if edit != nil {
		raw, err := os.ReadFile(b.config)
		if err != nil {
			t.Fatal(err)
		}
		config := string(raw)
		edited := edit(config)
		if edited == config {
			t.Fatal("the edit left the configuration as it was")
		}
		writeFile(t, b.config, edited)
	}
	addr := strings.TrimSuffix(strings.TrimPrefix(b.url, "http://"), "/mcp")
	b.broker = startProcess(t, addr, b.bin, "serve", "--config", b.config)
}

// logs is what the broker process has written so far.
func (b *auditedBroker) logs() string {
	return b.broker.Stdout.(*lockedWriter).String()
}

// auditVerify runs `mcpbroker audit verify` on the trail and wants its
// exit status.
func auditVerify(t *testing.T, b *auditedBroker, want int) {
	t.Helper()
	out, err := exec.Command(b.bin, "audit", "verify", b.trail()).CombinedOutput()
	status := 0
	if exit := (*exec.ExitError)(nil); errors.As(err, &exit) {
		status = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if status != want {
		t.Errorf("audit verify exited %d, want %d:\n%s", status, want, out)
	}
}

// verifyAfterCrash checks the trail a killed broker left: whole, or torn
// only in its last line (a batch the kill cut while it was being written,
// whose calls no client was answered), which it reports.
func verifyAfterCrash(t *testing.T, b *auditedBroker) (torn bool) {
	t.Helper()
	report, err := audit.Verify(b.trail(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := report.Problem; p != nil && p.Kind == audit.ProblemIncomplete {
		t.Logf("the kill tore the last line: %s", p)
		auditVerify(t, b, 1)
		return true
	}
	auditVerify(t, b, 0)
	return false
}

// trailRecords reads every record of the trail; torn allows the one
// incomplete last line.
func trailRecords(t *testing.T, dir string, torn bool) []*audit.Record {
	t.Helper()
	var records []*audit.Record
	err := audit.Query(dir, audit.Filter{}, func(r *audit.Record) bool {
		records = append(records, r)
		return true
	})
	if err != nil && !(torn && errors.Is(err, audit.ErrUnreadable)) {
		t.Fatal(err)
	}
	if len(records) == 0 {
		t.Fatal("the trail is empty")
	}
	return records
}

// stageRuns is how many times the pipeline stage has run, from the admin
// listener's metrics.
func stageRuns(t *testing.T, admin, stage string) uint64 {
	return uint64(metricSum(t, admin, "mcpbroker_stage_duration_seconds", map[string]string{"stage": stage}))
}
