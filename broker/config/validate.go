package config

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// Bounds that Validate enforces.
const (
	minBodyBytes       = 1 << 10
	maxBodyBytes       = 64 << 20
	sessionKeyBytes    = 32
	maxClockSkew       = Duration(5 * time.Minute)
	minRefreshInterval = Duration(time.Minute)
	maxToolTTL         = Duration(time.Hour)
	// defaultExchangeTool names the tokenExchange.tools entry for tools
	// without one of their own.
	defaultExchangeTool = "*"
)

var (
	appNamePattern       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)
	toolNamespacePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,32}$`)
)

// Validate reports every problem with c as Problems, each with its path; nil
// means c is usable. It expects defaults to have been applied (Parse and Load
// do) and is pure: it reads no files, environment or network, so it can run
// on every reload and in `mcpbroker check`.
func (c *Config) Validate() error {
	v := &validator{config: c}
	if c.Version != nil && *c.Version != CurrentVersion {
		v.add("version", fmt.Sprintf("unsupported version %d, must be %d", *c.Version, CurrentVersion))
	}
	v.http(&c.HTTP)
	v.storage(&c.Storage)
	v.secretProviders(c.SecretProviders)
	v.connectors(c.Connectors)
	v.authProvider(c.AuthProvider)
	v.mcpProvider(&c.MCPProvider, len(c.Apps) > 0)
	v.apps(c.Apps)
	v.admin(&c.Admin, c.HTTP.Address)
	v.audit(&c.Audit)
	v.telemetry(&c.Telemetry)
	v.rateLimits(&c.RateLimits, c.Apps)
	v.sessionHistory(c.SessionHistory)
	v.approvals(&c.Approvals)
	v.console(&c.Console)
	return v.err()
}

// validator collects the problems of one configuration. Each section is
// checked in a file of its own: validate_http.go (http, storage),
// validate_connectors.go, validate_authprovider.go, validate_mcpprovider.go,
// validate_apps.go and validate_resources.go; the value checks they share
// follow here.
type validator struct {
	problemList
	config *Config
}

// hostPortProblem checks a listen or dial address such as "127.0.0.1:8080",
// ":8080" or "[::1]:6379".
func hostPortProblem(address string) string {
	if address == "" {
		return "required, want host:port"
	}
	_, port, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Sprintf("want host:port, got %s", quote(address))
	}
	if number, err := strconv.Atoi(port); err != nil || number < 0 || number > 65535 {
		return fmt.Sprintf("want a port number from 0 to 65535, got %s", quote(port))
	}
	return ""
}

// originProblem checks a value as a browser would send it in Origin.
func originProblem(origin string) string {
	parsed, err := url.Parse(origin)
	if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" ||
		parsed.Path != "" || parsed.RawQuery != "" || parsed.ForceQuery || parsed.Fragment != "" || parsed.User != nil {
		return fmt.Sprintf(`want an origin such as "https://app.example" (scheme and host, no path or trailing slash), got %s`, quote(origin))
	}
	return ""
}

// endpointProblem checks the URL of something the broker fetches or trusts:
// https, or http for a loopback host, where nothing on the network can read
// or alter the traffic.
func endpointProblem(raw string) string {
	if raw == "" {
		return "required"
	}
	parsed, err := url.Parse(raw)
	if err != nil || parsed.Scheme == "" || parsed.Host == "" {
		return fmt.Sprintf("want an absolute URL, got %s", quote(raw))
	}
	if parsed.User != nil {
		return "must not contain credentials"
	}
	switch parsed.Scheme {
	case "https":
		return ""
	case "http":
		if oauth.IsLoopbackHost(parsed.Hostname()) {
			return ""
		}
		return fmt.Sprintf("want https; http is allowed only for loopback hosts (localhost, 127.0.0.1, [::1]), got %s", quote(raw))
	}
	return fmt.Sprintf("want an https URL, got scheme %s", quote(parsed.Scheme))
}

// audienceProblem accepts any non-empty string, but a value that looks like a
// URL must be an absolute one: "https//broker/mcp" would otherwise never
// match and every token would be refused with no hint why.
func audienceProblem(audience string) string {
	if strings.TrimSpace(audience) == "" {
		return "must not be empty"
	}
	if strings.Contains(audience, "://") {
		if parsed, err := url.Parse(audience); err != nil || parsed.Scheme == "" || parsed.Host == "" {
			return fmt.Sprintf("want an absolute URL, got %s", quote(audience))
		}
	}
	return ""
}

// routePathProblem checks a path the listener serves.
func routePathProblem(path string) string {
	switch {
	case !strings.HasPrefix(path, "/"):
		return fmt.Sprintf(`want a path starting with "/", got %s`, quote(path))
	case strings.ContainsAny(path, "?#"):
		return fmt.Sprintf(`want a path without "?" or "#", got %s`, quote(path))
	}
	return ""
}

// isHeaderToken reports whether name is an HTTP field name (RFC 9110 token).
func isHeaderToken(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("!#$%&'*+-.^_`|~", r):
		default:
			return false
		}
	}
	return true
}

// decodeBase64 accepts standard and URL-safe base64, padded or not, since
// `openssl rand -base64 32` and many secret stores produce different ones.
func decodeBase64(text string) ([]byte, bool) {
	for _, encoding := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if decoded, err := encoding.DecodeString(text); err == nil {
			return decoded, true
		}
	}
	return nil, false
}
