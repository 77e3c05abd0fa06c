// Package tomlstrict decodes TOML files strictly, for chimirror's server
// config and its job policies alike: a syntax or type error, or a key the
// schema has no field for, is a Problem that names the file, the line and
// the key. Positions come from the decoder (pelletier/go-toml/v2's
// DecodeError and StrictMissingError) and from its parser's syntax tree
// (Index), never from the text of an error message.
package tomlstrict

import (
	"fmt"
	"strings"
)

// Problem is one thing wrong with a file, at a line (0 when unknown). It
// prints as FILE:LINE: KEY: MESSAGE.
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

// Key is a full key path, such as {"app", "grace"}.
type Key []string

// String writes k as TOML does, quoting the parts that are not bare keys.
func (k Key) String() string {
	parts := make([]string, len(k))
	for i, p := range k {
		parts[i] = quoteKeyPart(p)
	}
	return strings.Join(parts, ".")
}

func quoteKeyPart(p string) string {
	if p == "" {
		return `""`
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return fmt.Sprintf("%q", p)
		}
	}
	return p
}
