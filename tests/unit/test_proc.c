/* Unit tests for hooks/proc.c: real children on the default loop.
 * log_msg and log_child_line are wrapped (captured here); waitpid is wrapped
 * so that the exit code of a child whose exec failed can be checked. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "common/log.h"
#include "hooks/proc.h"

/* ---- seams ---- */

#define MAX_LINES 64
static char *captured_tag[MAX_LINES], *captured_line[MAX_LINES];
static int n_captured;
static int last_reaped_status = -1;

void __wrap_log_child_line(const char *tag, const char *line);
void __wrap_log_msg(enum log_level lvl, const char *fmt, ...);
pid_t __real_waitpid(pid_t pid, int *status, int options);
pid_t __wrap_waitpid(pid_t pid, int *status, int options);

void __wrap_log_child_line(const char *tag, const char *line)
{
	if (n_captured < MAX_LINES) {
		captured_tag[n_captured] = strdup(tag);
		captured_line[n_captured] = strdup(line);
		n_captured++;
	}
}

void __wrap_log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	(void)lvl;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

pid_t __wrap_waitpid(pid_t pid, int *status, int options)
{
	int st = 0;
	pid_t r = __real_waitpid(pid, &st, options);

	if (r > 0) {
		last_reaped_status = st;
		if (status != NULL)
			*status = st;
	}
	return r;
}

/* ---- harness ---- */

static struct ev_loop *loop;

struct run {
	int done, calls, status;
	struct proc *p;         /* NULL once exited or abandoned */
};
/* The child of the current test, killed by teardown if a test failed. */
static struct proc *live;
/* Spawn under a guard (hooks/guard.h); reset by setup. */
static int use_guard;

static void exit_cb(struct proc *p, int status, void *data)
{
	struct run *r = data;

	if (p == live)
		live = NULL;
	assert_ptr_equal(p, r->p);
	r->p = NULL;
	r->done = 1;
	r->calls++;
	r->status = status;
}

static void tick_cb(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)l;
	(void)w;
	(void)revents;
}

/* Runs the loop until *flag is set or max_s passed; returns *flag. */
static int run_until(const int *flag, double max_s)
{
	ev_timer tick;
	ev_tstamp end = ev_time() + max_s;

	ev_timer_init(&tick, tick_cb, 0.02, 0.02);
	ev_timer_start(loop, &tick);
	while (!*flag && ev_time() < end)
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &tick);
	return *flag;
}

static void wait_done(struct run *r, double max_s)
{
	if (!run_until(&r->done, max_s)) {
		proc_abandon(r->p);
		r->p = live = NULL;
		fail_msg("child did not exit within %.1f s", max_s);
	}
}

static struct proc *spawn(char *const *argv, char *const *env, const char *tag, struct run *r)
{
	struct proc_spec spec = { .argv = argv, .env = env, .log_tag = tag, .guard = use_guard };
	char err[256] = "";

	memset(r, 0, sizeof(*r));
	r->p = proc_spawn(loop, &spec, exit_cb, r, err, sizeof(err));
	if (r->p == NULL)
		fail_msg("spawn %s: %s", argv[0], err);
	live = r->p;
	return r->p;
}

static struct proc *spawn_sh(const char *script, const char *tag, struct run *r)
{
	char *argv[] = { "/bin/sh", "-c", (char *)script, NULL };

	return spawn(argv, NULL, tag, r);
}

static int find_line(const char *line)
{
	for (int i = 0; i < n_captured; i++)
		if (strcmp(captured_line[i], line) == 0)
			return i;
	return -1;
}

/* Dead: gone, or a zombie waiting for whoever reaps orphans. */
static int process_dead(pid_t pid)
{
	char path[64], buf[512];
	FILE *f;
	char *state;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((f = fopen(path, "r")) == NULL)
		return 1;
	buf[0] = '\0';
	if (fgets(buf, sizeof(buf), f) == NULL)
		buf[0] = '\0';
	fclose(f);
	state = strrchr(buf, ')');
	return state != NULL && (state[2] == 'Z' || state[2] == 'X');
}

static int wait_dead(pid_t pid, double max_s)
{
	ev_tstamp end = ev_time() + max_s;

	while (!process_dead(pid)) {
		if (ev_time() > end)
			return 0;
		usleep(10000);
	}
	return 1;
}

static int setup(void **state)
{
	(void)state;
	n_captured = 0;
	last_reaped_status = -1;
	use_guard = 0;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (live != NULL)
		proc_abandon(live);
	live = NULL;
	for (int i = 0; i < n_captured; i++) {
		free(captured_tag[i]);
		free(captured_line[i]);
	}
	n_captured = 0;
	return 0;
}

/* ---- tests ---- */

