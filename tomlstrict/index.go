package tomlstrict

import (
	"github.com/pelletier/go-toml/v2/unstable"
)

// Index maps keys to the lines they are written on, for a caller's own
// semantic checks ("app[1].grace is longer than wall_time" belongs on
// grace's line). It is built from the TOML parser's syntax tree, so it
// places every form of key the language has: tables, arrays of tables,
// dotted keys, inline tables and arrays of inline tables.
type Index struct {
	entries []entry // in file order
	// headers[table] lists the line of each [[table]] or [table] header, or
	// of each inline table in an array assigned to that key.
	headers map[string][]int
	// parsedTo is the offset just past the last expression parsed; syntax
	// is the parser's error, which stopped it there (nil: it parsed all).
	parsedTo int
	syntax   error
}

type entry struct {
	table Key           // the enclosing table's path; empty at top level
	n     int           // which occurrence of table (0-based), for arrays of tables
	key   Key           // the key within table; empty for a header itself
	line  int           // where the key (or header) is written
	kind  unstable.Kind // the value's kind; Invalid for a header
	elems []element     // an array value's elements
}

// element is one element of an array value: its kind and its line (0 when
// the parser kept none).
type element struct {
	kind unstable.Kind
	line int
}

// full is the entry's whole key path.
func (e entry) full() Key {
	k := make(Key, 0, len(e.table)+len(e.key))
	return append(append(k, e.table...), e.key...)
}

// NewIndex parses data. A document that does not parse is indexed up to its
// error: Decode reports the error itself.
func NewIndex(data []byte) *Index {
	x := &Index{headers: make(map[string][]int)}
	var p unstable.Parser
	p.Reset(data)
	var table Key
	n := 0
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = keyOf(e)
			line := x.lineOf(&p, e)
			n = len(x.headers[table.String()])
			x.headers[table.String()] = append(x.headers[table.String()], line)
			x.entries = append(x.entries, entry{table: table, n: n, line: line, kind: e.Kind})
		case unstable.KeyValue:
			x.keyValue(&p, table, n, nil, e)
		}
		x.parsedTo = max(x.parsedTo, end(e))
	}
	x.syntax = p.Error()
	return x
}

// end is the offset just past expression e: its raw bytes', or for a
// header its last key part's (the brackets that close it are on that line).
func end(e *unstable.Node) int {
	if e.Raw.Length > 0 {
		return int(e.Raw.Offset + e.Raw.Length)
	}
	last := 0
	if e.Kind == unstable.Table || e.Kind == unstable.ArrayTable || e.Kind == unstable.KeyValue {
		for it := e.Key(); it.Next(); {
			if r := it.Node().Raw; r.Length > 0 {
				last = int(r.Offset + r.Length)
			}
		}
	}
	return last
}

// keyValue indexes one key = value inside table's n-th occurrence, with
// prefix the keys of the inline tables it is written in.
func (x *Index) keyValue(p *unstable.Parser, table Key, n int, prefix Key, e *unstable.Node) {
	key := append(append(Key{}, prefix...), keyOf(e)...)
	v := e.Value()
	en := entry{table: table, n: n, key: key, line: x.lineOf(p, e), kind: v.Kind}
	if v.Kind == unstable.Array {
		for it := v.Children(); it.Next(); {
			el := it.Node()
			en.elems = append(en.elems, element{kind: el.Kind, line: x.lineOf(p, el)})
		}
	}
	x.entries = append(x.entries, en)
	switch v.Kind {
	case unstable.InlineTable:
		for it := v.Children(); it.Next(); {
			x.keyValue(p, table, n, key, it.Node())
		}
	case unstable.Array:
		// An array of inline tables is an array of tables written inline:
		// element i is occurrence i of table.key.
		sub := append(append(Key{}, table...), key...)
		i := 0
		for it := v.Children(); it.Next(); i++ {
			el := it.Node()
			if el.Kind != unstable.InlineTable {
				continue
			}
			line := x.lineOf(p, el)
			if line == 0 {
				line = en.line
			}
			x.headers[sub.String()] = append(x.headers[sub.String()], line)
			x.entries = append(x.entries, entry{table: sub, n: i, line: line, kind: unstable.InlineTable})
			for kv := el.Children(); kv.Next(); {
				x.keyValue(p, sub, i, nil, kv.Node())
			}
		}
	}
}

// keyOf is the key a KeyValue, Table or ArrayTable node is written with.
func keyOf(e *unstable.Node) Key {
	var k Key
	for it := e.Key(); it.Next(); {
		k = append(k, string(it.Node().Data))
	}
	return k
}

// lineOf is the line where node e starts: its first key part's for a
// key/value or a header, else its own raw bytes', else (an inline table or
// an array) its first element's; 0 when the parser kept none of them.
func (x *Index) lineOf(p *unstable.Parser, e *unstable.Node) int {
	switch e.Kind {
	case unstable.KeyValue, unstable.Table, unstable.ArrayTable:
		if it := e.Key(); it.Next() {
			if r := it.Node().Raw; r.Length > 0 {
				return p.Shape(r).Start.Line
			}
		}
	case unstable.InlineTable, unstable.Array:
		if e.Raw.Length == 0 {
			if it := e.Children(); it.Next() {
				return x.lineOf(p, it.Node())
			}
		}
	}
	if e.Raw.Length > 0 {
		return p.Shape(e.Raw).Start.Line
	}
	return 0
}

// All returns every line where key k (a full path) is written.
func (x *Index) All(k Key) []int {
	var lines []int
	want := k.String()
	for _, e := range x.entries {
		if e.full().String() == want {
			lines = append(lines, e.line)
		}
	}
	return lines
}

// KeyLine returns the first line where key k (a full path) is written or,
// when k itself is not written (a default, or a key of a table written
// elsewhere), the line of its nearest enclosing key or table header; 0
// when none is found.
func (x *Index) KeyLine(k Key) int {
	for n := len(k); n > 0; n-- {
		if lines := x.All(k[:n]); len(lines) > 0 {
			return lines[0]
		}
	}
	return 0
}

// Line returns the line of key (dotted) in the n-th occurrence of table (an
// array of tables such as "app"), falling back to that occurrence's header
// line, or 0.
func (x *Index) Line(table string, n int, key string) int {
	for _, e := range x.entries {
		if e.table.String() == table && e.n == n && len(e.key) > 0 && e.key.String() == key {
			return e.line
		}
	}
	if hs := x.headers[table]; n < len(hs) {
		return hs[n]
	}
	return 0
}
