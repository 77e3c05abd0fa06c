//go:build !linux

package spool

import "os"

// writeBehind leaves the file to the page cache where sync_file_range(2)
// is missing.
func writeBehind(*os.File, int64, int64) error { return nil }
