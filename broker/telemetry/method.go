package telemetry

// MethodLabel is method as metrics and span names show it: one of the MCP
// methods, or "other", so that clients cannot grow the label values.
func MethodLabel(method string) string { return methodLabel(method) }
