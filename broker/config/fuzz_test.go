package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: whatever the input, Parse returns either a Config that passes
// Validate or a non-empty Problems, and never panics.
func FuzzParse(f *testing.F) {
	setFixtureEnvironment(f)
	seeds, err := filepath.Glob(filepath.Join(fixtures, "*", "*.yaml"))
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds under %s: %v", fixtures, err)
	}
	for _, seed := range seeds {
		data, err := os.ReadFile(seed)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	// Named as a valid fixture so that "{{ file.secrets/... }}" in the seeds
	// resolves.
	name := filepath.Join(fixtures, "valid", "fuzz.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		config, err := Parse(data, name)
		if err != nil {
			var problems Problems
			if !errors.As(err, &problems) || len(problems) == 0 {
				t.Fatalf("error is not a non-empty Problems: %T %v", err, err)
			}
			if config != nil {
				t.Fatal("a config was returned with problems")
			}
			for _, problem := range problems {
				if problem.Message == "" {
					t.Fatalf("a problem without a message: %+v", problem)
				}
			}
			return
		}
		if config == nil {
			t.Fatal("no config and no error")
		}
		if err := config.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that Validate rejects: %v", err)
		}
		before, err := json.Marshal(config)
		if err != nil {
			t.Fatal(err)
		}
		config.ApplyDefaults()
		if after, _ := json.Marshal(config); !bytes.Equal(before, after) {
			t.Fatalf("ApplyDefaults is not idempotent:\n%s\n%s", before, after)
		}
	})
}
