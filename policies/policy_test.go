package policies

import (
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fixtures is the repository's testdata/policies.
const fixtures = "../testdata/policies"

func readFixture(t *testing.T, rel string) (string, []byte) {
	t.Helper()
	path := filepath.Join(fixtures, rel)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, data
}

// nobody returns the ids and the group name user "nobody", with the
// default group, resolves to here.
func nobody(t *testing.T) (uid, gid uint32, group string) {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody here: %v", err)
	}
	group, gidStr := u.Gid, u.Gid
	if g, err := user.LookupGroup(DefaultGroup); err == nil {
		group, gidStr = DefaultGroup, g.Gid
	}
	uid64, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	gid64, err := strconv.ParseUint(gidStr, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(uid64), uint32(gid64), group
}

// Ensure every kind of bad file is rejected with exactly its problems, each
// at its line; a file's problems all come at once, sorted by line.
func TestParse_Invalid(t *testing.T) {
	const units = "(use B, kB, MB, GB, TB, PB, EB, KiB, MiB, GiB, TiB, PiB or EiB)"
	const signals = "(use one of HUP INT QUIT KILL USR1 USR2 PIPE ALRM TERM CONT ABRT SEGV BUS FPE ILL TRAP SYS XCPU XFSZ)"
	tests := []struct {
		name string
		file string   // under testdata/policies/invalid
		want []string // each problem after "FILE:"
	}{
		{"unknown key", "unknown-key.toml", []string{"2: cpus: unknown key"}},
		{"bad size unit", "bad-size-unit.toml", []string{`2: memory: bad size "10XB": unknown unit "XB" ` + units}},
		{"bad duration", "bad-duration.toml", []string{`1: wall_time: bad duration "5 minutes": use a number with a unit, like "5s", "250ms" or "90d"`}},
		{"negative values", "negative.toml", []string{
			"1: cpu: -1 must not be negative",
			`2: memory: size "-1MiB" must not be negative`,
			"3: pids: must be at least 1 (leave pids out for no limit)",
			`4: idle_timeout: duration "-1s" must not be negative`,
			"5: max_output: size -5 must not be negative",
			"8: rlimits.nofile: -1 must not be negative",
		}},
		{"cpu_time beyond cpu x wall_time", "cpu-time-over-wall.toml", []string{
			`3: cpu_time: "3m" can never be used up: at cpu = 0.5 a job gets at most 2m30s of CPU within wall_time "5m"`}},
		{"tmp_size larger than memory", "tmp-over-memory.toml", []string{
			`2: tmp_size: "128MiB" is larger than memory "64MiB": files in /tmp are charged to the job's memory`}},
		{"replay_bytes and detach_timeout out of bounds", "replay-bounds.toml", []string{
			`2: replay_bytes: "4KiB" must be from 64KiB to 1GiB`,
			`3: detach_timeout: "48h" is longer than the most, 24h0m0s`,
		}},
		{"pids zero", "pids-zero.toml", []string{"2: pids: must be at least 1 (leave pids out for no limit)"}},
		{"grace longer than wall_time", "grace-over-wall.toml", []string{`2: grace: "2m" is longer than wall_time "1m"`}},
		{"sizes that overflow", "size-overflow.toml", []string{
			`1: memory: size "16EiB" is too large: at most 9223372036854775807 bytes (8EiB less one byte)`,
			`2: max_output: size "9223372036854775808" is too large: at most 9223372036854775807 bytes (8EiB less one byte)`,
		}},
		{"cpu below the kernel's smallest quota", "cpu-too-small.toml", []string{
			"1: cpu: 0.001 is below the smallest limit, 0.01 (the kernel's quota is at least 1ms per 100ms)"}},
		{"unknown user", "unknown-user.toml", []string{`2: user: unknown user "no-such-user-chimirror"`}},
		{"unknown group", "unknown-group.toml", []string{`2: group: unknown group "no-such-group-chimirror"`}},
		{"a group beside a dynamic user", "dynamic-group.toml", []string{`2: group: a dynamic user has a group of its own: leave group out, or name a user`}},
		{"paths a view may not bind", "view-paths.toml", []string{
			`2: ro: "relative/path" is a relative path: give it from /`,
			`2: ro: "/no/such/path-chimirror": does not exist`,
			`2: ro: "/proc/self": the sandbox makes /proc itself (see sys for /sys)`,
			`2: ro: "/usr/../etc" is not a clean path (write "/etc")`,
			`3: rw: "/" is the host's whole filesystem: bind what the jobs need`,
			`4: tmpfs: "/dev/shm/x": the sandbox makes /dev itself (see sys for /sys)`,
			`4: tmpfs: must be a list of absolute paths like ["/opt/tool"], not a list holding an integer`,
		}},
		{"a seccomp profile that is not there", "seccomp-missing.toml", []string{`1: seccomp: "no-such-profile.json": does not exist`}},
		{"a seccomp profile with a misspelt key", "seccomp-bad.toml", []string{
			`2: seccomp: ` + fixtures + `/invalid/bad-profile.json: not an OCI seccomp profile: json: unknown field "sycalls"`}},
		{"unknown signal", "unknown-signal.toml", []string{`1: exit_signal: unknown signal "SIGFOO" ` + signals}},
		{"unknown rlimit", "unknown-rlimit.toml", []string{
			"3: rlimits.nofiles: unknown rlimit (use as, core, cpu, data, fsize, memlock, nofile, nproc, stack)"}},
		{"rlimit value types", "rlimit-types.toml", []string{
			`2: rlimits.nofile: cannot be "unlimited": the kernel caps open files at fs.nr_open`,
			`3: rlimits.nproc: must be an integer or "unlimited", not "1k"`,
			`4: rlimits.fsize: must be an integer, a size like "8MiB" or "unlimited", not a float`,
			`5: rlimits.stack: bad size "8XB": unknown unit "XB" ` + units,
			`6: rlimits.core: must be an integer, a size like "8MiB" or "unlimited", not a boolean`,
		}},
		{"rlimits not a table", "rlimits-not-a-table.toml", []string{
			"2: rlimits: must be a table like [rlimits] or { nofile = 64 }, not an integer"}},
		{"wrong value types", "wrong-types.toml", []string{
			"1: cpu: must be a number of cores like 0.5 or 2, not a string",
			"2: pids: must be an integer, not a float",
			"3: network: must be true or false, not a string",
			`4: env: must be a list of strings like ["PATH", "LANG=C.UTF-8"], not a string`,
			`5: wall_time: must be a duration with a unit, like "30s" or "5m", not an integer`,
			"6: user: must be a user name or a numeric id, not a boolean",
		}},
		// The index cannot place an element of a multi-line array: the
		// problem is given the key's line.
		{"bad env name", "bad-env.toml", []string{`1: env: "1BAD" is not a variable name`}},
		{"TOML syntax error, alone", "syntax.toml", []string{"2: memory: basic strings cannot have new lines"}},
		{"bad policy name", "Bad_Name.toml", []string{
			` "Bad_Name" is not a valid policy name (lower-case letters, digits, '.', '_', '-'; at most 64)`}},
		{"every problem at once", "many.toml", []string{
			`4: tmp_size: "1GiB" is larger than memory "64MiB": files in /tmp are charged to the job's memory`,
			`6: cpu_time: "10m" can never be used up: at cpu = 0.5 a job gets at most 30s of CPU within wall_time "1m"`,
			`7: idle_timeout: bad duration "1y": use a number with a unit, like "5s", "250ms" or "90d"`,
			`8: user: unknown user "no-such-user-chimirror"`,
			`9: exit_signal: unknown signal "FOO" ` + signals,
			"10: colour: unknown key",
			`13: rlimits.stack: bad size "8XB": unknown unit "XB" ` + units,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path, data := readFixture(t, filepath.Join("invalid", tc.file))
			p, ps := Parse(path, data)
			if p != nil {
				t.Errorf("Parse returned a policy despite problems")
			}
			var got []string
			for _, pr := range ps {
				got = append(got, pr.String())
			}
			var want []string
			for _, w := range tc.want {
				want = append(want, path+":"+w)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
			if ps.Err() == nil {
				t.Errorf("Problems.Err() is nil")
			}
		})
	}
}

// Ensure a file not named NAME.toml is refused before it is read.
func TestParse_FileName(t *testing.T) {
	_, ps := Parse("dir/policy.txt", []byte("cpu = 1\n"))
	if got, want := ps.Error(), "dir/policy.txt: a policy file's name must end in .toml"; got != want {
		t.Errorf("problems %q, want %q", got, want)
	}
}

// Ensure valid files parse into the values they say, and absent keys take
// the documented defaults.
func TestParse_Valid(t *testing.T) {
	uid, gid, group := nobody(t)
	tests := []struct {
		name string
		file string // under testdata/policies/valid
		want Policy // Name and Source are filled in from file
		// wantRlimits is Rlimits()
		wantRlimits []specs.POSIXRlimit
	}{
		{
			name: "empty: every default",
			file: "empty.toml",
			want: Policy{User: "dynamic", Group: "dynamic", DynamicUser: true, ExitSignal: syscall.SIGTERM, Grace: 5 * time.Second, Env: nil, ReplayBytes: DefaultReplayBytes,
				ReadOnly: defaultRO(false), Seccomp: SeccompDefault},
		},
		{
			name: "every key, every value form",
			file: "full.toml",
			want: Policy{
				CPU: 2, MemoryMaxBytes: 1 << 30, PidsMax: 100,
				WallTime: 2 * time.Hour, CPUTime: 3 * time.Hour, IdleTimeout: 15 * time.Minute,
				MaxOutputBytes: 1048576, ReplayBytes: 1 << 20, DetachTimeout: 90 * time.Second, Network: true, TmpSizeBytes: 500000000,
				User: "1000", Group: "1000", UID: 1000, GID: 1000,
				ExitSignal: syscall.SIGINT, Grace: 10 * time.Second,
				Env: []string{"PATH", "LANG=C.UTF-8"}, UserNamespace: true, Initiators: 2,
				ReadOnly: append(defaultRO(true), "/etc/hostname", "/var/lib"), ReadWrite: []string{"/var/tmp"},
				Tmpfs: []string{"/srv/cache"}, Sys: true, Seccomp: fixtures + "/valid/profile.json",
				SeccompProfile: &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchX86_64},
					Syscalls: []specs.LinuxSyscall{
						{Names: []string{"keyctl", "add_key"}, Action: specs.ActErrno, ErrnoRet: ptr(uint(38))},
						{Names: []string{"personality"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 8, Op: specs.OpNotEqual}}},
					}},
			},
			wantRlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_AS", Soft: 8 << 30, Hard: 8 << 30},
				{Type: "RLIMIT_CORE", Soft: 0, Hard: 0},
				{Type: "RLIMIT_CPU", Soft: 7200, Hard: 7200},
				{Type: "RLIMIT_DATA", Soft: RlimitInfinity, Hard: RlimitInfinity},
				{Type: "RLIMIT_FSIZE", Soft: RlimitInfinity, Hard: RlimitInfinity},
				{Type: "RLIMIT_MEMLOCK", Soft: 65536, Hard: 65536},
				{Type: "RLIMIT_NOFILE", Soft: 4096, Hard: 4096},
				{Type: "RLIMIT_NPROC", Soft: 512, Hard: 512},
				{Type: "RLIMIT_STACK", Soft: 16 << 20, Hard: 16 << 20},
			},
		},
		{
			name: "names, a lower-case signal, an inline rlimits table",
			file: "names.toml",
			want: Policy{User: "nobody", Group: group, UID: uid, GID: gid, ExitSignal: syscall.SIGHUP, Grace: 5 * time.Second, ReplayBytes: DefaultReplayBytes,
				ReadOnly: defaultRO(false), Seccomp: SeccompDefault},
			wantRlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_CORE", Soft: 0, Hard: 0},
				{Type: "RLIMIT_NOFILE", Soft: 256, Hard: 256},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path, data := readFixture(t, filepath.Join("valid", tc.file))
			p, ps := Parse(path, data)
			if len(ps) > 0 {
				t.Fatalf("problems:\n%v", ps)
			}
			if p.Name != strings.TrimSuffix(tc.file, ".toml") || p.Source != path {
				t.Errorf("Name %q, Source %q; want %q, %q", p.Name, p.Source, strings.TrimSuffix(tc.file, ".toml"), path)
			}
			if got := p.Rlimits(); !reflect.DeepEqual(got, tc.wantRlimits) {
				t.Errorf("Rlimits:\n  %+v\nwant\n  %+v", got, tc.wantRlimits)
			}
			checkPolicyFields(t, p, tc.want)
		})
	}
}

