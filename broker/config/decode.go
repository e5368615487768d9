package config

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Limits on untrusted input. A config file is small; these bound the work an
// accidental or hostile file can cause, anchors and aliases included.
const (
	// maxFileBytes caps the config file and any secret file it references.
	maxFileBytes = 1 << 20
	// maxNodes caps the YAML nodes visited while decoding, counting a node
	// again each time an alias repeats it, which defeats alias expansion
	// bombs ("billion laughs").
	maxNodes = 100_000
)

// The decoder walks a yaml.Node tree against the Config structs itself,
// instead of letting yaml.v3 decode, so that it can report every problem with
// its path and line rather than stopping at the first.
type decoder struct {
	file string
	// directory is where "{{ file.PATH }}" secrets are looked up.
	directory string
	problems  Problems
	// positions maps each decoded path to where it appears, so that problems
	// found later by Validate can be given a line.
	positions map[string]position
	// failed holds paths whose value could not be decoded. Validate sees the
	// zero value there and would report it again in other words, so its
	// problems at or beneath these paths are dropped.
	failed    map[string]bool
	visited   int
	exhausted bool
	// providers resolve "<provider.key>" secrets; secretFiles caches the
	// providers' files for one load.
	providers   map[string]SecretProvider
	secretFiles map[string]map[string]string
}

type position struct{ line, column int }

func newDecoder(file string) *decoder {
	return &decoder{
		file:      file,
		directory: filepath.Dir(file),
		positions: map[string]position{},
		failed:    map[string]bool{},
	}
}

// add records a problem located at node.
func (d *decoder) add(node *yaml.Node, path, format string, arguments ...any) {
	problem := Problem{File: d.file, Path: path, Message: fmt.Sprintf(format, arguments...)}
	if node != nil {
		problem.Line, problem.Column = node.Line, node.Column
	}
	d.problems = append(d.problems, problem)
}

// fail records a problem with a value that could not be decoded.
func (d *decoder) fail(node *yaml.Node, path, format string, arguments ...any) {
	d.failed[path] = true
	d.add(node, path, format, arguments...)
}

// locate returns the position of path, or of its nearest ancestor that was in
// the file (a defaulted value has no position of its own).
func (d *decoder) locate(path string) position {
	for {
		if at, ok := d.positions[path]; ok {
			return at
		}
		if path == "" {
			return position{}
		}
		path = parentPath(path)
	}
}

// hasFailedAncestor reports whether path lies at or beneath a value that
// could not be decoded.
func (d *decoder) hasFailedAncestor(path string) bool {
	for {
		if d.failed[path] {
			return true
		}
		if path == "" {
			return false
		}
		path = parentPath(path)
	}
}

// visit counts a node against maxNodes and reports whether decoding may go on.
func (d *decoder) visit(node *yaml.Node, path string) bool {
	if d.exhausted {
		return false
	}
	d.visited++
	if d.visited > maxNodes {
		d.exhausted = true
		d.add(node, path, "the document expands to more than %d nodes; check anchors and aliases", maxNodes)
		return false
	}
	return true
}

// resolve follows aliases to the node they name, counting each hop.
func (d *decoder) resolve(node *yaml.Node, path string) *yaml.Node {
	for node != nil && node.Kind == yaml.AliasNode {
		if !d.visit(node, path) {
			return nil
		}
		node = node.Alias
	}
	return node
}

var (
	durationType = reflect.TypeFor[Duration]()
	secretType   = reflect.TypeFor[Secret]()
	jsonType     = reflect.TypeFor[JSONValue]()
)

// supportedTags are the YAML tags a config may use, explicitly or by
// resolution. Others (!!binary, !!set, application tags like !Ref) have no
// meaning here and are rejected rather than silently read as strings.
var supportedTags = map[string]bool{
	"!!str": true, "!!int": true, "!!float": true, "!!bool": true, "!!null": true,
	"!!timestamp": true, "!!map": true, "!!seq": true, "!!merge": true,
}

// decode stores node into target, reporting problems under path.
func (d *decoder) decode(node *yaml.Node, target reflect.Value, path string) {
	node = d.resolve(node, path)
	if node == nil || !d.visit(node, path) {
		return
	}
	if _, ok := d.positions[path]; !ok {
		d.positions[path] = position{node.Line, node.Column}
	}
	if tag := node.ShortTag(); !supportedTags[tag] {
		d.fail(node, path, "unsupported tag %q", tag)
		return
	}
	if isNull(node) {
		// "key:" with no value leaves the zero value, which defaults fill.
		target.SetZero()
		return
	}
	switch target.Type() {
	case durationType:
		d.decodeDuration(node, target, path)
		return
	case secretType:
		d.decodeSecret(node, target, path)
		return
	case jsonType:
		d.decodeJSON(node, target, path)
		return
	}
	switch target.Kind() {
	case reflect.Pointer:
		value := reflect.New(target.Type().Elem())
		d.decode(node, value.Elem(), path)
		target.Set(value)
	case reflect.Struct:
		d.decodeStruct(node, target, path)
	case reflect.Slice:
		d.decodeSlice(node, target, path)
	case reflect.String:
		if d.wantScalar(node, path, "a string") {
			target.SetString(node.Value)
		}
	case reflect.Bool:
		d.decodeBool(node, target, path)
	case reflect.Int, reflect.Int64:
		d.decodeInteger(node, target, path)
	default:
		// Only reachable if types.go gains a kind this decoder does not
		// know; TestDecoderSupportsEveryField catches that.
		d.fail(node, path, "internal error: cannot decode into %s", target.Type())
	}
}

