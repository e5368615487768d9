package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// Each testdata/*.txt is go test output; the .golden beside it is the
// report printed for it.
func TestReportGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs in testdata: %v", err)
	}
	for _, input := range inputs {
		t.Run(filepath.Base(input), func(t *testing.T) {
			f, err := os.Open(input)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			rep, err := parse(f)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := rep.write(&out); err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(input, ".txt") + ".golden"
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got := out.String(); got != string(want) {
				t.Errorf("report differs from %s (run with -update to accept):\n%s", golden, got)
			}
		})
	}
}

func TestReportRejects(t *testing.T) {
	tests := []struct {
		name, input, wantErr string
	}{
		{"empty", "", "no BenchmarkDataPath results"},
		{"no results", "goos: linux\nPASS\n", "no BenchmarkDataPath results"},
		{"failed benchmark",
			"BenchmarkDataPath/direct-2  10  100 ns/op  5 calls/s\n--- FAIL: BenchmarkDataPath/broker\n    bench_test.go:40: not a valid measurement\nFAIL\n",
			"the benchmark failed"},
		{"failed after its name",
			"BenchmarkDataPath/broker+audit-async-2  \t--- FAIL: BenchmarkDataPath/broker+audit-async-2\n",
			"the benchmark failed"},
		{"failed package", "FAIL\tgithub.com/mcpbroker/mcpbroker/broker/bench [build failed]\n", "the benchmark failed"},
		{"bad number", "BenchmarkDataPath/direct-2  10  1x0 ns/op\n", "line 1: metric ns/op"},
		{"odd fields", "BenchmarkDataPath/direct-2  10  100\n", "not a benchmark result"},
		{"bad engine number", "BenchmarkDataPath/direct-2  10  100 ns/op\nBenchmarkDecide-2  10  1x0 ns/op\n", "line 2: metric ns/op"},
		{"engine only", "BenchmarkDecide-2  10  100 ns/op  3 allocs/op\n", "no BenchmarkDataPath results"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(strings.NewReader(tt.input))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
