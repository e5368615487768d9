package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// runCommand runs one command of mcpbroker with stdin and returns what it
// printed and its exit code, keeping the test process alive.
func runCommand(t *testing.T, command *cli.Command, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	app := &cli.App{
		Name:           "mcpbroker",
		Commands:       []*cli.Command{command},
		Reader:         strings.NewReader(stdin),
		Writer:         &out,
		ErrWriter:      &errOut,
		ExitErrHandler: func(*cli.Context, error) {},
	}
	if err := app.Run(append([]string{"mcpbroker", command.Name}, args...)); err != nil {
		code = 1
		var exit cli.ExitCoder
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		}
		errOut.WriteString(err.Error())
	}
	return out.String(), errOut.String(), code
}
