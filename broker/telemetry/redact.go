package telemetry

import (
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxErrorText bounds the error text of a check on /readyz.
const maxErrorText = 256

const redacted = "[redacted]"

var (
	urlPattern        = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>]+`)
	credentialPattern = regexp.MustCompile(`(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+`)
	jwtPattern        = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`)
	secretPattern     = regexp.MustCompile(`(?i)\b((?:[a-z_-]*(?:password|passwd|secret|token|api[_-]?key|credential)s?)["']?\s*[:=]\s*)("[^"]*"|'[^']*'|[^\s,;&"']+)`)
)

// errorText is the text of a check's error as /readyz shows it: on one
// line, without URL user information or query strings, credentials after
// "Bearer" or "Basic", things shaped like JWTs or values of fields named
// like secrets, and at most maxErrorText bytes long. The checks' errors
// come from clients of databases and upstreams, which are known to put
// such things in their messages.
func errorText(err error) string {
	s := err.Error()
	s = urlPattern.ReplaceAllStringFunc(s, redactURL)
	s = credentialPattern.ReplaceAllString(s, "$1 "+redacted)
	s = jwtPattern.ReplaceAllString(s, redacted)
	s = secretPattern.ReplaceAllString(s, "${1}"+redacted)
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, s)
	return truncate(s, maxErrorText)
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "[url]"
	}
	u.User = nil
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery, u.ForceQuery = "redacted", false
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// truncate shortens s to at most n bytes, on a rune boundary, marking the
// cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
