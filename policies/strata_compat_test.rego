# Pre-1.0 syntax like the policy it tests, so "opa test --v0-compatible"
# runs the pair as well as "mcpbroker policy test" does.
package orchestrator_test

call(tool) = {
	"request": {"mcp": {"method": "tools/call", "tool": {"params": {"name": tool, "arguments": {}}}}},
	"purpose": "call",
}

list_item(tool) = {
	"request": {"mcp": {"method": "tools/call", "tool": {"params": {"name": tool}}}},
	"purpose": "list",
}

test_list_items_allowed {
	data.orchestrator.result == {"allowed": true} with input as call("listItems")
}

test_get_item_allowed {
	data.orchestrator.result == {"allowed": true} with input as call("getItem")
}

test_create_item_denied {
	data.orchestrator.result == {"allowed": false} with input as call("createItem")
}

test_empty_input_denied {
	data.orchestrator.result == {"allowed": false} with input as {}
}

test_list_shows_only_allowed_tools {
	data.orchestrator.result.allowed with input as list_item("getItem")
	data.orchestrator.result.allowed == false with input as list_item("updateItem")
}