// Ensure a few edge values mean what the documentation says.
func TestParse_Values(t *testing.T) {
	tests := []struct {
		name  string
		toml  string
		check func(p *Policy) bool
	}{
		{"cpu 0 is no limit", "cpu = 0\n", func(p *Policy) bool { return p.CPU == 0 && p.LinuxResources().CPU == nil }},
		{"integer cpu", "cpu = 3\n", func(p *Policy) bool { return p.CPU == 3 }},
		{"grace 0 is the default", "grace = \"0s\"\n", func(p *Policy) bool { return p.Grace == DefaultGrace }},
		{"grace shorter than wall_time", "wall_time = \"1m\"\ngrace = \"1m\"\n", func(p *Policy) bool { return p.Grace == time.Minute }},
		{"tmp_size equal to memory", "memory = \"64MiB\"\ntmp_size = 67108864\n", func(p *Policy) bool { return p.TmpSizeBytes == 64<<20 }},
		{"cpu_time beyond wall_time on several cores", "cpu = 4\nwall_time = \"1m\"\ncpu_time = \"3m\"\n", func(p *Policy) bool { return p.CPUTime == 3*time.Minute }},
		{"cpu_time beyond wall_time without a cpu limit", "wall_time = \"1m\"\ncpu_time = \"3m\"\n", func(p *Policy) bool { return p.CPUTime == 3*time.Minute }},
		{"numeric user as a string", "user = \"4242\"\ngroup = 4343\n", func(p *Policy) bool { return p.UID == 4242 && p.GID == 4343 }},
		{"root inside a user namespace", "user = 0\ngroup = 0\nuser_namespace = true\n", func(p *Policy) bool { return p.UID == 0 && p.GID == 0 }},
		{"dotted rlimits key", "rlimits.nofile = 10\n", func(p *Policy) bool { return len(p.Rlimits()) == 1 && p.Rlimits()[0].Hard == 10 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, ps := Parse("p.toml", []byte(tc.toml))
			if len(ps) > 0 {
				t.Fatalf("problems:\n%v", ps)
			}
			if !tc.check(p) {
				t.Errorf("policy %+v", *p)
			}
		})
	}
}

