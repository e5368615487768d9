package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/mcpbroker/mcpbroker/broker"
	"github.com/urfave/cli/v2"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the broker",
		Flags: []cli.Flag{
			configFlag(),
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: []string{"MCPBROKER_LOG_LEVEL"}},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json", EnvVars: []string{"MCPBROKER_LOG_FORMAT"}},
		},
		Action: func(c *cli.Context) error {
			log, err := newLogger(c.String("log-level"), c.String("log-format"))
			if err != nil {
				return err
			}
			cfg, err := loadConfig(c.String("config"))
			if err != nil {
				return err
			}
			b, err := broker.New(cfg, broker.Options{Logger: log, Version: version, BaseDir: filepath.Dir(c.String("config")), ConfigPath: c.String("config")})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// SIGHUP reads the configuration again; a broken file is
			// reported and the running configuration keeps serving.
			hangups := make(chan os.Signal, 1)
			signal.Notify(hangups, syscall.SIGHUP)
			defer signal.Stop(hangups)
			go func() {
				for {
					select {
					case <-ctx.Done():
						return
					case <-hangups:
						log.Info("SIGHUP: reloading the configuration", "file", c.String("config"))
						_ = b.ReloadFile(ctx) // the broker logs and records the outcome
					}
				}
			}()
			return b.Serve(ctx)
		},
	}
}

func newLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, cli.Exit("--log-level: want debug, info, warn or error", 2)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, cli.Exit("--log-format: want text or json", 2)
}
