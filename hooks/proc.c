/* Child processes: fork/exec into a fresh process group, exit via ev_child,
 * output captured line by line, stop with SIGTERM then SIGKILL to the group.
 * See proc.h for the contract. */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>

#include "common/clock.h"
#include "common/log.h"
#include "hooks/guard.h"
#include "hooks/proc.h"

extern char **environ;

/* A line longer than this is logged in pieces of this size. */
#define PROC_LINE_MAX 4096
/* At most this much output is read per callback (or drained at exit), so a
 * child (or a grandchild still holding the pipe) that floods cannot stall the
 * loop. */
#define PROC_READ_BUDGET (256 * 1024)

struct proc {
	struct ev_loop *loop;
	pid_t pid;
	proc_exit_cb cb;
	void *data;
	ev_child child_w;
	ev_timer kill_w;      /* SIGKILL after the grace of proc_stop() */
	ev_io out_w;          /* read end of the output pipe, if captured */
	int out_fd;           /* -1 when not captured or already closed */
	ev_io done_w;         /* a guard's word that its tree is gone (guard.h) */
	int done_fd;          /* -1 when not guarded or already closed */
	int stopping;
	int exited;           /* inside the exit callback: no more signals */
	bool guarded;         /* pid is a guard (hooks/guard.h) around the command */
	char *tag;
	void (*on_line)(const char *line, void *line_data);
	void *line_data;
	size_t line_len;
	char line[PROC_LINE_MAX + 1];
};

int proc_exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 255;
}

pid_t proc_pid(const struct proc *p)
{
	return p->pid;
}

static void signal_group(pid_t pgid, int sig)
{
	/* kill(0) or kill(-1) would hit the agent's own group or everything. */
	if (pgid <= 1)
		return;
	/* ESRCH: the group is already gone, which is what we wanted. */
	if (kill(-pgid, sig) < 0 && errno != ESRCH)
		log_warnx("cannot signal process group %ld: %s", (long)pgid, strerror(errno));
}

/* sig to the child's tree. A guard gets it by pid and passes it on to the
 * command's group; SIGKILL would kill the guard alone, so it gets the guard's
 * kill signal instead, which kills the whole tree. */
static void signal_tree(struct proc *p, int sig)
{
	if (!p->guarded) {
		signal_group(p->pid, sig);
		return;
	}
	if (kill(p->pid, sig == SIGKILL ? guard_kill_signal() : sig) < 0 && errno != ESRCH)
		log_warnx("cannot signal the guard of process %ld: %s", (long)p->pid, strerror(errno));
}

void proc_signal(struct proc *p, int sig)
{
	if (!p->exited)
		signal_tree(p, sig);
}

/* ---- captured output ---- */

static void flush_line(struct proc *p)
{
	p->line[p->line_len] = '\0';
	if (p->on_line)
		p->on_line(p->line, p->line_data);
	else
		log_child_line(p->tag, p->line);
	p->line_len = 0;
}

static void consume(struct proc *p, const char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			flush_line(p);
			continue;
		}
		p->line[p->line_len++] = buf[i];
		if (p->line_len == PROC_LINE_MAX)
			flush_line(p);
	}
}

static void close_output(struct proc *p)
{
	if (p->out_fd < 0)
		return;
	ev_io_stop(p->loop, &p->out_w);
	close(p->out_fd);
	p->out_fd = -1;
	if (p->line_len > 0)
		flush_line(p);
}

/* Reads what is available, up to the budget; closes the pipe at EOF or on
 * error. */
static void read_output(struct proc *p)
{
	char buf[4096];
	size_t total = 0;

	while (p->out_fd >= 0 && total < PROC_READ_BUDGET) {
		ssize_t n = read(p->out_fd, buf, sizeof(buf));
		if (n > 0) {
			consume(p, buf, (size_t)n);
			total += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && errno == EAGAIN) {
			return;
		} else {
			if (n < 0)
				log_warnx("%s: reading child output: %s", p->tag ? p->tag : "child", strerror(errno));
			close_output(p);
		}
	}
}

static void output_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	read_output(w->data);
}

/* ---- exit and stop ---- */

static void close_done(struct proc *p)
{
	if (p->done_fd < 0)
		return;
	ev_io_stop(p->loop, &p->done_w);
	close(p->done_fd);
	p->done_fd = -1;
}

