package policies

import (
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strings"
)

// Size is a byte count. In TOML it is an integer number of bytes, or a string
// holding a number and a unit: "256MiB", "64MB", "1GiB", "512KiB", "1.5GiB",
// "4096". Binary units (KiB MiB GiB TiB PiB EiB) are powers of 1024, decimal
// units (kB or KB, MB, GB, TB, PB, EB) powers of 1000. A fraction must come to
// a whole number of bytes. Negative sizes and sizes beyond an int64 are
// rejected.
type Size int64

// sizeUnits are the multipliers of the units ParseSize accepts.
var sizeUnits = map[string]int64{
	"": 1, "B": 1,
	"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "PB": 1e15, "EB": 1e18,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40, "PiB": 1 << 50, "EiB": 1 << 60,
}

const sizeUnitList = "B, kB, MB, GB, TB, PB, EB, KiB, MiB, GiB, TiB, PiB or EiB"

var sizeRe = regexp.MustCompile(`^(-?)([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)$`)

// ParseSize turns a size string such as "256MiB" into bytes. The error says
// what is wrong with s, quoting it.
func ParseSize(s string) (int64, error) {
	m := sizeRe.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("bad size %q: use a number with a unit, like \"256MiB\" or \"64MB\", or a number of bytes", s)
	}
	mult, ok := sizeUnits[m[3]]
	if !ok {
		return 0, fmt.Errorf("bad size %q: unknown unit %q (use %s)", s, m[3], sizeUnitList)
	}
	if m[1] == "-" {
		return 0, fmt.Errorf("size %q must not be negative", s)
	}
	n, ok := new(big.Rat).SetString(m[2])
	if !ok { // the regexp admits only decimal numbers
		return 0, fmt.Errorf("bad size %q: %q is not a number", s, m[2])
	}
	n.Mul(n, new(big.Rat).SetInt64(mult))
	if !n.IsInt() {
		return 0, fmt.Errorf("size %q is not a whole number of bytes", s)
	}
	if !n.Num().IsInt64() {
		return 0, fmt.Errorf("size %q is too large: at most %d bytes (8EiB less one byte)", s, int64(math.MaxInt64))
	}
	return n.Num().Int64(), nil
}

// UnmarshalTOML accepts a TOML integer (bytes) or a size string.
func (sz *Size) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return fmt.Errorf("size %d must not be negative", v)
		}
		*sz = Size(v)
		return nil
	case string:
		n, err := ParseSize(v)
		if err != nil {
			return err
		}
		*sz = Size(n)
		return nil
	}
	return fmt.Errorf("must be a size like \"256MiB\" or a number of bytes, not %s", tomlType(v))
}

// FormatSize writes n >= 0 bytes in the largest unit, binary or decimal,
// that divides it exactly: 268435456 is "256MiB", 64000000 is "64MB",
// 1000001 is "1000001B". ParseSize reads the result back to n.
func FormatSize(n int64) string {
	if n == 0 {
		return "0B"
	}
	// largest multiplier first; each binary unit is larger than its decimal twin
	for _, u := range []string{"EiB", "EB", "PiB", "PB", "TiB", "TB", "GiB", "GB", "MiB", "MB", "KiB", "kB"} {
		if m := sizeUnits[u]; n%m == 0 {
			return fmt.Sprintf("%d%s", n/m, u)
		}
	}
	return fmt.Sprintf("%dB", n)
}

// tomlType names the TOML type of a decoded value, for error messages.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	case nil:
		return "nothing"
	}
	return "a date or time"
}
