//go:build !linux

package main

import "syscall"

// benchServerAttr: no parent-death signal outside Linux.
func benchServerAttr() *syscall.SysProcAttr { return nil }
