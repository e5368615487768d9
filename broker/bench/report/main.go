// Command report reads the output of `go test -bench BenchmarkDataPath` on
// standard input and prints one table of the data paths with the ratios
// that matter: every path against the bare reverse proxy and against the
// direct connection (throughput, latency and, the steadiest figure on a
// shared machine, the hop process's own CPU time per call), and every broker+X path (the broker with feature X,
// say auth) against the broker it extends, with an estimate of what X costs
// per call. That is the plain broker, or for a feature that needs another
// one (policy decides on the authenticated caller) the broker with that
// one: broker+policy is compared with broker+auth, broker+exchange (a
// token minted for every call, for the caller the policy allowed) with
// broker+policy, so its cost is the per-call exchange; broker+audit-sync
// and broker+audit-async (the whole pipeline writing its audit trail, with
// sync or async durability) with broker+exchange; broker+redis (the
// pipeline of a replica, its ended sessions and rate-limit budgets in
// Redis) with broker+policy, the same pipeline without Redis.
//
// For the audit paths it also prints what the trail adds to one call: the
// change in throughput, the extra median latency and run time, the extra
// allocations and bytes, and, from the trail's own metrics, the records
// written per call and per fsync (how well group commit batches them).
// For the Redis path it prints the same for Redis, with the round trips to
// Redis per call.
//
// The input may also hold BenchmarkToolsList (a catalogue of 20 apps of
// 50 tools, listed directly and through the broker with and without its
// list cache), printed as a table of its own, and the components' own
// benchmarks: the policy
// engine's (BenchmarkDecide and BenchmarkDecideList in ./opa) and the
// minter's (BenchmarkMintEdDSA and BenchmarkMintES256 in ./exchange); their
// cost of one decision or one token is printed beside the estimates from
// the data paths.
//
// With -count above 1 each metric is the median of the runs. It exits
// non-zero if a benchmark failed or none ran, so `make bench` fails too.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

const benchmarkName = "BenchmarkDataPath"

// cpuUnit is the metric of the CPU time, user and system, the hop process
// (the proxy or the broker) spent per call, from the kernel's accounting:
// unlike throughput and latency on a shared machine, it hardly depends on
// what else runs beside it.
const cpuUnit = "cpu-µs/call"

// The baselines every other row is compared with.
const (
	direct = "direct"
	proxy  = "proxy"
)

// plain is the broker without features; a row named plain+X is the broker
// with feature X, compared with plain as well.
const plain = "broker"

// requires maps a feature to the one it is measured on top of: its row is
// compared with the broker with that feature rather than the plain broker.
var requires = map[string]string{
	"policy":      "auth",
	"exchange":    "policy",
	"audit-sync":  "exchange",
	"audit-async": "exchange",
	"redis":       "policy",
	"validate":    "exchange",
	"exchange-4k": "policy",
	"redact":      "exchange-4k",
	"chain":       "exchange",
}

// An overhead is a section that shows, for every row of a feature
// (broker+<feature> or broker+<feature>-<variant>), what the feature adds
// to one call over its reference, the same pipeline without it, followed
// by metrics the row reports of its own.
type overhead struct {
	feature string
	title   string
	own     []column
}

// column is one metric a row reports of its own.
type column struct {
	header, unit string
	decimals     int
}

var overheads = []overhead{
	{"audit", "Audit trail, what it adds to one call over the same pipeline without it:", []column{
		{"records/call", "records/call", 2},
		{"records/fsync", "records/fsync", 1},
	}},
	{"redis", "Redis (storage.redis: ended sessions and rate-limit budgets), what it adds to one call over the same pipeline without it:", []column{
		{"round trips/call", "redis-trips/call", 2},
	}},
}

// componentBenchmark is one benchmark of a component the report shows,
// with what it measures.
type componentBenchmark struct{ name, what string }

// components are the component benchmarks the report shows, by section
// and in order; others in the input are ignored.
var components = []struct {
	title      string
	benchmarks []componentBenchmark
}{
	{"Policy decision (engine benchmark, ./opa: one goroutine, no HTTP):", []componentBenchmark{
		{"BenchmarkDecide", "tools/call"},
		{"BenchmarkDecideList", "list item, cached"},
	}},
	{"Token minting (minter benchmark, ./exchange: one goroutine, no HTTP):", []componentBenchmark{
		{"BenchmarkMintEdDSA", "EdDSA, the default"},
		{"BenchmarkMintES256", "ES256"},
	}},
}

