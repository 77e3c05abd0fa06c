// Package policies holds chimirror's configuration schemas and their
// validation: strict TOML decoding whose every problem names file, line and
// key. It also holds the job policies (policy.go, load.go): the built-in
// default.toml and strict.toml, embedded, plus an operator's own files,
// checked and translated into the OCI runtime-spec vocabulary.
package policies

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Problem is one thing wrong with a file, at a line (0 when unknown).
type Problem struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Key != "" {
		b.WriteString(p.Key)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is an error listing every problem found, one per line.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Err returns ps as an error, or nil when there are none.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

var tomlLineErr = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

// DecodeStrict decodes data into v and reports a syntax or type error, or
// every key v has no field for. The returned Index locates keys for the
// caller's own semantic checks.
func DecodeStrict(file string, data []byte, v any) (*Index, Problems) {
	idx, ps, _ := decodeStrict(file, data, v)
	return idx, ps
}

// decodeStrict is DecodeStrict that also reports whether v was decoded, so
// that the only problems, if any, are unknown keys and v can be checked on.
func decodeStrict(file string, data []byte, v any) (*Index, Problems, bool) {
	idx := NewIndex(data)
	md, err := toml.Decode(string(data), v)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return idx, Problems{{File: file, Line: pe.Position.Line, Key: pe.LastKey, Msg: pe.Message}}, false
		}
		if m := tomlLineErr.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1]) // the regexp matched digits
			return idx, Problems{{File: file, Line: line, Key: m[2], Msg: m[3]}}, false
		}
		return idx, Problems{{File: file, Msg: err.Error()}}, false
	}
	var ps Problems
	var reported []toml.Key
	seen := make(map[string]bool)
outer:
	for _, k := range md.Undecoded() {
		if seen[k.String()] { // the same key in several array tables: All has every line
			continue
		}
		seen[k.String()] = true
		for _, r := range reported { // an unknown table's keys are not news
			if len(k) > len(r) && strings.HasPrefix(k.String(), r.String()+".") {
				continue outer
			}
		}
		reported = append(reported, k)
		lines := idx.All(k)
		if len(lines) == 0 {
			lines = []int{0}
		}
		for _, l := range lines {
			ps = append(ps, Problem{File: file, Line: l, Key: k.String(), Msg: "unknown key"})
		}
	}
	return idx, ps, true
}

// Index maps keys to the lines they are written on.
type Index struct {
	// entries in file order
	entries []indexEntry
	// headers[table] lists the line of each [[table]] or [table] header
	headers map[string][]int
}

type indexEntry struct {
	table string // dotted table path, "" at top level
	n     int    // which occurrence of an array table (0-based)
	key   string // dotted key within the table; "" for the header itself
	line  int
}

var (
	headerRe = regexp.MustCompile(`^\s*(\[\[?)\s*([A-Za-z0-9_.\-" ]+?)\s*\]\]?\s*(#.*)?$`)
	keyRe    = regexp.MustCompile(`^\s*([A-Za-z0-9_\-."]+)\s*=`)
)

// NewIndex scans data line by line. It understands what chimirror's files
// use (tables, arrays of tables, dotted keys, multi-line strings and arrays);
// anything it cannot place is simply not indexed.
func NewIndex(data []byte) *Index {
	idx := &Index{headers: make(map[string][]int)}
	table, n := "", 0
	inMulti := ""
	for i, line := range strings.Split(string(data), "\n") {
		ln := i + 1
		if inMulti != "" {
			if strings.Count(line, inMulti)%2 == 1 {
				inMulti = ""
			}
			continue
		}
		if m := headerRe.FindStringSubmatch(line); m != nil {
			table = unquoteKey(m[2])
			n = len(idx.headers[table])
			idx.headers[table] = append(idx.headers[table], ln)
			idx.entries = append(idx.entries, indexEntry{table: table, n: n, line: ln})
			continue
		}
		rest := line
		if m := keyRe.FindStringSubmatch(line); m != nil {
			idx.entries = append(idx.entries, indexEntry{table: table, n: n, key: unquoteKey(m[1]), line: ln})
			rest = line[len(m[0]):]
		}
		// A multi-line string may open on a key line or on any line of a
		// multi-line array; its contents are not keys.
		for _, q := range []string{`"""`, `'''`} {
			if strings.Count(rest, q)%2 == 1 {
				inMulti = q
			}
		}
	}
	return idx
}

func unquoteKey(k string) string {
	parts := strings.Split(k, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"`)
	}
	return strings.Join(parts, ".")
}

// All returns every line where key k (a full path, as toml.Key) is written.
func (x *Index) All(k toml.Key) []int {
	var lines []int
	for _, e := range x.entries {
		full := e.table
		if e.key != "" {
			if full != "" {
				full += "."
			}
			full += e.key
		}
		if full == k.String() {
			lines = append(lines, e.line)
		}
	}
	return lines
}

// KeyLine returns the first line where key k (a full path) is written or,
// when k itself is not indexed (say, inside an inline table), the line of its
// nearest enclosing key or table header; 0 when none is found.
func (x *Index) KeyLine(k toml.Key) int {
	for n := len(k); n > 0; n-- {
		if lines := x.All(k[:n]); len(lines) > 0 {
			return lines[0]
		}
	}
	return 0
}

// Line returns the line of key in the n-th occurrence of table (an array of
// tables such as "app"), falling back to that table's header line, or 0.
func (x *Index) Line(table string, n int, key string) int {
	for _, e := range x.entries {
		if e.table == table && e.n == n && e.key == key {
			return e.line
		}
	}
	if hs := x.headers[table]; n < len(hs) {
		return hs[n]
	}
	return 0
}

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
