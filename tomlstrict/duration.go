package tomlstrict

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a TOML string such as "5s", "250ms" or "90d" (whole days).
// Negative values are rejected.
type Duration time.Duration

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// maxDays is the most days a time.Duration holds (about 292 years).
const maxDays = int64(math.MaxInt64 / int64(24*time.Hour))

// ParseDuration reads what Duration accepts: Go durations ("1h30m") and
// whole days ("90d"), not negative.
func ParseDuration(s string) (time.Duration, error) {
	var v time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok { // no Go unit ends in "d"
		var n int64
		if n, err = strconv.ParseInt(days, 10, 64); err == nil && n > maxDays {
			return 0, fmt.Errorf("duration %q is too long: at most %dd", s, maxDays)
		}
		if n < 0 { // before the multiplication, which a large one overflows
			return 0, fmt.Errorf("duration %q must not be negative", s)
		}
		v = time.Duration(n) * 24 * time.Hour
	} else {
		v, err = time.ParseDuration(s)
	}
	if err != nil {
		return 0, fmt.Errorf("bad duration %q: use a number with a unit, like \"5s\", \"250ms\" or \"90d\"", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("duration %q must not be negative", s)
	}
	return v, nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }
