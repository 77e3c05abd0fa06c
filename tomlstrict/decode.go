package tomlstrict

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Decode decodes data into v and reports a syntax or type error (alone:
// decoding stops there), or else every key v has no field for. decoded is
// true when v holds the whole document, so that the only problems, if any,
// are unknown keys and v can be checked on. The Index locates keys for the
// caller's own semantic checks.
//
// v's fields are matched by their `toml` tags, and a field's type may
// implement encoding.TextUnmarshaler (as Duration does); its error is the
// problem's message.
func Decode(file string, data []byte, v any) (idx *Index, ps Problems, decoded bool) {
	data = bytes.TrimPrefix(data, utf8BOM) // as an editor may write it
	idx = NewIndex(data)
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var missing *toml.StrictMissingError
	var de *toml.DecodeError
	if idx.syntax == nil {
		// Every value's kind against its field's type, first: the
		// decoder's own type errors use Go's words and, inside inline
		// tables, a partial key, and it lets some kinds through.
		if p, ok := idx.mismatch(file, v); ok {
			return idx, Problems{p}, false
		}
	}
	switch {
	case err == nil:
		return idx, nil, true
	case errors.As(err, &missing):
		for i := range missing.Errors {
			line, _ := missing.Errors[i].Position()
			k := idx.fullKey(Key(missing.Errors[i].Key()), line)
			ps = append(ps, Problem{File: file, Line: line, Key: k.String(), Msg: "unknown key"})
		}
		return idx, ps, true
	case errors.As(err, &de):
		line, col := de.Position()
		k := Key(de.Key())
		if len(k) == 0 {
			k = idx.keyOnLine(data, line, col)
		} else {
			k = idx.fullKey(k, line)
		}
		return idx, Problems{{File: file, Line: line, Key: k.String(), Msg: strings.TrimPrefix(de.Error(), "toml: ")}}, false
	default:
		return idx, Problems{{File: file, Msg: err.Error()}}, false
	}
}

var utf8BOM = []byte("\xef\xbb\xbf")

// mismatch finds the first value whose kind v's field does not take. The
// decoder lets some through: an integer into a Duration, whose Go type is
// an integer, would be nanoseconds.
func (x *Index) mismatch(file string, v any) (Problem, bool) {
	for _, e := range x.entries {
		k := e.full()
		t, ok := fieldType(reflect.TypeOf(v), k)
		if !ok {
			continue // an unknown key: the decoder reports it
		}
		line := e.line
		msg, bad := "", false
		if len(e.key) == 0 {
			msg, bad = headerMismatch(t, e)
		} else {
			msg, line, bad = kindMismatch(t, e)
		}
		if bad {
			return Problem{File: file, Line: line, Key: k.String(), Msg: msg}, true
		}
	}
	return Problem{}, false
}

// headerMismatch says what t wants when header e ([t] or [[t]]) is not how
// t is written; ok is false when it is.
func headerMismatch(t reflect.Type, e entry) (string, bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	name := e.table.String()
	switch e.kind {
	case unstable.Table:
		switch t.Kind() {
		case reflect.Struct, reflect.Map, reflect.Interface:
			return "", false
		case reflect.Slice, reflect.Array:
			return fmt.Sprintf("must be an array of tables, written [[%s]], not a table", name), true
		}
		return fmt.Sprintf("must be %s, not a table", tomlKind(t)), true
	case unstable.ArrayTable:
		switch t.Kind() {
		case reflect.Slice, reflect.Array, reflect.Interface:
			return "", false
		case reflect.Struct, reflect.Map:
			return fmt.Sprintf("must be one table, written [%s], not an array of tables", name), true
		}
		return fmt.Sprintf("must be %s, not an array of tables", tomlKind(t)), true
	}
	return "", false // an inline table in an array: its key's value was checked
}

// fullKey is k, as the decoder names a key on line, made whole: the
// decoder may name it relative to its table, or, inside an array of inline
// tables, without the array's key.
func (x *Index) fullKey(k Key, line int) Key {
	for _, e := range x.entries {
		if e.line == line && e.full().String() == k.String() {
			return k
		}
	}
	for _, e := range x.entries {
		if e.line != line || len(e.key) == 0 {
			continue
		}
		if full := e.full(); len(full) > len(k) && full[len(full)-len(k):].String() == k.String() {
			return full
		}
	}
	return k
}

// keyOnLine is the key of the expression a syntax error at line and
// column col stopped: the expression starts where the last one the parser
// finished ends (past blank lines and comments), maybe lines before the
// error (a multi-line string or array), and its key is the text before its
// '=', read by the parser as a key of its own.
func (x *Index) keyOnLine(data []byte, line, col int) Key {
	i := min(x.parsedTo, len(data))
	if i > 0 { // the rest of that expression's line closes it: a header's brackets, a comment
		if nl := bytes.IndexByte(data[i:], '\n'); nl >= 0 {
			i += nl
		} else {
			i = len(data)
		}
	}
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\r', '\n':
			i++
			continue
		case '#':
			if nl := bytes.IndexByte(data[i:], '\n'); nl >= 0 {
				i += nl
				continue
			}
			i = len(data)
			continue
		}
		break
	}
	start := 1 + bytes.Count(data[:i], []byte("\n"))
	if start > line {
		start = line
	}
	text := bytes.Split(data, []byte("\n"))[start-1]
	if start == line && col-1 < len(text) {
		text = text[:max(col-1, 0)]
	}
	eq := bytes.IndexByte(text, '=')
	if eq < 0 {
		return nil
	}
	var p unstable.Parser
	p.Reset(append(bytes.Clone(text[:eq]), "= 0\n"...))
	if !p.NextExpression() || p.Expression().Kind != unstable.KeyValue {
		return nil
	}
	var table Key
	for _, e := range x.entries {
		if e.line > start {
			break
		}
		if len(e.key) == 0 && e.kind != unstable.InlineTable {
			table = e.table
		}
	}
	return append(append(Key{}, table...), keyOf(p.Expression())...)
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// fieldType follows k through t's fields (by their toml tags), arrays of
// tables and maps to the type its value is decoded into.
func fieldType(t reflect.Type, k Key) (reflect.Type, bool) {
	for _, part := range k {
		t = elem(t)
		switch t.Kind() {
		case reflect.Map:
			t = t.Elem()
		case reflect.Struct:
			f, ok := fieldByTag(t, part)
			if !ok {
				return nil, false
			}
			t = f.Type
		default:
			return nil, false
		}
	}
	return t, true
}

