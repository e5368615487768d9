package broker_test

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/tools/txtar"
)

var update = flag.Bool("update", false, "rewrite the server sections of testdata/broker/wire/*.txtar with what the broker answers")

// TestWireRecordings plays the wire recordings of testdata/broker/wire:
// conversations with a broker written down as they go over the wire. Each
// is a txtar archive whose comment says what it shows, with the sections
//
//   - config: the broker's configuration. Either "scenario NAME" and then
//     the arguments filling the placeholders of testdata/broker/NAME.yaml,
//     one a line (a line starting with a double quote is a Go string, so
//     "" is an empty argument; # starts a comment), or the YAML itself.
//     {{sample}} and {{script}} stand for the URL of an upstream the test
//     starts, the sample ledger or a scriptUpstream; {{sample:NAME}} and
//     {{script:NAME}} name one of several, and "{{sample host}}" is the
//     upstream's address alone, as the scenarios that write
//     "http://%s/mcp" want.
//   - upstream:NAME (optional): the JSON array of tools {{script:NAME}}
//     lists, instead of its one tool "script".
//   - client: what the client sends, one POST body a line, in order: a
//     JSON-RPC message, a batch, or any bytes, to see a malformed body
//     refused. Blank lines and lines starting with # are skipped.
//     "@session new" forgets the session, so that the next initialize
//     opens another; "@header Name: value" sends a header with the
//     requests that follow ("@header Name:" stops sending it). Once a
//     response opens a session, the client sends its id and the protocol
//     version initialize negotiated, as a client does. The client cannot
//     answer the broker's requests.
//   - server: what the broker answers, one JSON-RPC message a line, as
//     written (the data of each event of a stream, or a JSON body), in
//     the order it arrives. A response whose status is not the usual one
//     (200 with messages, 202 without) is preceded by "@status CODE"; a
//     body that is not JSON is written "@body" and the body quoted. SSE
//     event ids are left out. Session ids become {{session1}},
//     {{session2}}..., the upstreams' URLs and addresses their
//     placeholders, the broker's {{broker}}, other loopback ports
//     {{port}}, so the text is the same from run to run.
//
// go test ./broker -run TestWireRecordings -update rewrites the server
// sections with what the broker answers now.
func TestWireRecordings(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "broker", "wire", "*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no recordings in testdata/broker/wire")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			t.Parallel()
			rec, err := loadRecording(file)
			if err != nil {
				t.Fatal(err)
			}
			got := rec.play(t)
			if *update {
				rec.setServer(got)
				if err := os.WriteFile(file, txtar.Format(rec.archive), 0o644); err != nil {
					t.Fatal(err)
				}
				t.Logf("recorded %s", file)
				return
			}
			if want := rec.section("server"); got != want {
				t.Errorf("%s: the broker answers otherwise than recorded (if it should, record it with -update)\n%s", file, lineDiff(want, got))
			}
		})
	}
}

// recording is one wire recording.
type recording struct {
	archive *txtar.Archive
}

func loadRecording(file string) (*recording, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	rec := &recording{archive: txtar.Parse(data)}
	if strings.TrimSpace(string(rec.archive.Comment)) == "" {
		return nil, fmt.Errorf("%s: no comment saying what the recording shows", file)
	}
	seen := map[string]bool{}
	for _, f := range rec.archive.Files {
		if seen[f.Name] {
			return nil, fmt.Errorf("%s: two %q sections", file, f.Name)
		}
		seen[f.Name] = true
		switch {
		case f.Name == "config", f.Name == "client", f.Name == "server", strings.HasPrefix(f.Name, "upstream:"):
		default:
			return nil, fmt.Errorf("%s: unknown section %q", file, f.Name)
		}
	}
	for _, required := range []string{"config", "client"} {
		if !seen[required] {
			return nil, fmt.Errorf("%s: no %q section", file, required)
		}
	}
	if !seen["server"] && !*update {
		return nil, fmt.Errorf("%s: no server section; record one with -update", file)
	}
	return rec, nil
}

func (r *recording) section(name string) string {
	for _, f := range r.archive.Files {
		if f.Name == name {
			return string(f.Data)
		}
	}
	return ""
}