static void test_exit_code_values(void **state)
{
	(void)state;
	assert_int_equal(proc_exit_code(0), 0);
	assert_int_equal(proc_exit_code(3 << 8), 3);
	assert_int_equal(proc_exit_code(SIGKILL), 137);
	assert_int_equal(proc_exit_code(SIGTERM), 143);
}

static void test_exit_status_of_children(void **state)
{
	char *t[] = { "/bin/true", NULL }, *f[] = { "false", NULL };
	struct run r;

	(void)state;
	spawn(t, NULL, NULL, &r);
	assert_true(proc_pid(r.p) > 0);
	wait_done(&r, 10);
	assert_int_equal(proc_exit_code(r.status), 0);
	spawn(f, NULL, NULL, &r);    /* looked up in PATH */
	wait_done(&r, 10);
	assert_int_equal(proc_exit_code(r.status), 1);
	spawn_sh("exit 3", NULL, &r);
	wait_done(&r, 10);
	assert_int_equal(proc_exit_code(r.status), 3);
	spawn_sh("kill -TERM $$", NULL, &r);
	wait_done(&r, 10);
	assert_true(WIFSIGNALED(r.status));
	assert_int_equal(proc_exit_code(r.status), 143);
	assert_int_equal(r.calls, 1);
}

static void test_missing_binary(void **state)
{
	char *abs[] = { "/nonexistent/elect-test-cmd", NULL };
	char *rel[] = { "elect-test-no-such-cmd", NULL };
	struct proc_spec spec = { .argv = abs };
	char err[256];
	struct run r = { 0 };

	(void)state;
	assert_null(proc_spawn(loop, &spec, exit_cb, &r, err, sizeof(err)));
	assert_int_equal(errno, ENOENT);
	assert_string_equal(err, "cannot execute /nonexistent/elect-test-cmd: No such file or directory");
	assert_true(WIFEXITED(last_reaped_status));
	assert_int_equal(WEXITSTATUS(last_reaped_status), 127);
	spec.argv = rel;
	spec.log_tag = "t";
	last_reaped_status = -1;
	assert_null(proc_spawn(loop, &spec, exit_cb, &r, err, sizeof(err)));
	assert_string_equal(err, "cannot execute elect-test-no-such-cmd: No such file or directory");
	assert_int_equal(WEXITSTATUS(last_reaped_status), 127);
	assert_int_equal(r.calls, 0);
}

static void test_not_executable(void **state)
{
	char path[] = "/tmp/elect-test-proc.XXXXXX";
	char *argv[] = { path, NULL };
	struct proc_spec spec = { .argv = argv };
	char err[512], want[512];
	struct run r = { 0 };
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	chmod(path, 0644);
	snprintf(want, sizeof(want), "cannot execute %s: Permission denied", path);
	assert_null(proc_spawn(loop, &spec, exit_cb, &r, err, sizeof(err)));
	assert_int_equal(errno, EACCES);
	unlink(path);
	assert_string_equal(err, want);
	assert_int_equal(WEXITSTATUS(last_reaped_status), 126);
}

static void test_empty_command(void **state)
{
	char *argv[] = { NULL };
	struct proc_spec spec = { .argv = argv };
	char err[256];
	struct run r = { 0 };

	(void)state;
	assert_null(proc_spawn(loop, &spec, exit_cb, &r, err, sizeof(err)));
	assert_string_equal(err, "cannot start child: empty command");
}

static void test_sigterm_ignored_is_killed(void **state)
{
	struct run r;
	int ready = 0;
	ev_tstamp t0;

	(void)state;
	spawn_sh("trap '' TERM; echo ready; sleep 30", "t", &r);
	/* Wait until the trap is set, so that SIGTERM surely is ignored. */
	while (!ready && run_until(&r.done, 0.02) == 0)
		ready = find_line("ready") >= 0;
	assert_true(ready);
	t0 = ev_time();
	proc_stop(r.p, SIGTERM, 300 * INT64_C(1000000));
	proc_stop(r.p, SIGTERM, 0);     /* ignored: the first grace stands */
	wait_done(&r, 10);
	assert_true(ev_time() - t0 >= 0.25);
	assert_true(WIFSIGNALED(r.status));
	assert_int_equal(WTERMSIG(r.status), SIGKILL);
	assert_int_equal(proc_exit_code(r.status), 137);
}

static void test_signal(void **state)
{
	struct run r;

	(void)state;
	spawn_sh("echo ready; sleep 30", "t", &r);
	while (find_line("ready") < 0 && run_until(&r.done, 0.02) == 0)
		;
	proc_signal(r.p, SIGUSR1);
	wait_done(&r, 10);
	assert_int_equal(proc_exit_code(r.status), 128 + SIGUSR1);
}

static pid_t spawn_with_grandchild(const char *script, struct run *r)
{
	spawn_sh(script, "t", r);
	while (n_captured == 0 && run_until(&r->done, 0.02) == 0)
		;
	assert_true(n_captured > 0);
	return (pid_t)atol(captured_line[0]);
}

