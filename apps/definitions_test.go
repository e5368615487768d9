package apps

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// An upstream that lists ever more definitions cannot grow an app's
// definitions past maxDefinitions: 50,000 definitions of 1 KiB hold the
// heap of 10,000, and the latest of a name replaces the earlier one.
func TestDefinitionsBounded(t *testing.T) {
	var ds Definitions
	raw := []byte(`{"name":"x","description":"` + strings.Repeat("d", 1000) + `"}`)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	for i := range 5 * maxDefinitions {
		ds.Put(&Definition{Kind: "tool", Name: fmt.Sprint("tool", i), Raw: append([]byte(nil), raw...), Serve: true})
	}
	grown := heap() - before
	perDefinition := uint64(len(raw) + 400) // the bytes, the struct, the map entry
	if limit := uint64(maxDefinitions) * perDefinition; grown > limit {
		t.Errorf("50,000 definitions grew the heap by %d bytes, more than %d for %d", grown, limit, maxDefinitions)
	}
	if ds.Get("tool", "tool0") == nil || ds.Get("tool", fmt.Sprint("tool", maxDefinitions)) != nil {
		t.Error("the first definitions are kept and the later ones left out")
	}
	ds.Put(&Definition{Kind: "tool", Name: "tool0", Pin: "changed"})
	if ds.Get("tool", "tool0").Pin != "changed" {
		t.Error("a known name is not replaced at the bound")
	}
	ds.Forget()
	if ds.Get("tool", "tool0") != nil {
		t.Error("Forget kept a definition")
	}
	runtime.KeepAlive(&ds)
}