func (r *recording) setServer(data string) {
	for i, f := range r.archive.Files {
		if f.Name == "server" {
			r.archive.Files[i].Data = []byte(data)
			return
		}
	}
	r.archive.Files = append(r.archive.Files, txtar.File{Name: "server", Data: []byte(data)})
}

var upstreamPlaceholder = regexp.MustCompile(`\{\{(sample|script)(:[A-Za-z0-9_-]+)?( host)?\}\}`)

// play starts the recording's upstreams and broker, sends what the client
// section holds and returns what the broker answered, normalized.
func (r *recording) play(t *testing.T) string {
	t.Helper()
	norm := &normalizer{hosts: map[string]string{}}
	upstreams := map[string]string{} // placeholder -> URL
	expand := func(s string) string {
		return upstreamPlaceholder.ReplaceAllStringFunc(s, func(p string) string {
			m := upstreamPlaceholder.FindStringSubmatch(p)
			p = "{{" + m[1] + m[2] + "}}"
			url, ok := upstreams[p]
			if !ok {
				switch m[1] {
				case "sample":
					url = sampleUpstream(t)
				case "script":
					up := &scriptUpstream{}
					if tools := strings.TrimSpace(r.section("upstream" + m[2])); tools != "" {
						up.tools = tools
					}
					url = newScriptUpstream(t, up)
				}
				upstreams[p] = url
				norm.url(url, p)
			}
			if m[3] != "" {
				return hostOf(url)
			}
			return url
		})
	}

	config := r.section("config")
	var yaml string
	var args []any
	if rest, ok := strings.CutPrefix(strings.TrimSpace(config), "scenario "); ok {
		lines := strings.Split(rest, "\n")
		yaml = scenario(t, strings.TrimSpace(lines[0]))
		for _, arg := range lines[1:] {
			if arg = strings.TrimSpace(arg); arg == "" || strings.HasPrefix(arg, "#") {
				continue
			}
			if strings.HasPrefix(arg, `"`) {
				unquoted, err := strconv.Unquote(arg)
				if err != nil {
					t.Fatalf("config: argument %s: %v", arg, err)
				}
				arg = unquoted
			}
			args = append(args, expand(arg))
		}
	} else {
		yaml = strings.ReplaceAll(expand(config), "%", "%%") // startBroker formats it
	}
	for _, f := range r.archive.Files {
		if name, ok := strings.CutPrefix(f.Name, "upstream:"); ok && upstreams["{{script:"+name+"}}"] == "" {
			t.Fatalf("section %s: the config has no {{script:%s}}", f.Name, name)
		}
	}
	base := startBroker(t, yaml, args...)
	norm.url(base, "{{broker}}")

	c := newWireClient(t, base+"/mcp")
	var out []string
	sessions := 0
	for i, line := range strings.Split(r.section("client"), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case line == "@session new":
			c.session, c.version = "", ""
			continue
		case strings.HasPrefix(line, "@header "):
			name, value, _ := strings.Cut(strings.TrimPrefix(line, "@header "), ":")
			if value = strings.TrimSpace(value); value == "" {
				c.header.Del(name)
			} else {
				c.header.Set(name, value)
			}
			continue
		case strings.HasPrefix(line, "@"):
			t.Fatalf("client line %d: unknown directive %q", i+1, line)
		}
		resp := c.post(line)
		messages, notJSON := rawAnswer(t, resp)
		if sid := resp.Header.Get("Mcp-Session-Id"); sid != "" && sid != c.session {
			sessions++
			norm.literal(sid, "{{session"+strconv.Itoa(sessions)+"}}")
			c.session, c.version = sid, negotiatedVersion(messages)
		}
		usual := http.StatusOK
		if len(messages) == 0 && notJSON == "" {
			usual = http.StatusAccepted
		}
		if resp.StatusCode != usual {
			out = append(out, "@status "+strconv.Itoa(resp.StatusCode))
		}
		if notJSON != "" {
			out = append(out, "@body "+strconv.Quote(norm.apply(notJSON)))
		}
		for _, m := range messages {
			out = append(out, norm.apply(m))
		}
	}
	if len(out) == 0 {
		return ""
	}
	return strings.Join(out, "\n") + "\n"
}

