package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/config")

// fixtures is testdata/config, relative to this package.
const fixtures = "../../testdata/config"

// Values the fixtures read from the environment. They must never appear in
// a golden file, which TestLoad checks.
var fixtureEnvironment = map[string]string{
	"MCPBROKER_TEST_IDP_SECRET":      "idp-secret-from-environment",
	"MCPBROKER_TEST_UNSET":           "", // unset below: secrets.yaml relies on it
	"NOT_A_SECRET_FIELD":             "must-not-be-substituted",
	"MCPBROKER_TEST_SECRET_TEMPLATE": "from-environment",
	"MCPBROKER_TEST_REDIS_PASSWORD":  "redis-password-from-environment",
	"MCPBROKER_TEST_ADMIN_TOKEN":     "admin-token-from-environment-0123456789",
}

// Values the valid fixtures read from files under valid/secrets.
var fixtureFileSecrets = []string{"partner-client-secret-value", "q0Cm3Pj1K7bYv4x9ZsTn2WfLhR8uE6dAoGiJcVyXkM4=", "batch-agent-secret-from-a-file"}

func setFixtureEnvironment(t testing.TB) {
	t.Helper()
	for name, value := range fixtureEnvironment {
		t.Setenv(name, value)
	}
	// t.Setenv restores the variable afterwards; unsetting it now makes
	// "{{ env.MCPBROKER_TEST_UNSET }}" fail whatever the caller's
	// environment holds.
	os.Unsetenv("MCPBROKER_TEST_UNSET")
}

