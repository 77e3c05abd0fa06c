//go:build !linux

package main

import (
	"errors"
	"io"
	"syscall"
	"time"
)

// benchServerAttr: no parent-death signal outside Linux.
func benchServerAttr() *syscall.SysProcAttr { return nil }

// sandboxFloor: sandboxed jobs are Linux-only (the row is not measured).
func sandboxFloor() error { return errors.ErrUnsupported }

// cmdGetppidLoop: the syscall loop is Linux's.
func cmdGetppidLoop([]string, io.Writer) error { return errors.ErrUnsupported }

// processCPU: read from /proc, Linux only.
func processCPU(int) (time.Duration, error) { return 0, errors.ErrUnsupported }

// hostCPU: read from /proc, Linux only.
func hostCPU() (time.Duration, error) { return 0, errors.ErrUnsupported }
