package orchestrator_test

# Would pass vacuously if the broken policy were left out and the tests run.
test_transfer_denied if {
	not data.orchestrator.result.allowed with input as {"request": {"mcp": {"method": "tools/call", "tool": {"params": {"name": "transfer"}}}}}
}