func isNull(node *yaml.Node) bool {
	return node.Kind == yaml.ScalarNode && node.ShortTag() == "!!null"
}

// describe names what a node holds, for "want X, got Y" messages.
func describe(node *yaml.Node) string {
	switch node.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a sequence"
	case yaml.ScalarNode:
		return quote(node.Value)
	}
	return "nothing"
}

// quote shortens and quotes a value for a message.
func quote(value string) string {
	const limit = 60
	if utf8.RuneCountInString(value) > limit {
		value = string([]rune(value)[:limit]) + "..."
	}
	return strconv.Quote(value)
}

func (d *decoder) wantScalar(node *yaml.Node, path, want string) bool {
	if node.Kind != yaml.ScalarNode {
		d.fail(node, path, "want %s, got %s", want, describe(node))
		return false
	}
	return true
}

// decodeJSON takes any YAML value that JSON can write (a schema) as
// JSON.
func (d *decoder) decodeJSON(node *yaml.Node, target reflect.Value, path string) {
	var v any
	if err := node.Decode(&v); err != nil {
		d.fail(node, path, "want a value JSON can write: %v", err)
		return
	}
	raw, err := json.Marshal(v)
	if err != nil {
		d.fail(node, path, "want a value JSON can write (string keys only)")
		return
	}
	target.SetBytes(raw)
}

func (d *decoder) decodeBool(node *yaml.Node, target reflect.Value, path string) {
	if !d.wantScalar(node, path, "true or false") {
		return
	}
	value, err := strconv.ParseBool(node.Value)
	if node.ShortTag() != "!!bool" || err != nil {
		d.fail(node, path, "want true or false, got %s", describe(node))
		return
	}
	target.SetBool(value)
}

func (d *decoder) decodeInteger(node *yaml.Node, target reflect.Value, path string) {
	if !d.wantScalar(node, path, "an integer") {
		return
	}
	if node.ShortTag() != "!!int" {
		d.fail(node, path, "want an integer, got %s", describe(node))
		return
	}
	// YAML allows digit separators ("1_000"); Go's base prefixes (0x, 0o,
	// 0b) match YAML's.
	value, err := strconv.ParseInt(strings.ReplaceAll(node.Value, "_", ""), 0, 64)
	if err != nil || target.OverflowInt(value) {
		d.fail(node, path, "want an integer, got %s (out of range)", describe(node))
		return
	}
	target.SetInt(value)
}

func (d *decoder) decodeDuration(node *yaml.Node, target reflect.Value, path string) {
	const want = `want a duration such as "500ms", "30s" or "1h"`
	if !d.wantScalar(node, path, "a duration") {
		return
	}
	if tag := node.ShortTag(); tag == "!!int" || tag == "!!float" {
		d.fail(node, path, "%s, got %s without a unit (add one: ms, s, m or h)", want, node.Value)
		return
	}
	value, err := time.ParseDuration(node.Value)
	if err != nil {
		if _, isNumber := strconv.ParseFloat(node.Value, 64); isNumber == nil {
			d.fail(node, path, "%s, got %s without a unit (add one: ms, s, m or h)", want, describe(node))
			return
		}
		d.fail(node, path, "%s, got %s", want, describe(node))
		return
	}
	target.Set(reflect.ValueOf(Duration(value)))
}

