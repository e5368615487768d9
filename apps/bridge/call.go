package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Bounds of one call.
const (
	// MaxResponseBytes bounds a response body read.
	MaxResponseBytes = 4 << 20
	// maxErrorExcerpt bounds the body a failed call's result shows.
	maxErrorExcerpt = 1 << 10
)

// ErrArguments: the arguments cannot make a request (the model can
// correct them); the result says why.
var ErrArguments = errors.New("bridge: arguments")

// Result is a call's MCP tool result.
type Result struct {
	Content           []map[string]any `json:"content"`
	StructuredContent any              `json:"structuredContent,omitempty"`
	IsError           bool             `json:"isError,omitempty"`
}

// NewClient is an HTTP client fit for bridged calls: it follows no
// redirect (a redirect could leave the base URL).
func NewClient(base http.RoundTripper) *http.Client {
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	return &http.Client{Transport: base, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// Request builds the HTTP request a call makes. Arguments fill the
// operation's parameters and body; none can change the request's scheme,
// host or the base URL's path: path values are escaped whole (a "/" is
// %2F) and "." and ".." are refused, header values with control
// characters are refused. header carries the call's own headers (its
// Authorization).
func (a *API) Request(ctx context.Context, t *Tool, arguments json.RawMessage, header http.Header) (*http.Request, error) {
	if t.api != nil {
		a = t.api
	}
	args := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(arguments)) > 0 && string(bytes.TrimSpace(arguments)) != "null" {
		if err := json.Unmarshal(arguments, &args); err != nil {
			return nil, fmt.Errorf("%w: want an object", ErrArguments)
		}
	}
	path := t.Path
	var queryParts []string // name=value, escaped
	reqHeader := http.Header{}
	var cookies []string
	for _, p := range t.params {
		raw, ok := args[p.arg]
		if !ok || string(raw) == "null" {
			if p.required {
				return nil, fmt.Errorf("%w: %q is required", ErrArguments, p.arg)
			}
			continue
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("%w: %q: %v", ErrArguments, p.arg, err)
		}
		switch p.in {
		case "path":
			s, err := simpleValue(v, p.explode)
			if err != nil {
				return nil, fmt.Errorf("%w: %q: %v", ErrArguments, p.arg, err)
			}
			if s == "" || s == "." || s == ".." {
				return nil, fmt.Errorf("%w: %q: a path segment may not be empty, \".\" or \"..\"", ErrArguments, p.arg)
			}
			path = strings.ReplaceAll(path, "{"+p.name+"}", url.PathEscape(s))
		case "query":
			parts, err := queryValue(p, v)
			if err != nil {
				return nil, fmt.Errorf("%w: %q: %v", ErrArguments, p.arg, err)
			}
			queryParts = append(queryParts, parts...)
		case "header":
			s, err := simpleValue(v, p.explode)
			if err != nil || !validHeaderValue(s) {
				return nil, fmt.Errorf("%w: %q: not a value a header can carry", ErrArguments, p.arg)
			}
			reqHeader.Set(p.name, s)
		case "cookie":
			s, err := simpleValue(v, false)
			if err != nil || !validHeaderValue(s) {
				return nil, fmt.Errorf("%w: %q: not a value a cookie can carry", ErrArguments, p.arg)
			}
			cookies = append(cookies, p.name+"="+url.QueryEscape(s))
		}
	}
	if strings.ContainsAny(path, "{}") {
		return nil, fmt.Errorf("%w: the path %s has parameters no argument filled", ErrArguments, t.Path)
	}
	escapedPath := a.base.EscapedPath() + path
	u, err := url.Parse(a.base.Scheme + "://" + a.base.Host + escapedPath)
	if err != nil || u.Scheme != a.base.Scheme || u.Host != a.base.Host || !strings.HasPrefix(u.EscapedPath(), a.base.EscapedPath()+"/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w: the arguments do not make a request under the base URL", ErrArguments)
	}
	u.RawQuery = strings.Join(queryParts, "&")
	var bodyReader io.Reader
	if t.body != nil {
		raw, ok := args["body"]
		switch {
		case ok && string(raw) != "null":
			bodyReader = bytes.NewReader(raw)
		case t.body.required:
			return nil, fmt.Errorf("%w: \"body\" is required", ErrArguments)
		}
	}
	req, err := http.NewRequestWithContext(ctx, t.Method, u.String(), bodyReader)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrArguments, err)
	}
	for k, vs := range reqHeader {
		req.Header[k] = vs
	}
	if len(cookies) > 0 {
		req.Header.Set("Cookie", strings.Join(cookies, "; "))
	}
	if bodyReader != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	// The call's own headers (its token, the caller's identity, the
	// trace context) are the broker's, and win over arguments.
	for k, vs := range header {
		req.Header[k] = vs
	}
	return req, nil
}