func fixturePaths(t testing.TB, kind string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(fixtures, kind, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

// TestLoad loads every fixture. A valid one must load, and its decoded and
// defaulted Config must match the .golden JSON beside it; an invalid one must
// fail, and the problems must match the .golden text beside it, so that a
// problem that stops being reported fails the test.
func TestLoad(t *testing.T) {
	setFixtureEnvironment(t)
	type fixture struct {
		path  string
		valid bool
	}
	var tests []fixture
	for _, path := range fixturePaths(t, "valid") {
		tests = append(tests, fixture{path: path, valid: true})
	}
	valid := len(tests)
	for _, path := range fixturePaths(t, "invalid") {
		tests = append(tests, fixture{path: path})
	}
	if valid < 3 || len(tests)-valid < 12 {
		t.Fatalf("found %d valid and %d invalid fixtures under %s; want at least 3 and 12", valid, len(tests)-valid, fixtures)
	}
	for _, test := range tests {
		name, _ := filepath.Rel(fixtures, test.path)
		t.Run(name, func(t *testing.T) {
			config, err := Load(test.path)
			var got []byte
			if test.valid {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				got, err = json.MarshalIndent(config, "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				for _, secret := range append(slices.Collect(maps.Values(fixtureEnvironment)), fixtureFileSecrets...) {
					if secret != "" && bytes.Contains(got, []byte(secret)) {
						t.Errorf("the encoded config contains the secret %q", secret)
					}
				}
			} else {
				if err == nil {
					t.Fatal("Load succeeded, want problems")
				}
				if config != nil {
					t.Error("Load returned a config with its problems, want nil")
				}
				var problems Problems
				if !errors.As(err, &problems) {
					t.Fatalf("Load error is %T, want Problems: %v", err, err)
				}
				for i, problem := range problems {
					if problem.File != test.path {
						t.Errorf("problem %q names file %q, want %q", problem, problem.File, test.path)
					}
					if problem.Path != "" && problem.Line == 0 {
						t.Errorf("problem %q has no line", problem)
					}
					// Golden files name the fixture alone, wherever the
					// test runs from.
					problems[i].File = filepath.Base(problem.File)
				}
				got = []byte(problems.Error())
			}
			compareGolden(t, strings.TrimSuffix(test.path, ".yaml")+".golden", append(got, '\n'))
		})
	}
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./broker/config -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("differs from %s (run go test ./broker/config -update if the change is intended)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestGoldenFilesHaveFixtures catches golden files left behind when a
// fixture is renamed or removed.
func TestGoldenFilesHaveFixtures(t *testing.T) {
	goldens, err := filepath.Glob(filepath.Join(fixtures, "*", "*.golden"))
	if err != nil {
		t.Fatal(err)
	}
	for _, golden := range goldens {
		if _, err := os.Stat(strings.TrimSuffix(golden, ".golden") + ".yaml"); err != nil {
			t.Errorf("%s has no fixture: %v", golden, err)
		}
	}
}

// TestValidFixturesUseEveryKey keeps the valid fixtures, full.yaml above
// all, exercising every key of the Config tree.
func TestValidFixturesUseEveryKey(t *testing.T) {
	setFixtureEnvironment(t)
	indexes := regexp.MustCompile(`\[\d+\]`)
	used := map[string]bool{}
	for _, path := range fixturePaths(t, "valid") {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		root, problem := parseDocument(data)
		if problem != nil {
			t.Fatalf("%s: %s", path, problem)
		}
		decoder := newDecoder(path)
		decoder.decode(root, reflect.ValueOf(new(Config)).Elem(), "")
		for decoded := range decoder.positions {
			used[indexes.ReplaceAllString(decoded, "")] = true
		}
	}
	for _, key := range keyPaths(reflect.TypeFor[Config](), "") {
		if !used[key] && !refusedInThisBuild(key) {
			t.Errorf("no valid fixture sets %s", key)
		}
	}
}

// refusedKeys are keys this build validates and then refuses as not
// supported in this version: no valid fixture can set them.
var refusedKeys = map[string]string{}

func refusedInThisBuild(key string) bool {
	for refused := range refusedKeys {
		if key == refused || strings.HasPrefix(key, refused+".") {
			return true
		}
	}
	return false
}

// TestRefusedKeysAreRefused keeps refusedKeys honest: each is refused by
// validation, so check reports it with every other problem.
func TestRefusedKeysAreRefused(t *testing.T) {
	for key, document := range refusedKeys {
		_, err := Parse([]byte(document), "config.yaml")
		if err == nil || !strings.Contains(err.Error(), key+": not supported in this version") {
			t.Errorf("%s: got %v, want it refused as not supported", key, err)
		}
	}
}

// keyPaths lists every key path of a type, sequences without indexes.
func keyPaths(structType reflect.Type, path string) []string {
	var paths []string
	for _, field := range structFields(structType) {
		fieldPath := path + "." + field.key
		if path == "" {
			fieldPath = field.key
		}
		paths = append(paths, fieldPath)
		fieldType := structType.Field(field.index).Type
		for fieldType.Kind() == reflect.Pointer || fieldType.Kind() == reflect.Slice {
			fieldType = fieldType.Elem()
		}
		if fieldType.Kind() == reflect.Struct && fieldType != durationType && fieldType != secretType {
			paths = append(paths, keyPaths(fieldType, fieldPath)...)
		}
	}
	return paths
}

// TestDecoderSupportsEveryField guards the decoder's "internal error" branch:
// every field type in the tree must be one it decodes.
func TestDecoderSupportsEveryField(t *testing.T) {
	supported := []reflect.Kind{reflect.String, reflect.Bool, reflect.Int, reflect.Int64}
	var check func(reflect.Type, string)
	check = func(structType reflect.Type, path string) {
		for _, field := range structFields(structType) {
			fieldType := structType.Field(field.index).Type
			for (fieldType.Kind() == reflect.Pointer || fieldType.Kind() == reflect.Slice) && fieldType != jsonType {
				fieldType = fieldType.Elem()
			}
			switch {
			case fieldType == durationType || fieldType == secretType || fieldType == jsonType:
			case fieldType.Kind() == reflect.Struct:
				check(fieldType, path+"."+field.key)
			case !slices.Contains(supported, fieldType.Kind()):
				t.Errorf("%s.%s: the decoder does not support %s", path, field.key, fieldType)
			}
		}
	}
	check(reflect.TypeFor[Config](), "Config")
}

func TestDuration(t *testing.T) {
	tests := []struct {
		value   string
		want    time.Duration
		problem string
	}{
		{value: "30s", want: 30 * time.Second},
		{value: "1h30m", want: 90 * time.Minute},
		{value: "500ms", want: 500 * time.Millisecond},
		{value: `"2m"`, want: 2 * time.Minute},
		{value: "~", want: 10 * time.Second}, // null leaves the default
		{value: "30", problem: `want a duration such as "500ms", "30s" or "1h", got 30 without a unit (add one: ms, s, m or h)`},
		{value: "0", problem: `want a duration such as "500ms", "30s" or "1h", got 0 without a unit (add one: ms, s, m or h)`},
		{value: "1.5", problem: `want a duration such as "500ms", "30s" or "1h", got 1.5 without a unit (add one: ms, s, m or h)`},
		{value: `"30"`, problem: `want a duration such as "500ms", "30s" or "1h", got "30" without a unit (add one: ms, s, m or h)`},
		{value: "thirty seconds", problem: `want a duration such as "500ms", "30s" or "1h", got "thirty seconds"`},
		{value: "[30s]", problem: `want a duration, got a sequence`},
		{value: "-1s", problem: `must not be negative`},
	}
	for _, test := range tests {
		t.Run(test.value, func(t *testing.T) {
			config, err := Parse([]byte("version: 1\nhttp:\n  shutdownTimeout: "+test.value+"\n"), "config.yaml")
			if test.problem != "" {
				want := "config.yaml:3: http.shutdownTimeout: " + test.problem
				if err == nil || err.Error() != want {
					t.Fatalf("got error %v, want %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := time.Duration(config.HTTP.ShutdownTimeout); got != test.want {
				t.Errorf("got %s, want %s", got, test.want)
			}
		})
	}
}

func TestDurationEncodesAsText(t *testing.T) {
	encoded, err := json.Marshal(struct{ Timeout Duration }{Duration(90 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"Timeout":"1m30s"}`; string(encoded) != want {
		t.Errorf("got %s, want %s", encoded, want)
	}
	var decoded struct{ Timeout Duration }
	if err := json.Unmarshal(encoded, &decoded); err != nil || decoded.Timeout != Duration(90*time.Second) {
		t.Errorf("round trip: got %v, %v", decoded.Timeout, err)
	}
}

func TestSecretTemplates(t *testing.T) {
	t.Setenv("MCPBROKER_TEST_SECRET_TEMPLATE", "from-environment")
	t.Setenv("MCPBROKER_TEST_EMPTY", "")
	directory := t.TempDir()
	if err := os.WriteFile(filepath.Join(directory, "secret.txt"), []byte("from-file\r\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(directory, "large.txt"), bytes.Repeat([]byte("x"), maxFileBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		value   string
		want    string
		problem string
	}{
		{value: "literal", want: "literal"},
		{value: "{{ env.MCPBROKER_TEST_SECRET_TEMPLATE }}", want: "from-environment"},
		{value: "{{env.MCPBROKER_TEST_SECRET_TEMPLATE}}", want: "from-environment"},
		{value: "{{ env.MCPBROKER_TEST_EMPTY }}", want: ""},
		{value: "{{ file.secret.txt }}", want: "from-file"},
		{value: "{{ file." + filepath.Join(directory, "secret.txt") + " }}", want: "from-file"},
		{value: "{{ file.large.txt }}", problem: `cannot read secret file "large.txt": larger than 1048576 bytes`},
		{value: "{{ file.missing.txt }}", problem: `cannot read secret file "missing.txt": no such file or directory`},
		{value: "{{ file.. }}", problem: `cannot read secret file ".": not a regular file`},
		{value: "{{ env.MCPBROKER_TEST_SURELY_UNSET }}", problem: "environment variable MCPBROKER_TEST_SURELY_UNSET is not set"},
		{value: "x{{ env.MCPBROKER_TEST_SECRET_TEMPLATE }}", problem: `unrecognized template; want the whole value to be "{{ env.NAME }}" or "{{ file.PATH }}"`},
		{value: "{{ secret.x }}", problem: `unknown template source "secret"; want "env" or "file"`},
	}
	for _, test := range tests {
		t.Run(test.value, func(t *testing.T) {
			document := fmt.Sprintf("version: 1\nconnectors:\n  - name: idp\n    type: oidc\n    oidcWellKnownURL: https://idp.example/.well-known/openid-configuration\n    oauthClientID: broker\n    oauthClientSecret: %q\n", test.value)
			config, err := Parse([]byte(document), filepath.Join(directory, "config.yaml"))
			if test.problem != "" {
				want := filepath.Join(directory, "config.yaml") + ":7: connectors[0].oauthClientSecret: " + test.problem
				if err == nil || err.Error() != want {
					t.Fatalf("got error %v, want %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := config.Connectors[0].OAuthClientSecret.Value(); got != test.want {
				t.Errorf("got %q, want %q", got, test.want)
			}
		})
	}
}

// TestPlainStringsAreNotTemplated: only Secret fields expand templates, so a
// value elsewhere cannot pull a secret into a place that gets logged.
func TestPlainStringsAreNotTemplated(t *testing.T) {
	t.Setenv("MCPBROKER_TEST_SECRET_TEMPLATE", "from-environment")
	config, err := Parse([]byte("version: 1\nconnectors: [{name: idp, type: oidc, oidcWellKnownURL: 'https://idp.example/.well-known/openid-configuration', oauthClientID: '{{ env.MCPBROKER_TEST_SECRET_TEMPLATE }}'}]\n"), "config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := config.Connectors[0].OAuthClientID, "{{ env.MCPBROKER_TEST_SECRET_TEMPLATE }}"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestSecretIsRedacted(t *testing.T) {
	const value = "hunter2"
	holder := struct {
		Password Secret
		Pointer  *Secret
	}{Password: NewSecret(value)}
	holder.Pointer = &holder.Password
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "password", holder.Password, "holder", holder)
	jsonEncoded, _ := json.Marshal(holder)
	yamlEncoded, _ := yaml.Marshal(holder)
	tests := []struct {
		name string
		text string
	}{
		{"%v", fmt.Sprintf("%v", holder.Password)},
		{"%s", fmt.Sprintf("%s", holder.Password)},
		{"%q", fmt.Sprintf("%q", holder.Password)},
		{"%x", fmt.Sprintf("%x", holder.Password)},
		{"%+v of a struct", fmt.Sprintf("%+v", holder)},
		{"%#v of a struct", fmt.Sprintf("%#v", holder)},
		{"%v of a pointer", fmt.Sprintf("%v", holder.Pointer)},
		{"json", string(jsonEncoded)},
		{"yaml", string(yamlEncoded)},
		{"slog", logged.String()},
		{"Problems", Problems{{Path: "x", Message: fmt.Sprint(holder)}}.Error()},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			if strings.Contains(test.text, value) || strings.Contains(test.text, fmt.Sprintf("%x", value)) {
				t.Errorf("leaks the secret: %s", test.text)
			}
		})
	}
	if got := holder.Password.String(); got != redacted {
		t.Errorf("String() = %q, want %q", got, redacted)
	}
	if got := holder.Password.Value(); got != value {
		t.Errorf("Value() = %q, want %q", got, value)
	}
	if got := (Secret{}).String(); got != "" {
		t.Errorf("String() of an empty secret = %q, want empty", got)
	}
}

func TestSuggestions(t *testing.T) {
	fields := structFields(reflect.TypeFor[SSEUpstream]())
	tests := []struct{ key, want string }{
		{"urll", `unknown key (did you mean "url"?)`},
		{"URL", `unknown key (did you mean "url"?)`},
		{"conection", `unknown key (did you mean "connection"?)`},
		{"connectoin", `unknown key (did you mean "connection"?)`},
		{"endpoint", `unknown key (want one of url, connection)`},
	}
	for _, test := range tests {
		if got := unknownKey(test.key, fields); got != test.want {
			t.Errorf("unknownKey(%q) = %s, want %s", test.key, got, test.want)
		}
	}
}

func TestParseLimits(t *testing.T) {
	tests := []struct {
		name     string
		document string
		want     string
	}{
		{
			name:     "larger than 1 MiB",
			document: "version: 1\n#" + strings.Repeat("x", maxFileBytes),
			want:     "config.yaml: the file is larger than 1048576 bytes (1 MiB)",
		},
		{
			name:     "a mapping that merges itself",
			document: "version: 1\nhttp: &http {address: ':1', <<: *http}\n",
			want:     "config.yaml:2: http: merge key (<<) includes the mapping it is in",
		},
		{
			name:     "a null document",
			document: "~\n",
			want:     `config.yaml: the file is empty; want a mapping starting with "version: 1"`,
		},
		{
			name:     "a scalar document",
			document: "version\n",
			want:     `config.yaml:1: want a mapping at the top level, got "version"`,
		},
		{
			name:     "an unsupported tag",
			document: "version: 1\nhttp: {address: !!binary aGVsbG8=}\n",
			want:     `config.yaml:2: http.address: unsupported tag "!!binary"`,
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			_, err := Parse([]byte(test.document), "config.yaml")
			if err == nil || err.Error() != test.want {
				t.Errorf("got error %v, want %q", err, test.want)
			}
		})
	}
}

// TestManyProblemsAreCapped: a file wrong everywhere yields a bounded report.
func TestManyProblemsAreCapped(t *testing.T) {
	var document strings.Builder
	document.WriteString("version: 1\n")
	for i := range maxProblems + 10 {
		fmt.Fprintf(&document, "unknown%d: x\n", i)
	}
	_, err := Parse([]byte(document.String()), "config.yaml")
	var problems Problems
	if !errors.As(err, &problems) {
		t.Fatalf("got %v, want Problems", err)
	}
	if len(problems) != maxProblems+1 {
		t.Fatalf("got %d problems, want %d", len(problems), maxProblems+1)
	}
	if got, want := problems[maxProblems].String(), "config.yaml: 10 more problems not shown"; got != want {
		t.Errorf("last problem %q, want %q", got, want)
	}
}

// TestValidateBuiltConfig covers configs built in code, where problems have
// no file or line.
func TestValidateBuiltConfig(t *testing.T) {
	config := &Config{}
	err := config.Validate()
	want := "http.address: required, want host:port\n" +
		"http.maxBodyBytes: must be between 1024 (1 KiB) and 67108864 (64 MiB), got 0\n" +
		"http.readBodyTimeout: must be between 1s and 10m, got 0s\n" +
		"http.maxConnections: must be at least 1, got 0\n" +
		"http.maxConnectionsPerAddress: must be at least 1, got 0\n" +
		"admin.address: required, want host:port\n" +
		"audit.dir: required\n" +
		"audit.durability: want \"sync\" or \"async\", got \"\"\n" +
		"audit.onFailure: want \"refuse\" or \"continue\", got \"\"\n" +
		"audit.queueSize: want 1 to 1000000, got 0\n" +
		"audit.rotation.maxFileBytes: must be at least 1048576 (1 MiB), got 0\n" +
		"audit.rotation.maxAge: must be at least 1m0s, got 0s\n" +
		"audit.checkpoint.every: want 1 to 1000000 records, got 0\n" +
		"audit.checkpoint.interval: must be at least 1s, got 0s\n" +
		"rateLimits.onStoreFailure: want \"open\" or \"closed\", got \"\"\n" +
		"approvals.ttl: want between 1s and 24h0m0s, got 0s\n" +
		"approvals.maxPendingPerUser: want 1 to 1000, got 0"
	if err == nil || err.Error() != want {
		t.Errorf("without defaults: got\n%v\nwant\n%s", err, want)
	}
	config.ApplyDefaults()
	if err := config.Validate(); err != nil {
		t.Errorf("with defaults: %v", err)
	}
	before, _ := json.Marshal(config)
	config.ApplyDefaults()
	if after, _ := json.Marshal(config); !bytes.Equal(before, after) {
		t.Errorf("ApplyDefaults is not idempotent:\n%s\n%s", before, after)
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		problem Problem
		want    string
	}{
		{Problem{File: "config.yaml", Line: 12, Path: "apps[0].name", Message: "must not be empty"}, "config.yaml:12: apps[0].name: must not be empty"},
		{Problem{File: "config.yaml", Message: "the file is empty"}, "config.yaml: the file is empty"},
		{Problem{Line: 3, Path: "version", Message: "required"}, "line 3: version: required"},
		{Problem{Path: "version", Message: "required"}, "version: required"},
	}
	for _, test := range tests {
		if got := test.problem.String(); got != test.want {
			t.Errorf("got %q, want %q", got, test.want)
		}
	}
}

func clientSecret(c *Config, id string) Secret {
	for _, client := range c.AuthProvider.Clients {
		if client.ClientID == id {
			return client.ClientSecret
		}
	}
	return Secret{}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want an error wrapping os.ErrNotExist", err)
	}
}

// TestFixtureSecretsResolve: golden files show secrets redacted, so check
// here that full.yaml's secrets were read from the environment and from files
// relative to the fixture, trailing newline removed, directly and through
// the secret providers "<provider.key>" names.
func TestFixtureSecretsResolve(t *testing.T) {
	setFixtureEnvironment(t)
	config, err := Load(filepath.Join(fixtures, "valid", "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		got  Secret
		want string
	}{
		{"connectors[0].oauthClientSecret", config.Connectors[0].OAuthClientSecret, fixtureEnvironment["MCPBROKER_TEST_IDP_SECRET"]},
		{"connectors[1].oauthClientSecret", config.Connectors[1].OAuthClientSecret, fixtureFileSecrets[0]},
		{"mcpProvider.transports.stream.session.key", config.MCPProvider.Transports.Stream.Session.Key, fixtureFileSecrets[1]},
		{"authProvider.clients[batch-agent].clientSecret (<local.…>)", clientSecret(config, "batch-agent"), fixtureFileSecrets[2]},
		{"authProvider.clients[peer-broker].clientSecret (<gateway.…>)", clientSecret(config, "peer-broker"), fixtureEnvironment["MCPBROKER_TEST_IDP_SECRET"]},
	}
	for _, test := range tests {
		if got := test.got.Value(); got != test.want {
			t.Errorf("%s = %q, want %q", test.name, got, test.want)
		}
	}
}

// Limits of a check that is off are noted as having no effect, never
// taken silently.
func TestUnusedTrustSettings(t *testing.T) {
	cfg, err := Parse([]byte(`
version: 1
mcpProvider:
  enabled: true
  authorization: {unauthenticated: {enabled: true}}
apps:
  - name: ledger
    type: mcpProxy
    upstream: {transport: stream, stream: {url: http://127.0.0.1:9000/mcp}}
    toolPinning: {trustOnFirstUse: false, limits: {descriptionBytes: 100}}
    validation: {limits: {depth: 4}}
  - name: wiki
    type: mcpProxy
    upstream: {transport: stream, stream: {url: http://127.0.0.1:9001/mcp}}
    toolPinning: {mode: enforce, limits: {descriptionBytes: 100}}
    validation: {arguments: enforce, limits: {depth: 4}}
`), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`apps[0].toolPinning.limits has no effect: toolPinning.mode is "off"`,
		`apps[0].toolPinning.trustOnFirstUse has no effect: toolPinning.mode is "off"`,
		`apps[0].validation.limits has no effect: validation.arguments is "off"`,
	}
	if got := cfg.Unused(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("notes:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
