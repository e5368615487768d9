// Package broker is the composition root of mcpbroker: it builds the
// provider, the apps and the request pipeline from configuration, and runs
// the server.
//
// Every client message becomes a Call that flows through named stages,
// each in its own file (decode, route, authorize, exchange, forward, then
// log). Stages never write a response: errors are rendered in render.go,
// in one place.
package broker
