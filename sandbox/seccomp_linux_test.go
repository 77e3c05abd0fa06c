package sandbox

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// seccompVM runs a compiled filter on one syscall in x/net/bpf's VM. The
// VM reads words big-endian, so the seccomp_data is laid out that way,
// each argument's low word where the filter, little-endian, looks for it.
type seccompVM struct{ vm *bpf.VM }

func newSeccompVM(t *testing.T, f *SeccompFilter) seccompVM {
	t.Helper()
	var insts []bpf.Instruction
	for i := 0; i < len(f.prog); i += 8 {
		raw := bpf.RawInstruction{Op: binary.NativeEndian.Uint16(f.prog[i:]), Jt: f.prog[i+2], Jf: f.prog[i+3],
			K: binary.NativeEndian.Uint32(f.prog[i+4:])}
		insts = append(insts, raw.Disassemble())
	}
	vm, err := bpf.NewVM(insts)
	if err != nil {
		t.Fatal(err)
	}
	return seccompVM{vm}
}

func (v seccompVM) run(t *testing.T, archID, nr uint32, args [6]uint64) uint32 {
	t.Helper()
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[0:], nr)
	binary.BigEndian.PutUint32(b[4:], archID)
	for i, a := range args {
		binary.BigEndian.PutUint32(b[16+8*i:], uint32(a))
		binary.BigEndian.PutUint32(b[16+8*i+4:], uint32(a>>32))
	}
	r, err := v.vm.Run(b)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(r)
}

// profileOutcome is what a profile says of one native syscall, straight
// from the runtime spec's words: the first rule naming it whose conditions
// all hold, else the default; beyond the table ENOSYS, or the default
// where that allows. The compiled filter must agree with it everywhere.
func profileOutcome(t *testing.T, s *specs.LinuxSeccomp, nr uint32, args [6]uint64) uint32 {
	t.Helper()
	def, err := seccompAction(s.DefaultAction, s.DefaultErrnoRet)
	if err != nil {
		t.Fatal(err)
	}
	if nr >= nativeArch.x32Bit() {
		return retErrno | errnoENOSYS
	}
	name, known := nativeArch.info.SyscallNumbers[int(nr)]
	if !known || int(nr) > maxSyscall(nativeArch.info) {
		if def == 0x7fff0000 || def == 0x7ffc0000 {
			return def
		}
		return retErrno | errnoENOSYS
	}
rules:
	for _, r := range s.Syscalls {
		if !slices.Contains(r.Names, name) {
			continue
		}
		for _, a := range r.Args {
			v := args[a.Index]
			var ok bool
			switch a.Op {
			case specs.OpEqualTo:
				ok = v == a.Value
			case specs.OpNotEqual:
				ok = v != a.Value
			case specs.OpLessThan:
				ok = v < a.Value
			case specs.OpLessEqual:
				ok = v <= a.Value
			case specs.OpGreaterThan:
				ok = v > a.Value
			case specs.OpGreaterEqual:
				ok = v >= a.Value
			case specs.OpMaskedEqual:
				ok = v&a.Value == a.ValueTwo
			}
			if !ok {
				continue rules
			}
		}
		act, err := seccompAction(r.Action, r.ErrnoRet)
		if err != nil {
			t.Fatal(err)
		}
		return act
	}
	return def
}

