package main

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/urfave/cli/v2"
)

// healthCommand asks a running broker's admin listener whether it is ready,
// for container health checks and scripts: images without a shell or curl
// run the broker's own binary.
func healthCommand() *cli.Command {
	return &cli.Command{
		Name:  "health",
		Usage: "ask a running broker's admin listener whether it is ready (exit 0) or not (exit 1)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "url", Value: "http://127.0.0.1:9464/readyz", Usage: "the admin listener's /readyz or /healthz", EnvVars: []string{"MCPBROKER_HEALTH_URL"}},
			&cli.DurationFlag{Name: "timeout", Value: 3 * time.Second, Usage: "give up after this long"},
		},
		Action: func(c *cli.Context) error {
			client := &http.Client{Timeout: c.Duration("timeout"), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := client.Get(c.String("url"))
			if err != nil {
				return cli.Exit(fmt.Sprintf("health: %v", err), 1)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			fmt.Fprintf(c.App.Writer, "%d %s", resp.StatusCode, body)
			if resp.StatusCode != http.StatusOK {
				return cli.Exit("", 1)
			}
			return nil
		},
	}
}
