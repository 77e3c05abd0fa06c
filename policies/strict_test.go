package policies

import (
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

type testApp struct {
	Name  string   `toml:"name"`
	Grace Duration `toml:"grace"`
}

type testConfig struct {
	Listen string    `toml:"listen"`
	App    []testApp `toml:"app"`
}

// Ensure every kind of problem names the file, the line and the key.
func TestDecodeStrict(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want []string
	}{
		{"valid", "listen = \"x\"\n[[app]]\nname = \"a\"\ngrace = \"2s\"\n", nil},
		{"wrong type", "listen = 3\n", []string{"f.toml:1: listen: incompatible types"}},
		{"bad duration", "[[app]]\nname = \"a\"\ngrace = \"5x\"\n", []string{`f.toml:3: app.grace: bad duration "5x"`}},
		{"negative duration", "[[app]]\ngrace = \"-1s\"\n", []string{`f.toml:2: app.grace: duration "-1s" must not be negative`}},
		{"syntax", "listen = [\n", []string{"f.toml:1: listen: unexpected EOF"}},
		{"unknown keys", "lsten = 1\n[[app]]\nname = \"a\"\n\n[[app]]\nnmae = \"b\"\n", []string{
			"f.toml:1: lsten: unknown key", "f.toml:6: app.nmae: unknown key"}},
		{"unknown table reported once", "[extra]\na = 1\nb = 2\n", []string{"f.toml:1: extra: unknown key"}},
		{"multi-line string is not keys", "listen = '''\nfake = 1\n'''\nbogus = 2\n", []string{"f.toml:4: bogus: unknown key"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c testConfig
			_, ps := DecodeStrict("f.toml", []byte(tc.toml), &c)
			if len(ps) != len(tc.want) {
				t.Fatalf("problems:\n%v\nwant %d", ps, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(ps[i].String(), w) {
					t.Errorf("problem %d: %q, want prefix %q", i, ps[i], w)
				}
			}
		})
	}
}

// Ensure Line finds a key in the n-th array table, or its header.
func TestIndex_Line(t *testing.T) {
	idx := NewIndex([]byte("a = 1\n[[app]]\nname = \"x\"\n[[app]]\n\nname = \"y\"\n[[app]]\n"))
	for _, tc := range []struct {
		table string
		n     int
		key   string
		line  int
	}{{"", 0, "a", 1}, {"app", 0, "name", 3}, {"app", 1, "name", 6}, {"app", 2, "name", 7}, {"app", 5, "name", 0}} {
		if got := idx.Line(tc.table, tc.n, tc.key); got != tc.line {
			t.Errorf("%s[%d].%s: line %d, want %d", tc.table, tc.n, tc.key, got, tc.line)
		}
	}
}

// Ensure KeyLine finds a key written in any form, or else the closest
// enclosing key or table.
func TestIndex_KeyLine(t *testing.T) {
	idx := NewIndex([]byte("a = 1\nt.x = 2\ninline = { y = 3 }\n\n[t2]\nz = 4\n[t2.sub]\n"))
	tests := []struct {
		name string
		key  toml.Key
		line int
	}{
		{"top-level key", toml.Key{"a"}, 1},
		{"dotted key", toml.Key{"t", "x"}, 2},
		{"inside an inline table: the table's key", toml.Key{"inline", "y"}, 3},
		{"key in a table", toml.Key{"t2", "z"}, 6},
		{"missing key in a table: the header", toml.Key{"t2", "nope"}, 5},
		{"sub-table header", toml.Key{"t2", "sub", "w"}, 7},
		{"nowhere", toml.Key{"nope"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := idx.KeyLine(tc.key); got != tc.line {
				t.Errorf("KeyLine(%v) = %d, want %d", tc.key, got, tc.line)
			}
		})
	}
}
