package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mcpbroker/mcpbroker/apps"
	"github.com/mcpbroker/mcpbroker/apps/bridge"
	"github.com/mcpbroker/mcpbroker/broker/config"
	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

// toolPrefix is what an app's tool and prompt names start with: its
// namespace, the app's name and "_" unless configured otherwise, nothing
// when namespacing is off.
func toolPrefix(a config.App) string {
	ns := a.ToolNamespace
	switch {
	case ns == nil:
		return a.Name + "_"
	case ns.Disabled:
		return ""
	}
	return ns.Name
}

// catalogOptions describes the configured apps to the apps package, which
// knows nothing of the configuration file; it reads the files they name.
func catalogOptions(list []config.App, files pemFiles) ([]apps.Options, error) {
	out := make([]apps.Options, 0, len(list))
	for i, a := range list {
		o := apps.Options{Name: a.Name, Timeout: time.Duration(a.Upstream.Timeout), Prefix: toolPrefix(a)}
		if a.Type == config.AppMCPBridge && a.Bridge != nil {
			api, err := bridgeAPI(fmt.Sprintf("apps[%d].bridge", i), a.Bridge, files.baseDir)
			if err != nil {
				return nil, err
			}
			o.Bridge, o.URL, o.Timeout = api, a.Bridge.BaseURL, time.Duration(a.Bridge.Timeout)
		}
		if a.Upstream.Transport == "stdio" && a.Upstream.Stdio != nil {
			stdio, err := stdioOptions(fmt.Sprintf("apps[%d].upstream.stdio", i), a.Upstream.Stdio, files.baseDir)
			if err != nil {
				return nil, err
			}
			o.Stdio = stdio
		}
		var c *config.Connection
		switch s, sse := a.Upstream.Stream, a.Upstream.SSE; {
		case a.Upstream.Transport == "sse" && sse != nil:
			o.URL, o.Legacy, c = sse.URL, true, &sse.Connection
		case a.Upstream.Transport != "stdio" && a.Upstream.Transport != "sse" && s != nil:
			o.URL, o.Protocol, c = s.URL, s.ProtocolVersion, &s.Connection
		}
		if c != nil {
			o.DialTimeout, o.KeepAlive = time.Duration(c.DialTimeout), time.Duration(c.KeepAlive.Interval)
			o.MaxIdleConns, o.MaxIdleConnsPerHost = c.Pool.MaxIdleConns, c.Pool.MaxIdleConnsPerHost
		}
		if ns := a.ResourceNamespace; ns != nil {
			o.URIPrefixes = ns.URIPrefixes
		}
		if lc := a.ListCache; lc != nil {
			o.ListCache = apps.ListCacheOptions{Disabled: lc.Disabled, Shared: lc.Scope == config.ListCacheShared, TTL: time.Duration(lc.TTL)}
		}
		var err error
		if o.TLS, err = files.upstreamTLS(fmt.Sprintf("apps[%d].upstream.tls", i), a.Upstream.TLS); err != nil {
			return nil, err
		}
		if p := a.Upstream.Proxy; p != nil {
			o.Proxy = http.ProxyFromEnvironment
			if p.URL != "" {
				proxy, err := url.Parse(p.URL)
				if err != nil {
					return nil, fmt.Errorf("broker: apps[%d].upstream.proxy.url: %w", i, err)
				}
				o.Proxy = http.ProxyURL(proxy)
			}
		}
		out = append(out, o)
	}
	return out, nil
}

// inheritedEnv are the variables of the broker's environment a stdio
// upstream gets besides its own: enough to find programs and write
// temporary files, nothing that could hold a secret.
var inheritedEnv = []string{"PATH", "HOME", "LANG", "TMPDIR"}

// stdioOptions resolves a stdio upstream's program, directory and
// environment. The program must exist and be executable now, so that
// check reports a wrong path rather than the first call.
func stdioOptions(key string, c *config.StdioUpstream, baseDir string) (*apps.StdioOptions, error) {
	command := c.Command
	if strings.Contains(command, "/") && !filepath.IsAbs(command) {
		command = filepath.Join(baseDir, command)
	}
	resolved, err := exec.LookPath(command)
	if err != nil {
		return nil, fmt.Errorf("broker: %s.command: %s cannot be run: %w", key, c.Command, err)
	}
	dir := c.WorkingDir
	if dir != "" {
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(baseDir, dir)
		}
		if info, err := os.Stat(dir); err != nil || !info.IsDir() {
			return nil, fmt.Errorf("broker: %s.workingDir: %s is not a directory", key, c.WorkingDir)
		}
	}
	env := make([]string, 0, len(inheritedEnv)+len(c.Env))
	for _, name := range inheritedEnv {
		if value, ok := os.LookupEnv(name); ok && !slices.ContainsFunc(c.Env, func(e config.EnvVar) bool { return e.Name == name }) {
			env = append(env, name+"="+value)
		}
	}
	for _, e := range c.Env {
		env = append(env, e.Name+"="+e.Value.Value())
	}
	return &apps.StdioOptions{
		Command: resolved, Args: c.Args, Env: env, WorkingDir: dir,
		Isolation: apps.Isolation(c.Isolation), IdleTimeout: time.Duration(c.IdleTimeout),
		MaxProcesses: c.MaxProcesses, TokenEnv: c.TokenEnv,
	}, nil
}

