//go:build linux && !amd64 && !arm64

package sandbox

import specs "github.com/opencontainers/runtime-spec/specs-go"

// archSyscalls: none beyond the common list.
var archSyscalls []specs.LinuxSyscall

// cloneFlagsArg is clone(2)'s flags argument (s390 has it second, but has
// no filter generator here).
const cloneFlagsArg = 0
