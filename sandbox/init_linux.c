//go:build linux && cgo

// chimirror's job init in C: the whole helper side of the handshake drawn in
// init_linux.go, run from an ELF constructor before the Go runtime starts
// (as runc's nsexec is), so a sandbox costs no Go runtime start-up, no
// second exec and no Go threads. For any argv but "sandbox-init" (and
// "sandbox-template") the constructor returns at once and Go starts as
// usual.
//
// Its life: block every signal; read the prepare message from fd 3 and set
// the sandbox up (lo, a cgroup namespace, the job's root from the view's
// mount steps, rlimits, no_new_privs, bounding set, not dumpable); say
// "prepared"; wait for the job message; set the hostname; start the
// target (spawn_target, vfork-style), which takes the policy's ids, a
// session keyring (a fresh one, or its template's closed one; see
// shared_session_keyring), emptied user keyrings and the seccomp filter,
// and execs; drop its own capabilities to CAP_KILL; say "ok"; then, as
// PID 1, take signals with sigwaitinfo (blocked signals reach a
// namespace's init even without a
// handler): SIGCHLD reaps, anything else goes to every process of the
// namespace. When the target ends it kills what is left, records the
// target's status in its comm ("cm:eN" or "cm:sN", read by the server while
// this process is an unreaped zombie) and exits with the shell's code.
//
// A template's holder (argv[1] "sandbox-template", below) runs from the
// same constructor: it builds a view's root once and clones inits that
// start at the prepare message in a copy of it.
//
// Exit codes before the target runs: 111 the server went away (EOF on fd 3,
// which is also how a pool discards an initiator), 112 a setup step failed
// (after "error: …" on fd 3), 113 fd 3 could not be written, 114 the target
// vanished unseen.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/keyctl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SYNC_FD 3
// Both ends bound the same way: see maxInitMsgBytes in init_wire_linux.go.
#define MAX_MSG_BYTES (4u << 20)

// failf ends a setup step that failed: it tells the server "error: " and
// the formatted message, a line, on fd 3, and exits 112, or 113 if fd 3
// could not be written.
__attribute__((format(printf, 1, 2), noreturn)) static void failf(const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	int n = dprintf(SYNC_FD, "error: ");
	if (n >= 0) {
		n = vdprintf(SYNC_FD, fmt, ap);
	}
	va_end(ap);
	if (n >= 0) {
		n = dprintf(SYNC_FD, "\n");
	}
	_exit(n < 0 ? 113 : 112);
}

static int read_full(int fd, void *buf, size_t n) {
	char *p = buf;
	while (n > 0) {
		ssize_t got = read(fd, p, n);
		if (got < 0 && errno == EINTR) {
			continue;
		}
		if (got <= 0) {
			return -1;
		}
		p += got;
		n -= (size_t)got;
	}
	return 0;
}

// A message: its fields, each NUL-terminated, walked by next().
struct msg {
	char *buf, *at, *end;
};

// read_msg reads one message from fd 3; EOF (the server is gone, or
// discarded us) ends the process with 111 and nothing run.
static void read_msg(struct msg *m) {
	unsigned char hdr[4];
	if (read_full(SYNC_FD, hdr, 4) < 0) {
		_exit(111);
	}
	uint32_t n = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 24;
	if (n == 0 || n > MAX_MSG_BYTES) {
		failf("init message size out of range");
	}
	m->buf = malloc(n);
	if (m->buf == NULL) {
		failf("init message: %s", strerror(ENOMEM));
	}
	if (read_full(SYNC_FD, m->buf, n) < 0) {
		_exit(111);
	}
	if (m->buf[n - 1] != 0) {
		failf("init message: last field unterminated");
	}
	m->at = m->buf;
	m->end = m->buf + n;
}

