package main

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// health exits 0 only on a 200 from the admin listener.
func TestHealth(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"status":"x"}`))
	}))
	defer srv.Close()
	run := func(url string) (string, int) {
		var out bytes.Buffer
		app := &cli.App{Name: "mcpbroker", Commands: []*cli.Command{healthCommand()}, Writer: &out, ErrWriter: &out, ExitErrHandler: func(*cli.Context, error) {}}
		err := app.Run([]string{"mcpbroker", "health", "--url", url})
		var exit cli.ExitCoder
		if errors.As(err, &exit) {
			return out.String(), exit.ExitCode()
		}
		if err != nil {
			return out.String(), 1
		}
		return out.String(), 0
	}
	if out, code := run(srv.URL + "/readyz"); code != 0 || !strings.HasPrefix(out, "200 ") {
		t.Errorf("ready: exit %d, %q", code, out)
	}
	status = http.StatusServiceUnavailable
	if out, code := run(srv.URL + "/readyz"); code != 1 || !strings.HasPrefix(out, "503 ") {
		t.Errorf("not ready: exit %d, %q", code, out)
	}
	srv.Close()
	if _, code := run(srv.URL + "/readyz"); code != 1 {
		t.Errorf("nothing listening: exit %d", code)
	}
}
