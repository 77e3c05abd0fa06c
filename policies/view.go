package policies

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/chimirror/chimirror/tomlstrict"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultReadOnly is what every job's view binds read-only before a
// policy's own ro paths, each where the host has it, and why. /etc is not
// bound whole: the host's accounts, keys and configuration stay out of
// sight, and the sandbox writes the job's own passwd, group, hosts and
// nsswitch.conf.
var DefaultReadOnly = []struct{ Path, Why string }{
	{"/usr", "programs, libraries and their data"},
	{"/bin", "programs (on a merged-/usr host, a symlink into /usr)"},
	{"/sbin", "system programs (likewise)"},
	{"/lib", "libraries and the dynamic loader (likewise)"},
	{"/lib32", "32-bit libraries, where installed"},
	{"/lib64", "the path of x86_64's dynamic loader"},
	{"/libx32", "x32 libraries, where installed"},
	{"/etc/alternatives", "Debian's alternatives: /usr/bin/awk and the like point through it"},
	{"/etc/ld.so.cache", "the dynamic loader's index of libraries"},
	{"/etc/ld.so.conf", "where the loader looks for libraries"},
	{"/etc/ld.so.conf.d", "likewise"},
	{"/etc/ssl", "CA certificates and OpenSSL's configuration, for TLS clients"},
	{"/etc/ca-certificates", "CA certificates (Debian's trust settings)"},
	{"/etc/pki", "CA certificates (Fedora and RHEL)"},
	{"/etc/localtime", "the host's time zone, for local times"},
	{"/etc/timezone", "the time zone's name"},
	{"/etc/protocols", "protocol names (getprotobyname; Perl's sockets need it)"},
	{"/etc/services", "port names (getservbyname)"},
	{"/etc/mime.types", "file types by extension, for programs that serve files"},
}

// networkReadOnly joins the view of a policy with network = true.
var networkReadOnly = []struct{ Path, Why string }{
	{"/etc/resolv.conf", "the host's DNS servers"},
	{"/etc/gai.conf", "getaddrinfo's address order"},
	{"/etc/host.conf", "resolver options"},
}

// sandboxOwned are the trees the sandbox makes itself: a policy may not
// bind or cover them.
var sandboxOwned = []string{"/proc", "/dev", "/sys"}

// view checks the ro, rw and tmpfs keys and fills the policy's view. A
// bound path must be absolute, clean and present here; what a view would
// show of it is resolved at each job's start.
func (c *checker) view(p *Policy, ro, rw, tmpfs any) {
	for _, d := range DefaultReadOnly {
		if _, err := os.Lstat(d.Path); err == nil {
			p.ReadOnly = append(p.ReadOnly, d.Path)
		}
	}
	if p.Network {
		for _, d := range networkReadOnly {
			if _, err := os.Lstat(d.Path); err == nil {
				p.ReadOnly = append(p.ReadOnly, d.Path)
			}
		}
	}
	p.ReadOnly = append(p.ReadOnly, c.paths(tomlstrict.Key{"ro"}, ro, true)...)
	p.ReadWrite = c.paths(tomlstrict.Key{"rw"}, rw, true)
	p.Tmpfs = c.paths(tomlstrict.Key{"tmpfs"}, tmpfs, false)
}

// paths checks a list of paths; bound ones must exist.
func (c *checker) paths(k tomlstrict.Key, r any, bound bool) []string {
	if r == nil {
		return nil
	}
	list, ok := r.([]any)
	if !ok {
		c.add(k, `must be a list of absolute paths like ["/opt/tool"], not %s`, tomlType(r))
		return nil
	}
	var out []string
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			c.add(k, `must be a list of absolute paths like ["/opt/tool"], not a list holding %s`, tomlType(e))
			continue
		}
		if err := checkPath(s); err != nil {
			c.add(k, "%v", err)
			continue
		}
		if bound {
			if _, err := os.Stat(s); err != nil {
				c.add(k, "%q: %v", s, unwrapPathError(err))
				continue
			}
		}
		out = append(out, s)
	}
	return out
}

// checkPath refuses what a view may not bind or cover.
func checkPath(s string) error {
	switch {
	case !filepath.IsAbs(s):
		return fmt.Errorf("%q is a relative path: give it from /", s)
	case filepath.Clean(s) != s:
		return fmt.Errorf("%q is not a clean path (write %q)", s, filepath.Clean(s))
	case s == "/":
		return errors.New(`"/" is the host's whole filesystem: bind what the jobs need`)
	}
	for _, own := range sandboxOwned {
		if s == own || strings.HasPrefix(s, own+"/") {
			return fmt.Errorf("%q: the sandbox makes %s itself (see sys for /sys)", s, own)
		}
	}
	return nil
}

// unwrapPathError drops the path and operation os.Stat puts in front.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		if errors.Is(pe.Err, os.ErrNotExist) {
			return errors.New("does not exist")
		}
		return pe.Err
	}
	return err
}

// Values of the seccomp key besides a file.
const (
	SeccompDefault = "default" // the sandbox's default profile (containerd's)
	SeccompOff     = "off"     // no filter
)

// seccomp checks the seccomp key: "default", "off", or the path of an OCI
// seccomp profile (a JSON LinuxSeccomp), relative to the policy file.
// Whether the profile compiles for this host is the sandbox's to say
// (see Policy.SeccompProblem).
func (c *checker) seccomp(p *Policy, r any) {
	k := tomlstrict.Key{"seccomp"}
	p.Seccomp = SeccompDefault
	if r == nil {
		return
	}
	p.seccompLine = c.idx.KeyLine(k)
	s, ok := r.(string)
	if !ok {
		c.add(k, `must be "default", "off" or the path of an OCI seccomp profile (JSON), not %s`, tomlType(r))
		return
	}
	switch s {
	case SeccompDefault, SeccompOff:
		p.Seccomp = s
		return
	case "":
		c.add(k, `must be "default", "off" or the path of an OCI seccomp profile (JSON)`)
		return
	}
	path := s
	if !filepath.IsAbs(path) {
		if strings.HasPrefix(c.file, BuiltinPrefix) {
			c.add(k, "%q: a built-in policy's profile must be an absolute path", s)
			return
		}
		path = filepath.Join(filepath.Dir(c.file), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		c.add(k, "%q: %v", s, unwrapPathError(err))
		return
	}
	prof, err := ParseSeccomp(data)
	if err != nil {
		c.add(k, "%s: %v", path, err)
		return
	}
	p.Seccomp, p.SeccompProfile = path, prof
}

// ParseSeccomp reads an OCI seccomp profile: the "seccomp" object of a
// runtime spec's "linux" section. Unknown fields are errors, so that a
// misspelt key cannot silently drop a rule.
func ParseSeccomp(data []byte) (*specs.LinuxSeccomp, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var s specs.LinuxSeccomp
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("not an OCI seccomp profile: %w", err)
	}
	if dec.More() {
		return nil, errors.New("not an OCI seccomp profile: more than one JSON value")
	}
	if s.DefaultAction == "" {
		return nil, errors.New(`the profile has no "defaultAction"`)
	}
	return &s, nil
}

// SeccompProblem reports err, found with the policy's seccomp profile, at
// the policy's seccomp key.
func (p *Policy) SeccompProblem(err error) tomlstrict.Problem {
	return tomlstrict.Problem{File: p.Source, Line: p.seccompLine, Key: "seccomp", Msg: err.Error()}
}
