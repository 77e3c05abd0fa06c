package policies

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/chimirror/chimirror/tomlstrict"
)

// Ensure Load gives the built-ins, lets an operator's file replace one as a
// whole, and adds the operator's other files.
func TestLoad(t *testing.T) {
	override := filepath.Join(fixtures, "override")
	tests := []struct {
		name      string
		dir       string
		wantNames []string
		// wantSource and wantCPU, wantMemory by policy name
		wantSource map[string]string
		wantCPU    map[string]float64
		wantMemory map[string]int64
	}{
		{
			name:       "built-ins only",
			dir:        "",
			wantNames:  []string{"default", "strict"},
			wantSource: map[string]string{"default": "builtin:default.toml", "strict": "builtin:strict.toml"},
			wantCPU:    map[string]float64{"default": 1, "strict": 0.5},
			wantMemory: map[string]int64{"default": 512 << 20, "strict": 64 << 20},
		},
		{
			name:      "operator directory: default replaced, batch added, strict kept",
			dir:       override,
			wantNames: []string{"batch", "default", "strict"},
			wantSource: map[string]string{
				"batch":   filepath.Join(override, "batch.toml"),
				"default": filepath.Join(override, "default.toml"),
				"strict":  "builtin:strict.toml",
			},
			wantCPU: map[string]float64{"batch": 4, "default": 2, "strict": 0.5},
			// The replacement sets no memory, and the built-in's is not merged in.
			wantMemory: map[string]int64{"batch": 8 << 30, "default": 0, "strict": 64 << 20},
		},
		{
			name:       "empty operator directory",
			dir:        t.TempDir(),
			wantNames:  []string{"default", "strict"},
			wantSource: map[string]string{"default": "builtin:default.toml", "strict": "builtin:strict.toml"},
			wantCPU:    map[string]float64{"default": 1, "strict": 0.5},
			wantMemory: map[string]int64{"default": 512 << 20, "strict": 64 << 20},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set, err := Load(tc.dir)
			if err != nil {
				t.Fatalf("Load(%q): %v", tc.dir, err)
			}
			if got := set.Names(); !reflect.DeepEqual(got, tc.wantNames) {
				t.Errorf("Names() = %v, want %v", got, tc.wantNames)
			}
			for _, name := range tc.wantNames {
				p, ok := set.Get(name)
				if !ok {
					t.Errorf("Get(%q): missing", name)
					continue
				}
				if p.Name != name || p.Source != tc.wantSource[name] || p.CPU != tc.wantCPU[name] || p.MemoryMaxBytes != tc.wantMemory[name] {
					t.Errorf("%s: Name %q, Source %q, CPU %g, MemoryMaxBytes %d; want %q, %g, %d",
						name, p.Name, p.Source, p.CPU, p.MemoryMaxBytes, tc.wantSource[name], tc.wantCPU[name], tc.wantMemory[name])
				}
			}
			if _, ok := set.Get("nope"); ok {
				t.Errorf("Get(\"nope\") found a policy")
			}
		})
	}
}

// Ensure Load's error is a Problems listing every problem of every file.
func TestLoad_Errors(t *testing.T) {
	invalid := filepath.Join(fixtures, "invalid")
	tests := []struct {
		name  string
		setup func(t *testing.T) string // returns the directory to load
		// want are substrings, each of a different problem line
		want []string
		// wantAll: the problems must be those of Parse on every *.toml file
		wantAll bool
	}{
		{
			name:    "every problem of every invalid file",
			setup:   func(t *testing.T) string { return invalid },
			wantAll: true,
			want: []string{
				filepath.Join(invalid, "Bad_Name.toml") + `: "Bad_Name" is not a valid policy name`,
				filepath.Join(invalid, "many.toml") + ":4: tmp_size:",
				filepath.Join(invalid, "many.toml") + ":13: rlimits.stack:",
				filepath.Join(invalid, "syntax.toml") + ":2: memory:",
				filepath.Join(invalid, "unknown-key.toml") + ":2: cpus: unknown key",
			},
		},
		{
			name: "a broken replacement of a built-in",
			setup: func(t *testing.T) string {
				dir := t.TempDir()
				writeTestFile(t, filepath.Join(dir, "strict.toml"), "cpu = 1\nmemroy = \"1GiB\"\n")
				return dir
			},
			want: []string{"/strict.toml:2: memroy: unknown key"},
		},
		{
			name:  "missing directory",
			setup: func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") },
			want:  []string{"nope: read policy directory: open ", "no such file or directory"},
		},
		{
			name: "unreadable file",
			setup: func(t *testing.T) string {
				dir := t.TempDir()
				if err := os.Mkdir(filepath.Join(dir, "x.toml"), 0o755); err != nil {
					t.Fatal(err)
				}
				// A directory named *.toml is skipped; a dangling link is not.
				if err := os.Symlink(filepath.Join(dir, "gone"), filepath.Join(dir, "dangling.toml")); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			want: []string{"dangling.toml: open ", "no such file or directory"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.setup(t)
			set, err := Load(dir)
			if err == nil {
				t.Fatalf("Load(%q) = %v, want an error", dir, set.Names())
			}
			var ps tomlstrict.Problems
			if !errors.As(err, &ps) {
				t.Fatalf("error %T %v, want Problems", err, err)
			}
			text := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("error lacks %q:\n%s", w, text)
				}
			}
			if tc.wantAll {
				var want tomlstrict.Problems
				files, err := filepath.Glob(filepath.Join(dir, "*.toml"))
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range files {
					data, err := os.ReadFile(f)
					if err != nil {
						t.Fatal(err)
					}
					_, fps := parse(f, strings.TrimSuffix(filepath.Base(f), ".toml"), data)
					if len(fps) == 0 {
						t.Errorf("%s: no problems", f)
					}
					want = append(want, fps...)
				}
				if len(ps) != len(want) {
					t.Errorf("%d problems, want %d (every file's):\n%v", len(ps), len(want), ps)
				}
			}
		})
	}
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
