package tomlstrict

import (
	"strings"
	"testing"
)

type testApp struct {
	Name  string   `toml:"name"`
	Grace Duration `toml:"grace"`
}

type testConfig struct {
	Listen string    `toml:"listen"`
	Max    int       `toml:"max"`
	Ping   Duration  `toml:"ping"`
	Hosts  []string  `toml:"hosts"`
	Rate   testRate  `toml:"rate"`
	App    []testApp `toml:"app"`
}

type testRate struct {
	CPU float64 `toml:"cpu"`
}

// Ensure every kind of problem names the file, the line and the key.
func TestDecodeStrict(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want []string
	}{
		{"valid", "listen = \"x\"\n[[app]]\nname = \"a\"\ngrace = \"2s\"\n", nil},
		{"wrong type", "listen = 3\n", []string{"f.toml:1: listen: must be a string, not an integer"}},
		{"bad duration", "[[app]]\nname = \"a\"\ngrace = \"5x\"\n", []string{`f.toml:3: app.grace: bad duration "5x"`}},
		{"negative duration", "[[app]]\ngrace = \"-1s\"\n", []string{`f.toml:2: app.grace: duration "-1s" must not be negative`}},
		{"syntax", "listen = [\n", []string{"f.toml:1: listen: array is incomplete"}},
		{"unknown keys", "lsten = 1\n[[app]]\nname = \"a\"\n\n[[app]]\nnmae = \"b\"\n", []string{
			"f.toml:1: lsten: unknown key", "f.toml:6: app.nmae: unknown key"}},
		{"unknown table reported once", "[extra]\na = 1\nb = 2\n", []string{"f.toml:1: extra: unknown key"}},
		{"wrong type in a table", "[[app]]\nname = 1\n", []string{"f.toml:2: app.name: must be a string, not an integer"}},
		{"duration not a string", "[[app]]\ngrace = 5\n", []string{"f.toml:2: app.grace: must be a string, not an integer"}},
		{"wrong element type", "hosts = [\n  \"a\",\n  3,\n]\n", []string{"f.toml:3: hosts: element 2 must be a string, not an integer"}},
		{"integer overflow keeps the decoder's words", "max = 99999999999999999999\n", []string{"f.toml:1: max: "}},
		{"syntax after a key names it", "listen = \"x\"\nmax = = 3\n", []string{"f.toml:2: max: "}},
		{"syntax in an array table names its key", "[[app]]\nname = \"a\ngrace = \"1s\"\n", []string{"f.toml:2: app.name: "}},
		{"syntax in a header has no key", "[[app]\nname = \"a\"\n", []string{"f.toml:1: expected"}},
		{"array of inline tables", "app = [\n  { name = \"a\" },\n  { nmae = \"b\" },\n]\n", []string{"f.toml:3: app.nmae: unknown key"}},
		{"float into a duration", "ping = 1.5\n", []string{"f.toml:1: ping: must be a string, not a float"}},
		{"boolean into a duration in a table", "[[app]]\ngrace = false\n", []string{"f.toml:2: app.grace: must be a string, not a boolean"}},
		{"wrong type in an array of inline tables", "app = [\n  { name = \"a\" },\n  { name = 1 },\n]\n", []string{"f.toml:3: app.name: must be a string, not an integer"}},
		{"wrong type in an inline table", "rate = { cpu = \"x\" }\n", []string{"f.toml:1: rate.cpu: must be a number, not a string"}},
		{"a table where an array of tables goes", "[app]\nname = \"a\"\n", []string{"f.toml:1: app: must be an array of tables, written [[app]], not a table"}},
		{"an array of tables where a table goes", "[[rate]]\ncpu = 1\n", []string{"f.toml:1: rate: must be one table, written [rate], not an array of tables"}},
		{"nested array element on its own line", "listen = \"x\"\nhosts = [\n  \"a\",\n  [\"A\"],\n]\n", []string{"f.toml:4: hosts: element 2 must be a string, not an array"}},
		{"duplicate key in an array table", "[[app]]\nname = \"b\"\nname = \"c\"\n", []string{"f.toml:3: app.name: "}},
		{"a byte order mark is not a key", "\ufefflisten = \"x\"\n", nil},
		{"syntax inside a multi-line string names its key", "[[app]]\nname = \"\"\"\nfoo = \\q\n\"\"\"\n", []string{"f.toml:3: app.name: "}},
		{"an unknown inline table is one unknown key", "nmae = { nmae = 1 }\n", []string{"f.toml:1: nmae: unknown key"}},
		{"multi-line string is not keys", "listen = '''\nfake = 1\n'''\nbogus = 2\n", []string{"f.toml:4: bogus: unknown key"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c testConfig
			_, ps, _ := Decode("f.toml", []byte(tc.toml), &c)
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
	idx := NewIndex([]byte("a = 1\n[[app]]\nname = \"x\"\n[[app]]\n\nname = \"y\"\n[[app]]\n" +
		"[[inline]]\nx = 1\nt = [\n  { k = 1 },\n  { j = 2,\n    k = 3 },\n]\n"))
	for _, tc := range []struct {
		table string
		n     int
		key   string
		line  int
	}{{"", 0, "a", 1}, {"app", 0, "name", 3}, {"app", 1, "name", 6}, {"app", 2, "name", 7}, {"app", 5, "name", 0},
		{"inline.t", 0, "k", 11}, {"inline.t", 1, "k", 13}, {"inline.t", 1, "j", 12}, {"inline.t", 2, "k", 0}} {
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
		key  Key
		line int
	}{
		{"top-level key", Key{"a"}, 1},
		{"dotted key", Key{"t", "x"}, 2},
		{"inside an inline table: the table's key", Key{"inline", "y"}, 3},
		{"key in a table", Key{"t2", "z"}, 6},
		{"missing key in a table: the header", Key{"t2", "nope"}, 5},
		{"sub-table header", Key{"t2", "sub", "w"}, 7},
		{"nowhere", Key{"nope"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := idx.KeyLine(tc.key); got != tc.line {
				t.Errorf("KeyLine(%v) = %d, want %d", tc.key, got, tc.line)
			}
		})
	}
}