// Ensure the filter does what its profile says for every syscall number,
// with arguments that the rules test, for profiles that refuse and that
// allow by default, rules with conditions before, between and after
// others included.
func TestSeccomp_FilterMatchesProfile(t *testing.T) {
	errno, zero := uint(unix.EACCES), uint(0)
	profiles := map[string]*specs.LinuxSeccomp{
		"default": DefaultSeccomp(),
		"a deny list": {DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"keyctl", "ptrace"}, Action: specs.ActErrno, ErrnoRet: &errno},
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 8, Op: specs.OpEqualTo}}},
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0x20000, Op: specs.OpGreaterEqual}, {Index: 1, Value: 1 << 40, Op: specs.OpLessThan}}},
			{Names: []string{"personality", "getpid"}, Action: specs.ActKillProcess},
			{Names: []string{"getpid"}, Action: specs.ActAllow}, // too late: killed above
			{Names: []string{"socket"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Value: unix.AF_VSOCK, Op: specs.OpEqualTo}}},
			{Names: []string{"socket"}, Action: specs.ActTrap, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 41, Op: specs.OpEqualTo}}},
			{Names: []string{"clone"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Value: unix.CLONE_NEWUSER, ValueTwo: unix.CLONE_NEWUSER, Op: specs.OpMaskedEqual}}},
			// errno 0: "succeed" without running, with conditions or not.
			{Names: []string{"setpgid"}, Action: specs.ActErrno, ErrnoRet: &zero, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 8, Op: specs.OpEqualTo}}},
			{Names: []string{"umask"}, Action: specs.ActErrno, ErrnoRet: &zero},
		}},
	}
	argSets := [][6]uint64{{}, {8}, {39}, {41}, {56}, {135}, {0x20008}, {0x20008, 1 << 41}, {0xffffffff}, {unix.AF_INET}, {unix.AF_VSOCK},
		{unix.AF_ALG}, {unix.AF_NFC}, {unix.CLONE_NEWUSER}, {unix.CLONE_VM | unix.CLONE_THREAD}, {1 << 40}, {1<<32 | 8}}
	for name, prof := range profiles {
		t.Run(name, func(t *testing.T) {
			f, err := CompileSeccomp(prof)
			if err != nil {
				t.Fatal(err)
			}
			vm := newSeccompVM(t, f)
			native := uint32(nativeArch.info.ID)
			var nrs []uint32
			for nr := uint32(0); nr <= uint32(maxSyscall(nativeArch.info))+5; nr++ {
				nrs = append(nrs, nr)
			}
			nrs = append(nrs, 0x40000000|39, 0x40000000|300, 1<<31)
			for _, nr := range nrs {
				for _, args := range argSets {
					if got, want := vm.run(t, native, nr, args), profileOutcome(t, prof, nr, args); got != want {
						t.Fatalf("syscall %d (%s) args %#x: the filter says %#x, the profile %#x", nr, nativeArch.info.SyscallNumbers[int(nr)], args, got, want)
					}
				}
			}
			if got := vm.run(t, uint32(arch.I386.ID), 20, [6]uint64{}); got != retKillProcess {
				t.Errorf("an i386 syscall: %#x, want kill", got)
			}
			t.Logf("%d instructions", f.Len())
		})
	}
}