// Ensure problems with values that have no place of their own still name a
// line: the enclosing key's or table's.
func TestParse_ProblemLines(t *testing.T) {
	tests := []struct {
		name, toml, want string
	}{
		{"dotted rlimits key", "cpu = 1\nrlimits.nofile = \"x\"\n", `p.toml:2: rlimits.nofile: must be an integer or "unlimited", not "x"`},
		{"inline rlimits table", "cpu = 1\nrlimits = { nofile = \"x\" }\n", `p.toml:2: rlimits.nofile: must be an integer or "unlimited", not "x"`},
		{"rlimit as a sub-table", "[rlimits]\ncore = 0\n[rlimits.nofile]\nsoft = 1\n", `p.toml:3: rlimits.nofile: must be an integer or "unlimited", not a table`},
		{"uid out of range", "\nuser = 4294967295\n", "p.toml:2: user: 4294967295 is not a valid user id (0 to 4294967294)"},
		{"empty group", "user = \"nobody\"\ngroup = \"\"\n", "p.toml:2: group: must not be empty"},
		{"env list holding a number", "env = [\"PATH\", 3]\n", `p.toml:1: env: must be a list of strings like ["PATH", "LANG=C.UTF-8"], not a list holding an integer`},
		{"cpu not a number", "cpu = nan\n", "p.toml:1: cpu: must be a number of cores like 0.5 or 2, not NaN"},
		{"cpu beyond any machine", "cpu = 2e6\n", "p.toml:1: cpu: 2e+06 is more cores than any machine has (at most 1e+06)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, ps := Parse("p.toml", []byte(tc.toml))
			if got := ps.Error(); got != tc.want {
				t.Errorf("problems %q, want %q", got, tc.want)
			}
		})
	}
}

