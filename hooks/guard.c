/* The guard between the agent and its command (see guard.h). Only
 * async-signal-safe calls from here on: we are the forked child of a process
 * that may have threads. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hooks/guard.h"

/* How often a guard that is killing the tree looks for new orphans. */
#define SWEEP_INTERVAL_NS (5 * 1000 * 1000)

int guard_kill_signal(void)
{
	return SIGRTMIN + 2;
}

static void report_errno(int err_fd, int e)
{
	while (write(err_fd, &e, sizeof(e)) < 0 && errno == EINTR)
		;
}

/* ---- finding our children --------------------------------------------- */

/* Calls kill_one() for each pid in "PID PID ...", read from fd. */
static void for_each_pid_in(int fd, pid_t skip)
{
	char buf[4096];
	long pid = -1;
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] >= '0' && buf[i] <= '9') {
				pid = (pid < 0 ? 0 : pid * 10) + (buf[i] - '0');
			} else {
				if (pid > 1 && pid != skip)
					kill((pid_t)pid, SIGKILL);
				pid = -1;
			}
		}
	}
	if (pid > 1 && pid != skip)
		kill((pid_t)pid, SIGKILL);
}

/* The parent pid in /proc/PID/stat ("PID (COMM) STATE PPID ..."). */
static pid_t stat_ppid(const char *pid_dir)
{
	char path[64] = "/proc/", buf[512], *p = NULL;
	size_t len = strlen(path);
	ssize_t n;
	long ppid = 0;
	int fd;

	if (len + strlen(pid_dir) + sizeof("/stat") > sizeof(path))
		return -1;
	memcpy(path + len, pid_dir, strlen(pid_dir));
	memcpy(path + len + strlen(pid_dir), "/stat", sizeof("/stat"));
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	for (char *c = buf; *c; c++)      /* COMM may hold ')' itself */
		if (*c == ')')
			p = c;
	if (p == NULL || p[1] != ' ' || p[2] == '\0' || p[3] != ' ')
		return -1;
	for (p += 4; *p >= '0' && *p <= '9'; p++)
		ppid = ppid * 10 + (*p - '0');
	return (pid_t)ppid;
}

struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

/* Without /proc/PID/task/PID/children (CONFIG_PROC_CHILDREN): every process
 * whose parent we are, from a scan of /proc. */
static void kill_children_by_scan(pid_t self)
{
	char buf[8192];
	long n;
	int dir = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dir < 0)
		return;
	while ((n = syscall(SYS_getdents64, dir, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < n;) {
			struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
			long pid = 0;
			const char *c;
			off += d->d_reclen;
			for (c = d->d_name; *c >= '0' && *c <= '9'; c++)
				pid = pid * 10 + (*c - '0');
			if (*c == '\0' && pid > 1 && stat_ppid(d->d_name) == self)
				kill((pid_t)pid, SIGKILL);
		}
	}
	close(dir);
}

/* SIGKILL to every process whose parent we are now. */
static void kill_children(pid_t self)
{
	char path[64] = "/proc/self/task/", num[16];
	int fd, i = 0, len = (int)strlen(path);

	/* Our pid as text, for /proc/self/task/PID/children. */
	for (long v = self; v > 0 && i < (int)sizeof(num); v /= 10)
		num[i++] = (char)('0' + v % 10);
	while (i > 0)
		path[len++] = num[--i];
	memcpy(path + len, "/children", sizeof("/children"));
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		kill_children_by_scan(self);
		return;
	}
	for_each_pid_in(fd, self);
	close(fd);
}

/* ---- the guard --------------------------------------------------------- */

/* Starts the command. vfork: the command borrows our memory until its exec
 * instead of copying the page tables of the agent's whole address space
 * (which we are a copy of), a good part of the time from elected to the
 * command's start. It only makes system calls until the exec (child_exec in
 * proc.c), has its own signal handlers (no CLONE_SIGHAND) and file table,
 * and never returns here; we stay suspended until it has exec'd or exited.
 * In a function of its own so no variable of guard_main lives across it. */
static pid_t __attribute__((noinline))
start_command(pid_t self, void (*exec_child)(pid_t guard, void *arg), void *arg)
{
	pid_t cmd = vfork();

	if (cmd == 0)
		exec_child(self, arg);
	return cmd;
}