static int write_full(int fd, const void *buf, size_t n) {
	const char *p = buf;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR) {
			continue;
		}
		if (w < 0) {
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static char *next(struct msg *m) {
	if (m->at >= m->end) {
		failf("init message: too few fields");
	}
	char *f = m->at;
	m->at += strlen(f) + 1;
	return f;
}

static unsigned long long next_num(struct msg *m) {
	char *f = next(m), *end;
	errno = 0;
	unsigned long long v = strtoull(f, &end, 10);
	if (*f == 0 || *end != 0 || errno != 0) {
		failf("init message: bad number");
	}
	return v;
}

// next_vec reads a count and that many fields into a NULL-terminated array.
static char **next_vec(struct msg *m) {
	unsigned long long n = next_num(m);
	// Every field takes at least its NUL: a count beyond what is left is a
	// lie, and must not size an allocation.
	if (n > (unsigned long long)(m->end - m->at)) {
		failf("init message: too few fields");
	}
	char **v = calloc(n + 1, sizeof *v);
	if (v == NULL) {
		failf("init message: %s", strerror(ENOMEM));
	}
	for (unsigned long long i = 0; i < n; i++) {
		v[i] = next(m);
	}
	return v;
}

static void expect_kind(struct msg *m, const char *kind) {
	if (strcmp(next(m), kind) != 0) {
		failf("init message: want %s", kind);
	}
}

static void loopback_up(void) {
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		failf("bring lo up: socket: %s", strerror(errno));
	}
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
		failf("bring lo up: %s", strerror(errno));
	}
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0) {
		failf("bring lo up: %s", strerror(errno));
	}
	close(fd);
}

// Paths while the root is built: see planView in view_linux.go.
#define OLD_ROOT "/oldroot"
#define NEW_ROOT "/newroot"

static int num_arg(const char *f, unsigned long long *v) {
	char *end;
	errno = 0;
	*v = strtoull(f, &end, 10);
	return (*f == 0 || *end != 0 || errno != 0) ? -1 : 0;
}

static int set_attr(const char *path, unsigned long long attr, int recursive) {
	struct mount_attr a;
	memset(&a, 0, sizeof a);
	a.attr_set = attr;
	return (int)syscall(SYS_mount_setattr, AT_FDCWD, path, AT_SYMLINK_NOFOLLOW | (recursive ? AT_RECURSIVE : 0), &a, sizeof a);
}

// The job's area, once an "area" step has made it (see mountOp in
// view_linux.go): a relative path in a step lies in it.
static int area_fd = -1;

// at resolves path for an *at call: a relative path in the area, any
// other as it is; -1 (EBADF) for a relative one before the area exists.
static int at(const char *path, int *dir) {
	if (path[0] == '/') {
		*dir = AT_FDCWD;
		return 0;
	}
	if (area_fd < 0) {
		errno = EBADF;
		return -1;
	}
	*dir = area_fd;
	return 0;
}

// open_path opens path (see at) as O_PATH without following any symlink:
// a path the plan saw as a directory or file, swapped for a link since,
// fails with ELOOP instead of binding whatever the link names.
static int open_path(const char *path) {
	int dir;
	if (at(path, &dir) < 0) {
		return -1;
	}
	struct open_how how;
	memset(&how, 0, sizeof how);
	how.flags = O_PATH | O_CLOEXEC;
	how.resolve = RESOLVE_NO_SYMLINKS;
	return (int)syscall(SYS_openat2, dir, path, &how, sizeof how);
}

// bind_path binds src's tree at dst with attr on every mount of it, both
// opened by open_path: the copy is made and set detached, then attached.
static int bind_path(const char *src, const char *dst, unsigned long long attr) {
	int from = open_path(src);
	if (from < 0) {
		return -1;
	}
	int tree = (int)syscall(SYS_open_tree, from, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
	int e = errno;
	close(from);
	if (tree < 0) {
		errno = e;
		return -1;
	}
	struct mount_attr a;
	memset(&a, 0, sizeof a);
	a.attr_set = attr;
	int to = -1, rc = (int)syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &a, sizeof a);
	if (rc == 0) {
		to = open_path(dst);
		rc = to < 0 ? -1 : (int)syscall(SYS_move_mount, tree, "", to, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
	}
	e = errno;
	if (to >= 0) {
		close(to);
	}
	close(tree);
	errno = e;
	return rc;
}

// attach_area attaches the area at dst (opened by open_path): kernels
// before 6.15 bind only from an attached mount.
static int attach_area(const char *dst) {
	if (area_fd < 0) {
		errno = EBADF;
		return -1;
	}
	int to = open_path(dst);
	if (to < 0) {
		return -1;
	}
	int rc = (int)syscall(SYS_move_mount, area_fd, "", to, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
	int e = errno;
	close(to);
	errno = e;
	return rc;
}

// new_area makes a filesystem of type fstype from src with the comma-
// separated options data (key=value, or a key alone for a flag) and mounts
// it nowhere, with attr: the area's root (area_fd).
static int new_area(const char *src, const char *fstype, const char *data, unsigned long long attr) {
	if (area_fd >= 0) {
		errno = EEXIST;
		return -1;
	}
	int fs = (int)syscall(SYS_fsopen, fstype, FSOPEN_CLOEXEC);
	if (fs < 0) {
		return -1;
	}
	int rc = 0;
	if (src[0] != 0) {
		rc = (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "source", src, 0);
	}
	char *opts = strdup(data), *save = NULL;
	if (opts == NULL) {
		rc = -1;
	}
	for (char *o = rc < 0 ? NULL : strtok_r(opts, ",", &save); o != NULL && rc == 0; o = strtok_r(NULL, ",", &save)) {
		char *v = strchr(o, '=');
		if (v == NULL) {
			rc = (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_FLAG, o, NULL, 0);
			continue;
		}
		*v++ = 0;
		rc = (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, o, v, 0);
	}
	free(opts);
	if (rc == 0) {
		rc = (int)syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0);
	}
	if (rc == 0) {
		area_fd = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, (unsigned int)attr);
		rc = area_fd < 0 ? -1 : 0;
	}
	int e = errno;
	close(fs);
	errno = e;
	return rc;
}