// Ensure the OCI translation: quota = cpu x period, Swap = Limit (memory
// plus swap, so no swap), pids, rlimits, and the namespaces.
func TestPolicy_OCI(t *testing.T) {
	i64 := func(n int64) *int64 { return &n }
	u64 := func(n uint64) *uint64 { return &n }
	always := []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.UTSNamespace}, {Type: specs.IPCNamespace}}
	with := func(extra ...specs.LinuxNamespaceType) []specs.LinuxNamespace {
		ns := append([]specs.LinuxNamespace(nil), always...)
		for _, e := range extra {
			ns = append(ns, specs.LinuxNamespace{Type: e})
		}
		return ns
	}
	tests := []struct {
		name           string
		toml           string
		wantResources  *specs.LinuxResources
		wantNamespaces []specs.LinuxNamespace
	}{
		{
			name:           "no limits, no network",
			toml:           "",
			wantResources:  &specs.LinuxResources{},
			wantNamespaces: with(specs.NetworkNamespace),
		},
		{
			name: "half a CPU, memory without swap, pids",
			toml: "cpu = 0.5\nmemory = \"256MiB\"\npids = 32\n",
			wantResources: &specs.LinuxResources{
				CPU:    &specs.LinuxCPU{Quota: i64(50000), Period: u64(100000)},
				Memory: &specs.LinuxMemory{Limit: i64(268435456), Swap: i64(268435456)},
				Pids:   &specs.LinuxPids{Limit: i64(32)},
			},
			wantNamespaces: with(specs.NetworkNamespace),
		},
		{
			name:           "two and a third CPUs, rounded to the microsecond",
			toml:           "cpu = 2.333333\n",
			wantResources:  &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(233333), Period: u64(100000)}},
			wantNamespaces: with(specs.NetworkNamespace),
		},
		{
			name:           "network: the host's",
			toml:           "network = true\n",
			wantResources:  &specs.LinuxResources{},
			wantNamespaces: always,
		},
		{
			name:           "user namespace",
			toml:           "user_namespace = true\n",
			wantResources:  &specs.LinuxResources{},
			wantNamespaces: with(specs.NetworkNamespace, specs.UserNamespace),
		},
		{
			name:           "network and user namespace",
			toml:           "network = true\nuser_namespace = true\n",
			wantResources:  &specs.LinuxResources{},
			wantNamespaces: with(specs.UserNamespace),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, ps := Parse("p.toml", []byte(tc.toml))
			if len(ps) > 0 {
				t.Fatalf("problems:\n%v", ps)
			}
			if got := p.LinuxResources(); !reflect.DeepEqual(got, tc.wantResources) {
				t.Errorf("LinuxResources:\n  %s\nwant\n  %s", resourcesString(got), resourcesString(tc.wantResources))
			}
			if got := p.Namespaces(); !reflect.DeepEqual(got, tc.wantNamespaces) {
				t.Errorf("Namespaces: %v, want %v", got, tc.wantNamespaces)
			}
		})
	}
}

