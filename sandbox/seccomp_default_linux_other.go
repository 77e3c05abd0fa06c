//go:build linux && !amd64 && !arm64

package sandbox

import specs "github.com/opencontainers/runtime-spec/specs-go"

// archSyscalls: none beyond the common list.
var archSyscalls []specs.LinuxSyscall