// simpleValue writes a primitive, or an array or object in the simple
// style (comma separated; an object's members as key,value or, exploded,
// key=value).
func simpleValue(v any, explode bool) (string, error) {
	switch x := v.(type) {
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			s, err := primitive(e)
			if err != nil {
				return "", err
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), nil
	case map[string]any:
		keys := sortedKeys(x)
		parts := make([]string, 0, 2*len(keys))
		for _, k := range keys {
			s, err := primitive(x[k])
			if err != nil {
				return "", err
			}
			if explode {
				parts = append(parts, k+"="+s)
			} else {
				parts = append(parts, k, s)
			}
		}
		return strings.Join(parts, ","), nil
	}
	return primitive(v)
}

// queryValue writes a query parameter as its style says, as escaped
// name=value pairs.
func queryValue(p param, v any) ([]string, error) {
	name := url.QueryEscape(p.name)
	switch x := v.(type) {
	case []any:
		values := make([]string, 0, len(x))
		for _, e := range x {
			s, err := primitive(e)
			if err != nil {
				return nil, err
			}
			values = append(values, url.QueryEscape(s))
		}
		if p.style == "form" && p.explode {
			parts := make([]string, len(values))
			for i, s := range values {
				parts[i] = name + "=" + s
			}
			return parts, nil
		}
		sep := ","
		switch p.style {
		case "spaceDelimited":
			sep = "%20"
		case "pipeDelimited":
			sep = "|"
		}
		return []string{name + "=" + strings.Join(values, sep)}, nil
	case map[string]any:
		keys := sortedKeys(x)
		var parts []string
		for _, k := range keys {
			s, err := primitive(x[k])
			if err != nil {
				return nil, err
			}
			switch {
			case p.style == "deepObject":
				parts = append(parts, name+"%5B"+url.QueryEscape(k)+"%5D="+url.QueryEscape(s))
			case p.explode:
				parts = append(parts, url.QueryEscape(k)+"="+url.QueryEscape(s))
			default:
				parts = append(parts, url.QueryEscape(k), url.QueryEscape(s))
			}
		}
		if p.style != "deepObject" && !p.explode {
			return []string{name + "=" + strings.Join(parts, ",")}, nil
		}
		return parts, nil
	}
	s, err := primitive(v)
	if err != nil {
		return nil, err
	}
	return []string{name + "=" + url.QueryEscape(s)}, nil
}

func primitive(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case nil:
		return "", nil
	}
	return "", errors.New("nested values are not supported in this parameter")
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// validHeaderValue refuses what would split or end a header.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s)
}

// Call makes a tool's request and turns the response into a tool result:
// a 2xx JSON body as structured content (under "result" when it is not
// an object) and as text; other bodies as text; a status other than 2xx
// as an error result naming it, with the start of the body. Arguments
// that cannot make a request give an error result too. The error is for
// a request that could not be made or answered at all.
func (a *API) Call(ctx context.Context, client *http.Client, t *Tool, arguments json.RawMessage, header http.Header) (*Result, error) {
	req, err := a.Request(ctx, t, arguments, header)
	if errors.Is(err, ErrArguments) {
		return errorResult("Invalid arguments for " + t.Name + ": " + strings.TrimPrefix(err.Error(), ErrArguments.Error()+": ")), nil
	}
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bridge: %s %s: %w", t.Method, t.Path, transportError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("bridge: %s %s: reading the response: %w", t.Method, t.Path, err)
	}
	if len(data) > MaxResponseBytes {
		return errorResult(fmt.Sprintf("%s %s answered with more than %d bytes", t.Method, t.Path, MaxResponseBytes)), nil
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		excerpt := data
		if len(excerpt) > maxErrorExcerpt {
			excerpt = excerpt[:maxErrorExcerpt]
		}
		text := fmt.Sprintf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			text += " (redirects are not followed)"
		}
		if s := strings.ToValidUTF8(string(excerpt), "\uFFFD"); strings.TrimSpace(s) != "" {
			text += ": " + s
		}
		return errorResult(text), nil
	}
	res := &Result{Content: []map[string]any{}}
	if len(bytes.TrimSpace(data)) == 0 {
		res.Content = append(res.Content, map[string]any{"type": "text", "text": fmt.Sprintf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))})
		return res, nil
	}
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mediaType == "application/json" || strings.HasSuffix(mediaType, "+json") {
		var v any
		if json.Unmarshal(data, &v) == nil {
			if _, isObject := v.(map[string]any); isObject && !t.wrapped {
				res.StructuredContent = v
			} else {
				res.StructuredContent = map[string]any{"result": v}
			}
		}
	}
	res.Content = append(res.Content, map[string]any{"type": "text", "text": strings.ToValidUTF8(string(data), "\uFFFD")})
	return res, nil
}

func errorResult(text string) *Result {
	return &Result{Content: []map[string]any{{"type": "text", "text": text}}, IsError: true}
}

// transportError drops the URL from a client error (it can carry
// arguments).
func transportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
