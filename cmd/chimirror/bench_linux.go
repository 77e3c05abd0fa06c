package main

import "syscall"

// benchServerAttr: if the bench dies, its server stops too, gracefully,
// ending its jobs.
func benchServerAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
