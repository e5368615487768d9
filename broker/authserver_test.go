package broker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// demoPasswordHash is bcrypt("demo-password"), the quickstart's demo user.
const demoPasswordHash = "$2a$12$sLCNs770uStfYzHR7HzBne890w4dmhjx3bW/hbHhhm6yTg3exJduS"

// authProviderBroker is a broker that is its own authorization server:
// issuer = its URL, local user demo, dynamic registration and client ID
// metadata documents on. extraClients is YAML for more
// authProvider.clients entries (indented by 4).
func authProviderBroker(t *testing.T, extraClients string) string {
	t.Helper()
	addr := freeAddress(t)
	issuer := "http://" + addr
	return startBrokerAt(t, addr, scenario(t, "auth-provider-broker"), filepath.Join(t.TempDir(), "broker.db"), issuer, demoPasswordHash, extraClients)
}

// formField finds hidden inputs and the form's action on a page.
var (
	formTag    = regexp.MustCompile(`(?is)<form\b[^>]*>`)
	inputTag   = regexp.MustCompile(`(?is)<input\b[^>]*>`)
	attributes = regexp.MustCompile(`(?is)\s([a-z_-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')`)
)

func tagAttributes(tag string) map[string]string {
	found := map[string]string{}
	for _, m := range attributes.FindAllStringSubmatch(tag, -1) {
		found[strings.ToLower(m[1])] = html.UnescapeString(m[2] + m[3])
	}
	return found
}

