//go:build !linux

package spool

import "os"

// sync_file_range(2) is Linux's; elsewhere the page cache keeps the spool.
func startWriteBehind(*os.File, int64, int64) error  { return errNoWriteBehind }
func finishWriteBehind(*os.File, int64, int64) error { return errNoWriteBehind }
