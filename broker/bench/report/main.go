// Command report reads the output of `go test -bench BenchmarkDataPath` on
// standard input and prints one table of the data paths with the ratios
// that matter: every path against the bare reverse proxy and against the
// direct connection, and every broker+X path (the broker with feature X,
// say auth) against the plain broker, with an estimate of what X costs per
// call.
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

// The baselines every other row is compared with.
const (
	direct = "direct"
	proxy  = "proxy"
)

// plain is the broker without features; a row named plain+X is the broker
// with feature X, compared with plain as well.
const plain = "broker"

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
	results []*result
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
	rep := &report{}
	byPath := map[string]*result{}
	scanner := bufio.NewScanner(r)
	for line := 1; scanner.Scan(); line++ {
		text := scanner.Text()
		switch {
		case strings.HasPrefix(text, "cpu: "):
			rep.cpu = strings.TrimPrefix(text, "cpu: ")
		case strings.HasPrefix(text, "--- FAIL") || text == "FAIL" || strings.HasPrefix(text, "FAIL\t") || strings.HasPrefix(text, "panic: "):
			return nil, fmt.Errorf("line %d: the benchmark failed: %s", line, strings.TrimSpace(text))
		case strings.HasPrefix(text, benchmarkName+"/"):
			path, procs, metrics, err := parseResult(text)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			rep.procs = procs
			res := byPath[path]
			if res == nil {
				res = &result{path: path, metrics: map[string][]float64{}}
				byPath[path] = res
				rep.results = append(rep.results, res)
			}
			for unit, value := range metrics {
				res.metrics[unit] = append(res.metrics[unit], value)
			}
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

// parseResult reads one result line:
//
//	BenchmarkDataPath/broker-2  1000  921 ns/op  1085 calls/s  12 p50-µs ...
func parseResult(line string) (path, procs string, metrics map[string]float64, err error) {
	fields := strings.Fields(line)
	if len(fields) < 4 || len(fields)%2 != 0 {
		return "", "", nil, fmt.Errorf("not a benchmark result: %q", line)
	}
	path = strings.TrimPrefix(fields[0], benchmarkName+"/")
	if i := strings.LastIndexByte(path, '-'); i > 0 {
		if _, err := strconv.Atoi(path[i+1:]); err == nil {
			path, procs = path[:i], path[i+1:]
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
	return path, procs, metrics, nil
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
	row("path", "calls/s", "p50 µs", "p99 µs", "allocs/op", "B/op")
	for _, r := range rep.results {
		row(r.path, format(r, "calls/s"), format(r, "p50-µs"), format(r, "p99-µs"),
			format(r, "allocs/op"), format(r, "B/op"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	var lines [][]string
	for _, r := range rep.results {
		bases := []string{proxy, direct}
		if _, ok := feature(r.path); ok {
			bases = append(bases, plain)
		}
		for _, base := range bases {
			b := rep.find(base)
			if b == nil || b == r || r.path == direct {
				continue
			}
			lines = append(lines, []string{
				r.path + "/" + base,
				"throughput " + ratio(r, b, "calls/s"),
				"p50 " + ratio(r, b, "p50-µs"),
				"p99 " + ratio(r, b, "p99-µs"),
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
	return rep.writeCosts(w)
}

// feature returns X for a path named broker+X.
func feature(path string) (string, bool) {
	x, ok := strings.CutPrefix(path, plain+"+")
	return x, ok && x != ""
}

// writeCosts prints, for every broker+X path, what X adds to one call: the
// difference of the median latencies of broker+X and broker. It is an
// estimate from this run only: under concurrent sessions a call's latency
// includes its wait for the CPU, and the two medians come from separate
// measurements, so small differences are noise.
func (rep *report) writeCosts(w io.Writer) error {
	base := rep.find(plain)
	if base == nil {
		return nil
	}
	var lines []string
	for _, r := range rep.results {
		x, ok := feature(r.path)
		if !ok {
			continue
		}
		if d := difference(r, base, "p50-µs"); d != "-" {
			lines = append(lines, fmt.Sprintf("%s\t%s µs per call\t(p50 %s - p50 %s)", x, d, r.path, plain))
		}
	}
	if len(lines) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nCost over the plain broker, estimated from this run's p50 latencies:")
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	for _, l := range lines {
		fmt.Fprintln(tw, l)
	}
	return tw.Flush()
}

func format(r *result, unit string) string {
	v, ok := r.get(unit)
	if !ok {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
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