// browserLogin plays the user at the authorization endpoint: it opens
// authorizeURL, signs in, answers the consent page with consent ("allow"
// or "deny"), and returns the redirect back to the client, without
// following it.
func browserLogin(t *testing.T, authorizeURL, username, password, consent string) *url.URL {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	start, err := url.Parse(authorizeURL)
	if err != nil {
		t.Fatal(err)
	}
	page := start
	resp, err := client.Get(authorizeURL)
	for step := 0; step < 6; step++ {
		if err != nil {
			t.Fatalf("authorization step %d: %v", step, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			next, err := page.Parse(resp.Header.Get("Location"))
			if err != nil {
				t.Fatal(err)
			}
			if next.Host != start.Host || next.Scheme != start.Scheme {
				return next
			}
			page = next
			resp, err = client.Get(next.String())
			continue
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("authorization page %s: %d: %s", page, resp.StatusCode, body)
		}
		form := formTag.FindString(string(body))
		if form == "" {
			t.Fatalf("no form on %s: %s", page, body)
		}
		formAttributes := tagAttributes(form)
		action, err := page.Parse(formAttributes["action"])
		if err != nil {
			t.Fatal(err)
		}
		values := url.Values{}
		for _, input := range inputTag.FindAllString(string(body), -1) {
			a := tagAttributes(input)
			if strings.EqualFold(a["type"], "hidden") && a["name"] != "" {
				values.Add(a["name"], a["value"])
			}
		}
		switch {
		case strings.Contains(string(body), `name="password"`):
			values.Set("username", username)
			values.Set("password", password)
		case strings.Contains(string(body), `name="consent"`):
			values.Set("consent", consent)
		default:
			t.Fatalf("unexpected page at %s: %s", page, body)
		}
		page = action
		resp, err = client.PostForm(action.String(), values)
	}
	t.Fatalf("authorization did not return to the client")
	return nil
}

// The official conformance suite's authorization-server scenarios against
// the embedded authorization server; the suite's browser step (sign in and
// consent) is played by browserLogin.
func TestAuthorizationServerConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("conformance suite is not short")
	}
	nodeBin, modules := nodeTools(t)
	callbackAddress := freeAddress(t)
	_, port, _ := strings.Cut(callbackAddress, ":")
	brokerURL := authProviderBroker(t, fmt.Sprintf(`
    - clientID: conformance
      name: Conformance suite
      redirectURIs: [http://127.0.0.1:%s/callback]
      scopes: [mcp]
`, port))

	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(nodeBin, "node"),
		filepath.Join(modules, "@modelcontextprotocol", "conformance", "dist", "index.js"),
		"authorization", "--url", brokerURL, "--client-id", "conformance", "--port", port, "-o", out)
	cmd.Env = append(os.Environ(), "PATH="+nodeBin+string(os.PathListSeparator)+os.Getenv("PATH"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	logWriter := &lockedWriter{w: &logs}
	cmd.Stderr = logWriter
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The suite prints the authorization URL and waits for the browser to
	// come back to its callback.
	scanner := bufio.NewScanner(stdout)
	drove := false
	for scanner.Scan() {
		line := scanner.Text()
		logWriter.Write([]byte(line + "\n"))
		if !drove && strings.HasPrefix(line, brokerURL+"/authorize?") {
			drove = true
			back := browserLogin(t, line, "demo", "demo-password", "allow")
			resp, err := http.Get(back.String())
			if err != nil {
				t.Fatalf("callback: %v", err)
			}
			resp.Body.Close()
		}
	}
	_ = cmd.Wait() // a failed check makes the suite exit non-zero; the checks decide
	if ctx.Err() != nil {
		t.Fatalf("conformance suite timed out:\n%s", logs.String())
	}
	if !drove {
		t.Fatalf("the suite never asked for the authorization step:\n%s", logs.String())
	}

	files, _ := filepath.Glob(filepath.Join(out, "*", "checks.json"))
	passed := 0
	for _, path := range files {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var checks []struct {
			ID           string `json:"id"`
			Status       string `json:"status"`
			ErrorMessage string `json:"errorMessage"`
		}
		if err := json.Unmarshal(raw, &checks); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		// A warning is a SHOULD the server misses: it fails too.
		for _, c := range checks {
			if c.Status == "SUCCESS" {
				passed++
				continue
			}
			t.Errorf("%s: %s: %s", c.ID, c.Status, c.ErrorMessage)
		}
	}
	// authorization-server-metadata and authorization-code-grant.
	if passed < 2 {
		t.Errorf("%d checks passed, want the metadata and authorization code checks:\n%s", passed, logs.String())
	}
	t.Logf("authorization server conformance: %d checks passed", passed)
}

// The authorization server's endpoints answer only the Host names the MCP
// endpoint does, so a DNS-rebound page cannot reach them on loopback.
func TestAuthorizationServerChecksHost(t *testing.T) {
	brokerURL := authProviderBroker(t, "")
	for _, path := range []string{"/.well-known/oauth-authorization-server", "/jwks.json", "/authorize", "/token"} {
		for _, host := range []string{"", "rebound.example"} {
			method := http.MethodGet
			if path == "/token" {
				method = http.MethodPost
			}
			request, _ := http.NewRequest(method, brokerURL+path, nil)
			if host != "" {
				request.Host = host
			}
			response, err := http.DefaultClient.Do(request)
			if err != nil {
				t.Fatal(err)
			}
			response.Body.Close()
			if refused := response.StatusCode == http.StatusForbidden; refused != (host != "") {
				t.Errorf("%s %s with Host %q: %d", method, path, host, response.StatusCode)
			}
		}
	}
}

// Clients in browsers: the Auth Provider's API endpoints are readable by
// any origin (no credentials), its sign-in page is not; the MCP endpoint
// answers an allowed origin's preflight (before authentication, where it
// is on) and lets it read the session id and challenges, and refuses
// other origins.
func TestBrowserClientsCORS(t *testing.T) {
	brokerURL := authProviderBroker(t, "")
	do := func(method, path, origin string, header map[string]string) *http.Response {
		t.Helper()
		request, _ := http.NewRequest(method, brokerURL+path, nil)
		request.Header.Set("Origin", origin)
		for name, value := range header {
			request.Header.Set(name, value)
		}
		response, err := http.DefaultClient.Do(request)
		if err != nil {
			t.Fatal(err)
		}
		response.Body.Close()
		return response
	}
	preflight := map[string]string{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"}
	const app = "http://localhost:6274"

	for _, path := range []string{"/token", "/register", "/revoke"} {
		response := do(http.MethodOptions, path, "https://any.example", preflight)
		if response.StatusCode != http.StatusNoContent || response.Header.Get("Access-Control-Allow-Origin") != "*" ||
			!strings.Contains(response.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
			t.Errorf("preflight %s: %d %v", path, response.StatusCode, response.Header)
		}
		if response.Header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("%s allows credentials", path)
		}
	}
	if got := do(http.MethodGet, "/.well-known/oauth-authorization-server", app, nil).Header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("metadata Access-Control-Allow-Origin %q", got)
	}
	if got := do(http.MethodGet, "/authorize", app, nil).Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("the sign-in page is readable cross-origin: %q", got)
	}

	mcpPreflight := map[string]string{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type, mcp-protocol-version"}
	response := do(http.MethodOptions, "/mcp", app, mcpPreflight)
	if response.StatusCode != http.StatusNoContent || response.Header.Get("Access-Control-Allow-Origin") != app ||
		!strings.Contains(response.Header.Get("Access-Control-Allow-Headers"), "Mcp-Session-Id") {
		t.Errorf("MCP preflight from %s: %d %v", app, response.StatusCode, response.Header)
	}
	response = do(http.MethodPost, "/mcp", app, nil) // refused (no body), readable all the same
	if response.Header.Get("Access-Control-Allow-Origin") != app ||
		!strings.Contains(response.Header.Get("Access-Control-Expose-Headers"), "Mcp-Session-Id") {
		t.Errorf("MCP answer to %s: %d %v", app, response.StatusCode, response.Header)
	}
	if response := do(http.MethodOptions, "/mcp", "https://evil.example", mcpPreflight); response.StatusCode != http.StatusForbidden ||
		response.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("MCP preflight from another site: %d %v", response.StatusCode, response.Header)
	}
}