func resourcesString(r *specs.LinuxResources) string {
	var b strings.Builder
	if r.CPU != nil {
		b.WriteString("cpu quota " + strconv.FormatInt(*r.CPU.Quota, 10) + " period " + strconv.FormatUint(*r.CPU.Period, 10) + "; ")
	}
	if r.Memory != nil {
		b.WriteString("memory limit " + strconv.FormatInt(*r.Memory.Limit, 10) + " swap " + strconv.FormatInt(*r.Memory.Swap, 10) + "; ")
	}
	if r.Pids != nil {
		b.WriteString("pids " + strconv.FormatInt(*r.Pids.Limit, 10))
	}
	return b.String()
}

// Ensure the results of LinuxResources and Rlimits are the caller's: changing
// them does not change the policy.
func TestPolicy_OCIResultsAreCopies(t *testing.T) {
	p, ps := Parse("p.toml", []byte("memory = \"1MiB\"\n[rlimits]\nnofile = 8\n"))
	if len(ps) > 0 {
		t.Fatalf("problems:\n%v", ps)
	}
	*p.LinuxResources().Memory.Limit = 1
	p.Rlimits()[0].Hard = 1
	if p.MemoryMaxBytes != 1<<20 || p.Rlimits()[0].Hard != 8 {
		t.Errorf("the policy changed through its OCI results: %+v", *p)
	}
}

