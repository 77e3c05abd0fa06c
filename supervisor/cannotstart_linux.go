package supervisor

import "syscall"

// osPermanentErrnos are Linux's own permanent start failures.
var osPermanentErrnos = []syscall.Errno{syscall.ELIBBAD}