// rawAnswer returns the JSON-RPC messages of a response as written: the
// data of each event of a stream, or a JSON body. A body that is neither
// comes back as notJSON.
func rawAnswer(t *testing.T, resp *http.Response) (messages []string, notJSON string) {
	t.Helper()
	defer resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		body := strings.TrimRight(string(raw), "\r\n")
		switch {
		case strings.TrimSpace(body) == "":
			return nil, ""
		case json.Valid([]byte(body)):
			return []string{body}, ""
		default:
			return nil, body
		}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var data []string
	flush := func() {
		if len(data) > 0 {
			messages = append(messages, strings.Join(data, "\n"))
			data = nil
		}
	}
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			flush()
			continue
		}
		if d, ok := strings.CutPrefix(line, "data:"); ok {
			data = append(data, strings.TrimPrefix(d, " "))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	flush()
	return messages, ""
}

// negotiatedVersion is the protocol version an initialize result names.
func negotiatedVersion(messages []string) string {
	for _, m := range messages {
		var r struct {
			Result struct {
				ProtocolVersion string `json:"protocolVersion"`
			} `json:"result"`
		}
		if json.Unmarshal([]byte(m), &r) == nil && r.Result.ProtocolVersion != "" {
			return r.Result.ProtocolVersion
		}
	}
	return ""
}

// normalizer replaces what changes from run to run with placeholders.
type normalizer struct {
	hosts   map[string]string // loopback address -> placeholder
	replace []string          // then these old, new pairs
}

var loopbackAddress = regexp.MustCompile(`127\.0\.0\.1:[0-9]+`)

func hostOf(url string) string {
	host, _, _ := strings.Cut(strings.TrimPrefix(url, "http://"), "/")
	return host
}

// url names a URL and its address: "{{x}}" and "{{x host}}". Addresses
// are matched whole, so that no port is taken for the start of another.
func (n *normalizer) url(url, placeholder string) {
	host := hostOf(url)
	hostPlaceholder := strings.TrimSuffix(placeholder, "}}") + " host}}"
	n.hosts[host] = hostPlaceholder
	n.replace = append(n.replace, strings.Replace(url, host, hostPlaceholder, 1), placeholder)
}

func (n *normalizer) literal(old, placeholder string) {
	n.replace = append(n.replace, old, placeholder)
}

func (n *normalizer) apply(s string) string {
	s = loopbackAddress.ReplaceAllStringFunc(s, func(addr string) string {
		if p, ok := n.hosts[addr]; ok {
			return p
		}
		return "127.0.0.1:{{port}}"
	})
	return strings.NewReplacer(n.replace...).Replace(s)
}

// lineDiff shows the lines where two texts part, each from a little
// before its first differing byte.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl == gl {
			continue
		}
		if shown++; shown > 5 {
			b.WriteString("(and more)\n")
			break
		}
		at := 0
		for at < len(wl) && at < len(gl) && wl[at] == gl[at] {
			at++
		}
		fmt.Fprintf(&b, "server line %d, byte %d:\n  want %s\n   got %s\n", i+1, at+1, excerpt(wl, at), excerpt(gl, at))
	}
	return b.String()
}

// excerpt is s around byte at.
func excerpt(s string, at int) string {
	from, to := max(at-80, 0), min(at+120, len(s))
	out := s[from:to]
	if from > 0 {
		out = "..." + out
	}
	if to < len(s) {
		out += "..."
	}
	return out
}

// Addresses are replaced whole: a port that begins another is not taken
// for it.
func TestWireRecordingNormalizer(t *testing.T) {
	n := &normalizer{hosts: map[string]string{}}
	n.url("http://127.0.0.1:4000/mcp", "{{sample}}")
	n.url("http://127.0.0.1:40001", "{{broker}}")
	n.literal("sealed-id", "{{session1}}")
	in := `{"a":"http://127.0.0.1:4000/mcp","b":"http://127.0.0.1:40001/mcp","c":"127.0.0.1:4000","d":"127.0.0.1:400","e":"sealed-id"}`
	want := `{"a":"{{sample}}","b":"{{broker}}/mcp","c":"{{sample host}}","d":"127.0.0.1:{{port}}","e":"{{session1}}"}`
	if got := n.apply(in); got != want {
		t.Errorf("normalized\n got %s\nwant %s", got, want)
	}
}