// Ensure the built-in files parse cleanly, hold the documented values and
// document every key.
func TestBuiltins(t *testing.T) {
	files, err := builtinFS.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name())
	}
	if want := []string{"default.toml", "strict.toml"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("built-in files %v, want %v", names, want)
	}
	tests := []struct {
		name string
		want Policy
		// wantRlimits are Rlimits()' Type=Hard pairs
		wantRlimits []string
	}{
		{
			name: "default",
			want: Policy{
				CPU: 1, MemoryMaxBytes: 512 << 20, PidsMax: 256,
				WallTime: time.Hour, IdleTimeout: 10 * time.Minute,
				MaxOutputBytes: 1 << 30, TmpSizeBytes: 64 << 20,
				User: "dynamic", Group: "dynamic", DynamicUser: true, ExitSignal: syscall.SIGTERM, Grace: 5 * time.Second, Initiators: 8, ReplayBytes: DefaultReplayBytes,
				ReadOnly: defaultRO(false), Seccomp: SeccompDefault,
			},
			wantRlimits: []string{"RLIMIT_CORE=0", "RLIMIT_FSIZE=1073741824", "RLIMIT_NOFILE=1024", "RLIMIT_STACK=8388608"},
		},
		{
			name: "strict",
			want: Policy{
				CPU: 0.5, MemoryMaxBytes: 64 << 20, PidsMax: 32,
				WallTime: 5 * time.Minute, CPUTime: 30 * time.Second, IdleTimeout: time.Minute,
				MaxOutputBytes: 16 << 20, TmpSizeBytes: 8 << 20,
				User: "dynamic", Group: "dynamic", DynamicUser: true, ExitSignal: syscall.SIGTERM, Grace: 2 * time.Second, Initiators: 8, ReplayBytes: DefaultReplayBytes,
				ReadOnly: defaultRO(false), Seccomp: SeccompDefault,
			},
			wantRlimits: []string{"RLIMIT_CORE=0", "RLIMIT_FSIZE=16777216", "RLIMIT_NOFILE=64", "RLIMIT_STACK=8388608"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, err := builtinFS.ReadFile(tc.name + ".toml")
			if err != nil {
				t.Fatal(err)
			}
			p, ps := Parse(tc.name+".toml", data)
			if len(ps) > 0 {
				t.Fatalf("problems:\n%v", ps)
			}
			var rl []string
			for _, r := range p.Rlimits() {
				if r.Soft != r.Hard {
					t.Errorf("%s: soft %d != hard %d", r.Type, r.Soft, r.Hard)
				}
				rl = append(rl, r.Type+"="+strconv.FormatUint(r.Hard, 10))
			}
			if !reflect.DeepEqual(rl, tc.wantRlimits) {
				t.Errorf("rlimits %v, want %v", rl, tc.wantRlimits)
			}
			checkPolicyFields(t, p, tc.want)
			// Every key is documented: written, or named at the start of a
			// comment line.
			schema := reflect.TypeOf(policyFile{})
			for i := 0; i < schema.NumField(); i++ {
				key := schema.Field(i).Tag.Get("toml")
				if !regexp.MustCompile(`(?m)^(# )?\[?` + key + `\b`).Match(data) {
					t.Errorf("%s.toml does not document %q", tc.name, key)
				}
			}
			_, table, _ := strings.Cut(string(data), "[rlimits]")
			for _, kind := range rlimitKinds {
				if !regexp.MustCompile(`\b` + kind.key + `\b`).MatchString(table) {
					t.Errorf("%s.toml does not document rlimits.%s", tc.name, kind.key)
				}
			}
		})
	}
}

// defaultRO is the default read-only list as it stands on this host.
func defaultRO(network bool) []string {
	var ro []string
	list := DefaultReadOnly
	if network {
		list = append(slices.Clone(list), networkReadOnly...)
	}
	for _, d := range list {
		if _, err := os.Lstat(d.Path); err == nil {
			ro = append(ro, d.Path)
		}
	}
	return ro
}

func ptr[T any](v T) *T { return &v }

// checkPolicyFields compares a parsed policy's plain fields with want (name,
// source and rlimits are checked by the callers their own way).
func checkPolicyFields(t *testing.T, p *Policy, want Policy) {
	t.Helper()
	got := *p
	got.Name, got.Source, got.rlimits, got.seccompLine = "", "", nil, 0
	if len(got.Env) == 0 {
		got.Env = nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("policy:\n  %+v\nwant\n  %+v", got, want)
	}
}

// Ensure root, by name or id, runs a job only inside a user namespace: out
// of one it is the host's root.
func TestParse_RootOutsideUserNamespace(t *testing.T) {
	for _, tc := range []struct{ name, toml, want string }{
		{"user root", "user = \"root\"\n", "p.toml:1: user: root outside a user namespace is the host's root"},
		{"uid 0", "user = 0\ngroup = \"nogroup\"\n", "p.toml:1: user: root outside a user namespace is the host's root"},
		{"gid 0", "user = \"nobody\"\ngroup = 0\n", "p.toml:2: group: group 0 outside a user namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ps := Parse("p.toml", []byte(tc.toml))
			if len(ps) != 1 || !strings.HasPrefix(ps[0].String(), tc.want) {
				t.Fatalf("problems %v, want one starting %q", ps, tc.want)
			}
		})
	}
}
