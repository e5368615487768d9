package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/go-jose/go-jose/v4"
	"github.com/mcpbroker/mcpbroker/broker/audit"
	"github.com/urfave/cli/v2"
)

// maxJWKSFile bounds a JWKS read from a file, as the fetcher bounds one
// fetched.
const maxJWKSFile = 1 << 20

func auditVerifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "check an audit trail's hash chain and signed checkpoints",
		ArgsUsage: "PATH...",
		Description: "PATH is a trail directory or trail files. Every record is read in order: each line must be a\n" +
			"record, seq must run on by one, each prev must be the SHA-256 of the line before, each\n" +
			"checkpoint's signature must verify with its key and, with --jwks, that key (kid and RFC 7638\n" +
			"thumbprint) must be one of the trusted keys, typically the broker's published JWKS. The first\n" +
			"bad record is named with file:line and seq. Records after the last checkpoint are a warning:\n" +
			"a cut tail after a checkpoint is detectable only by comparing with a later checkpoint, so keep\n" +
			"the anchor printed here and pass it with --anchor next time.\n" +
			"Exit status: 0 the trail is whole, 1 it is not, 2 it could not be read.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "jwks", Usage: "trust only checkpoint keys in the JWKS at `FILE|URL`"},
			&cli.StringFlag{Name: "anchor", Usage: "require the record `SEQ:SHA256` an earlier verify printed"},
			allowPrivateNetworksFlag(),
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() == 0 {
				return cli.Exit("audit verify: want one or more trail directories or files", 2)
			}
			var options audit.VerifyOptions
			if source := c.String("jwks"); source != "" {
				keys, err := loadJWKS(c, source)
				if err != nil {
					return cli.Exit("audit verify: --jwks: "+err.Error(), 2)
				}
				options.Trusted = keys
			}
			if a := c.String("anchor"); a != "" {
				anchor, err := audit.ParseAnchor(a)
				if err != nil {
					return cli.Exit("audit verify: --anchor: "+err.Error(), 2)
				}
				options.Anchor = &anchor
			}
			report, err := audit.VerifyPaths(c.Args().Slice(), options)
			if err != nil {
				return cli.Exit("audit verify: "+err.Error(), 2)
			}
			fmt.Fprint(c.App.Writer, report.String())
			if !report.OK() {
				return cli.Exit("audit verify: the trail is not whole", 1)
			}
			return nil
		},
	}
}

// loadJWKS reads a JWKS from a file or fetches it from an http(s) URL.
func loadJWKS(c *cli.Context, source string) (*jose.JSONWebKeySet, error) {
	var data []byte
	if strings.HasPrefix(source, "https://") || strings.HasPrefix(source, "http://") {
		body, err := newFetcher(c).Get(c.Context, source)
		if err != nil {
			return nil, err
		}
		data = body
	} else {
		file, err := os.Open(source)
		if err != nil {
			return nil, err
		}
		defer file.Close()
		data, err = io.ReadAll(io.LimitReader(file, maxJWKSFile+1))
		if err != nil {
			return nil, err
		}
		if len(data) > maxJWKSFile {
			return nil, fmt.Errorf("%s is larger than %d bytes", source, maxJWKSFile)
		}
	}
	var keys jose.JSONWebKeySet
	if err := json.Unmarshal(data, &keys); err != nil {
		return nil, fmt.Errorf("%s is not a JWKS: %w", source, err)
	}
	if len(keys.Keys) == 0 {
		return nil, errors.New(source + " holds no keys")
	}
	for _, key := range keys.Keys {
		if !key.IsPublic() {
			return nil, fmt.Errorf("%s holds a private or symmetric key (kid %q); give the public JWKS", source, key.KeyID)
		}
	}
	return &keys, nil
}