// secretTemplate matches a whole value of the form "{{ source.argument }}".
var (
	secretTemplate  = regexp.MustCompile(`^\{\{\s*([A-Za-z]+)\.(.*?)\s*\}\}$`)
	environmentName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

func (d *decoder) decodeSecret(node *yaml.Node, target reflect.Value, path string) {
	if !d.wantScalar(node, path, "a string") {
		return
	}
	value, message := d.resolveSecret(node.Value)
	if message != "" {
		d.fail(node, path, "%s", message)
		return
	}
	target.Set(reflect.ValueOf(Secret{value: value}))
}

// resolveSecret expands a secret template. It returns a message instead of an
// error because the message goes to the user as a Problem; it never contains
// the secret.
func (d *decoder) resolveSecret(raw string) (value, message string) {
	if reference := secretReference.FindStringSubmatch(raw); reference != nil {
		return d.resolveReference(reference[1], reference[2])
	}
	match := secretTemplate.FindStringSubmatch(raw)
	if match == nil {
		if strings.Contains(raw, "{{") {
			return "", `unrecognized template; want the whole value to be "{{ env.NAME }}" or "{{ file.PATH }}"`
		}
		return raw, ""
	}
	source, argument := match[1], match[2]
	switch source {
	case "env":
		if !environmentName.MatchString(argument) {
			return "", fmt.Sprintf("%s is not a valid environment variable name", quote(argument))
		}
		value, ok := os.LookupEnv(argument)
		if !ok {
			return "", fmt.Sprintf("environment variable %s is not set", argument)
		}
		return value, ""
	case "file":
		if argument == "" {
			return "", `want "{{ file.PATH }}" with a path`
		}
		name := argument
		if !filepath.IsAbs(name) {
			name = filepath.Join(d.directory, name)
		}
		content, err := readSecretFile(name)
		if err != nil {
			// Quote the path as written: it is relative to the config file,
			// which the problem already names.
			return "", fmt.Sprintf("cannot read secret file %s: %v", quote(argument), err)
		}
		return strings.TrimRight(content, "\r\n"), ""
	}
	return "", fmt.Sprintf(`unknown template source %s; want "env" or "file"`, quote(source))
}

// readSecretFile reads a regular file of at most maxFileBytes. Devices and
// pipes are refused because reading them could block loading forever.
func readSecretFile(name string) (string, error) {
	file, err := os.Open(name)
	if err != nil {
		return "", unwrapPathError(err)
	}
	defer file.Close()
	info, err := file.Stat()
	if err != nil {
		return "", unwrapPathError(err)
	}
	if !info.Mode().IsRegular() {
		return "", fmt.Errorf("not a regular file")
	}
	content, err := io.ReadAll(io.LimitReader(file, maxFileBytes+1))
	if err != nil {
		return "", unwrapPathError(err)
	}
	if len(content) > maxFileBytes {
		return "", fmt.Errorf("larger than %d bytes", maxFileBytes)
	}
	return string(content), nil
}

// unwrapPathError drops the file name an *os.PathError repeats, since the
// message already quotes it.
func unwrapPathError(err error) error {
	if pathError, ok := err.(*os.PathError); ok {
		return pathError.Err
	}
	return err
}

// A structField is one YAML key of a struct.
type structField struct {
	key   string
	index int
}

func structFields(structType reflect.Type) []structField {
	fields := make([]structField, 0, structType.NumField())
	for i := range structType.NumField() {
		key, _, _ := strings.Cut(structType.Field(i).Tag.Get("yaml"), ",")
		if key != "" && key != "-" {
			fields = append(fields, structField{key: key, index: i})
		}
	}
	return fields
}

// An entry is one key and value of a mapping, after merge keys ("<<") are
// expanded.
type entry struct {
	key, value *yaml.Node
	// merged entries come from "<<" and yield to keys written in place.
	merged bool
}

func (d *decoder) decodeStruct(node *yaml.Node, target reflect.Value, path string) {
	if node.Kind != yaml.MappingNode {
		d.fail(node, path, "want a mapping, got %s", describe(node))
		return
	}
	fields := structFields(target.Type())
	seen := map[string]*yaml.Node{}
	for _, entry := range d.entries(node, path, map[*yaml.Node]bool{}) {
		key := entry.key.Value
		keyPath := keyInPath(path, key)
		if first, ok := seen[key]; ok {
			if !entry.merged {
				d.add(entry.key, keyPath, "duplicate key (first defined on line %d)", first.Line)
			}
			continue
		}
		seen[key] = entry.key
		found := false
		for _, candidate := range fields {
			if candidate.key == key {
				found = true
				d.positions[keyPath] = position{entry.key.Line, entry.key.Column}
				d.decode(entry.value, target.Field(candidate.index), keyPath)
				break
			}
		}
		if !found {
			if instead, strata := strataInstead[keyPath]; strata {
				d.add(entry.key, keyPath, "Strata's %s is not read here; %s", key, instead)
				continue
			}
			d.add(entry.key, keyPath, "%s", unknownKey(key, fields))
		}
	}
}

// entries lists a mapping's keys and values, expanding merge keys. visiting
// holds the mappings being expanded, to stop a mapping that merges itself.
func (d *decoder) entries(node *yaml.Node, path string, visiting map[*yaml.Node]bool) []entry {
	if visiting[node] {
		d.fail(node, path, "merge key (<<) includes the mapping it is in")
		return nil
	}
	visiting[node] = true
	defer delete(visiting, node)
	var written, merged []entry
	for i := 0; i+1 < len(node.Content); i += 2 {
		key := d.resolve(node.Content[i], path)
		value := node.Content[i+1]
		if key == nil || !d.visit(key, path) {
			return nil
		}
		if key.Kind != yaml.ScalarNode {
			d.add(key, path, "want a string key, got %s", describe(key))
			continue
		}
		if key.ShortTag() != "!!merge" {
			written = append(written, entry{key: key, value: value})
			continue
		}
		// A merge value is a mapping or a sequence of mappings; earlier
		// mappings in the sequence win over later ones.
		sources := []*yaml.Node{value}
		if resolved := d.resolve(value, path); resolved != nil && resolved.Kind == yaml.SequenceNode {
			sources = resolved.Content
		}
		for _, source := range sources {
			source = d.resolve(source, path)
			if source == nil {
				return nil
			}
			if source.Kind != yaml.MappingNode {
				d.fail(source, path, "merge key (<<) wants a mapping or a sequence of mappings, got %s", describe(source))
				continue
			}
			for _, inner := range d.entries(source, path, visiting) {
				inner.merged = true
				merged = append(merged, inner)
			}
		}
	}
	return append(written, merged...)
}

// keyInPath appends a key to a path, quoting a key that would make the path
// ambiguous (only unknown keys can need it): http["a b"].
func keyInPath(path, key string) string {
	plain := key != ""
	for _, r := range key {
		if !(r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			plain = false
			break
		}
	}
	if plain {
		return field(path, key)
	}
	return path + "[" + strconv.Quote(key) + "]"
}

// strataInstead says, for keys of Strata's files this broker does not
// read, what does the same here: they are refused with that, never
// accepted and ignored.
var strataInstead = map[string]string{
	"mcpProvider.transports.stream.endpointPath": "set the endpoint with path (default /mcp)",
	"mcpProvider.transports.sse.baseURL":         "the SSE endpoint event names a path on the URL the client used; behind a proxy, set http.trustedProxies and http.forwardedHost",
	"mcpProvider.transports.sse.basePath":        "set path (the stream, default /mcp/sse) and messagePath (default /mcp/message)",
	"logger":                                     "set the level and format with mcpbroker serve --log-level and --log-format (MCPBROKER_LOG_LEVEL, MCPBROKER_LOG_FORMAT)",
	"health":                                     "health is served at admin.address: /healthz (alive) and /readyz (ready to serve)",
}

// unknownKey explains an unknown key, suggesting the closest known one.
func unknownKey(key string, fields []structField) string {
	best, bestDistance := "", 0
	for _, candidate := range fields {
		distance := editDistance(strings.ToLower(key), strings.ToLower(candidate.key))
		if best == "" || distance < bestDistance {
			best, bestDistance = candidate.key, distance
		}
	}
	// Allow about one typo per three characters; more and the suggestion is
	// more likely to mislead than help.
	if best != "" && bestDistance <= max(1, utf8.RuneCountInString(key)/3) {
		return fmt.Sprintf("unknown key (did you mean %q?)", best)
	}
	keys := make([]string, len(fields))
	for i, candidate := range fields {
		keys[i] = candidate.key
	}
	return "unknown key (want one of " + strings.Join(keys, ", ") + ")"
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and swaps of neighbours each count
// one, so "verison" is one edit from "version".
func editDistance(a, b string) int {
	source, target := []rune(a), []rune(b)
	// Keys are short; bound the work for a pathological unknown key.
	if len(source) > 64 || len(target) > 64 {
		return max(len(source), len(target))
	}
	rows := make([][]int, len(source)+1)
	for i := range rows {
		rows[i] = make([]int, len(target)+1)
		rows[i][0] = i
	}
	for j := range rows[0] {
		rows[0][j] = j
	}
	for i := 1; i <= len(source); i++ {
		for j := 1; j <= len(target); j++ {
			cost := 1
			if source[i-1] == target[j-1] {
				cost = 0
			}
			rows[i][j] = min(rows[i-1][j]+1, rows[i][j-1]+1, rows[i-1][j-1]+cost)
			if i > 1 && j > 1 && source[i-1] == target[j-2] && source[i-2] == target[j-1] {
				rows[i][j] = min(rows[i][j], rows[i-2][j-2]+1)
			}
		}
	}
	return rows[len(source)][len(target)]
}

func (d *decoder) decodeSlice(node *yaml.Node, target reflect.Value, path string) {
	if node.Kind != yaml.SequenceNode {
		d.fail(node, path, "want a sequence, got %s", describe(node))
		return
	}
	slice := reflect.MakeSlice(target.Type(), len(node.Content), len(node.Content))
	for i, item := range node.Content {
		itemPath := index(path, i)
		d.positions[itemPath] = position{item.Line, item.Column}
		d.decode(item, slice.Index(i), itemPath)
		if d.exhausted {
			return
		}
	}
	target.Set(slice)
}