/* Closes every descriptor above stdio but keep_a and keep_b (<= 2: none). */
static void close_all_but(int keep_a, int keep_b)
{
	struct rlimit nofile;
	unsigned from = 3;
	int keep[2], ok = 1;

	keep[0] = keep_a < keep_b ? keep_a : keep_b;
	keep[1] = keep_a < keep_b ? keep_b : keep_a;
	for (int i = 0; i < 2 && ok; i++) {
		if (keep[i] < (int)from)
			continue;
		if ((unsigned)keep[i] > from)
			ok = syscall(SYS_close_range, from, (unsigned)keep[i] - 1, 0U) == 0;
		from = (unsigned)keep[i] + 1;
	}
	if (ok && syscall(SYS_close_range, from, ~0U, 0U) == 0)
		return;
	/* Kernels before 5.9 have no close_range. */
	if (getrlimit(RLIMIT_NOFILE, &nofile) < 0 || nofile.rlim_cur > 65536)
		nofile.rlim_cur = 65536;
	for (int fd = 3; fd < (int)nofile.rlim_cur; fd++)
		if (fd != keep_a && fd != keep_b)
			close(fd);
}

/* The whole tree is gone: tell the agent at once (done_fd), then exit with
 * the command's status. The agent need not wait for our exit, which takes a
 * while: we are a copy of its whole address space. */
static void __attribute__((noreturn)) finish(int status, int keep_fd, int done_fd)
{
	/* A signal death is passed on as the shell shows it: raising it here
	 * would make the guard dump core for a command that did. */
	int code = WIFEXITED(status) ? WEXITSTATUS(status)
	                             : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 255;
	int as_waited = code << 8;     /* what waitpid() will say of our exit */

	if (done_fd >= 0) {
		if (keep_fd > 2)
			close(keep_fd);
		while (write(done_fd, &as_waited, sizeof(as_waited)) < 0 && errno == EINTR)
			;
	}
	_exit(code);
}

void guard_main(pid_t parent, int keep_fd, int err_fd, int done_fd,
                void (*exec_child)(pid_t guard, void *arg), void *arg)
{
	const int kill_sig = guard_kill_signal();
	const struct timespec sweep = { 0, SWEEP_INTERVAL_NS };
	struct sigaction dfl;
	sigset_t all;
	pid_t self = getpid(), cmd, w;
	int status, cmd_status = 0;
	bool cmd_reaped = false, killing = false, group_gone = false;

	setpgid(0, 0);
	/* SIG_IGN for SIGCHLD (inherited) would make the kernel reap for us. */
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigaction(SIGCHLD, &dfl, NULL);
	if (prctl(PR_SET_PDEATHSIG, kill_sig) < 0 || prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
		report_errno(err_fd, errno);
		_exit(126);
	}
	/* The agent died before PDEATHSIG took effect: nothing to guard. */
	if (getppid() != parent)
		_exit(126);
	if ((cmd = start_command(self, exec_child, arg)) < 0) {
		report_errno(err_fd, errno);
		_exit(126);
	}
	/* Also here, so a signal forwarded at once reaches the command's group. */
	setpgid(cmd, cmd);
	/* The agent's sockets, pipes and loop must not live on in us; the
	 * command has its own copies of what it needs. */
	close_all_but(keep_fd, done_fd);

	sigfillset(&all);
	for (;;) {
		int sig = sigtimedwait(&all, NULL, killing ? &sweep : NULL);

		if (sig == kill_sig) {
			killing = true;
		} else if (sig > 0 && sig != SIGCHLD && !cmd_reaped) {
			/* ESRCH: the group is gone already. */
			kill(-cmd, sig);
		}
		while ((w = waitpid(-1, &status, WNOHANG)) > 0) {
			if (w == cmd) {
				cmd_status = status;
				cmd_reaped = true;
				killing = true;     /* what the command leaves behind dies too */
			}
		}
		if (w < 0 && errno == ECHILD && cmd_reaped)
			finish(cmd_status, keep_fd, done_fd);
		if (!killing)
			continue;
		/* Until the group is empty its id cannot name another group. */
		if (!group_gone && kill(-cmd, SIGKILL) < 0 && errno == ESRCH)
			group_gone = true;
		kill_children(self);
	}
}
