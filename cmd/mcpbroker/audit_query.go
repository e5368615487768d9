package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/mcpbroker/mcpbroker/broker/audit"
	"github.com/urfave/cli/v2"
)

func auditQueryCommand() *cli.Command {
	return &cli.Command{
		Name:  "query",
		Usage: "print the audit records that match",
		Description: "Reads the trail in --dir in order and prints each record that matches every filter given:\n" +
			"one readable line each, or JSON lines with --json. --since and --until take a duration back\n" +
			"from now (90m, 24h) or an RFC 3339 time; both are inclusive. --tool matches the name the\n" +
			"client used or the upstream's. --decision is allowed, denied (a policy said no) or refused (no\n" +
			"decision was reached and the client got an error). Lines that are not records are skipped and\n" +
			"make the exit status 1; audit verify says where they are.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Usage: "the trail `DIRECTORY`", Required: true},
			&cli.StringFlag{Name: "since", Usage: "records at or after `TIME` (RFC 3339, or a duration ago such as 1h)"},
			&cli.StringFlag{Name: "until", Usage: "records at or before `TIME` (RFC 3339, or a duration ago)"},
			&cli.StringFlag{Name: "subject", Usage: "records of the `SUBJECT`"},
			&cli.StringFlag{Name: "tool", Usage: "records of the `TOOL`"},
			&cli.StringFlag{Name: "app", Usage: "records of the `APP`"},
			&cli.StringFlag{Name: "decision", Usage: "allowed, denied or refused"},
			&cli.StringFlag{Name: "kind", Usage: "call, list, session, auth, checkpoint or trail"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON lines"},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() != 0 {
				return cli.Exit("audit query: unexpected arguments; the trail is given with --dir", 2)
			}
			now := time.Now()
			filter := audit.Filter{
				Subject:  c.String("subject"),
				Tool:     c.String("tool"),
				App:      c.String("app"),
				Decision: c.String("decision"),
				Kind:     c.String("kind"),
			}
			var err error
			if filter.Since, err = parseSince(c.String("since"), now); err != nil {
				return cli.Exit("audit query: --since: "+err.Error(), 2)
			}
			if filter.Until, err = parseSince(c.String("until"), now); err != nil {
				return cli.Exit("audit query: --until: "+err.Error(), 2)
			}
			out := c.App.Writer
			asJSON := c.Bool("json")
			var writeErr error
			err = audit.Query(c.String("dir"), filter, func(r *audit.Record) bool {
				if asJSON {
					line, err := json.Marshal(r)
					if err == nil {
						_, err = fmt.Fprintf(out, "%s\n", line)
					}
					writeErr = err
				} else {
					_, writeErr = io.WriteString(out, readableRecord(r))
				}
				return writeErr == nil
			})
			switch {
			case errors.Is(err, audit.ErrFilter):
				return cli.Exit("audit query: "+err.Error(), 2)
			case err != nil:
				return cli.Exit("audit query: "+err.Error(), 1)
			case writeErr != nil:
				return cli.Exit("audit query: "+writeErr.Error(), 1)
			}
			return nil
		},
	}
}

// parseSince reads an RFC 3339 time or a duration back from now; "" is
// the zero time.
func parseSince(value string, now time.Time) (time.Time, error) {
	if value == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, value); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(value)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration such as 1h", value)
	}
	return now.Add(-d), nil
}

// readableRecord is one line for a person: time, seq, kind, event and the
// fields that are set. Values come from the trail, which holds what
// clients sent, so control characters are escaped.
func readableRecord(r *audit.Record) string {
	var b strings.Builder
	b.WriteString(r.Time.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, " seq=%d %s %s", r.Seq, terminalSafe(r.Kind), terminalSafe(r.Event))
	field := func(name, value string) {
		if value != "" {
			b.WriteString(" " + name + "=" + terminalSafe(value))
		}
	}
	field("subject", r.Subject)
	field("client", r.Client)
	if len(r.Actors) > 0 {
		field("actors", strings.Join(r.Actors, ","))
	}
	field("app", r.App)
	field("tool", r.Tool)
	if r.UpstreamTool != r.Tool {
		field("upstreamTool", r.UpstreamTool)
	}
	field("method", r.Method)
	if d := r.Decision; d != nil {
		if d.Allowed {
			b.WriteString(" allowed")
		} else {
			b.WriteString(" denied")
		}
		field("reason", d.Reason)
		field("policy", d.Policy)
	}
	if res := r.Result; res != nil {
		if res.HTTPStatus != 0 {
			field("http", strconv.Itoa(res.HTTPStatus))
		}
		if res.RPCCode != 0 {
			field("rpc", strconv.FormatInt(res.RPCCode, 10))
		}
		if res.IsError {
			b.WriteString(" isError")
		}
	}
	if len(r.Hidden) > 0 {
		field("hidden", strings.Join(r.Hidden, ","))
	}
	field("detail", r.Detail)
	field("session", r.Session)
	field("source", r.Source)
	b.WriteByte('\n')
	return b.String()
}

// terminalSafe quotes s when it holds spaces, quotes or characters a terminal
// would act on.
func terminalSafe(s string) string {
	for _, r := range s {
		if r == ' ' || r == '"' || r == '\\' || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}
