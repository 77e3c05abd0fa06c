//go:build !linux

package main

import (
	"errors"
	"io"
	"syscall"
)

// benchServerAttr: no parent-death signal outside Linux.
func benchServerAttr() *syscall.SysProcAttr { return nil }

// sandboxFloor: sandboxed jobs are Linux-only (the row is not measured).
func sandboxFloor() error { return errors.ErrUnsupported }

// cmdGetppidLoop: the syscall loop is Linux's.
func cmdGetppidLoop([]string, io.Writer) error { return errors.ErrUnsupported }
