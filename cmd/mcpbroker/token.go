package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/exchange"
	"github.com/mcpbroker/mcpbroker/provider/oauth"
	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/bcrypt"
)

const (
	// passwordCost is the bcrypt cost of login password hashes.
	passwordCost = 12
	// maxStdin bounds what is read from standard input: a token or a password.
	maxStdin = exchange.MaxTokenSize
)

func tokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "obtain, mint, inspect and exchange access tokens, hash login passwords",
		Subcommands: []*cli.Command{
			tokenLoginCommand(),
			tokenMintCommand(),
			tokenInspectCommand(),
			tokenExchangeCommand(),
			tokenHashPasswordCommand(),
		},
	}
}

func tokenInspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "decode a JWT and, given its issuer's keys, verify it",
		ArgsUsage: "TOKEN|-",
		Description: "Prints the header and claims (never the token) and exp, iat and nbf as times.\n" +
			"With --jwks or --issuer (whose metadata is found at /.well-known/oauth-authorization-server,\n" +
			"then /.well-known/openid-configuration) the token is verified by the rules the broker applies\n" +
			"to the access tokens it accepts: strict JWS parsing, an asymmetric alg that fits the key, typ\n" +
			"at+jwt, exp present and not past, nbf and iat not in the future (15s skew), a sub, no cnf, not\n" +
			"an ID token. With --issuer, iss must equal the discovered issuer (with --jwks alone iss is not\n" +
			"pinned); with --audience, aud must contain it. The exit status is non-zero when any check fails.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "jwks", Usage: "verify against the JWKS at `URL`"},
			&cli.StringFlag{Name: "issuer", Usage: "verify against the keys of the issuer at `URL`"},
			&cli.StringFlag{Name: "audience", Usage: "require `AUD` in aud"},
			allowPrivateNetworksFlag(),
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() != 1 {
				return cli.Exit("token inspect: want one argument, the token or - for standard input", 2)
			}
			if c.IsSet("jwks") && c.IsSet("issuer") {
				return cli.Exit("token inspect: --jwks and --issuer exclude each other", 2)
			}
			token, err := tokenArgument(c.App.Reader, c.Args().First())
			if err != nil {
				return cli.Exit("token inspect: "+err.Error(), 1)
			}
			return inspectToken(c.Context, c.App.Writer, token, inspectOptions{
				jwksURL:  c.String("jwks"),
				issuer:   c.String("issuer"),
				audience: c.String("audience"),
				fetcher:  newFetcher(c),
				now:      time.Now(),
			})
		},
	}
}

func allowPrivateNetworksFlag() *cli.BoolFlag {
	return &cli.BoolFlag{Name: "allow-private-networks", Usage: "let metadata, JWKS and token requests reach private (RFC 1918) addresses"}
}

func newFetcher(c *cli.Context) *oauth.Fetcher {
	return oauth.NewFetcher(oauth.FetcherOptions{AllowPrivateNetworks: c.Bool("allow-private-networks")})
}

// tokenArgument is the argument, or standard input for "-", without
// surrounding white space.
func tokenArgument(stdin io.Reader, argument string) (string, error) {
	if argument != "-" {
		return strings.TrimSpace(argument), nil
	}
	data, err := readBounded(stdin)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(data)), nil
}

func readBounded(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxStdin+1))
	if err != nil {
		return nil, fmt.Errorf("read standard input: %w", err)
	}
	if len(data) > maxStdin {
		return nil, fmt.Errorf("standard input is longer than %d bytes", maxStdin)
	}
	return data, nil
}

type inspectOptions struct {
	jwksURL  string
	issuer   string
	audience string
	fetcher  *oauth.Fetcher
	now      time.Time
}

// decodedJWT is a JWS compact token taken apart for display.
type decodedJWT struct {
	header json.RawMessage
	claims json.RawMessage
	fields struct {
		Algorithm string `json:"alg"`
		KeyID     string `json:"kid"`
		Type      string `json:"typ"`
	}
}

