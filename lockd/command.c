/* lockd's hold on a client's command: pidfd checks, kill, exit test (see
 * command.h). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "common/valgrind.h"
#include "hooks/guard.h"
#include "lockd/command.h"


/* ppid and process group of pid from /proc/PID/stat; -1 if unreadable. */
static int read_stat(pid_t pid, pid_t *ppid, pid_t *pgrp)
{
	char path[64], buf[1024], *p;
	int fd, ppid_i, pgrp_i;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* "PID (COMM) STATE PPID PGRP ...": COMM may hold ')' and spaces. */
	if ((p = strrchr(buf, ')')) == NULL || sscanf(p + 1, " %*c %d %d", &ppid_i, &pgrp_i) != 2)
		return -1;
	*ppid = ppid_i;
	*pgrp = pgrp_i;
	return 0;
}

int command_open(pid_t pid, pid_t peer, int *status, char *why, size_t whylen)
{
	pid_t ppid, pgrp;
	int fd;

	*status = 403;
	if (pid <= 1 || peer <= 0 || pid == peer) {
		snprintf(why, whylen, "pid %d is not a command of this client", (int)pid);
		return -1;
	}
	if (RUNNING_ON_VALGRIND) {
		*status = 501;
		snprintf(why, whylen, "cannot watch processes here: no pidfd_open");
		return -1;
	}
	if ((fd = (int)syscall(SYS_pidfd_open, pid, 0)) < 0) {
		if (errno == ENOSYS)
			*status = 501;
		snprintf(why, whylen, "cannot watch process %d: %s", (int)pid, strerror(errno));
		return -1;
	}
	/* What /proc says is about the pidfd's process only if that process
	 * still exists after the read (until it is reaped, its pid cannot be
	 * given to another one). */
	if (read_stat(pid, &ppid, &pgrp) < 0 || ppid != peer || pgrp != pid ||
	    syscall(SYS_pidfd_send_signal, fd, 0, NULL, 0) < 0) {
		close(fd);
		snprintf(why, whylen, "pid %d is not a process group leader started by this client",
		         (int)pid);
		return -1;
	}
	return fd;
}

void command_kill(int pidfd, pid_t pid, bool guard)
{
	/* lockctl runs its command under a guard (hooks/guard.h): SIGKILL would
	 * kill the guard alone and leave the command's tree running; the guard's
	 * own signal makes it kill the whole tree and exit once all of it is
	 * dead, which the pidfd then tells. */
	if (syscall(SYS_pidfd_send_signal, pidfd, guard ? guard_kill_signal() : SIGKILL, NULL, 0) < 0) {
		if (errno != ESRCH)
			log_warnx("cannot kill command %d: %s", (int)pid, strerror(errno));
		return;           /* reaped: its group id may be someone else's now */
	}
	/* Any other command: SIGKILL to it and to its process group. */
	if (!guard && kill(-pid, SIGKILL) < 0 && errno != ESRCH)
		log_warnx("cannot kill the process group of command %d: %s", (int)pid, strerror(errno));
}
