//go:build !linux

package supervisor

// readable cannot tell here: a pump waiting for its client (awaitBacklog)
// stops waiting whenever it looks at its pipe.
func readable(uintptr) int { return -1 }