// BridgeAPI reads the OpenAPI document of the mcpBridge app name and
// makes its tools, as serving it would; baseDir is the configuration
// file's folder. It returns the prefix its tools' names get too.
func BridgeAPI(cfg *config.Config, baseDir, name string) (*bridge.API, string, error) {
	for i, a := range cfg.Apps {
		if a.Name != name {
			continue
		}
		if a.Type != config.AppMCPBridge || a.Bridge == nil {
			return nil, "", fmt.Errorf("broker: app %q is not an mcpBridge app", name)
		}
		api, err := bridgeAPI(fmt.Sprintf("apps[%d].bridge", i), a.Bridge, baseDir)
		return api, toolPrefix(a), err
	}
	return nil, "", fmt.Errorf("broker: no app is named %q", name)
}

// maxOpenAPIBytes bounds an OpenAPI document fetched from a URL.
const maxOpenAPIBytes = 8 << 20

// bridgeAPI reads an mcpBridge app's OpenAPI document and makes its tools.
func bridgeAPI(path string, b *config.Bridge, baseDir string) (*bridge.API, error) {
	declared, err := declaredTools(path, b)
	if err != nil {
		return nil, err
	}
	var doc []byte
	location := b.OpenAPI.File
	switch {
	case b.OpenAPI.URL != "":
		location = b.OpenAPI.URL
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		fetcher := oauth.NewFetcher(oauth.FetcherOptions{MaxBodySize: maxOpenAPIBytes, AllowPrivateNetworks: b.OpenAPI.AllowPrivateNetworks})
		if doc, err = fetcher.Get(ctx, b.OpenAPI.URL); err != nil {
			return nil, fmt.Errorf("broker: %s.openapi.url: %w", path, err)
		}
	case b.OpenAPI.File != "":
		file := b.OpenAPI.File
		if !filepath.IsAbs(file) {
			file = filepath.Join(baseDir, file)
		}
		if doc, err = os.ReadFile(file); err != nil {
			return nil, fmt.Errorf("broker: %s.openapi.file: %w", path, err)
		}
	default:
		return declared, nil
	}
	overrides := make(map[string]bridge.Override, len(b.Tools))
	for _, t := range b.Tools {
		if t.OperationID == "" {
			continue // declared
		}
		o := bridge.Override{Name: t.Name, Description: t.Description}
		if t.Annotations != nil {
			o.Annotations = annotations(t.Annotations)
		}
		overrides[t.OperationID] = o
	}
	api, err := bridge.Load(context.Background(), bridge.Options{BaseURL: b.BaseURL, Document: doc, Location: location,
		Include: b.Operations.Include, Exclude: b.Operations.Exclude, Overrides: overrides})
	if err != nil {
		return nil, fmt.Errorf("broker: %s: %w", path, err)
	}
	if declared != nil {
		if err := api.Join(declared); err != nil {
			return nil, fmt.Errorf("broker: %s.tools: %w", path, err)
		}
	}
	return api, nil
}

// declaredTools makes the tools declared by hand (method and path, no
// operationId) into an API: they are written as an OpenAPI 3.1 document
// and read as one, so they are made, checked and called as the
// document's are. Nil when none is declared.
func declaredTools(path string, b *config.Bridge) (*bridge.API, error) {
	paths := map[string]map[string]any{}
	n := 0
	for _, t := range b.Tools {
		if t.OperationID != "" {
			continue
		}
		n++
		op := map[string]any{"operationId": t.Name, "responses": map[string]any{"default": map[string]any{"description": "the API's answer"}}}
		if t.Description != "" {
			op["description"] = t.Description
		}
		params := make([]map[string]any, 0, len(t.Parameters))
		for _, p := range t.Parameters {
			param := map[string]any{"name": p.Name, "in": p.In, "required": p.Required || p.In == "path", "schema": json.RawMessage(orEmptySchema(p.Schema))}
			if p.Description != "" {
				param["description"] = p.Description
			}
			if p.Style != "" {
				param["style"] = p.Style
			}
			if p.Explode != nil {
				param["explode"] = *p.Explode
			}
			params = append(params, param)
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		if t.Body != nil {
			op["requestBody"] = map[string]any{"required": t.Body.Required,
				"content": map[string]any{"application/json": map[string]any{"schema": json.RawMessage(orEmptySchema(t.Body.Schema))}}}
		}
		if paths[t.Path] == nil {
			paths[t.Path] = map[string]any{}
		}
		method := strings.ToLower(t.Method)
		if _, dup := paths[t.Path][method]; dup {
			return nil, fmt.Errorf("broker: %s.tools: two tools are declared for %s %s", path, t.Method, t.Path)
		}
		paths[t.Path][method] = op
	}
	if n == 0 {
		return nil, nil
	}
	doc, err := json.Marshal(map[string]any{"openapi": "3.1.0", "info": map[string]any{"title": "declared tools", "version": "1"}, "paths": paths})
	if err != nil {
		return nil, fmt.Errorf("broker: %s.tools: %w", path, err)
	}
	overrides := map[string]bridge.Override{}
	for _, t := range b.Tools {
		if t.OperationID == "" && t.Annotations != nil {
			overrides[t.Name] = bridge.Override{Annotations: annotations(t.Annotations)}
		}
	}
	api, err := bridge.Load(context.Background(), bridge.Options{BaseURL: b.BaseURL, Document: doc, Location: path + ".tools", Overrides: overrides})
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	return api, nil
}

func orEmptySchema(s config.JSONValue) []byte {
	if len(s) == 0 {
		return []byte("{}")
	}
	return s
}

// annotations are an operator's tool annotations as MCP writes them.
func annotations(a *config.BridgeAnnotations) map[string]any {
	out := map[string]any{}
	if a.Title != "" {
		out["title"] = a.Title
	}
	for name, hint := range map[string]*bool{"readOnlyHint": a.ReadOnlyHint, "destructiveHint": a.DestructiveHint, "idempotentHint": a.IdempotentHint, "openWorldHint": a.OpenWorldHint} {
		if hint != nil {
			out[name] = *hint
		}
	}
	return out
}