static void free_proc(struct proc *p)
{
	close_output(p);
	close_done(p);
	ev_child_stop(p->loop, &p->child_w);
	ev_timer_stop(p->loop, &p->kill_w);
	free(p->tag);
	free(p);
}

/* The child has exited (status as from waitpid), or its guard said that
 * the whole tree is gone (then its exit follows, reaped by libev). */
static void finish_exit(struct proc *p, int status)
{
	ev_child_stop(p->loop, &p->child_w);
	close_done(p);
	/* Grandchildren of a leader command must not keep doing leader work
	 * after it is gone. The group id cannot have been reused yet: a pid is
	 * not handed out again while a group of that id still has members. A
	 * guard exits only once its whole tree is dead: nothing left to do. */
	if (!p->guarded)
		signal_group(p->pid, SIGKILL);
	else if (WIFSIGNALED(status))   /* a guard only ever exits */
		log_error("the guard of process group %ld was killed by signal %d: what its command "
		          "started outside its group may still run", (long)p->pid, WTERMSIG(status));
	/* Take what is already written, but do not wait for EOF: a grandchild
	 * that escaped the group may hold the pipe open for ever. */
	read_output(p);
	close_output(p);
	p->exited = 1;
	p->cb(p, status, p->data);
	free_proc(p);
}

static void child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	(void)loop;
	(void)revents;
	finish_exit(w->data, w->rstatus);
}

static void done_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct proc *p = w->data;
	int status;
	ssize_t n;

	(void)loop;
	(void)revents;
	do
		n = read(p->done_fd, &status, sizeof(status));
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return;
	if (n == (ssize_t)sizeof(status)) {
		finish_exit(p, status);
		return;
	}
	/* EOF without a word: the guard was killed; its exit tells. */
	close_done(p);
}

static void kill_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct proc *p = w->data;

	(void)loop;
	(void)revents;
	signal_tree(p, SIGKILL);
}

void proc_stop(struct proc *p, int sig, int64_t grace_ns)
{
	if (p->exited)
		return;
	if (p->stopping) {
		/* Asked again (a second SIGTERM to the agent): SIGKILL now. */
		if (sig == SIGKILL)
			signal_tree(p, SIGKILL);
		return;
	}
	p->stopping = 1;
	signal_tree(p, sig);
	/* The cached loop time may be well behind (a callback that forked, a
	 * busy host); the grace counts from now. */
	ev_now_update(p->loop);
	ev_timer_set(&p->kill_w, clock_ns_to_ev(grace_ns), 0.0);
	ev_timer_start(p->loop, &p->kill_w);
}

void proc_abandon(struct proc *p)
{
	/* Inside the exit callback the proc is freed by child_cb afterwards. */
	if (p->exited)
		return;
	signal_tree(p, SIGKILL);
	/* The zombie is reaped by libev's SIGCHLD handler (no watcher needed). */
	free_proc(p);
}

/* ---- spawning ---- */

/* "KEY=VALUE" entries of extra override those of environ with the same KEY.
 * Only pointers are copied; the strings must live until the exec is done. */
static char **build_env(char *const *extra)
{
	size_t n_env = 0, n_extra = 0, k = 0;
	char **envp;

	while (environ != NULL && environ[n_env] != NULL)
		n_env++;
	while (extra != NULL && extra[n_extra] != NULL)
		n_extra++;
	envp = calloc(n_env + n_extra + 1, sizeof(*envp));
	if (envp == NULL)
		return NULL;
	for (size_t i = 0; i < n_env; i++) {
		size_t key_len = strcspn(environ[i], "=");
		int overridden = 0;
		for (size_t j = 0; j < n_extra && !overridden; j++)
			overridden = strncmp(extra[j], environ[i], key_len) == 0 &&
			             extra[j][key_len] == '=';
		if (!overridden)
			envp[k++] = environ[i];
	}
	for (size_t j = 0; j < n_extra; j++)
		envp[k++] = extra[j];
	envp[k] = NULL;
	return envp;
}

/* If the agent runs with stdio closed, pipe2() may hand out 0..2, which the
 * child's dup2() onto 1 and 2 would clobber. Move such an fd above 2. */
static int fd_above_stdio(int fd)
{
	int moved;

	if (fd > 2)
		return fd;
	moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	close(fd);
	return moved;
}