static int write_file(const char *path, unsigned long long mode, const char *content) {
	int dir;
	if (at(path, &dir) < 0) {
		return -1;
	}
	int fd = openat(dir, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, (mode_t)mode);
	if (fd < 0) {
		return -1;
	}
	if (write_full(fd, content, strlen(content)) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return close(fd);
}

// run_step runs one of planView's steps; -1 with errno on failure, a
// malformed step included (EINVAL).
static int run_step(char *f[6]) {
	unsigned long long n = 0;
	const char *kind = f[0], *dst = f[2];
	if (strcmp(kind, "mount") == 0) {
		if (num_arg(f[4], &n) < 0) {
			errno = EINVAL;
			return -1;
		}
		return mount(f[1][0] ? f[1] : NULL, dst, f[3][0] ? f[3] : NULL, (unsigned long)n, f[5][0] ? f[5] : NULL);
	}
	if (strcmp(kind, "area") == 0) {
		if (num_arg(f[4], &n) < 0) {
			errno = EINVAL;
			return -1;
		}
		return new_area(f[1], f[3], f[5], n);
	}
	if (strcmp(kind, "attach") == 0) {
		return attach_area(dst);
	}
	if (strcmp(kind, "bind") == 0) {
		if (num_arg(f[3], &n) < 0) {
			errno = EINVAL;
			return -1;
		}
		return bind_path(f[1], dst, n);
	}
	if (strcmp(kind, "setattr") == 0) {
		if (num_arg(f[3], &n) < 0) {
			errno = EINVAL;
			return -1;
		}
		return set_attr(dst, n, 0);
	}
	if (strcmp(kind, "mkdir") == 0) {
		if (num_arg(f[3], &n) < 0) {
			errno = EINVAL;
			return -1;
		}
		int dir;
		if (at(dst, &dir) < 0) {
			return -1;
		}
		return (mkdirat(dir, dst, (mode_t)n) < 0 && errno != EEXIST) ? -1 : 0;
	}
	if (strcmp(kind, "file") == 0) {
		if (num_arg(f[3], &n) < 0) {
			errno = EINVAL;
			return -1;
		}
		return write_file(dst, n, f[5]);
	}
	if (strcmp(kind, "symlink") == 0) {
		return symlink(f[1], dst);
	}
	if (strcmp(kind, "pivot") == 0) {
		if (syscall(SYS_pivot_root, f[1], dst) < 0) {
			return -1;
		}
		return chdir("/");
	}
	if (strcmp(kind, "enter") == 0) {
		if (chdir(dst) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 || umount2(".", MNT_DETACH) < 0) {
			return -1;
		}
		return chdir("/");
	}
	if (strcmp(kind, "chown") == 0) {
		unsigned long long gid = 0;
		if (num_arg(f[3], &n) < 0 || num_arg(f[4], &gid) < 0) {
			errno = EINVAL;
			return -1;
		}
		int dir;
		if (at(dst, &dir) < 0) {
			return -1;
		}
		return fchownat(dir, dst, (uid_t)n, (gid_t)gid, AT_SYMLINK_NOFOLLOW);
	}
	if (strcmp(kind, "mknod") == 0) {
		unsigned long long dev = 0;
		if (num_arg(f[3], &n) < 0 || num_arg(f[4], &dev) < 0) {
			errno = EINVAL;
			return -1;
		}
		return mknod(dst, (mode_t)n, (dev_t)dev);
	}
	if (strcmp(kind, "ro") == 0) {
		if (mount(dst, dst, NULL, MS_BIND | MS_REC, NULL) < 0) {
			return -1;
		}
		return set_attr(dst, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, 1);
	}
	errno = EINVAL;
	return -1;
}

// build_root makes the job's root by running the view's plan (see planView
// in view_linux.go), which ends inside it, or the job's own steps of it
// inside a template's root; then lets the area go (its bound directories
// stay).
static void build_root(struct msg *m) {
	unsigned long long nops = next_num(m);
	if (nops > (unsigned long long)(m->end - m->at) / 6) {
		failf("init message: too few fields");
	}
	for (unsigned long long i = 0; i < nops; i++) {
		char *f[6];
		for (int j = 0; j < 6; j++) {
			f[j] = next(m);
		}
		if (run_step(f) < 0) {
			const char *where = f[2];
			if (strncmp(where, NEW_ROOT, strlen(NEW_ROOT)) == 0) {
				where += strlen(NEW_ROOT);
			}
			if (errno == ELOOP && strcmp(f[0], "bind") == 0) {
				failf("build root: step %llu: bind %s: a symlink appeared in its path after the view was planned", i, where);
			}
			failf("build root: step %llu: %s %s: %s", i, f[0], where, strerror(errno));
		}
	}
	if (area_fd >= 0) {
		close(area_fd);
		area_fd = -1;
	}
}

// The filter, from the prepare message, installed by the target.
static struct sock_filter *filter;
static unsigned short filter_len;
static unsigned int filter_flags;

static int hex_digit(char c) {
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	return -1;
}

static void read_filter(struct msg *m) {
	filter_flags = (unsigned int)next_num(m);
	const char *h = next(m);
	size_t n = strlen(h);
	if (n == 0) {
		return;
	}
	if (n % 16 != 0 || n / 16 > 4096) {
		failf("init message: bad seccomp filter");
	}
	unsigned char *b = malloc(n / 2);
	if (b == NULL) {
		failf("init message: %s", strerror(ENOMEM));
	}
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hex_digit(h[2 * i]), lo = hex_digit(h[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			failf("init message: bad seccomp filter");
		}
		b[i] = (unsigned char)(hi << 4 | lo);
	}
	filter = (struct sock_filter *)b;
	filter_len = (unsigned short)(n / 16);
}

// clear_user_keyrings: see ClearUserKeyrings in init_linux.go.
static int clear_user_keyrings;

// shared_session_keyring: this init was cloned from a template's holder,
// whose session keyring (made in hold) is a new one, empty and closed to
// its possessors, that every job from the template keeps unless it may use
// keyrings. A job that cannot reach a keyring (its filter refuses add_key,
// keyctl and request_key) then creates and frees no key: each key freed
// starts the kernel's key garbage collector, which walks every key on the
// host (measured here: 0.5 ms of a kworker per job with 7,700 keys on the
// host, 3.2 ms with 27,700).
static int shared_session_keyring;

// prepare is everything that does not depend on the job; see prepare in
// init_linux.go, which is the same for builds without cgo.
static void prepare(struct msg *m, uid_t *uid, gid_t *gid) {
	expect_kind(m, "prepare");
	int new_net = next_num(m) != 0;
	*uid = (uid_t)next_num(m);
	*gid = (gid_t)next_num(m);
	clear_user_keyrings = next_num(m) != 0;
	unsigned long long nrl = next_num(m);
	if (new_net) {
		loopback_up();
	}
	// The server has put us in the job's cgroup by now: a cgroup namespace
	// made here has it as its root.
	if (unshare(CLONE_NEWCGROUP) < 0) {
		failf("new cgroup namespace: %s", strerror(errno));
	}
	umask(0); // the steps' modes are meant as written
	// Mounts first: / must not be shared, or our mounts leak to the host.
	if (mount("", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		failf("make / rprivate: %s", strerror(errno));
	}
	struct rlimit rls[16];
	int res[16];
	if (nrl > 16) {
		failf("init message: too many rlimits");
	}
	for (unsigned long long i = 0; i < nrl; i++) {
		res[i] = (int)next_num(m);
		rls[i].rlim_cur = next_num(m);
		rls[i].rlim_max = next_num(m);
	}
	build_root(m);
	read_filter(m);
	for (unsigned long long i = 0; i < nrl; i++) {
		if (setrlimit(res[i], &rls[i]) < 0) {
			failf("set rlimit: %s", strerror(errno));
		}
	}
	// Not dumpable: a job cannot read this process's memory or open its
	// /proc/1/exe (the server's binary), whatever its ids.
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
		failf("not dumpable: %s", strerror(errno));
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		failf("no_new_privs: %s", strerror(errno));
	}
	// Every capability leaves the bounding set but CAP_KILL, so nothing the
	// target execs can gain one; we drop our own after starting it.
	// Capabilities are numbered from 0 with no gap: EINVAL is the first
	// number past this kernel's last.
	for (int c = 0; c <= 63; c++) {
		if (c != CAP_KILL && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) {
			if (errno == EINVAL) {
				break;
			}
			failf("drop capability: %s", strerror(errno));
		}
	}
}

// The id calls with 32-bit ids: on i386 and 32-bit ARM the plain numbers
// are the old 16-bit calls, which would cut a uid above 65535 short.
#ifdef SYS_setresuid32
#define SYS_SETGROUPS SYS_setgroups32
#define SYS_SETRESGID SYS_setresgid32
#define SYS_SETRESUID SYS_setresuid32
#else
#define SYS_SETGROUPS SYS_setgroups
#define SYS_SETRESGID SYS_setresgid
#define SYS_SETRESUID SYS_setresuid
#endif

// The target is started when the job comes, with vfork's sharing
// (CLONE_VM|CLONE_VFORK: no copy of the init's memory, and the init waits
// until it has exec'd or failed): it takes the job's ids, a session of its
// own, its keyrings and its seccomp filter, and execs. On this host a
// fork, with the copy-on-write faults and the page tables it costs both
// processes, took about 1 ms of CPU more than the vfork-style start, which
// was a twentieth of a sandboxed session's CPU. A custom seccomp profile
// must allow, besides execve, what the target does under the filter before
// it: chdir and rt_sigprocmask (and write and exit_group, to report a
// failure).
//
// The target shares the init's memory until its exec (unless a fork must
// be taken instead: see shareable), and the init is stopped meanwhile: it
// only makes system calls (raw ones where the C library's wrapper would
// keep state, as setuid's does), writes only its own stack and errno, and
// ends with execve or _exit.
struct spawn {
	uid_t uid;
	gid_t gid;
	const char *path, *dir;
	char **argv, **envp;
	int report; // the write end of the target's report, close-on-exec
};

// report_fail tells the init which step failed and how, and ends the target.
__attribute__((noreturn)) static void report_fail(int fd, const char *step) {
	int err = errno;
	char b[64];
	int n = snprintf(b, sizeof b, "%s %d", step, err);
	if (write(fd, b, (size_t)n) < 0) {
		_exit(127);
	}
	_exit(127);
}

static int target_main(void *arg) {
	const struct spawn *s = arg;
	int rep = s->report;
	if (setsid() < 0) report_fail(rep, "setsid");
	if (syscall(SYS_SETGROUPS, 0, NULL) < 0) report_fail(rep, "setgroups");
	if (syscall(SYS_SETRESGID, s->gid, s->gid, s->gid) < 0) report_fail(rep, "setgid");
	if (syscall(SYS_SETRESUID, s->uid, s->uid, s->uid) < 0) report_fail(rep, "setuid");
	// The uid change made the memory we share with the init as dumpable as
	// fs.suid_dumpable says: not dumpable again, at once (spawn_target
	// takes a fork instead where that sysctl would let the job's uid trace
	// us before this line).
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) report_fail(rep, "dumpable");
	umask(022);
	// Keyrings: a new session keyring of our own (or the template's closed
	// one, for a job that cannot reach a keyring), and, where the job may
	// use keyrings, uid's user keyrings and persistent keyring emptied,
	// which the kernel keeps after the job (the persistent one for days):
	// an earlier job with this uid must not hand its keys on. (Touching
	// them creates them.) The persistent keyring is reached through the
	// thread keyring, which the exec drops.
	if (clear_user_keyrings) {
		if (syscall(SYS_keyctl, KEYCTL_CLEAR, KEY_SPEC_USER_KEYRING) < 0 && errno != ENOSYS) report_fail(rep, "keyrings");
		if (syscall(SYS_keyctl, KEYCTL_CLEAR, KEY_SPEC_USER_SESSION_KEYRING) < 0 && errno != ENOSYS) report_fail(rep, "keyrings");
		long pk = syscall(SYS_keyctl, KEYCTL_GET_PERSISTENT, -1, KEY_SPEC_THREAD_KEYRING);
		if (pk < 0 && errno != ENOSYS && errno != EOPNOTSUPP) report_fail(rep, "persistent-keyring");
		if (pk >= 0 && syscall(SYS_keyctl, KEYCTL_CLEAR, pk) < 0) report_fail(rep, "persistent-keyring");
	}
	if ((clear_user_keyrings || !shared_session_keyring) && syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0 && errno != ENOSYS) report_fail(rep, "keyrings");
	if (filter_len > 0) {
		struct sock_fprog prog = {.len = filter_len, .filter = filter};
		if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, filter_flags, &prog) < 0) report_fail(rep, "seccomp");
	}
	if (chdir(s->dir) < 0) report_fail(rep, "chdir"); // Launch names one, "/" at least
	sigset_t none;
	sigemptyset(&none);
	if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, _NSIG / 8) < 0) report_fail(rep, "sigprocmask");
	execve(s->path, s->argv, s->envp);
	report_fail(rep, "exec");
}