// Ensure the default profile says what the documentation says: the
// outcome of each named syscall, as the filter itself decides it.
func TestSeccomp_DefaultProfile(t *testing.T) {
	f, err := CompileSeccomp(DefaultSeccomp())
	if err != nil {
		t.Fatal(err)
	}
	vm := newSeccompVM(t, f)
	nr := func(name string) uint32 {
		n, ok := nativeArch.info.SyscallNames[name]
		if !ok {
			t.Fatalf("no syscall %q here", name)
		}
		return uint32(n)
	}
	native := uint32(nativeArch.info.ID)
	eperm, enosys, allow := uint32(retErrno|errnoEPERM), uint32(retErrno|errnoENOSYS), uint32(0x7fff0000)
	for _, tc := range []struct {
		call string
		args [6]uint64
		want uint32
	}{
		{"unshare", [6]uint64{unix.CLONE_NEWUSER}, eperm},
		{"clone", [6]uint64{unix.CLONE_NEWUSER | uint64(unix.SIGCHLD)}, eperm},
		{"clone", [6]uint64{unix.CLONE_NEWNET}, eperm},
		{"clone", [6]uint64{uint64(unix.SIGCHLD)}, allow},
		{"clone3", [6]uint64{}, enosys},
		{"setns", [6]uint64{}, eperm},
		{"mount", [6]uint64{}, eperm},
		{"umount2", [6]uint64{}, eperm},
		{"pivot_root", [6]uint64{}, eperm},
		{"keyctl", [6]uint64{}, eperm},
		{"add_key", [6]uint64{}, eperm},
		{"request_key", [6]uint64{}, eperm},
		{"bpf", [6]uint64{}, eperm},
		{"perf_event_open", [6]uint64{}, eperm},
		{"userfaultfd", [6]uint64{}, eperm},
		{"io_uring_setup", [6]uint64{}, eperm},
		{"io_uring_enter", [6]uint64{}, eperm},
		{"io_uring_register", [6]uint64{}, eperm},
		{"init_module", [6]uint64{}, eperm},
		{"finit_module", [6]uint64{}, eperm},
		{"delete_module", [6]uint64{}, eperm},
		{"kexec_load", [6]uint64{}, eperm},
		{"kexec_file_load", [6]uint64{}, eperm},
		{"reboot", [6]uint64{}, eperm},
		{"swapon", [6]uint64{}, eperm},
		{"swapoff", [6]uint64{}, eperm},
		{"socket", [6]uint64{unix.AF_VSOCK}, eperm},
		{"socket", [6]uint64{unix.AF_ALG}, eperm},
		{"socket", [6]uint64{unix.AF_INET}, allow},
		{"socket", [6]uint64{unix.AF_UNIX}, allow},
		{"personality", [6]uint64{0x0040000}, eperm}, // ADDR_NO_RANDOMIZE
		{"personality", [6]uint64{0}, allow},
		{"getppid", [6]uint64{}, allow},
		{"execve", [6]uint64{}, allow},
		{"read", [6]uint64{}, allow},
	} {
		if got := vm.run(t, native, nr(tc.call), tc.args); got != tc.want {
			t.Errorf("%s(%#x): %#x, want %#x", tc.call, tc.args[0], got, tc.want)
		}
	}
	if got := vm.run(t, native, 0x40000000|nr("getpid"), [6]uint64{}); got != enosys {
		t.Errorf("an x32 syscall: %#x, want ENOSYS", got)
	}
	if got := vm.run(t, native, uint32(maxSyscall(nativeArch.info))+1, [6]uint64{}); got != enosys {
		t.Errorf("a syscall newer than the table: %#x, want ENOSYS", got)
	}
}

// Ensure the filter flags are runc's: SPEC_ALLOW when the profile names
// none, exactly the profile's otherwise.
func TestSeccomp_Flags(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags []specs.LinuxSeccompFlag
		want  uint32
	}{
		{"none given", nil, 4},
		{"an empty list", []specs.LinuxSeccompFlag{}, 0},
		{"log", []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_LOG"}, 2},
		{"both", []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"}, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := CompileSeccomp(&specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Flags: tc.flags,
				Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow}}})
			if err != nil {
				t.Fatal(err)
			}
			if f.flags != tc.want {
				t.Errorf("flags %#x, want %#x", f.flags, tc.want)
			}
		})
	}
}

// Ensure what the compiler cannot apply is refused with a reason, not
// applied as something else.
func TestSeccomp_Refused(t *testing.T) {
	two := uint(2)
	for _, tc := range []struct {
		name string
		prof specs.LinuxSeccomp
		want string
	}{
		{"no default", specs.LinuxSeccomp{Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow}}}, "defaultAction: missing"},
		{"trace", specs.LinuxSeccomp{DefaultAction: specs.ActTrace, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow}}}, "needs a tracer"},
		{"notify", specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActNotify}}}, "seccomp agent"},
		{"another architecture only", specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Architectures: []specs.Arch{specs.ArchS390X},
			Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow}}}, "do not include this host's"},
		{"a misspelt syscall", specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{{Names: []string{"opne"}, Action: specs.ActAllow}}}, `unknown syscall "opne"`},
		{"masked compare it cannot express", specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{{Names: []string{"clone"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0xff, ValueTwo: 0x3, Op: specs.OpMaskedEqual}}}}}, "SCMP_CMP_MASKED_EQ"},
		{"argument 6", specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}}}}, "6 arguments"},
		{"a flag it does not know", specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_TSYNC"},
			Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow}}}, `flag "SECCOMP_FILTER_FLAG_TSYNC" is not supported`},
		{"errno out of range", specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: ptr(uint(1 << 20)),
			Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow, ErrnoRet: &two}}}, "out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CompileSeccomp(&tc.prof)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to say %q", err, tc.want)
			}
		})
	}
}
