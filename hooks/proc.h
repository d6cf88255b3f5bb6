/* Child processes: the leader command and hook scripts.
 *
 * A child runs in its own process group (setpgid in child and parent, so no
 * race), with PR_SET_PDEATHSIG(SIGKILL) set and getppid() checked afterwards
 * (the agent may have died between fork and prctl), with every signal's
 * disposition reset to SIG_DFL (the agent ignores SIGPIPE, for one) and an
 * empty signal mask, via execvp (no shell).
 * Exec failure is reported to the parent through a CLOEXEC pipe, so
 * proc_spawn() can say "cannot execute X: reason"; the child then _exit()s with
 * 127 (ENOENT) or 126 (other). Signals go to the whole group; ESRCH is fine.
 * Exits are seen with ev_child in the default loop (libev reaps); never
 * waitpid(-1) elsewhere. The loop passed to proc_spawn() must therefore be
 * ev_default_loop().
 *
 * When the child itself has exited, its process group gets SIGKILL too (ESRCH
 * is fine): a grandchild of a leader command (a background job, a worker it
 * forked) must not keep doing leader work after the command is gone. A
 * program that wants a helper to outlive it must start it in another group.
 *
 * Only stdin, stdout and stderr are passed on: every other fd is closed at
 * exec (close_range CLOEXEC), so no lock file or socket of the agent can be
 * held by a stray grandchild. stdin is inherited from the agent.
 * Captured output (log_tag) is logged line by line, lines longer than 4 KiB
 * in pieces; at the child's exit what is readable is logged and the pipe is
 * closed without waiting for EOF (a grandchild may hold it open).
 */
#ifndef ELECT_PROC_H
#define ELECT_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct ev_loop;
struct proc;

/* status: as from waitpid(). Called once. The proc is freed right after the
 * callback returns; do not touch it afterwards (proc_stop, proc_signal and
 * proc_abandon on it inside the callback do nothing). */
typedef void (*proc_exit_cb)(struct proc *p, int status, void *data);

struct proc_spec {
	char *const *argv;        /* argv[0] looked up in PATH */
	char *const *env;         /* extra "KEY=VALUE" entries (NULL-terminated) on top of environ; may be NULL */
	const char *log_tag;      /* non-NULL: stdout+stderr go line by line to the log,
	                             tagged; NULL: inherit the agent's stdout/stderr */
	int inherit_fd;           /* > 2: this one descriptor stays open in the child
	                             (the file backend's lock); 0: none */
	/* Non-NULL: captured lines go to on_line(line, line_data) instead of
	 * the log (a health check keeps its output); log_tag may be NULL then. */
	void (*on_line)(const char *line, void *line_data);
	void *line_data;
	bool guard;               /* run it under a guard (hooks/guard.h): its whole
	                             tree, also what left its group or session, dies
	                             with it and with the agent; the guard holds
	                             inherit_fd too and exits only when all is gone */
};

/* Starts the child. Returns NULL with a one-line message in err when it could
 * not be started or executed (then no callback will come); errno then says
 * why (ENOENT: command not found, as a shell's 127; else as 126). */
struct proc *proc_spawn(struct ev_loop *loop, const struct proc_spec *spec,
                        proc_exit_cb cb, void *data, char *err, size_t errlen);
/* Sends sig to the child's process group. */
void proc_signal(struct proc *p, int sig);
/* Stopping: sig (usually SIGTERM) to the group now, SIGKILL to the group after
 * grace_ns unless it has exited. Calling it again while stopping does nothing
 * (the earlier SIGKILL time stands), except with SIGKILL, which goes at once. */
void proc_stop(struct proc *p, int sig, int64_t grace_ns);
pid_t proc_pid(const struct proc *p);
/* Exit status as a shell shows it: code, or 128+signal. */
int proc_exit_code(int status);
/* Kill the group with SIGKILL and forget the child (agent shutting down
 * abnormally): no callback. */
void proc_abandon(struct proc *p);

#endif