// target_stack is the target's stack until its exec: in the init's bss,
// so that it costs no mmap and no munmap (whose TLB shootdown reaches
// every CPU the target ran on), only the few pages it touches.
static char target_stack[64 << 10] __attribute__((aligned(16)));

// shareable reports whether the target may share the init's memory until
// its exec: not where fs.suid_dumpable is 1 ("debug"), under which its
// uid change leaves the shared memory traceable by any process of the
// job's uid until the target makes it not dumpable again, a few
// instructions later; a fork then gives the target a copy of its own.
// (0 and 2 keep it out of reach. Unreadable: taken for 1.)
static int shareable(void) {
	char b[8] = "";
	int fd = open("/proc/sys/fs/suid_dumpable", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		return 0;
	}
	ssize_t n = read(fd, b, sizeof b - 1);
	close(fd);
	return n > 0 && b[0] != '1';
}

// spawn_target starts the job's program as s says and returns its pid once
// it has exec'd; a failure ends the init with the target's report.
static pid_t spawn_target(struct spawn *s) {
	int ep[2];
	if (pipe2(ep, O_CLOEXEC) < 0) {
		failf("start %s: pipe: %s", s->path, strerror(errno));
	}
	s->report = ep[1];
	int flags = shareable() ? CLONE_VM | CLONE_VFORK : 0;
	pid_t pid = clone(target_main, target_stack + sizeof target_stack, flags | SIGCHLD, s);
	int cerr = errno;
	close(ep[1]);
	if (pid < 0) {
		failf("start %s: clone: %s", s->path, strerror(cerr));
	}
	char b[64];
	ssize_t r;
	do {
		r = read(ep[0], b, sizeof b - 1);
	} while (r < 0 && errno == EINTR);
	close(ep[0]);
	if (r > 0) {
		b[r] = 0;
		char step[32];
		int err = 0;
		int status;
		waitpid(pid, &status, 0);
		if (sscanf(b, "%31s %d", step, &err) != 2) {
			b[strcspn(b, "\n")] = 0;
			failf("start %s: target: %s", s->path, b);
		}
		// The errno as well as its text: the server tells a failure no
		// retry fixes (ENOENT, ENOEXEC) from one that may pass (ENOMEM).
		failf("start %s: %s: %s [errno %d]", s->path, step, strerror(err), err);
	}
	return pid;
}

