// Command mcpbroker is an identity-aware token-exchange broker for the
// Model Context Protocol.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	app := &cli.App{
		Name:    "mcpbroker",
		Usage:   "identity-aware token-exchange broker for the Model Context Protocol",
		Version: version,
		Commands: []*cli.Command{
			serveCommand(),
			checkCommand(),
			bridgeCommand(),
			policyCommand(),
			tokenCommand(),
			upstreamCommand(),
			auditCommand(),
			healthCommand(),
			toolsCommand(),
			versionCommand(),
		},
		HideVersion: true,
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "mcpbroker:", err)
		os.Exit(1)
	}
}
