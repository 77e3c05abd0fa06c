package sandbox

import specs "github.com/opencontainers/runtime-spec/specs-go"

// archSyscalls are the default profile's additions for arm64.
var archSyscalls = []specs.LinuxSyscall{{Names: []string{"arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"}, Action: specs.ActAllow}}