static void test_stop_kills_grandchildren(void **state)
{
	struct run r;
	pid_t grandchild;

	(void)state;
	grandchild = spawn_with_grandchild("sleep 30 & echo $!; wait", &r);
	assert_true(grandchild > 0);
	assert_false(process_dead(grandchild));
	proc_stop(r.p, SIGTERM, 5 * INT64_C(1000000000));
	wait_done(&r, 10);
	assert_int_equal(proc_exit_code(r.status), 143);
	assert_true(wait_dead(grandchild, 5));
}

static void test_exit_kills_grandchildren(void **state)
{
	struct run r;
	pid_t grandchild;

	(void)state;
	/* The grandchild keeps the output pipe open: the exit must still be
	 * reported at once, and the grandchild be killed with the group. */
	grandchild = spawn_with_grandchild("sleep 30 & echo $!; exit 4", &r);
	assert_true(grandchild > 0);
	wait_done(&r, 10);
	assert_int_equal(proc_exit_code(r.status), 4);
	assert_true(wait_dead(grandchild, 5));
}

/* ---- the guard ---- */

/* Runs script under a guard until it printed n pids (one per line). */
static void spawn_guarded(const char *script, int n, pid_t *pids, struct run *r)
{
	use_guard = 1;
	spawn_sh(script, "t", r);
	while (n_captured < n && run_until(&r->done, 0.02) == 0)
		;
	assert_true(n_captured >= n);
	for (int i = 0; i < n; i++) {
		pids[i] = (pid_t)atol(captured_line[i]);
		assert_true(pids[i] > 1);
		assert_false(process_dead(pids[i]));
	}
}

/* A setsid child, a double-forked one and a plain background job. */
#define ESCAPES "setsid sleep 30 & echo $!; (sleep 31 & echo $!); sleep 32 & echo $!; "

static void test_guard_stop_kills_escaped_descendants(void **state)
{
	struct run r;
	pid_t pids[3];

	(void)state;
	spawn_guarded(ESCAPES "wait", 3, pids, &r);
	proc_stop(r.p, SIGTERM, 5 * INT64_C(1000000000));
	wait_done(&r, 10);
	assert_int_equal(proc_exit_code(r.status), 143);
	/* The guard reports the exit only once its whole tree is gone. */
	for (int i = 0; i < 3; i++)
		assert_true(process_dead(pids[i]));
}

static void test_guard_exit_kills_escaped_descendants(void **state)
{
	struct run r;
	pid_t pids[3];

	(void)state;
	spawn_guarded(ESCAPES "sleep 0.5; exit 4", 3, pids, &r);
	wait_done(&r, 10);
	assert_int_equal(proc_exit_code(r.status), 4);
	for (int i = 0; i < 3; i++)
		assert_true(process_dead(pids[i]));
}

static void test_guard_kill_after_grace(void **state)
{
	struct run r;
	pid_t pids[3];

	(void)state;
	spawn_guarded("trap '' TERM; " ESCAPES "while :; do sleep 0.05; done", 3, pids, &r);
	proc_stop(r.p, SIGTERM, 200 * INT64_C(1000000));
	wait_done(&r, 10);
	assert_int_equal(proc_exit_code(r.status), 137);
	for (int i = 0; i < 3; i++)
		assert_true(process_dead(pids[i]));
}

static void test_guard_forwards_signals(void **state)
{
	struct run r;

	(void)state;
	use_guard = 1;
	spawn_sh("trap 'exit 9' USR1; echo ready; while :; do sleep 0.05; done", "t", &r);
	while (n_captured == 0 && run_until(&r.done, 0.02) == 0)
		;
	proc_signal(r.p, SIGUSR1);
	wait_done(&r, 10);
	assert_int_equal(proc_exit_code(r.status), 9);
}

static void test_guard_exec_failure(void **state)
{
	char *argv[] = { "/nonexistent/elect-test-binary", NULL };
	struct proc_spec spec = { .argv = argv, .guard = 1 };
	struct run r = { 0 };
	char err[256] = "";

	(void)state;
	assert_null(proc_spawn(loop, &spec, exit_cb, &r, err, sizeof(err)));
	assert_int_equal(errno, ENOENT);
	assert_non_null(strstr(err, "cannot execute"));
}

static void test_output_lines(void **state)
{
	struct run r;
	char long_a[4097];

	(void)state;
	spawn_sh("echo one; echo two >&2; echo; "
	         "head -c 5000 /dev/zero | tr '\\0' a; echo; printf partial", "hook:x", &r);
	wait_done(&r, 10);
	assert_int_equal(proc_exit_code(r.status), 0);
	assert_int_equal(n_captured, 6);
	for (int i = 0; i < n_captured; i++)
		assert_string_equal(captured_tag[i], "hook:x");
	memset(long_a, 'a', 4096);
	long_a[4096] = '\0';
	assert_string_equal(captured_line[0], "one");
	assert_string_equal(captured_line[1], "two");
	assert_string_equal(captured_line[2], "");
	assert_string_equal(captured_line[3], long_a);
	long_a[904] = '\0';
	assert_string_equal(captured_line[4], long_a);
	assert_string_equal(captured_line[5], "partial");
}

