package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mcpbroker/mcpbroker/broker"
)

// toolsCommand reviews tool pinning through a running broker's admin
// listener (its /pins endpoints, which need admin.token): what is pinned,
// what changed, and the operator's approvals and revocations.
func toolsCommand() *cli.Command {
	target := []cli.Flag{
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "the broker's configuration: admin.address and admin.token are read from it"},
		&cli.StringFlag{Name: "admin", Usage: "the admin listener's base URL, instead of --config", EnvVars: []string{"MCPBROKER_ADMIN_URL"}},
		&cli.StringFlag{Name: "token", Usage: "the admin token, instead of --config", EnvVars: []string{"MCPBROKER_ADMIN_TOKEN"}},
	}
	kind := &cli.StringFlag{Name: "kind", Value: "tool", Usage: "tool, prompt or resourceTemplate"}
	return &cli.Command{
		Name:  "tools",
		Usage: "review pinned tool, prompt and resource-template definitions (toolPinning)",
		Subcommands: []*cli.Command{
			{
				Name: "list", Usage: "list the pins, with the definitions waiting for approval",
				Flags:  append([]cli.Flag{&cli.StringFlag{Name: "app", Usage: "only this app's"}}, target...),
				Action: listPinsAction,
			},
			{
				Name: "diff", Usage: "show a pinned definition beside the one waiting for approval", ArgsUsage: "[options] APP NAME",
				Flags:  append([]cli.Flag{kind}, target...),
				Action: diffPinAction,
			},
			{
				Name: "approve", Usage: "approve the definition waiting (or the one with --sha256)", ArgsUsage: "[options] APP NAME",
				Flags: append([]cli.Flag{kind,
					&cli.StringFlag{Name: "sha256", Usage: "approve only if the waiting definition has this hash (as list shows it)"},
					&cli.StringFlag{Name: "by", Usage: "who approves, for the audit trail"},
				}, target...),
				Action: approvePinAction,
			},
			{
				Name: "revoke", Usage: "drop a pin: the definition is new again at its next sight", ArgsUsage: "[options] APP NAME",
				Flags:  append([]cli.Flag{kind}, target...),
				Action: revokePinAction,
			},
		},
	}
}

// adminClient talks to the /pins endpoints.
type adminClient struct {
	base, token string
	http        *http.Client
}

func newAdminClient(c *cli.Context) (*adminClient, error) {
	a := &adminClient{base: c.String("admin"), token: c.String("token"), http: &http.Client{Timeout: 10 * time.Second}}
	if path := c.String("config"); path != "" {
		cfg, err := loadConfig(path)
		if err != nil {
			return nil, err
		}
		if cfg.Admin.Disabled {
			return nil, cli.Exit("tools: the broker's admin listener is disabled (admin.disabled)", 2)
		}
		if a.base == "" {
			a.base = "http://" + cfg.Admin.Address
		}
		if a.token == "" {
			a.token = cfg.Admin.Token.Value()
		}
	}
	if a.base == "" {
		return nil, cli.Exit("tools: give --config or --admin", 2)
	}
	if a.token == "" {
		return nil, cli.Exit("tools: no admin token: set admin.token in the configuration, or give --token", 2)
	}
	a.base = strings.TrimSuffix(a.base, "/")
	return a, nil
}

// do sends one request and decodes the answer into out; an error answer
// becomes an error with the broker's message.
func (a *adminClient) do(method, path string, body, out any) error {
	var reader io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, a.base+path, reader)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("tools: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("tools: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return cli.Exit("tools: "+e.Error, 1)
		}
		return cli.Exit(fmt.Sprintf("tools: the admin listener answered %d", resp.StatusCode), 1)
	}
	return json.Unmarshal(data, out)
}

func pinPath(c *cli.Context, suffix string) (string, error) {
	if c.NArg() != 2 {
		return "", cli.Exit("tools "+c.Command.Name+": want APP NAME", 2)
	}
	return "/pins/" + url.PathEscape(c.Args().Get(0)) + "/" + url.PathEscape(c.String("kind")) + "/" + url.PathEscape(c.Args().Get(1)) + suffix, nil
}

func listPinsAction(c *cli.Context) error {
	a, err := newAdminClient(c)
	if err != nil {
		return err
	}
	path := "/pins"
	if app := c.String("app"); app != "" {
		path += "?app=" + url.QueryEscape(app)
	}
	var answer struct {
		Pins []broker.PinView `json:"pins"`
	}
	if err := a.do(http.MethodGet, path, nil, &answer); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tKIND\tNAME\tSTATUS\tSHA256\tWAITING")
	for _, p := range answer.Pins {
		waiting := "-"
		if p.Pending != nil {
			waiting = p.Pending.SHA256
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.App, p.Kind, p.Name, p.Status, p.SHA256, waiting)
	}
	return tw.Flush()
}

func diffPinAction(c *cli.Context) error {
	a, err := newAdminClient(c)
	if err != nil {
		return err
	}
	path, err := pinPath(c, "")
	if err != nil {
		return err
	}
	var p broker.PinView
	if err := a.do(http.MethodGet, path, nil, &p); err != nil {
		return err
	}
	w := c.App.Writer
	fmt.Fprintf(w, "%s %s of app %s: %s, pinned sha256 %s\n", p.Kind, p.Name, p.App, p.Status, p.SHA256)
	if p.Pending == nil {
		fmt.Fprintln(w, "no other definition is waiting")
		var pretty bytes.Buffer
		if json.Indent(&pretty, p.Definition, "", "  ") == nil {
			fmt.Fprintln(w, pretty.String())
		}
		return nil
	}
	fmt.Fprintf(w, "waiting: sha256 %s, seen %s\n\n%s", p.Pending.SHA256, p.Pending.SeenAt.Format(time.RFC3339), p.Diff)
	return nil
}

func approvePinAction(c *cli.Context) error {
	a, err := newAdminClient(c)
	if err != nil {
		return err
	}
	path, err := pinPath(c, "/approve")
	if err != nil {
		return err
	}
	var p broker.PinView
	if err := a.do(http.MethodPost, path, map[string]string{"sha256": c.String("sha256"), "by": c.String("by")}, &p); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "approved %s %s of app %s: sha256 %s\n", p.Kind, p.Name, p.App, p.SHA256)
	return nil
}

func revokePinAction(c *cli.Context) error {
	a, err := newAdminClient(c)
	if err != nil {
		return err
	}
	path, err := pinPath(c, "/revoke")
	if err != nil {
		return err
	}
	var answer map[string]string
	if err := a.do(http.MethodPost, path, nil, &answer); err != nil {
		return err
	}
	if answer["revoked"] == "" {
		return errors.New("tools: the broker did not confirm the revocation")
	}
	fmt.Fprintf(c.App.Writer, "revoked %s\n", answer["revoked"])
	return nil
}