// keep_only_kill leaves this process CAP_KILL alone: enough to signal the
// job's processes (another uid), nothing outside its namespaces.
static void keep_only_kill(void) {
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof data);
	data[0].effective = data[0].permitted = 1u << CAP_KILL;
	if (syscall(SYS_capset, &hdr, data) < 0) {
		failf("drop init capabilities: %s", strerror(errno));
	}
}

static void leave_status(int status) {
	char comm[16];
	int code;
	if (WIFSIGNALED(status)) {
		snprintf(comm, sizeof comm, "cm:s%d", WTERMSIG(status));
		code = 128 + WTERMSIG(status);
	} else {
		snprintf(comm, sizeof comm, "cm:e%d", WEXITSTATUS(status));
		code = WEXITSTATUS(status);
	}
	prctl(PR_SET_NAME, comm, 0, 0, 0);
	_exit(code);
}

static void reap(pid_t target, sigset_t *all) {
	for (;;) {
		int status;
		pid_t p;
		while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
			if (p == target) {
				kill(-1, SIGKILL);
				leave_status(status);
			}
		}
		if (p < 0 && errno == ECHILD) {
			_exit(114);
		}
		siginfo_t si;
		int sig = sigwaitinfo(all, &si);
		if (sig < 0 || sig == SIGCHLD) {
			continue;
		}
		kill(-1, sig);
	}
}

