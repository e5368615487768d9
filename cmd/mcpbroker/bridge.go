package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/mcpbroker/mcpbroker/broker"
)

func bridgeCommand() *cli.Command {
	return &cli.Command{
		Name:  "bridge",
		Usage: "work with mcpBridge apps (REST APIs served as tools)",
		Subcommands: []*cli.Command{
			{
				Name:  "preview",
				Usage: "print, as JSON, the tools an mcpBridge app would serve: names as clients see them, operations, hints and schemas",
				Flags: []cli.Flag{configFlag(), &cli.StringFlag{Name: "app", Usage: "the mcpBridge app's `NAME`", Required: true}},
				Action: func(c *cli.Context) error {
					cfg, err := loadConfig(c.String("config"))
					if err != nil {
						return err
					}
					api, prefix, err := broker.BridgeAPI(cfg, filepath.Dir(c.String("config")), c.String("app"))
					if err != nil {
						return cli.Exit(fmt.Sprintf("%s: %v", c.String("config"), err), 1)
					}
					type tool struct {
						Name         string          `json:"name"`
						Operation    string          `json:"operation"`
						OperationID  string          `json:"operationId,omitempty"`
						Description  string          `json:"description,omitempty"`
						Annotations  map[string]any  `json:"annotations,omitempty"`
						InputSchema  json.RawMessage `json:"inputSchema"`
						OutputSchema json.RawMessage `json:"outputSchema,omitempty"`
					}
					out := struct {
						App   string `json:"app"`
						Tools []tool `json:"tools"`
					}{App: c.String("app"), Tools: []tool{}}
					for _, t := range api.Tools() {
						out.Tools = append(out.Tools, tool{Name: prefix + t.Name, Operation: t.Method + " " + t.Path, OperationID: t.OperationID,
							Description: t.Description, Annotations: t.Annotations, InputSchema: t.InputSchema, OutputSchema: t.OutputSchema})
					}
					enc := json.NewEncoder(c.App.Writer)
					enc.SetIndent("", "  ")
					enc.SetEscapeHTML(false)
					return enc.Encode(out)
				},
			},
		},
	}
}
