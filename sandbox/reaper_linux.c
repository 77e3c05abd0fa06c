//go:build linux && cgo

// chimirror's PID 1 for sandboxed jobs, in C so that no Go runtime (and its
// threads, each a pid of the host's) stays alive for every job.
//
// The Go init helper sets the sandbox up, starts the job's target, and then
// execs "/proc/self/exe sandbox-reaper TARGET_PID". This constructor runs
// before the Go runtime starts; for that argv it never returns. Any other
// process returns at once and Go starts as usual.
//
// The reaper blocks every signal and takes them with sigwaitinfo (blocked
// signals reach a namespace's init even without a handler): SIGCHLD reaps,
// anything else is forwarded to every process of the namespace. When the
// target ends it kills what is left, records the target's status in its
// comm ("cm:eN" or "cm:sN", read by the server's reaper while this process
// is an unreaped zombie) and exits with the shell's code.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

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

static void reap(pid_t target) {
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	// Tell the server the handoff is done (fd 3 is the sync socket): from
	// here every signal is queued for us.
	if (write(3, "r\n", 2) != 2) {
		_exit(116);
	}
	close(3);
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
			_exit(114); // the target vanished unseen: cannot happen
		}
		siginfo_t si;
		int sig = sigwaitinfo(&all, &si);
		if (sig < 0 || sig == SIGCHLD) {
			continue;
		}
		kill(-1, sig);
	}
}

__attribute__((constructor)) static void chimirror_reaper(int argc, char **argv, char **envp) {
	(void)envp;
	if (argc != 3 || strcmp(argv[1], "sandbox-reaper") != 0) {
		return;
	}
	char *end;
	long target = strtol(argv[2], &end, 10);
	if (*end != 0 || target <= 1) {
		_exit(115);
	}
	reap((pid_t)target);
}