static void test_env(void **state)
{
	char *argv[] = { "/bin/sh", "-c", "echo \"$ELECT_T_FOO $HOME\"; env | grep -c '^HOME='", NULL };
	char *env[] = { "ELECT_T_FOO=bar", "HOME=/override", NULL };
	struct run r;

	(void)state;
	spawn(argv, env, "t", &r);
	wait_done(&r, 10);
	assert_int_equal(n_captured, 2);
	assert_string_equal(captured_line[0], "bar /override");
	assert_string_equal(captured_line[1], "1");
}

/* Own process group, no blocked or ignored signals, no leaked fds, even when
 * the agent changed all of those. */
static void test_child_setup(void **state)
{
	struct sigaction ign = { .sa_handler = SIG_IGN }, old_int, old_pipe;
	sigset_t usr1, old_mask;
	char script[256], pid_line[32];
	int leak_fd = open("/dev/null", O_RDONLY);   /* no O_CLOEXEC on purpose */
	struct run r;

	(void)state;
	assert_true(leak_fd > 2);
	sigaction(SIGINT, &ign, &old_int);
	sigaction(SIGPIPE, &ign, &old_pipe);
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, &old_mask);
	/* Builtins only: dash blocks all signals around its own (v)fork, and an
	 * external grep could see that mask instead of the inherited one. */
	snprintf(script, sizeof(script),
	         "read -r stat < /proc/$$/stat; set -- $stat; echo $5; "
	         "while read -r k v; do case $k in Sig[BI]*) echo \"$k $v\";; esac; "
	         "done < /proc/$$/status; "
	         "[ -e /proc/$$/fd/%d ] && echo leaked || echo closed", leak_fd);
	spawn_sh(script, "t", &r);
	sigprocmask(SIG_SETMASK, &old_mask, NULL);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGPIPE, &old_pipe, NULL);
	close(leak_fd);
	snprintf(pid_line, sizeof(pid_line), "%ld", (long)proc_pid(r.p));
	wait_done(&r, 10);
	assert_int_equal(n_captured, 4);
	assert_string_equal(captured_line[0], pid_line);
	assert_string_equal(captured_line[1], "SigBlk: 0000000000000000");
	/* Signals 32 and 33 belong to glibc, which refuses to touch them; an
	 * ignore inherited from whoever started the test may stay there. */
	assert_true(strncmp(captured_line[2], "SigIgn: ", 8) == 0);
	assert_int_equal(strtoull(captured_line[2] + 8, NULL, 16) & 0x7fffffffu, 0);
	assert_string_equal(captured_line[3], "closed");
}

static void test_inherited_output(void **state)
{
	struct run r;

	(void)state;
	spawn_sh("exec >/dev/null; echo hidden", NULL, &r);
	wait_done(&r, 10);
	assert_int_equal(proc_exit_code(r.status), 0);
	assert_int_equal(n_captured, 0);
}

static void test_abandon(void **state)
{
	struct run r;
	pid_t pid;
	int never = 0;

	(void)state;
	spawn_sh("echo ready; sleep 30", "t", &r);
	while (find_line("ready") < 0 && run_until(&r.done, 0.02) == 0)
		;
	pid = proc_pid(r.p);
	proc_abandon(r.p);
	r.p = live = NULL;
	run_until(&never, 0.2);   /* libev reaps the zombie */
	assert_true(wait_dead(pid, 5));
	assert_int_equal(r.calls, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_exit_code_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exit_status_of_children, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_binary, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_executable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_command, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sigterm_ignored_is_killed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_signal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_kills_grandchildren, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exit_kills_grandchildren, setup, teardown),
		cmocka_unit_test_setup_teardown(test_output_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env, setup, teardown),
		cmocka_unit_test_setup_teardown(test_child_setup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inherited_output, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abandon, setup, teardown),
		cmocka_unit_test_setup_teardown(test_guard_stop_kills_escaped_descendants, setup, teardown),
		cmocka_unit_test_setup_teardown(test_guard_exit_kills_escaped_descendants, setup, teardown),
		cmocka_unit_test_setup_teardown(test_guard_kill_after_grace, setup, teardown),
		cmocka_unit_test_setup_teardown(test_guard_forwards_signals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_guard_exec_failure, setup, teardown),
	};

	loop = ev_default_loop(0);
	return cmocka_run_group_tests_name("proc", tests, NULL, NULL);
}
