//go:build !linux

package supervisor

import "syscall"

// osPermanentErrnos: none beyond the portable ones elsewhere.
var osPermanentErrnos []syscall.Errno
