// Package limit bounds what clients can make the broker hold: open
// connections in all and per client address, and how long a request body
// may take to arrive.
package limit