// result is one data path's metrics, by unit as go test prints them
// ("calls/s", "p50-µs", "allocs/op"), one value per run.
type result struct {
	path    string
	metrics map[string][]float64
}

func (r *result) get(unit string) (float64, bool) {
	values := r.metrics[unit]
	if len(values) == 0 {
		return 0, false
	}
	sorted := slices.Sorted(slices.Values(values))
	return sorted[len(sorted)/2], true
}

type report struct {
	cpu     string
	procs   string
	results []*result          // the data paths, in input order
	engine  map[string]*result // component benchmarks by name
	lists   []*result          // BenchmarkToolsList's rows, in input order
	hops    *result            // BenchmarkHopCPU, nil when it did not run
}

func main() {
	rep, err := parse(os.Stdin)
	if err == nil {
		err = rep.write(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

// parse reads benchmark output. A failed benchmark is an error: its
// numbers, if any, are not a measurement.
func parse(r io.Reader) (*report, error) {
	rep := &report{engine: map[string]*result{}}
	byPath := map[string]*result{}
	scanner := bufio.NewScanner(r)
	for line := 1; scanner.Scan(); line++ {
		text := scanner.Text()
		switch {
		case strings.HasPrefix(text, "cpu: "):
			rep.cpu = strings.TrimPrefix(text, "cpu: ")
		case strings.Contains(text, "--- FAIL") || text == "FAIL" || strings.HasPrefix(text, "FAIL\t") || strings.HasPrefix(text, "panic: "):
			return nil, fmt.Errorf("line %d: the benchmark failed: %s", line, strings.TrimSpace(text))
		case strings.HasPrefix(text, benchmarkName+"/"):
			name, procs, metrics, err := parseResult(text)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			rep.procs = procs
			path := strings.TrimPrefix(name, benchmarkName+"/")
			res := byPath[path]
			if res == nil {
				res = &result{path: path, metrics: map[string][]float64{}}
				byPath[path] = res
				rep.results = append(rep.results, res)
			}
			res.add(metrics)
		case strings.HasPrefix(text, listsBenchmark+"/"):
			name, _, metrics, err := parseResult(text)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			row := strings.TrimPrefix(name, listsBenchmark+"/")
			i := slices.IndexFunc(rep.lists, func(r *result) bool { return r.path == row })
			if i < 0 {
				i = len(rep.lists)
				rep.lists = append(rep.lists, &result{path: row, metrics: map[string][]float64{}})
			}
			rep.lists[i].add(metrics)
		case strings.HasPrefix(text, hopsBenchmark+"-") || strings.HasPrefix(text, hopsBenchmark+" ") || strings.HasPrefix(text, hopsBenchmark+"\t"):
			_, _, metrics, err := parseResult(text)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			if rep.hops == nil {
				rep.hops = &result{path: hopsBenchmark, metrics: map[string][]float64{}}
			}
			rep.hops.add(metrics)
		case isEngineResult(text):
			name, _, metrics, err := parseResult(text)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			res := rep.engine[name]
			if res == nil {
				res = &result{path: name, metrics: map[string][]float64{}}
				rep.engine[name] = res
			}
			res.add(metrics)
		}
	}
	if err := scanner.Err(); err != nil {
		return nil, err
	}
	if len(rep.results) == 0 {
		return nil, errors.New("no " + benchmarkName + " results in the input")
	}
	return rep, nil
}

func (r *result) add(metrics map[string]float64) {
	for unit, value := range metrics {
		r.metrics[unit] = append(r.metrics[unit], value)
	}
}

// isEngineResult reports whether line is the result of one of the
// component benchmarks.
func isEngineResult(line string) bool {
	for _, c := range components {
		for _, b := range c.benchmarks {
			if rest, ok := strings.CutPrefix(line, b.name); ok && (rest == "" || rest[0] == '-' || rest[0] == ' ' || rest[0] == '\t') {
				return true
			}
		}
	}
	return false
}

// parseResult reads one result line, returning the benchmark's name
// without the GOMAXPROCS suffix:
//
//	BenchmarkDataPath/broker-2  1000  921 ns/op  1085 calls/s  12 p50-µs ...
func parseResult(line string) (name, procs string, metrics map[string]float64, err error) {
	fields := strings.Fields(line)
	if len(fields) < 4 || len(fields)%2 != 0 {
		return "", "", nil, fmt.Errorf("not a benchmark result: %q", line)
	}
	name = fields[0]
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			name, procs = name[:i], name[i+1:]
		}
	}
	metrics = map[string]float64{}
	for i := 2; i < len(fields); i += 2 {
		value, err := strconv.ParseFloat(fields[i], 64)
		if err != nil {
			return "", "", nil, fmt.Errorf("metric %s: %w", fields[i+1], err)
		}
		metrics[fields[i+1]] = value
	}
	return name, procs, metrics, nil
}

func (rep *report) find(path string) *result {
	for _, r := range rep.results {
		if r.path == path {
			return r
		}
	}
	return nil
}

// write prints the table, then each path's ratios against the baselines:
// throughput (above 1 is faster), median latency (above 1 is slower) and
// the allocations the hop adds per call.
func (rep *report) write(w io.Writer) error {
	var header strings.Builder
	header.WriteString(benchmarkName)
	if rep.cpu != "" {
		fmt.Fprintf(&header, " on %s", rep.cpu)
	}
	if rep.procs != "" {
		fmt.Fprintf(&header, ", GOMAXPROCS %s", rep.procs)
	}
	fmt.Fprintf(w, "%s\n\n", header.String())

	// Numbers are right-aligned; every path is padded to the same width,
	// so that column reads left-aligned.
	width := len("path")
	for _, r := range rep.results {
		width = max(width, len(r.path))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 0, ' ', tabwriter.AlignRight)
	row := func(cells ...string) {
		fmt.Fprintf(tw, "%-*s\t", width, cells[0])
		for _, c := range cells[1:] {
			fmt.Fprintf(tw, "   %s\t", c)
		}
		fmt.Fprintln(tw)
	}
	row("path", "calls/s", "p50 µs", "p99 µs", "hop CPU µs/call", "allocs/op", "B/op")
	for _, r := range rep.results {
		row(r.path, format(r, "calls/s"), format(r, "p50-µs"), format(r, "p99-µs"),
			formatFraction(r, cpuUnit, 1), format(r, "allocs/op"), format(r, "B/op"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	var lines [][]string
	for _, r := range rep.results {
		for _, b := range []*result{rep.find(proxy), rep.find(direct), rep.reference(r)} {
			if b == nil || b == r || r.path == direct {
				continue
			}
			cpu := "" // direct has no hop, so no hop CPU to compare
			if c := ratio(r, b, cpuUnit); c != "-" {
				cpu = "hop CPU " + c
			}
			lines = append(lines, []string{
				r.path + "/" + b.path,
				"throughput " + ratio(r, b, "calls/s"),
				"p50 " + ratio(r, b, "p50-µs"),
				"p99 " + ratio(r, b, "p99-µs"),
				cpu,
				difference(r, b, "allocs/op") + " allocs/op",
			})
		}
	}
	if len(lines) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
		for _, l := range lines {
			fmt.Fprintln(tw, strings.Join(l, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if err := rep.writeCosts(w); err != nil {
		return err
	}
	if err := rep.writeOverheads(w); err != nil {
		return err
	}
	if err := rep.writeHops(w); err != nil {
		return err
	}
	if err := rep.writeLists(w); err != nil {
		return err
	}
	return rep.writeEngine(w)
}

const hopsBenchmark = "BenchmarkHopCPU"

// writeHops prints BenchmarkHopCPU: the hops' CPU per call measured in
// alternation, and their ratios to the proxy's, which the machine's
// drift over the run does not move.
func (rep *report) writeHops(w io.Writer) error {
	r := rep.hops
	if r == nil {
		return nil
	}
	fmt.Fprintln(w, "\nHop CPU per call, the three hops measured in alternation (rounds of calls to each in turn):")
	tw := tabwriter.NewWriter(w, 0, 0, 0, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-16s\t   CPU µs/call\t   / proxy\t\n", "hop")
	for _, hop := range []string{"proxy", "broker", "broker+exchange"} {
		ratio := "-"
		if v, ok := r.get(hop + "/proxy"); ok {
			ratio = fmt.Sprintf("%.2f", v)
		}
		fmt.Fprintf(tw, "%-16s\t   %s\t   %s\t\n", hop, formatFraction(r, hop+"-cpu-µs/call", 1), ratio)
	}
	return tw.Flush()
}

// feature returns X for a path named broker+X.
func feature(path string) (string, bool) {
	x, ok := strings.CutPrefix(path, plain+"+")
	return x, ok && x != ""
}

// reference is the row a broker+X row is compared with to see what X
// costs: broker+Y if X requires Y and that row exists, rest-direct for
// broker+bridge, else broker. It is
// nil for other rows, or if there is no broker row.
func (rep *report) reference(r *result) *result {
	x, ok := feature(r.path)
	if !ok {
		return nil
	}
	if y, ok := requires[x]; ok {
		if ref := rep.find(plain + "+" + y); ref != nil {
			return ref
		}
	}
	if x == "bridge" || strings.HasPrefix(x, "bridge-") {
		// A REST API served as tools is held to the same REST calls made
		// directly.
		if ref := rep.find(restDirect); ref != nil {
			return ref
		}
	}
	return rep.find(plain)
}

// restDirect is the row of REST calls made without the broker.
const restDirect = "rest-direct"

// writeCosts prints, for every broker+X path, what X adds to one call: the
// difference of the median latencies of broker+X and its reference. It is
// an estimate from this run only: under concurrent sessions a call's
// latency includes its wait for the CPU, and the two medians come from
// separate measurements, so small differences are noise.
func (rep *report) writeCosts(w io.Writer) error {
	var lines []string
	for _, r := range rep.results {
		x, _ := feature(r.path)
		base := rep.reference(r)
		if base == nil {
			continue
		}
		if d := difference(r, base, "p50-µs"); d != "-" {
			lines = append(lines, fmt.Sprintf("%s\t%s µs per call\t(p50 %s - p50 %s)", x, d, r.path, base.path))
		}
	}
	if len(lines) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nCost per call of each feature, estimated from this run's p50 latencies:")
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	for _, l := range lines {
		fmt.Fprintln(tw, l)
	}
	return tw.Flush()
}

// writeOverheads prints, for every overhead section with rows, what its
// feature adds to one call over the reference (the same pipeline without
// it): the change in throughput; the extra median latency, what a caller
// waits for the feature; the extra run time per call (ns/op), the
// capacity it takes; the extra allocations and bytes; and the row's own
// metrics (for the audit trail, the records written per call and per
// fsync; for Redis, the round trips per call). Then, for each row, how
// close its throughput is to the reference's, at the number of sessions
// both ran. Like the costs above, these are estimates from this run:
// small differences are noise.
func (rep *report) writeOverheads(w io.Writer) error {
	for _, o := range overheads {
		if err := rep.writeOverhead(w, o); err != nil {
			return err
		}
	}
	return nil
}

func (rep *report) writeOverhead(w io.Writer, o overhead) error {
	var rows [][]string
	var notes []string
	for _, r := range rep.results {
		x, _ := feature(r.path)
		base := rep.reference(r)
		if base == nil || (x != o.feature && !strings.HasPrefix(x, o.feature+"-")) {
			continue
		}
		cells := []string{
			r.path + "/" + base.path,
			change(r, base, "calls/s"),
			difference(r, base, "p50-µs"),
			microsecondsDifference(r, base, "ns/op"),
			difference(r, base, "allocs/op"),
			difference(r, base, "B/op"),
		}
		for _, c := range o.own {
			cells = append(cells, formatFraction(r, c.unit, c.decimals))
		}
		rows = append(rows, cells)
		v, ok1 := r.get("calls/s")
		b, ok2 := base.get("calls/s")
		if !ok1 || !ok2 || b == 0 {
			continue
		}
		note := fmt.Sprintf("%s: throughput within %.1f %% of %s", r.path, (1-v/b)*100, base.path)
		if v >= b {
			note = fmt.Sprintf("%s: throughput not below %s (%.1f %% above)", r.path, base.path, (v/b-1)*100)
		}
		if n, ok := r.get("sessions"); ok {
			if m, ok := base.get("sessions"); ok && n == m {
				note += fmt.Sprintf(" at %.0f concurrent sessions", n)
			}
		}
		notes = append(notes, note)
	}
	if len(rows) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\n"+o.title)
	width := len("path")
	for _, r := range rows {
		width = max(width, len(r[0]))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 0, ' ', tabwriter.AlignRight)
	row := func(cells ...string) {
		fmt.Fprintf(tw, "%-*s\t", width, cells[0])
		for _, c := range cells[1:] {
			fmt.Fprintf(tw, "   %s\t", c)
		}
		fmt.Fprintln(tw)
	}
	header := []string{"path", "throughput", "p50 µs", "wall µs", "allocs/call", "B/call"}
	for _, c := range o.own {
		header = append(header, c.header)
	}
	row(header...)
	for _, r := range rows {
		row(r...)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "(p50 µs: the median latency a call gains; wall µs: the run time per call, ns/op, it gains)")
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
	return nil
}

// listsBenchmark lists a catalogue of 20 apps of 50 tools each, with a
// policy that shows half of them: directly (the twenty upstreams at once),
// through the broker without its list cache (what a first listing costs)
// and with it (a warm listing).
const listsBenchmark = "BenchmarkToolsList"

// writeLists prints BenchmarkToolsList's rows, and how much longer than
// listing the upstreams directly a listing through the broker takes.
func (rep *report) writeLists(w io.Writer) error {
	if len(rep.lists) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\ntools/list of 20 apps × 50 tools, a policy showing half (one listing at a time):")
	width := len("row")
	for _, r := range rep.lists {
		width = max(width, len(r.path))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 0, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\t   p50 µs\t   p99 µs\t   hop CPU µs/list\t\n", width, "row")
	for _, r := range rep.lists {
		fmt.Fprintf(tw, "%-*s\t   %s\t   %s\t   %s\t\n", width, r.path, format(r, "p50-µs"), format(r, "p99-µs"), format(r, "cpu-µs/list"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var direct *result
	for _, r := range rep.lists {
		if r.path == "direct" {
			direct = r
		}
	}
	if direct == nil {
		return nil
	}
	for _, r := range rep.lists {
		if r != direct {
			if d := difference(r, direct, "p50-µs"); d != "-" {
				fmt.Fprintf(w, "%s: p50 %s µs against direct\n", r.path, d)
			}
		}
	}
	return nil
}

// writeEngine prints, section by section, the cost of one policy decision
// or one minted token measured by the components' own benchmarks: one
// goroutine, no HTTP, the benchmark's own input, so a floor for what the
// feature adds to a call.
func (rep *report) writeEngine(w io.Writer) error {
	for _, c := range components {
		var rows [][]string
		width := 0
		for _, b := range c.benchmarks {
			r := rep.engine[b.name]
			if r == nil {
				continue
			}
			ns, ok := r.get("ns/op")
			if !ok {
				continue
			}
			label := b.name + " (" + b.what + ")"
			width = max(width, len(label))
			rows = append(rows, []string{label, strconv.FormatFloat(ns/1000, 'f', 2, 64) + " µs", format(r, "allocs/op") + " allocs/op"})
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintln(w, "\n"+c.title)
		tw := tabwriter.NewWriter(w, 0, 0, 0, ' ', tabwriter.AlignRight)
		for _, r := range rows {
			fmt.Fprintf(tw, "%-*s\t   %s\t   %s\t\n", width, r[0], r[1], r[2])
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func format(r *result, unit string) string {
	v, ok := r.get(unit)
	if !ok {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// formatFraction is format with decimals.
func formatFraction(r *result, unit string, decimals int) string {
	v, ok := r.get(unit)
	if !ok {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', decimals, 64)
}

func ratio(r, base *result, unit string) string {
	v, ok1 := r.get(unit)
	b, ok2 := base.get(unit)
	if !ok1 || !ok2 || b == 0 {
		return "-"
	}
	return strconv.FormatFloat(v/b, 'f', 2, 64)
}

func difference(r, base *result, unit string) string {
	v, ok1 := r.get(unit)
	b, ok2 := base.get(unit)
	if !ok1 || !ok2 {
		return "-"
	}
	return fmt.Sprintf("%+.0f", v-b)
}

// change is r's value of unit relative to base's, as a signed percentage.
func change(r, base *result, unit string) string {
	v, ok1 := r.get(unit)
	b, ok2 := base.get(unit)
	if !ok1 || !ok2 || b == 0 {
		return "-"
	}
	return fmt.Sprintf("%+.1f %%", (v/b-1)*100)
}

// microsecondsDifference is difference for a unit in nanoseconds, in
// microseconds.
func microsecondsDifference(r, base *result, unit string) string {
	v, ok1 := r.get(unit)
	b, ok2 := base.get(unit)
	if !ok1 || !ok2 {
		return "-"
	}
	return fmt.Sprintf("%+.1f", (v-b)/1000)
}
