//go:build !linux

package main

import (
	"errors"
	"net"
)

// setCloseOnExec: socket activation is Linux-only; nothing to mark.
func setCloseOnExec(int) {}

// adoptListener: systemd, and with it socket activation, is Linux-only.
func adoptListener(int, string) (net.Listener, error) {
	return nil, errors.New("socket activation is supported on Linux only")
}

// monotonicUsec: MONOTONIC_USEC= is left out off Linux.
func monotonicUsec() (uint64, bool) { return 0, false }