func decodeJWT(token string) (*decodedJWT, error) {
	parts := strings.Split(token, ".")
	switch {
	case len(parts) == 5:
		return nil, errors.New("the token is encrypted (JWE) and cannot be inspected")
	case len(parts) != 3:
		return nil, errors.New("the token is not a JWT (want three dot-separated parts)")
	}
	decoded := &decodedJWT{}
	for i, into := range []*json.RawMessage{&decoded.header, &decoded.claims} {
		data, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return nil, fmt.Errorf("the token's %s is not base64url", [...]string{"header", "claims"}[i])
		}
		if !json.Valid(data) || !bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) {
			return nil, fmt.Errorf("the token's %s is not a JSON object", [...]string{"header", "claims"}[i])
		}
		*into = data
	}
	if err := json.Unmarshal(decoded.header, &decoded.fields); err != nil {
		return nil, fmt.Errorf("the token's header: %w", err)
	}
	return decoded, nil
}

// printJWT prints the header, the claims and the time claims.
func printJWT(w io.Writer, decoded *decodedJWT, now time.Time) (claims map[string]any, _ error) {
	for _, part := range []struct {
		label string
		data  []byte
	}{{"header", decoded.header}, {"claims", decoded.claims}} {
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, part.data, "", "  "); err != nil {
			return nil, fmt.Errorf("the token's %s: %w", part.label, err)
		}
		fmt.Fprintf(w, "%s:\n%s\n", part.label, pretty.Bytes())
	}
	if err := json.Unmarshal(decoded.claims, &claims); err != nil {
		return nil, fmt.Errorf("the token's claims: %w", err)
	}
	for _, name := range []string{"exp", "iat", "nbf"} {
		if at, ok := claimTime(claims, name); ok {
			fmt.Fprintf(w, "%-4s %s (%s)\n", name+":", at.UTC().Format(time.RFC3339), relative(at, now))
		}
	}
	return claims, nil
}

// claimTime reads a time claim for display; one that is absent or not a
// NumericDate is not shown.
func claimTime(claims map[string]any, name string) (time.Time, bool) {
	at, err := oauth.NumericDate(claims, name)
	return at, err == nil && !at.IsZero()
}

func relative(at, now time.Time) string {
	d := at.Sub(now).Round(time.Second)
	if d >= 0 {
		return "in " + d.String()
	}
	return (-d).String() + " ago"
}

// inspectToken prints what the token says and, when keys are given,
// whether it holds.
func inspectToken(ctx context.Context, w io.Writer, token string, opts inspectOptions) error {
	decoded, err := decodeJWT(token)
	if err != nil {
		return cli.Exit("token inspect: "+err.Error(), 1)
	}
	claims, err := printJWT(w, decoded, opts.now)
	if err != nil {
		return cli.Exit("token inspect: "+err.Error(), 1)
	}

	var problems []string
	expiry, hasExpiry := claimTime(claims, "exp")
	switch {
	case !hasExpiry:
		fmt.Fprintln(w, "expired: unknown, the token has no exp")
	case !opts.now.Before(expiry):
		fmt.Fprintln(w, "expired: yes")
	default:
		fmt.Fprintln(w, "expired: no")
	}
	if typ := decoded.fields.Type; !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
		fmt.Fprintf(w, "note: typ is %q, not at+jwt (RFC 9068)\n", typ)
	}
	if opts.audience != "" && opts.jwksURL == "" && opts.issuer == "" {
		audiences, _, _ := oauth.StringOrStrings(claims["aud"])
		if !slices.Contains(audiences, opts.audience) {
			problems = append(problems, fmt.Sprintf("aud does not contain %q", opts.audience))
		}
	}

	if opts.jwksURL != "" || opts.issuer != "" {
		problems = append(problems, verifyInspected(ctx, w, token, decoded, claims, opts)...)
	} else {
		fmt.Fprintln(w, "signature: not verified (give --jwks or --issuer)")
	}
	if len(problems) > 0 {
		return cli.Exit("token inspect: verification failed: "+strings.Join(problems, "; "), 1)
	}
	switch {
	case opts.jwksURL != "" || opts.issuer != "":
		fmt.Fprintln(w, "verified: yes")
	case opts.audience != "":
		// Only the audience was checked: the token may still be forged.
		fmt.Fprintf(w, "audience: contains %q (the signature is not verified)\n", opts.audience)
	}
	return nil
}