// run_init is the init's life from the prepare message on; fd 3 is the
// sync socket, every signal blocked and at its default.
__attribute__((noreturn)) static void run_init(void) {
	sigset_t all;
	sigfillset(&all);
	uid_t uid;
	gid_t gid;
	struct msg m;
	read_msg(&m);
	prepare(&m, &uid, &gid);
	if (dprintf(SYNC_FD, "prepared\n") < 0) {
		_exit(113);
	}
	read_msg(&m);
	expect_kind(&m, "job");
	struct spawn s = {.uid = uid, .gid = gid};
	s.path = next(&m);
	s.dir = next(&m);
	char *host = next(&m);
	s.argv = next_vec(&m);
	s.envp = next_vec(&m);
	if (host[0] != 0 && sethostname(host, strlen(host)) < 0) {
		failf("set hostname: %s", strerror(errno));
	}
	pid_t pid = spawn_target(&s);
	// Our memory's dumpable flag went with the target's uid change (shared
	// memory) and back: say not dumpable ourselves, whatever it says now.
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
		failf("not dumpable: %s", strerror(errno));
	}
	// Only the target holds the job's streams now, so its EOF is theirs.
	close(0);
	close(1);
	close(2);
	keep_only_kill();
	if (dprintf(SYNC_FD, "ok\n") < 0) {
		_exit(113);
	}
	close(SYNC_FD);
	reap(pid, &all);
	_exit(114); // not reached: reap ends the process
}

