package sample

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// addTool registers a tool and remembers how to register it again with
// another description (applyDescriptions).
func addTool[In, Out any](s *ledgerServer, tool *mcp.Tool, handler mcp.ToolHandlerFor[In, Out]) {
	original := *tool
	s.describe[tool.Name] = func(description string) {
		changed := original
		changed.Description = description
		mcp.AddTool(s.server, &changed, handler)
	}
	mcp.AddTool(s.server, tool, handler)
}

// applyDescriptions reads the descriptions file and registers again each
// tool it names whose description differs from the one served; the SDK
// tells listening clients that the list changed.
func (s *ledgerServer) applyDescriptions() error {
	data, err := os.ReadFile(s.descriptionsFile)
	if os.IsNotExist(err) {
		return nil // nothing changed yet
	}
	if err != nil {
		return err
	}
	var descriptions map[string]string
	if err := json.Unmarshal(data, &descriptions); err != nil {
		return fmt.Errorf("%s: %w", s.descriptionsFile, err)
	}
	s.describeMu.Lock()
	defer s.describeMu.Unlock()
	for name, description := range descriptions {
		register, ok := s.describe[name]
		if !ok {
			return fmt.Errorf("%s: no tool %q", s.descriptionsFile, name)
		}
		if s.described[name] != description {
			register(description)
			if s.described == nil {
				s.described = map[string]string{}
			}
			s.described[name] = description
		}
	}
	return nil
}