// verifyInspected verifies the token with the issuer's keys under the
// broker's own rules for access tokens (oauth.VerifyJWT) and returns what
// failed.
func verifyInspected(ctx context.Context, w io.Writer, token string, decoded *decodedJWT, claims map[string]any, opts inspectOptions) []string {
	jwksURL := opts.jwksURL
	issuer, _ := claims["iss"].(string)
	if opts.issuer != "" {
		metadata, err := exchange.DiscoverIssuer(ctx, opts.fetcher, opts.issuer)
		if err != nil {
			return []string{err.Error()}
		}
		if metadata.JWKSURI == "" {
			return []string{"the issuer's metadata has no jwks_uri"}
		}
		jwksURL, issuer = metadata.JWKSURI, metadata.Issuer
	} else {
		fmt.Fprintln(w, "issuer: not pinned (give --issuer to require it)")
	}
	if issuer == "" {
		return []string{"iss is missing"}
	}
	body, err := opts.fetcher.Get(ctx, jwksURL)
	if err != nil {
		return []string{err.Error()}
	}
	keys, err := oauth.ParseJWKS(body)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", jwksURL, err)}
	}
	rules := oauth.JWTRules{Issuer: issuer, AnyAudience: opts.audience == ""}
	if opts.audience != "" {
		rules.Audiences = []string{opts.audience}
	}
	if _, err := oauth.VerifyJWT(token, keys, rules, opts.now); err != nil {
		if oauth.ReasonOf(err) == oauth.ReasonSignature {
			fmt.Fprintln(w, "signature: INVALID")
		}
		return []string{err.Error()}
	}
	fmt.Fprintf(w, "signature: valid (%s, kid %q, %s)\n", decoded.fields.Algorithm, decoded.fields.KeyID, jwksURL)
	return nil
}

