package accounting

import (
	"encoding/csv"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// This file renders records and reports as text. It lives here, not in
// the server's packages, so the admin API and the CLI print the same
// bytes for the same ledger without the CLI depending on the server.

// WriteReportCSV writes an accounting report as CSV: a header naming the
// grouping by, then one row per group, in the order given. Columns and
// their number formats are a stable interface (spreadsheets import them).
func WriteReportCSV(w io.Writer, by string, groups []Group) error {
	cw := csv.NewWriter(w)
	rows := [][]string{{by, "jobs", "cpu_seconds", "memory_peak_bytes", "gib_hours", "bytes", "reasons", "cost"}}
	for _, g := range groups {
		rows = append(rows, []string{g.Key, strconv.Itoa(g.Jobs), strconv.FormatFloat(g.CPUSeconds, 'f', 3, 64),
			strconv.FormatInt(g.MemoryPeakBytes, 10), strconv.FormatFloat(g.GiBHours, 'f', 6, 64),
			strconv.FormatInt(g.Bytes, 10), FormatReasons(g.Reasons, ";"), strconv.FormatFloat(g.Cost, 'f', 4, 64)})
	}
	if err := cw.WriteAll(rows); err != nil {
		return fmt.Errorf("write report CSV: %w", err)
	}
	return nil
}

// FormatReasons renders counts by reason as "exit=2;oom=1" (with sep
// ";"), sorted by reason so equal maps always read the same.
func FormatReasons(m map[string]int, sep string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, sep)
}

// FormatBytes shows a byte count in a table cell: "512B", "1.5K", "3.2M",
// "1.25G" (binary units), and "-" for a negative count, which records use
// for "not measured".
func FormatBytes(n int64) string {
	switch {
	case n < 0:
		return "-"
	case n < 1024:
		return fmt.Sprintf("%dB", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1fK", float64(n)/1024)
	case n < 1<<30:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.2fG", float64(n)/(1<<30))
}