static int make_pipe(int fds[2])
{
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -1;
	fds[0] = fd_above_stdio(fds[0]);
	fds[1] = fd_above_stdio(fds[1]);
	if (fds[0] < 0 || fds[1] < 0) {
		if (fds[0] >= 0)
			close(fds[0]);
		if (fds[1] >= 0)
			close(fds[1]);
		return -1;
	}
	return 0;
}

/* In the child, between fork and exec: only async-signal-safe calls (the
 * agent may have threads, e.g. libcurl's resolver). Under a guard this is a
 * vfork() child sharing the guard's memory: nothing but system calls and
 * locals of its own (errno aside, which the guard no longer reads). Never
 * returns. */
static void __attribute__((noreturn))
child_exec(pid_t parent, char *const *argv, char **envp, int out_fd, int err_fd, int inherit_fd)
{
	struct sigaction dfl;
	sigset_t none;
	int e;

	setpgid(0, 0);
	/* The leader command dies with the agent. The agent may already have
	 * died before prctl() took effect: then we are orphaned, so give up. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) {
		e = errno;
		goto fail;
	}
	if (getppid() != parent)
		_exit(126);
	/* Handlers are reset by exec, but ignored signals (SIGPIPE for curl)
	 * would stay ignored, and a signal caught before exec would run the
	 * agent's handler here. All signals are blocked since before fork. */
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &dfl, NULL);   /* EINVAL for glibc's own: fine */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (out_fd >= 0 && (dup2(out_fd, STDOUT_FILENO) < 0 || dup2(out_fd, STDERR_FILENO) < 0)) {
		e = errno;
		goto fail;
	}
	/* Only stdio is passed on: an inherited lock file, backend socket or
	 * listening socket must not outlive the agent in a stray grandchild.
	 * Our pipes are CLOEXEC already; this catches fds opened without it. */
	(void)close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
	/* ...except a lock the command must hold until it is gone too. */
	if (inherit_fd > 2 && fcntl(inherit_fd, F_SETFD, 0) < 0) {
		e = errno;
		goto fail;
	}
	execvpe(argv[0], argv, envp);
	e = errno;
fail:
	while (write(err_fd, &e, sizeof(e)) < 0 && errno == EINTR)
		;
	_exit(e == ENOENT ? 127 : 126);
}

struct exec_args {
	char *const *argv;
	char **envp;
	int out_fd, err_fd, inherit_fd;
};

/* The command, started by its guard. */
static void __attribute__((noreturn)) exec_in_guard(pid_t guard, void *arg)
{
	const struct exec_args *x = arg;

	child_exec(guard, x->argv, x->envp, x->out_fd, x->err_fd, x->inherit_fd);
}

/* Blocks until exec succeeded (EOF) or failed (the child's errno). */
static int read_exec_errno(int fd)
{
	int e = 0;
	ssize_t n;

	do
		n = read(fd, &e, sizeof(e));
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(e) ? e : 0;
}

/* Forks and execs; returns the pid, or -1 with err filled in. A guard's
 * done pipe (guard.h): its read end in *done_r, else -1. */
