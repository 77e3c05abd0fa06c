package sandbox

import specs "github.com/opencontainers/runtime-spec/specs-go"

// archSyscalls are the default profile's additions for x86_64.
var archSyscalls = []specs.LinuxSyscall{{Names: []string{"arch_prctl", "modify_ldt"}, Action: specs.ActAllow}}
