//go:build !linux

package spool

import "os"

// writeBehind: sync_file_range(2) is Linux's; elsewhere the page cache
// keeps the spool.
func writeBehind(*os.File, int64, int64) error { return errNoWriteBehind }
