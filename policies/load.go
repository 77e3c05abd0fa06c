package policies

import (
	"embed"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/chimirror/chimirror/tomlstrict"
)

// builtinFS holds the built-in policies, one file per policy.
//
//go:embed *.toml
var builtinFS embed.FS

// BuiltinPrefix starts the Source (and the file name in problems) of a
// built-in policy: "builtin:default.toml".
const BuiltinPrefix = "builtin:"

// Set is the policies in force, by name. It is read-only once loaded, and so
// safe for concurrent use.
type Set struct {
	byName map[string]*Policy
}

// Get returns the policy called name. The policy is shared: do not modify it.
func (s *Set) Get(name string) (*Policy, bool) {
	p, ok := s.byName[name]
	return p, ok
}

// Names lists the policies' names, sorted.
func (s *Set) Names() []string {
	names := make([]string, 0, len(s.byName))
	for n := range s.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// All returns every policy, sorted by name.
func (s *Set) All() []*Policy {
	out := make([]*Policy, 0, len(s.byName))
	for _, n := range s.Names() {
		out = append(out, s.byName[n])
	}
	return out
}

// policySource is one policy file to parse.
type policySource struct {
	file string // as reported: a path, or BuiltinPrefix + base name
	data []byte
}

// Load returns the built-in policies plus every *.toml file directly in dir
// ("" for the built-ins alone). A file in dir replaces the built-in policy of
// the same name as a whole; its keys are not merged with the built-in's, and
// the replaced built-in is not parsed. Any error is a tomlstrict.Problems listing every
// problem of every file: files that could not be read first, then by policy
// name and line.
func Load(dir string) (*Set, error) {
	srcs := make(map[string]policySource)
	var ps tomlstrict.Problems
	builtins, err := fs.Glob(builtinFS, "*.toml")
	if err != nil { // only for a malformed pattern
		return nil, tomlstrict.Problems{{File: BuiltinPrefix + "*.toml", Msg: err.Error()}}
	}
	for _, f := range builtins {
		data, err := builtinFS.ReadFile(f)
		if err != nil {
			ps = append(ps, tomlstrict.Problem{File: BuiltinPrefix + f, Msg: err.Error()})
			continue
		}
		srcs[strings.TrimSuffix(f, ".toml")] = policySource{file: BuiltinPrefix + f, data: data}
	}
	if dir != "" {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, tomlstrict.Problems{{File: dir, Msg: "read policy directory: " + err.Error()}}
		}
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".toml") {
				continue
			}
			path := filepath.Join(dir, e.Name())
			data, err := os.ReadFile(path)
			if err != nil {
				ps = append(ps, tomlstrict.Problem{File: path, Msg: err.Error()})
				continue
			}
			srcs[strings.TrimSuffix(e.Name(), ".toml")] = policySource{file: path, data: data}
		}
	}
	names := make([]string, 0, len(srcs))
	for n := range srcs {
		names = append(names, n)
	}
	sort.Strings(names)
	set := &Set{byName: make(map[string]*Policy, len(srcs))}
	for _, name := range names {
		src := srcs[name]
		p, pps := parse(src.file, name, src.data)
		ps = append(ps, pps...)
		if p != nil {
			set.byName[name] = p
		}
	}
	if len(ps) > 0 {
		return nil, ps
	}
	return set, nil
}
