package redact

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

var errNotJSON = errors.New("redact: not valid JSON")

// MaskJSON masks the findings in every string value of a JSON document
// (member names are left alone) and returns the document with only those
// strings changed; doc itself, unchanged, when nothing is found.
func (s *Set) MaskJSON(doc []byte) ([]byte, Counts, error) {
	return s.walkJSON(doc, true)
}

// FindJSON counts the findings in every string value of a JSON document.
func (s *Set) FindJSON(doc []byte) (Counts, error) {
	_, counts, err := s.walkJSON(doc, false)
	return counts, err
}

func (s *Set) walkJSON(doc []byte, mask bool) ([]byte, Counts, error) {
	if !json.Valid(doc) {
		return nil, nil, errNotJSON
	}
	var out []byte // made at the first change
	var counts Counts
	last := 0
	for i := 0; i < len(doc); i++ {
		if doc[i] != '"' {
			continue
		}
		end := jsonrpc.StringEnd(doc, i)
		if end < 0 {
			return nil, nil, errNotJSON
		}
		j := end
		for j < len(doc) && (doc[j] == ' ' || doc[j] == '\t' || doc[j] == '\n' || doc[j] == '\r') {
			j++
		}
		if j < len(doc) && doc[j] == ':' { // a member name
			i = end - 1
			continue
		}
		raw := doc[i:end]
		var text string
		if strings.IndexByte(string(raw), '\\') < 0 {
			text = string(raw[1 : len(raw)-1])
		} else if err := json.Unmarshal(raw, &text); err != nil {
			return nil, nil, errNotJSON
		}
		i = end - 1
		found := s.Find(text)
		if len(found) == 0 {
			continue
		}
		if counts == nil {
			counts = Counts{}
		}
		for _, f := range found {
			counts[f.Kind]++
		}
		if !mask {
			continue
		}
		masked, _ := maskFound(text, found)
		encoded, _ := jsonrpc.Marshal(masked)
		if out == nil {
			out = make([]byte, 0, len(doc)+64)
		}
		out = append(out, doc[last:end-len(raw)]...)
		out = append(out, encoded...)
		last = end
	}
	if out == nil {
		return doc, counts, nil
	}
	return append(out, doc[last:]...), counts, nil
}