// --- the template holder ---------------------------------------------------
//
// A holder (argv[1] "sandbox-template", see template_linux.go) builds the
// shared part of a view's root once, in a mount namespace of its own, and
// stays in it: its root is the job's root, its mounts the view's. On each
// clone request it clones a new init into new pid, mount, UTS, IPC (and
// network) namespaces, whose mount namespace is a copy of its own, with
// CLONE_PARENT, so that the init is the server's child as one it starts
// itself would be. The init then runs the job's own steps only. The
// holder's conversation on fd 3, a stream socket:
//
//	server                                     holder
//	"template" M {KIND A B C D E}×M ─────────► / rprivate; the shared steps,
//	                                           which end inside the root
//	read "ready" or "error: …" ◄────────────── reply
//	"clone" NEWNET, with SCM_RIGHTS: the ───► clone3: CLONE_PARENT, new
//	  init's stdio, stdout and sync socket,      namespaces (v2: into the
//	  and on v2 its cgroup's directory           cgroup); the child makes
//	                                             them its fds 0–3 and runs
//	                                             the init from its prepare
//	                                             message on
//	read "pid N" or "error: …" ◄────────────── reply; close its copies
//	… (one request at a time, until) …
//	close ────────────────────────────────────► EOF: exit 0
//
// The holder runs nothing of any job, holds no descriptor of one past its
// clone, and is no job's ancestor; Pdeathsig ends it with the server.

// MAX_CLONE_FDS: stdio, stdout, sync, and the cgroup on v2.
#define MAX_CLONE_FDS 4

// become_init makes a child cloned for a job its init: the fds it was sent
// as its 0–3 and none other, then run_init.
__attribute__((noreturn)) static void become_init(int *fds) {
	// The server is our parent (CLONE_PARENT): die with it, as an init it
	// starts itself does. Gone already, it left fd 3 at EOF: exit 111.
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || setpgid(0, 0) < 0) {
		_exit(111);
	}
	if (dup3(fds[0], 0, 0) < 0 || dup3(fds[1], 1, 0) < 0 || dup3(fds[0], 2, 0) < 0 || dup3(fds[2], SYNC_FD, O_CLOEXEC) < 0) {
		_exit(111);
	}
	if (syscall(SYS_close_range, SYNC_FD + 1, ~0U, 0) < 0) {
		_exit(111);
	}
	run_init();
}

