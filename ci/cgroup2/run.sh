#!/usr/bin/env bash
# make test-cgroup2: the test suites that touch cgroups, run under a real
# cgroup v2 kernel. This host is a cgroup v1 hybrid, so qemu (software
# emulation where there is no KVM) boots Debian's kernel with
# cgroup_no_v1=all from a small initramfs that this script builds:
#   - a merged-/usr Debian userland (/bin -> usr/bin), since sandboxed jobs
#     bind /usr, /bin, /lib and /lib64 from the host root: busybox-static,
#     and Debian's dash, coreutils, procps and perl-base with their shared
#     libraries where the tests need the real ones;
#   - the test binaries of the packages that need cgroups, and chimirror
#     itself, linked statically (cgo's C init included): the VM has no Go
#     toolchain;
#   - the repository's files (testdata, configs), each suite running in its
#     package's directory as go test does;
#   - no kernel modules: serial console, cgroup2, namespaces, tmpfs,
#     devtmpfs, loopback, seccomp and Landlock are all built into Debian's
#     kernel.
# ci/cgroup2/init and ci/cgroup2/tests are the VM's side.
#
# Output: each suite's start and end and each failed test as they happen, a
# summary, and the whole serial console in artifacts/cgroup2/console.log.
# Exit status: 0 only when the VM printed "CGROUP2-RESULT: PASS" and the
# tests that prove v2 ran and passed (not skipped). A VM that cannot boot
# here (no qemu, no kernel, no static busybox) is one line and exit 2; one
# that crashes or times out is a failure too, never a quiet pass.
#
# Environment: CGROUP2_TIMEOUT (seconds for the VM, default 2400),
# CGROUP2_MEM (MiB, default 4096), CGROUP2_KERNEL (a vmlinuz, default the
# newest /boot/vmlinuz-*), and for a quick try CGROUP2_SUITES (names of
# the plan's suites to run, e.g. "sandbox web") and CGROUP2_RUN (a
# -test.run regexp for every suite instead of the plan's).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=$repo/artifacts/cgroup2
log=$out/console.log
vm_timeout=${CGROUP2_TIMEOUT:-2400}
mem=${CGROUP2_MEM:-4096}
GO=${GO:-go}

cannot() {
	echo "make test-cgroup2: cannot boot the cgroup v2 VM: $*" >&2
	exit 2
}

# ---- preflight: everything the VM needs, or one line naming what is missing
qemu=$(command -v qemu-system-x86_64) ||
	cannot "qemu-system-x86_64 missing; run make deps as root (Debian: qemu-system-x86)"
kernel=${CGROUP2_KERNEL:-$(find /boot -maxdepth 1 -name 'vmlinuz-*' 2>/dev/null | sort -V | tail -n 1)}
if [ -z "$kernel" ] || [ ! -r "$kernel" ]; then
	cannot "no readable kernel (/boot/vmlinuz-*); run make deps as root (Debian: linux-image-amd64)"
