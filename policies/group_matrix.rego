# Kong's "Secure Internal MCP Gateway" ACL matrix: two groups, eight tools.
# Warehouse operations view orders and manage inventory, including
# restocking, but neither see customer data nor cancel orders. Customer
# support views orders, checks inventory, manages customer records and
# cancels orders, but does not restock. The groups come from the validated
# token (input.subject.groups); a caller in no listed group gets nothing.
package orchestrator

# The groups that may call each tool.
acl := {
	"list-orders": {"warehouse-ops", "customer-support"},
	"get-order": {"warehouse-ops", "customer-support"},
	"cancel-order": {"customer-support"},
	"list-inventory": {"warehouse-ops", "customer-support"},
	"check-inventory": {"warehouse-ops", "customer-support"},
	"restock-item": {"warehouse-ops"},
	"get-customer": {"customer-support"},
	"update-customer-contact": {"customer-support"},
}

tool := input.request.mcp.tool.params.name

allowed if {
	some group in input.subject.groups
	group in acl[tool]
}

result := {"allowed": true} if allowed

result := {"allowed": false, "external_message": denial} if not allowed

default denial := "only the ecommerce tools can be called"

denial := sprintf("%s is available only to the group(s) %s", [tool, concat(", ", sort(acl[tool]))])