func tokenExchangeCommand() *cli.Command {
	return &cli.Command{
		Name:  "exchange",
		Usage: "exchange a token at an identity provider's token endpoint (RFC 8693)",
		Description: "The provider is a connector of the configuration (--config and --idp; for --idp embedded,\n" +
			"the authProvider's token endpoint with --client-id and --client-secret), or a\n" +
			"--token-endpoint with --client-id and --client-secret. Prints the response with the issued\n" +
			"token decoded; the token itself only with --raw. Tokens given as - are read from standard input.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "configuration `FILE` holding the connector"},
			&cli.StringFlag{Name: "idp", Usage: "connector `NAME`, or embedded"},
			&cli.StringFlag{Name: "token-endpoint", Usage: "token endpoint `URL`, instead of --idp"},
			&cli.StringFlag{Name: "client-id", Usage: "client `ID` for --token-endpoint or --idp embedded"},
			&cli.StringFlag{Name: "client-secret", Usage: "client `SECRET`", EnvVars: []string{"MCPBROKER_CLIENT_SECRET"}},
			&cli.StringFlag{Name: "subject-token", Usage: "subject `TOKEN` (- for standard input)", EnvVars: []string{"MCPBROKER_SUBJECT_TOKEN"}, Required: true},
			&cli.StringFlag{Name: "subject-token-type", Value: exchange.TokenTypeAccessToken, Usage: "subject token type `URN`"},
			&cli.StringFlag{Name: "actor-token", Usage: "actor `TOKEN` for delegation (- for standard input)", EnvVars: []string{"MCPBROKER_ACTOR_TOKEN"}},
			&cli.StringFlag{Name: "actor-token-type", Usage: "actor token type `URN` (default access_token)"},
			&cli.StringFlag{Name: "requested-token-type", Usage: "requested token type `URN`"},
			&cli.StringFlag{Name: "audience", Usage: "the target `AUD`"},
			&cli.StringFlag{Name: "resource", Usage: "the target resource `URI` (RFC 8707)"},
			&cli.StringSliceFlag{Name: "scope", Usage: "a `SCOPE` to request; repeat for several"},
			&cli.DurationFlag{Name: "timeout", Value: exchange.DefaultClientTimeout, Usage: "give up after `DURATION`"},
			&cli.BoolFlag{Name: "raw", Usage: "also print the issued token"},
			allowPrivateNetworksFlag(),
		},
		Action: func(c *cli.Context) error {
			options, err := exchangeClientOptions(c)
			if err != nil {
				return err
			}
			client, err := exchange.NewClient(options)
			if err != nil {
				return cli.Exit("token exchange: "+err.Error(), 1)
			}
			subject, actor := c.String("subject-token"), c.String("actor-token")
			if subject == "-" && actor == "-" {
				return cli.Exit("token exchange: only one token can come from standard input", 2)
			}
			if subject, err = tokenArgument(c.App.Reader, subject); err != nil {
				return cli.Exit("token exchange: "+err.Error(), 1)
			}
			if actor, err = tokenArgument(c.App.Reader, actor); err != nil {
				return cli.Exit("token exchange: "+err.Error(), 1)
			}
			issued, err := client.Exchange(c.Context, exchange.ClientRequest{
				SubjectToken:       subject,
				SubjectTokenType:   c.String("subject-token-type"),
				ActorToken:         actor,
				ActorTokenType:     c.String("actor-token-type"),
				RequestedTokenType: c.String("requested-token-type"),
				Audience:           c.String("audience"),
				Resource:           c.String("resource"),
				Scopes:             c.StringSlice("scope"),
			})
			if err != nil {
				return cli.Exit("token exchange: "+exchange.Describe(err), 1)
			}
			return printIssued(c.App.Writer, issued, c.Bool("raw"), time.Now())
		},
	}
}

// exchangeClientOptions finds the token endpoint and credentials from the
// flags.
func exchangeClientOptions(c *cli.Context) (exchange.ClientOptions, error) {
	fetcher := newFetcher(c)
	options := exchange.ClientOptions{
		TokenEndpoint: c.String("token-endpoint"),
		ClientID:      c.String("client-id"),
		ClientSecret:  c.String("client-secret"),
		Fetcher:       fetcher,
		Timeout:       c.Duration("timeout"),
	}
	idp := c.String("idp")
	switch {
	case idp == "" && options.TokenEndpoint == "":
		return options, cli.Exit("token exchange: give --idp with --config, or --token-endpoint", 2)
	case idp != "" && options.TokenEndpoint != "":
		return options, cli.Exit("token exchange: --idp and --token-endpoint exclude each other", 2)
	case idp == "":
		return options, nil
	case !c.IsSet("config"):
		return options, cli.Exit("token exchange: --idp needs --config", 2)
	}
	cfg, err := loadConfig(c.String("config"))
	if err != nil {
		return options, err
	}
	ctx, cancel := context.WithTimeout(c.Context, options.Timeout)
	defer cancel()
	var metadata *exchange.ServerMetadata
	if idp == config.EmbeddedIdentityProvider {
		if cfg.AuthProvider == nil || !cfg.AuthProvider.Enabled {
			return options, cli.Exit("token exchange: --idp embedded: the configuration has no enabled authProvider", 1)
		}
		if options.ClientID == "" {
			return options, cli.Exit("token exchange: --idp embedded needs --client-id and --client-secret of a client under authProvider.clients", 2)
		}
		metadata, err = exchange.DiscoverIssuer(ctx, fetcher, cfg.AuthProvider.Issuer)
	} else {
		connector := cfg.Connector(idp)
		if connector == nil {
			names := []string{config.EmbeddedIdentityProvider}
			for _, connector := range cfg.Connectors {
				names = append(names, connector.Name)
			}
			return options, cli.Exit(fmt.Sprintf("token exchange: no connector %q in %s (have: %s)", idp, c.String("config"), strings.Join(names, ", ")), 1)
		}
		if c.IsSet("client-id") || c.IsSet("client-secret") {
			return options, cli.Exit("token exchange: a connector brings its own client; drop --client-id and --client-secret", 2)
		}
		options.ClientID, options.ClientSecret = connector.OAuthClientID, connector.OAuthClientSecret.Value()
		metadata, err = exchange.Discover(ctx, fetcher, connector.OIDCWellKnownURL)
	}
	if err != nil {
		return options, cli.Exit("token exchange: "+err.Error(), 1)
	}
	if metadata.TokenEndpoint == "" {
		return options, cli.Exit(fmt.Sprintf("token exchange: %s's metadata names no token_endpoint", metadata.Issuer), 1)
	}
	if !metadata.SupportsTokenExchange() {
		fmt.Fprintf(c.App.ErrWriter, "warning: %s does not list %s in grant_types_supported\n", metadata.Issuer, exchange.GrantTypeTokenExchange)
	}
	options.TokenEndpoint = metadata.TokenEndpoint
	return options, nil
}

