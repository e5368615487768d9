package orchestrator_test

# Wrong on purpose: the policy denies transfer.
test_transfer_allowed if {
	data.orchestrator.result.allowed with input as {"request": {"mcp": {"method": "tools/call", "tool": {"params": {"name": "transfer"}}}}}
}