static pid_t fork_exec(const struct proc_spec *spec, char **envp, int out_w, int *done_r,
                       char *err, size_t errlen)
{
	const char *cmd = spec->argv[0];
	sigset_t all, old;
	int status_pipe[2], done_pipe[2] = { -1, -1 }, exec_errno;
	pid_t parent = getpid(), pid;

	*done_r = -1;
	if (make_pipe(status_pipe) < 0) {
		snprintf(err, errlen, "cannot start %s: pipe: %s", cmd, strerror(errno));
		return -1;
	}
	if (spec->guard && make_pipe(done_pipe) < 0) {
		snprintf(err, errlen, "cannot start %s: pipe: %s", cmd, strerror(errno));
		close(status_pipe[0]);
		close(status_pipe[1]);
		return -1;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid = fork();
	if (pid == 0 && spec->guard) {
		struct exec_args x = { spec->argv, envp, out_w, status_pipe[1], spec->inherit_fd };
		guard_main(parent, spec->inherit_fd, status_pipe[1], done_pipe[1], exec_in_guard, &x);
	}
	if (pid == 0)
		child_exec(parent, spec->argv, envp, out_w, status_pipe[1], spec->inherit_fd);
	int fork_errno = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	close(status_pipe[1]);
	if (done_pipe[1] >= 0)
		close(done_pipe[1]);
	if (pid < 0) {
		close(status_pipe[0]);
		if (done_pipe[0] >= 0)
			close(done_pipe[0]);
		snprintf(err, errlen, "cannot start %s: fork: %s", cmd, strerror(fork_errno));
		errno = fork_errno;
		return -1;
	}
	/* Also here, so signals sent right after we return reach the group.
	 * EACCES: it has exec'd already; ESRCH: it has exited already. */
	if (setpgid(pid, pid) < 0 && errno != EACCES && errno != ESRCH)
		log_warnx("setpgid %ld: %s", (long)pid, strerror(errno));
	exec_errno = read_exec_errno(status_pipe[0]);
	close(status_pipe[0]);
	if (exec_errno != 0) {
		/* It exits at once; reap it here so no ev_child is needed. */
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		if (done_pipe[0] >= 0)
			close(done_pipe[0]);
		snprintf(err, errlen, "cannot execute %s: %s", cmd, strerror(exec_errno));
		errno = exec_errno;
		return -1;
	}
	*done_r = done_pipe[0];
	return pid;
}

static struct proc *proc_new(struct ev_loop *loop, const struct proc_spec *spec,
                             proc_exit_cb cb, void *data)
{
	struct proc *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	if (spec->log_tag != NULL && (p->tag = strdup(spec->log_tag)) == NULL) {
		free(p);
		return NULL;
	}
	p->loop = loop;
	p->guarded = spec->guard;
	p->on_line = spec->on_line;
	p->line_data = spec->line_data;
	p->cb = cb;
	p->data = data;
	p->out_fd = -1;
	p->done_fd = -1;
	ev_timer_init(&p->kill_w, kill_cb, 0.0, 0.0);
	p->kill_w.data = p;
	return p;
}

struct proc *proc_spawn(struct ev_loop *loop, const struct proc_spec *spec,
                        proc_exit_cb cb, void *data, char *err, size_t errlen)
{
	struct proc *p;
	char **envp;
	int out_pipe[2] = { -1, -1 }, saved_errno;

	if (spec->argv == NULL || spec->argv[0] == NULL || spec->argv[0][0] == '\0') {
		snprintf(err, errlen, "cannot start child: empty command");
		errno = EINVAL;
		return NULL;
	}
	p = proc_new(loop, spec, cb, data);
	envp = build_env(spec->env);
	if (p == NULL || envp == NULL) {
		snprintf(err, errlen, "cannot start %s: out of memory", spec->argv[0]);
		errno = ENOMEM;
		goto fail;
	}
	if ((spec->log_tag != NULL || spec->on_line != NULL) && make_pipe(out_pipe) < 0) {
		snprintf(err, errlen, "cannot start %s: pipe: %s", spec->argv[0], strerror(errno));
		goto fail;
	}
	p->pid = fork_exec(spec, envp, out_pipe[1], &p->done_fd, err, errlen);
	saved_errno = errno;
	if (out_pipe[1] >= 0)
		close(out_pipe[1]);   /* the child has its copy */
	errno = saved_errno;
	if (p->pid < 0)
		goto fail;
	free(envp);
	if (out_pipe[0] >= 0) {
		fcntl(out_pipe[0], F_SETFL, fcntl(out_pipe[0], F_GETFL) | O_NONBLOCK);
		p->out_fd = out_pipe[0];
		ev_io_init(&p->out_w, output_cb, p->out_fd, EV_READ);
		p->out_w.data = p;
		ev_io_start(loop, &p->out_w);
	}
	if (p->done_fd >= 0) {
		fcntl(p->done_fd, F_SETFL, fcntl(p->done_fd, F_GETFL) | O_NONBLOCK);
		ev_io_init(&p->done_w, done_cb, p->done_fd, EV_READ);
		p->done_w.data = p;
		ev_io_start(loop, &p->done_w);
	}
	/* ev_child only works in the default loop; libev reaps the child. */
	ev_child_init(&p->child_w, child_cb, p->pid, 0);
	p->child_w.data = p;
	ev_child_start(loop, &p->child_w);
	return p;

fail:
	saved_errno = errno;
	if (out_pipe[0] >= 0)
		close(out_pipe[0]);
	free(envp);
	if (p != NULL) {
		free(p->tag);
		free(p);
	}
	errno = saved_errno;
	return NULL;
}