// printIssued prints a token response with the token decoded.
func printIssued(w io.Writer, issued *exchange.IssuedToken, raw bool, now time.Time) error {
	fmt.Fprintf(w, "issued_token_type: %s\ntoken_type: %s\n", issued.IssuedTokenType, issued.TokenType)
	if issued.ExpiresIn > 0 {
		fmt.Fprintf(w, "expires_in: %s\n", issued.ExpiresIn)
	}
	fmt.Fprintf(w, "scope: %s\n", strings.Join(issued.Scope, " "))
	if decoded, err := decodeJWT(issued.AccessToken); err == nil {
		if _, err := printJWT(w, decoded, now); err != nil {
			return cli.Exit("token exchange: "+err.Error(), 1)
		}
	} else {
		fmt.Fprintf(w, "access_token: not a JWT (%d bytes)\n", len(issued.AccessToken))
	}
	if raw {
		fmt.Fprintf(w, "access_token: %s\n", issued.AccessToken)
	}
	return nil
}

func tokenHashPasswordCommand() *cli.Command {
	return &cli.Command{
		Name:  "hash-password",
		Usage: "read a password from standard input and print its bcrypt hash for authProvider.login.users[].passwordHash",
		Description: "The password is the first line of standard input (a final line break is dropped), 1 to 72\n" +
			"bytes. The input is not hidden when typed at a terminal; pipe it in to keep it off the screen.",
		Action: func(c *cli.Context) error {
			if file, ok := c.App.Reader.(*os.File); ok {
				if info, err := file.Stat(); err == nil && info.Mode()&os.ModeCharDevice != 0 {
					fmt.Fprint(c.App.ErrWriter, "password (shown as typed): ")
				}
			}
			hash, err := hashPassword(c.App.Reader)
			if err != nil {
				return cli.Exit("token hash-password: "+err.Error(), 1)
			}
			fmt.Fprintln(c.App.Writer, hash)
			return nil
		},
	}
}

func hashPassword(r io.Reader) (string, error) {
	data, err := readBounded(r)
	if err != nil {
		return "", err
	}
	password, _, _ := bytes.Cut(data, []byte("\n"))
	password = bytes.TrimSuffix(password, []byte("\r"))
	switch {
	case len(password) == 0:
		return "", errors.New("the password is empty")
	case len(password) > 72:
		// bcrypt ignores what lies beyond 72 bytes; refuse rather than
		// store a hash that a prefix also matches.
		return "", errors.New("the password is longer than 72 bytes, the most bcrypt uses")
	}
	hash, err := bcrypt.GenerateFromPassword(password, passwordCost)
	if err != nil {
		return "", fmt.Errorf("hash: %w", err)
	}
	return string(hash), nil
}
