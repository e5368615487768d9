package main

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/mcpbroker/mcpbroker/broker"
	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/urfave/cli/v2"
)

// configFlag is the configuration file of serve and check.
func configFlag() *cli.StringFlag {
	return &cli.StringFlag{
		Name:     "config",
		Aliases:  []string{"c"},
		Usage:    "configuration `FILE`",
		EnvVars:  []string{"MCPBROKER_CONFIG"},
		Required: true,
	}
}

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "load and validate a configuration, reporting every problem",
		Flags: []cli.Flag{configFlag()},
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c.String("config"))
			if err != nil {
				return err
			}
			// Building the broker compiles every policy; nothing is served.
			b, err := broker.New(cfg, broker.Options{Dry: true, BaseDir: filepath.Dir(c.String("config")), Logger: slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: slog.LevelWarn}))})
			if err != nil {
				return cli.Exit(fmt.Sprintf("%s: %v", c.String("config"), err), 1)
			}
			b.Close()
			fmt.Fprintf(c.App.Writer, "%s: ok (%d apps)\n", c.String("config"), len(cfg.Apps))
			for _, line := range broker.StateBackends(cfg, filepath.Dir(c.String("config"))) {
				fmt.Fprintf(c.App.Writer, "  %s\n", line)
			}
			for _, note := range cfg.Unused() {
				fmt.Fprintf(c.App.Writer, "  note: %s\n", note)
			}
			return nil
		},
	}
}

// loadConfig loads and validates a configuration; problems are printed one
// per line.
func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		var problems config.Problems
		if errors.As(err, &problems) {
			return nil, cli.Exit(fmt.Sprintf("%s: %d problem(s)\n%s", path, len(problems), err), 1)
		}
		return nil, cli.Exit(err.Error(), 1)
	}
	return cfg, nil
}