fi
busybox=$(command -v busybox || true)
if [ -z "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
	cannot "no static busybox; run make deps as root (Debian: busybox-static)"
fi
command -v "$GO" >/dev/null || cannot "'$GO' is not on PATH"
command -v timeout >/dev/null || cannot "timeout (coreutils) missing"

# ---- the plan: which suites, with which tests --------------------------------
# NAME PACKAGE-DIR ARGS. sandbox, supervisor and cmd run whole: as root
# their servers sandbox every job, so all of it runs on v2 (the hostile-
# tenant suite, recovery after kill -9, limits). web runs its sandboxed
# tests only: the rest is plain jobs and HTTP, which v2 does not change,
# and its throughput tests assume the host's speed. Browser and nginx tests
# skip (no chromium or nginx in the VM); make test runs them.
plan=(
	"sandbox sandbox -test.timeout=20m"
	"supervisor supervisor -test.timeout=15m"
	"web web -test.timeout=15m -test.run=^(TestSandboxed_.*|TestConformance|TestCannotStart|TestTenantPolicy)$"
	"cmd cmd/chimirror -test.timeout=30m"
)
# Tests that prove v2 (issue 15): each must have run and passed, not
# skipped, or the target fails even if the VM said PASS.
required=(
	TestCgroup2_Delegation TestCgroup2_Limits TestCgroup2_Threats TestCgroup_NoReuse
	TestLeftovers_KillReadDelete TestConformance TestSandboxed_Limits TestSandboxed_ClientGoneKillsAll
	TestHostileTenants TestServeKill9_SandboxedJobsDie TestServeKill9_FrozenOrphansRecovered TestCrashLoop
	TestCrashRestart
)

# The image is built outside the module (go ./... would find the copied
# sources), in a directory removed on exit; the console log stays.
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/chimirror-cgroup2.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root/opt/chimirror" "$root/etc/cgroup2"
start=$(date +%s)

# ---- build ---------------------------------------------------------------------
# Static: -linkmode external with -static for cgo (the C init); osusergo and
# netgo so that os/user and net never reach for glibc's NSS modules.
tags=osusergo,netgo
ldflags='-linkmode external -extldflags -static'
build() { # OUTPUT build|test PACKAGE
	local o=$1 cmd=$2 pkg=$3
	local args=(build)
	if [ "$cmd" = test ]; then args=(test -c); fi
	(cd "$repo" && CGO_ENABLED=1 "$GO" "${args[@]}" -tags "$tags" -ldflags "$ldflags" -o "$o" "$pkg")
	if ldd "$o" >/dev/null 2>&1; then
		echo "make test-cgroup2: $o is not statically linked" >&2
		exit 1
	fi
}
echo "make test-cgroup2: building static test binaries"
for entry in "${plan[@]}"; do
	read -r name dir _ <<<"$entry"
	build "$root/opt/chimirror/$name.test" test "./$dir"
done
build "$root/opt/chimirror/chimirror" build ./cmd/chimirror
built=$(date +%s)

# ---- the initramfs ----------------------------------------------------------------
mkdir -p "$root"/{usr/bin,usr/sbin,usr/lib,usr/lib64,etc,root,newroot,proc,sys,dev,tmp,run,var/tmp,src}
ln -s usr/bin "$root/bin"
ln -s usr/sbin "$root/sbin"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
cp "$repo/ci/cgroup2/init" "$root/init"
cp "$repo/ci/cgroup2/tests" "$root/etc/cgroup2/tests"
chmod 755 "$root/init" "$root/etc/cgroup2/tests"
cat >"$root/etc/inittab" <<'EOF'
::sysinit:/etc/cgroup2/tests
EOF
# Debian's base accounts (base-passwd), for the tests of id ranges that
# clash with accounts.
if [ -r /usr/share/base-passwd/passwd.master ]; then
	cp /usr/share/base-passwd/passwd.master "$root/etc/passwd"
	cp /usr/share/base-passwd/group.master "$root/etc/group"
else
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$root/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
fi
echo cgroup2-vm >"$root/etc/hostname"
# Paths the tests bind, hide or name in policies, as on a Debian host.
mkdir -p "$root"/{usr/local/bin,usr/share/doc/chimirror,var/lib,var/log,var/cache,srv,home,opt,mnt}
echo "make test-cgroup2's VM" >"$root/usr/share/doc/chimirror/README"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$root/etc/hosts"
printf 'passwd: files\ngroup: files\nhosts: files\n' >"$root/etc/nsswitch.conf"
: >"$root/etc/resolv.conf"
# Debian's own programs where the tests need them, as on the hosts
# chimirror runs on: dash as /bin/sh, GNU coreutils (head -c 200M, timeout
# in a pid namespace: busybox's differ), procps (ps -p), and perl-base for
# the probes of the conformance and hostile-tenant suites. With the shared
# libraries they load, which jobs see through their read-only /usr and
# /lib64. Busybox fills in the rest. Paths go under usr/ (merged /usr).
merged() {
	case "$1" in
	/bin/* | /sbin/* | /lib/* | /lib64/*) echo "/usr$1" ;;
	*) echo "$1" ;;
	esac
}
copy_packages() {
	local files=$work/files
	dpkg -L "$@" | grep '^/' | grep -Ev '^/usr/share/(doc|man|info|locale)/' | sort -u |
		while read -r f; do
			if [ -L "$f" ] || [ ! -d "$f" ]; then echo "$f"; fi
		done >"$files"
	# tar keeps modes and symlinks; the merged paths follow root's links.
	tar -C / -cf - --no-recursion -T "$files" 2>/dev/null | tar -C "$root" -xf - --keep-directory-symlink
	# The programs and libraries among them; ldd skips what is no ELF.
	grep -E '/s?bin/|\.so(\.|$)' "$files" | xargs ldd 2>/dev/null |
		awk '/^\t/ { if ($2 == "=>") print $3; else if ($1 ~ /^\//) print $1 }' | grep '^/' | sort -u |
		while read -r lib; do
			dest=$root$(merged "$lib")
			mkdir -p "$(dirname "$dest")"
			cp -L "$lib" "$dest"
		done
}
debs=()
for deb in dash coreutils procps perl-base; do
	if command -v dpkg >/dev/null && dpkg -s "$deb" >/dev/null 2>&1; then
		debs+=("$deb")
	else
		echo "make test-cgroup2: Debian's $deb is not installed here: busybox stands in (perl probes skip)"
	fi
done
if [ ${#debs[@]} -gt 0 ]; then copy_packages "${debs[@]}"; fi
cp "$busybox" "$root/usr/bin/busybox"
for applet in $("$busybox" --list-full); do
	# --list-full says where each applet belongs (bin/, sbin/, usr/bin/...);
	# merged /usr puts them all under usr/.
	dest=$root/usr/${applet#usr/}
	[ -e "$dest" ] || [ -L "$dest" ] || ln -s /usr/bin/busybox "$dest"
done
# The repository's tracked files: testdata, example configs, the README.
(cd "$repo" && git ls-files -z | xargs -0 cp --parents -t "$root/src")
{
	echo "# NAME DIR ARGS: written by ci/cgroup2/run.sh"
	for entry in "${plan[@]}"; do
		read -r name dir args <<<"$entry"
		if [ -n "${CGROUP2_SUITES:-}" ] && [[ " $CGROUP2_SUITES " != *" $name "* ]]; then continue; fi
		if [ -n "${CGROUP2_RUN:-}" ]; then args="$args -test.run=$CGROUP2_RUN"; fi
		echo "$name /src/$dir $args"
	done
} >"$root/etc/cgroup2/plan"

initrd=$work/initramfs.cpio.gz
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | "$busybox" cpio -o -H newc 2>/dev/null) | gzip -1 >"$initrd"
packed=$(date +%s)
echo "make test-cgroup2: initramfs $(du -h "$initrd" | cut -f1), kernel $kernel"

# ---- boot --------------------------------------------------------------------------
# TCG (KVM where there is one), both cores. loglevel keeps the kernel off the console the
# tests write to; the init prints dmesg after a failure. panic=-1 with
# -no-reboot turns a kernel panic into qemu's exit.
append="console=ttyS0 cgroup_no_v1=all panic=-1 quiet loglevel=1 random.trust_cpu=on rdinit=/init"
# boot ACCEL... runs the VM to its end with those accelerator options, the
# console followed; qstatus is qemu's exit status.
boot() {
	: >"$log"
	echo "make test-cgroup2: booting (${2%%,*}, timeout ${vm_timeout}s); console in $log"
	set +e
	timeout --kill-after=10 "$vm_timeout" "$qemu" -machine q35 "$@" -smp 2 -m "$mem" \
		-nodefaults -no-reboot -display none -monitor none -serial "file:$log" \
		-kernel "$kernel" -initrd "$initrd" -append "$append" </dev/null &
	qpid=$!
	# Follow the console: each suite's start and end, each failed test.
	tail -n +1 -F --pid="$qpid" "$log" 2>/dev/null | tr -d '\r' |
		grep --line-buffered -E '^(cgroup2-vm: |--- FAIL|FAIL|ok |panic: |CGROUP2-RESULT: )' &
	tailpid=$!
	wait "$qpid"
	qstatus=$?
	wait "$tailpid"
	set -e
}
tcg=(-accel "tcg,thread=multi" -cpu max)
if [ -w /dev/kvm ]; then
	boot -accel kvm -cpu host
	# A KVM that cannot run this guest (a nested one refusing an MSR,
	# say) fails before the kernel writes a byte: emulate instead.
	if [ "$qstatus" != 0 ] && [ "$qstatus" != 124 ] && [ "$qstatus" != 137 ] && [ ! -s "$log" ]; then
		echo "make test-cgroup2: KVM failed to start the VM (qemu exit $qstatus); again under emulation"
		boot "${tcg[@]}"
	fi
else
	boot "${tcg[@]}"
fi
booted=$(date +%s)

result=$(tr -d '\r' <"$log" | grep -a -o 'CGROUP2-RESULT: .*' | tail -n 1 || true)
echo "make test-cgroup2: build $((built - start))s, initramfs $((packed - built))s, VM $((booted - packed))s, total $((booted - start))s"
# The top-level tests, as go test -v reports them.
count() { grep -a -c "^--- $1: " "$log" || true; }
echo "cgroup2: $(count PASS) passed, $(count FAIL) failed, $(count SKIP) skipped"
# A v2 proof that skipped (the sandbox unavailable in the VM, say) is no pass.
if [ "$result" = "CGROUP2-RESULT: PASS" ] && [ -z "${CGROUP2_SUITES:-}${CGROUP2_RUN:-}" ]; then
	unproven=()
	for test in "${required[@]}"; do
		grep -a -q "^--- PASS: $test " "$log" || unproven+=("$test")
	done
	if [ ${#unproven[@]} -gt 0 ]; then result="CGROUP2-RESULT: FAIL did not run and pass: ${unproven[*]}"; fi
fi
case "$result" in
"CGROUP2-RESULT: PASS")
	echo "make test-cgroup2: PASS"
	exit 0
	;;
"")
	if [ "$qstatus" = 124 ] || [ "$qstatus" = 137 ]; then
		why="the VM timed out after ${vm_timeout}s"
	else
		why="the VM ended (qemu exit $qstatus) without a result line: a crash or a kernel panic"
	fi
	;;
*) why="${result#CGROUP2-RESULT: }" ;;
esac
echo "make test-cgroup2: FAIL: $why; last 60 lines of $log:" >&2
tr -d '\r' <"$log" | tail -n 60 >&2
exit 1
