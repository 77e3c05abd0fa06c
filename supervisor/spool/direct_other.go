//go:build !linux

package spool

import "os"

// Direct I/O is used on Linux only; elsewhere the page cache takes the
// spool.
func openDirect(string) (*os.File, error) { return nil, errNoDirect }

func directRefused(error) bool { return false }
