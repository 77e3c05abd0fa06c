package supervisor

import "golang.org/x/sys/unix"

// readable is how many bytes fd (a pipe or a socket) holds now (FIONREAD,
// which Linux calls TIOCINQ), or -1
// when it cannot tell; a pump waiting for its client looks at its pipe
// with it (awaitBacklog).
func readable(fd uintptr) int {
	n, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ)
	if err != nil {
		return -1
	}
	return n
}