// elem is t without pointers and, for an array of tables, its element.
func elem(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice && elemIsTable(t.Elem()) {
		t = t.Elem()
	}
	return t
}

func elemIsTable(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct || t.Kind() == reflect.Map
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if tag == name || tag == "" && strings.EqualFold(f.Name, name) {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// kindMismatch says what t wants when e's value (or one of an array's
// elements) is not of a kind t takes, and on which line; ok is false when
// it is.
func kindMismatch(t reflect.Type, e entry) (msg string, line int, ok bool) {
	want := tomlKind(t)
	if want == "" || accepts(t, e.kind) {
		if t.Kind() != reflect.Slice || e.kind != unstable.Array || tomlKind(t.Elem()) == "" {
			return "", 0, false
		}
		for i, el := range e.elems {
			if !accepts(t.Elem(), el.kind) {
				line := el.line
				if line == 0 {
					line = e.line
				}
				return fmt.Sprintf("element %d must be %s, not %s", i+1, tomlKind(t.Elem()), kindName(el.kind)), line, true
			}
		}
		return "", 0, false
	}
	return fmt.Sprintf("must be %s, not %s", want, kindName(e.kind)), e.line, true
}

// takes is what TOML values t is decoded from: their name for messages
// and their kinds; "" and nil for any value.
func takes(t reflect.Type) (name string, kinds []unstable.Kind) {
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		return "a string", []unstable.Kind{unstable.String}
	}
	switch t.Kind() {
	case reflect.String:
		return "a string", []unstable.Kind{unstable.String}
	case reflect.Bool:
		return "true or false", []unstable.Kind{unstable.Bool}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer", []unstable.Kind{unstable.Integer}
	case reflect.Float32, reflect.Float64:
		return "a number", []unstable.Kind{unstable.Float, unstable.Integer}
	case reflect.Slice, reflect.Array:
		return "an array", []unstable.Kind{unstable.Array}
	case reflect.Struct, reflect.Map:
		return "a table", []unstable.Kind{unstable.InlineTable, unstable.Table}
	}
	return "", nil
}

// tomlKind names the TOML values t is decoded from; "" for any value.
func tomlKind(t reflect.Type) string {
	name, _ := takes(t)
	return name
}

// accepts reports whether a value of kind k decodes into t at all.
func accepts(t reflect.Type, k unstable.Kind) bool {
	name, kinds := takes(t)
	return name == "" || slices.Contains(kinds, k)
}

// kindName names a TOML value's kind.
func kindName(k unstable.Kind) string {
	switch k {
	case unstable.String:
		return "a string"
	case unstable.Integer:
		return "an integer"
	case unstable.Float:
		return "a float"
	case unstable.Bool:
		return "a boolean"
	case unstable.Array:
		return "an array"
	case unstable.InlineTable, unstable.Table:
		return "a table"
	}
	return "a date or time"
}