// serve_clone answers one clone request; EOF ends the holder.
static void serve_clone(void) {
	unsigned char hdr[4];
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(MAX_CLONE_FDS * sizeof(int))];
	} cb;
	struct iovec iov = {.iov_base = hdr, .iov_len = sizeof hdr};
	struct msghdr mh;
	memset(&mh, 0, sizeof mh);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cb.b;
	mh.msg_controllen = sizeof cb.b;
	ssize_t got = recvmsg(SYNC_FD, &mh, MSG_CMSG_CLOEXEC);
	if (got == 0) {
		_exit(0); // the server is done with us
	}
	if (got < 0) {
		_exit(111);
	}
	int fds[MAX_CLONE_FDS], nfds = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			for (int i = 0; i < n; i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
				if (nfds < MAX_CLONE_FDS) {
					fds[nfds++] = fd;
				} else {
					close(fd);
				}
			}
		}
	}
	if ((mh.msg_flags & MSG_CTRUNC) != 0 || (nfds != 3 && nfds != 4)) {
		failf("clone request: want 3 or 4 descriptors");
	}
	if (got < 4 && read_full(SYNC_FD, hdr + got, 4 - (size_t)got) < 0) {
		_exit(111);
	}
	uint32_t n = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 24;
	if (n == 0 || n > 64) {
		failf("clone request: size out of range");
	}
	char body[64];
	if (read_full(SYNC_FD, body, n) < 0) {
		_exit(111);
	}
	if (body[n - 1] != 0) {
		failf("clone request: last field unterminated");
	}
	struct msg m = {.buf = body, .at = body, .end = body + n};
	expect_kind(&m, "clone");
	int new_net = next_num(&m) != 0;
	struct clone_args a;
	memset(&a, 0, sizeof a);
	a.flags = CLONE_PARENT | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC;
	if (new_net) {
		a.flags |= CLONE_NEWNET;
	}
	if (nfds == 4) {
		a.flags |= CLONE_INTO_CGROUP;
		a.cgroup = (uint64_t)fds[3];
	}
	// exit_signal stays 0: with CLONE_PARENT the child takes ours, SIGCHLD,
	// for its parent, the server.
	long pid = syscall(SYS_clone3, &a, sizeof a);
	if (pid == 0) {
		become_init(fds);
	}
	int e = errno;
	for (int i = 0; i < nfds; i++) {
		close(fds[i]);
	}
	// snprintf and write, not dprintf: after each clone every page the
	// holder writes is copied first, and dprintf writes the C library's
	// list of streams.
	char reply[128];
	int len = pid < 0 ? snprintf(reply, sizeof reply, "error: clone: %s\n", strerror(e)) : snprintf(reply, sizeof reply, "pid %ld\n", pid);
	if (len < 0 || write_full(SYNC_FD, reply, (size_t)len < sizeof reply ? (size_t)len : sizeof reply - 1) < 0) {
		_exit(113);
	}
}

// hold is the holder's life: build the shared root, then clone inits.
__attribute__((noreturn)) static void hold(void) {
	struct msg m;
	read_msg(&m);
	expect_kind(&m, "template");
	umask(0); // the steps' modes are meant as written
	// Mounts first: / must not be shared, or our mounts leak to the host,
	// and the copies the inits get would share with each other.
	if (mount("", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		failf("make / rprivate: %s", strerror(errno));
	}
	build_root(&m);
	free(m.buf);
	// The session keyring the inits we clone keep (see
	// shared_session_keyring): a new one, not the server's, with no
	// permission for anyone, so that not even its possessors may view,
	// search, add to or link it, and a kernel request_key on a job's
	// behalf, which would link its key into it, is refused. (No keyrings
	// in this kernel: nothing to share.)
	if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0) {
		if (errno != ENOSYS) {
			failf("session keyring: %s", strerror(errno));
		}
	} else if (syscall(SYS_keyctl, KEYCTL_SETPERM, KEY_SPEC_SESSION_KEYRING, 0) < 0) {
		failf("session keyring: set permissions: %s", strerror(errno));
	}
	shared_session_keyring = 1;
	// Not dumpable: no one but root may look into the holder.
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
		failf("not dumpable: %s", strerror(errno));
	}
	if (dprintf(SYNC_FD, "ready\n") < 0) {
		_exit(113);
	}
	for (;;) {
		serve_clone();
	}
}

__attribute__((constructor)) static void chimirror_init(int argc, char **argv, char **envp) {
	(void)envp;
	if (argc != 2) {
		return;
	}
	int holder = strcmp(argv[1], "sandbox-template") == 0;
	if (!holder && strcmp(argv[1], "sandbox-init") != 0) {
		return;
	}
	// Blocked from the first instruction: nothing the server sends is lost
	// before the reaper takes signals, and the target unblocks its own.
	// (A holder's inits inherit the mask and the dispositions below.)
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	// Signals the server ignores (started under nohup, or in a script's
	// background) must still reach the job: an ignored signal is dropped,
	// blocked or not, and the target would inherit it ignored.
	struct sigaction dfl;
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	for (int s = 1; s < NSIG; s++) {
		if (s != SIGKILL && s != SIGSTOP) {
			sigaction(s, &dfl, NULL); // EINVAL for the C library's own: fine
		}
	}
	if (fcntl(SYNC_FD, F_SETFD, FD_CLOEXEC) < 0) {
		_exit(111);
	}
	if (holder) {
		hold();
	}
	run_init();
}
