/* Unit tests for hooks/hooks.c: real hook scripts on the default loop.
 * log_msg and log_child_line are wrapped and captured here. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "common/log.h"
#include "hooks/hooks.h"

#define MS INT64_C(1000000)

/* ---- seams ---- */

#define MAX_LINES 64
static char *captured_tag[MAX_LINES], *captured_line[MAX_LINES];
static int n_captured;

void __wrap_log_child_line(const char *tag, const char *line);
void __wrap_log_msg(enum log_level lvl, const char *fmt, ...);

void __wrap_log_child_line(const char *tag, const char *line)
{
	if (n_captured < MAX_LINES) {
		captured_tag[n_captured] = strdup(tag);
		captured_line[n_captured] = strdup(line);
		n_captured++;
	}
}

static char last_msg[512];

void __wrap_log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	(void)lvl;
	va_start(ap, fmt);
	vsnprintf(last_msg, sizeof(last_msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", last_msg);
}

/* ---- harness ---- */

static struct ev_loop *loop;
static char dir[64];            /* per test temp dir */
static char out_path[128];      /* scripts append to this file */
static int in_enqueue;

#define MAX_DONE 16
struct done_log {
	int n;
	enum hook_event ev[MAX_DONE];
	int ok[MAX_DONE];
	struct hook_runner *free_in_cb;   /* hooks_free() from the callback */
};
static struct done_log done;
/* The runner of the current test, freed by teardown if a test failed (which
 * kills its running hook). */
static struct hook_runner *runner;

static void done_cb(enum hook_event ev, int ok, void *data)
{
	struct done_log *d = data;

	assert_false(in_enqueue);
	if (d->n < MAX_DONE) {
		d->ev[d->n] = ev;
		d->ok[d->n] = ok;
	}
	d->n++;
	if (d->free_in_cb != NULL) {
		hooks_free(d->free_in_cb);
		d->free_in_cb = NULL;
		runner = NULL;
	}
}

static struct hook_runner *new_runner(const char *const paths[HOOK_N], int64_t timeout_ns)
{
	runner = hooks_new(loop, paths, timeout_ns, done_cb, &done);
	assert_non_null(runner);
	return runner;
}

static void free_runner(void)
{
	hooks_free(runner);
	runner = NULL;
}

static void tick_cb(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)l;
	(void)w;
	(void)revents;
}

/* Runs the loop until n callbacks came or max_s passed. */
static int run_until_done(int n, double max_s)
{
	ev_timer tick;
	ev_tstamp end = ev_time() + max_s;

	ev_timer_init(&tick, tick_cb, 0.02, 0.02);
	ev_timer_start(loop, &tick);
	while (done.n < n && ev_time() < end)
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &tick);
	return done.n >= n;
}

static void run_for(double s)
{
	run_until_done(1 << 30, s);
}

/* Writes an executable script dir/name; returns its path (static buffer). */
static const char *script(const char *name, const char *body)
{
	static char path[4][128];
	static int next;
	char *p = path[next++ % 4];
	FILE *f;

	snprintf(p, sizeof(path[0]), "%s/%s", dir, name);
	f = fopen(p, "w");
	assert_non_null(f);
	fprintf(f, "#!/bin/sh\n%s\n", body);
	fclose(f);
	assert_int_equal(chmod(p, 0755), 0);
	return p;
}

/* The whole output file (malloc'd; "" when missing). */
static char *read_out(void)
{
	FILE *f = fopen(out_path, "r");
	char *buf = calloc(1, 8192);
	size_t n;

	assert_non_null(buf);
	if (f != NULL) {
		n = fread(buf, 1, 8191, f);
		buf[n] = '\0';
		fclose(f);
	}
	return buf;
}

static void enqueue(struct hook_runner *r, enum hook_event ev, uint64_t token)
{
	struct hook_vars v = {
		.name = "web", .id = "node-1", .leader = "node-1",
		.backend = "file", .reason = "test", .token = token,
	};

	in_enqueue = 1;
	hooks_enqueue(r, ev, &v);
	in_enqueue = 0;
}

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/elect-test-hooks.XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(out_path, sizeof(out_path), "%s/out", dir);
	memset(&done, 0, sizeof(done));
	n_captured = 0;
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	if (runner != NULL)
		free_runner();
	for (int i = 0; i < n_captured; i++) {
		free(captured_tag[i]);
		free(captured_line[i]);
	}
	n_captured = 0;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- tests ---- */

static void test_event_names(void **state)
{
	(void)state;
	assert_string_equal(hooks_event_name(HOOK_ELECTED), "elected");
	assert_string_equal(hooks_event_name(HOOK_DEMOTED), "demoted");
	assert_string_equal(hooks_event_name(HOOK_LEADER), "leader");
}

static void test_strict_order(void **state)
{
	char body[1024];
	const char *s;
	struct hook_runner *r;
	char *out;

	(void)state;
	snprintf(body, sizeof(body),
	         "echo \"start $1 $ELECT_TOKEN\" >> %s; sleep 0.05; echo \"end $1 $ELECT_TOKEN\" >> %s",
	         out_path, out_path);
	s = script("h", body);
	r = new_runner((const char *const[HOOK_N]){ s, s, s }, 5000 * MS);
	assert_non_null(r);
	enqueue(r, HOOK_ELECTED, 1);
	enqueue(r, HOOK_LEADER, 2);
	enqueue(r, HOOK_DEMOTED, 3);
	enqueue(r, HOOK_LEADER, 4);
	assert_false(hooks_idle(r));
	assert_true(run_until_done(4, 20));
	assert_true(hooks_idle(r));
	out = read_out();
	assert_string_equal(out,
	        "start elected 1\nend elected 1\nstart leader 2\nend leader 2\n"
	        "start demoted 3\nend demoted 3\nstart leader 4\nend leader 4\n");
	free(out);
	assert_int_equal(done.ev[0], HOOK_ELECTED);
	assert_int_equal(done.ev[1], HOOK_LEADER);
	assert_int_equal(done.ev[2], HOOK_DEMOTED);
	assert_int_equal(done.ev[3], HOOK_LEADER);
	for (int i = 0; i < 4; i++)
		assert_true(done.ok[i]);
	assert_int_equal(hooks_runs(r, HOOK_LEADER), 2);
	assert_int_equal(hooks_failures(r, HOOK_LEADER), 0);
	free_runner();
}

static void test_argv_and_env(void **state)
{
	char body[1024];
	const char *s;
	struct hook_runner *r;
	struct hook_vars v = {
		.name = "web", .id = "node-1", .leader = NULL,
		.backend = "etcd", .reason = "lease acquired", .token = 18446744073709551615u,
	};
	char *out, want[512];

	(void)state;
	snprintf(body, sizeof(body),
	         "{ echo \"argc=$# 0=$0 1=$1 2=$2 3=$3\"\n"
	         "  echo \"event=$ELECT_EVENT name=$ELECT_NAME id=$ELECT_ID\"\n"
	         "  echo \"leader=${ELECT_LEADER-unset} token=$ELECT_TOKEN\"\n"
	         "  echo \"backend=$ELECT_BACKEND reason=$ELECT_REASON\"; } > %s\n"
	         "echo to-stdout; echo to-stderr >&2", out_path);
	s = script("elected-hook", body);
	r = new_runner((const char *const[HOOK_N]){ [HOOK_ELECTED] = s }, 5000 * MS);
	in_enqueue = 1;
	hooks_enqueue(r, HOOK_ELECTED, &v);
	in_enqueue = 0;
	assert_true(run_until_done(1, 10));
	assert_true(done.ok[0]);
	out = read_out();
	snprintf(want, sizeof(want),
	         "argc=3 0=%s 1=elected 2=web 3=node-1\n"
	         "event=elected name=web id=node-1\n"
	         "leader= token=18446744073709551615\n"
	         "backend=etcd reason=lease acquired\n", s);
	assert_string_equal(out, want);
	free(out);
	assert_int_equal(n_captured, 2);
	assert_string_equal(captured_tag[0], "hook:elected");
	assert_string_equal(captured_line[0], "to-stdout");
	assert_string_equal(captured_tag[1], "hook:elected");
	assert_string_equal(captured_line[1], "to-stderr");
	free_runner();
}

static void test_timeout(void **state)
{
	const char *s = script("h", "sleep 30");
	struct hook_runner *r;
	ev_tstamp t0 = ev_time();

	(void)state;
	r = new_runner((const char *const[HOOK_N]){ s, s, s }, 200 * MS);
	enqueue(r, HOOK_DEMOTED, 1);
	assert_true(run_until_done(1, 10));
	assert_true(ev_time() - t0 >= 0.15);
	assert_false(done.ok[0]);
	/* SIGTERM was enough: no SIGKILL after the grace. */
	assert_string_equal(last_msg, "hook demoted failed: timed out (exit 143)");
	assert_int_equal(hooks_runs(r, HOOK_DEMOTED), 1);
	assert_int_equal(hooks_failures(r, HOOK_DEMOTED), 1);
	assert_true(hooks_idle(r));
	free_runner();
}

static void test_timeout_term_ignored(void **state)
{
	const char *s = script("h", "trap '' TERM; sleep 30");
	struct hook_runner *r;
	ev_tstamp t0 = ev_time();

	(void)state;
	r = new_runner((const char *const[HOOK_N]){ s, s, s }, 200 * MS);
	enqueue(r, HOOK_ELECTED, 1);
	assert_true(run_until_done(1, 10));
	assert_true(ev_time() - t0 >= 0.6);        /* timeout + grace */
	assert_false(done.ok[0]);
	assert_string_equal(last_msg, "hook elected failed: timed out (exit 137)");
	assert_int_equal(hooks_failures(r, HOOK_ELECTED), 1);
	free_runner();
}

static void test_failure_then_next_runs(void **state)
{
	const char *fails = script("fails", "exit 3");
	const char *works = script("works", "exit 0");
	struct hook_runner *r;

	(void)state;
	r = new_runner((const char *const[HOOK_N]){ fails, works, NULL }, 5000 * MS);
	enqueue(r, HOOK_ELECTED, 1);
	enqueue(r, HOOK_DEMOTED, 1);
	assert_true(run_until_done(2, 10));
	assert_int_equal(done.ev[0], HOOK_ELECTED);
	assert_false(done.ok[0]);
	assert_int_equal(done.ev[1], HOOK_DEMOTED);
	assert_true(done.ok[1]);
	assert_int_equal(hooks_failures(r, HOOK_ELECTED), 1);
	assert_int_equal(hooks_failures(r, HOOK_DEMOTED), 0);
	free_runner();
}

/* A hook that cannot start fails from the loop, and the queue goes on. */
static void test_spawn_failure(void **state)
{
	const char *works = script("works", "exit 0");
	struct hook_runner *r;

	(void)state;
	r = new_runner((const char *const[HOOK_N]){ "/nonexistent/hook", works, NULL }, 5000 * MS);
	enqueue(r, HOOK_ELECTED, 1);     /* done_cb asserts it is not inside */
	enqueue(r, HOOK_DEMOTED, 1);
	assert_int_equal(done.n, 0);
	assert_false(hooks_idle(r));
	assert_true(run_until_done(2, 10));
	assert_int_equal(done.ev[0], HOOK_ELECTED);
	assert_false(done.ok[0]);
	assert_int_equal(done.ev[1], HOOK_DEMOTED);
	assert_true(done.ok[1]);
	assert_int_equal(hooks_runs(r, HOOK_ELECTED), 1);
	assert_int_equal(hooks_failures(r, HOOK_ELECTED), 1);
	assert_true(hooks_idle(r));
	free_runner();
}

static void test_not_configured(void **state)
{
	const char *works = script("works", "exit 0");
	struct hook_runner *r;

	(void)state;
	r = new_runner((const char *const[HOOK_N]){ [HOOK_DEMOTED] = works }, 5000 * MS);
	assert_false(hooks_configured(r, HOOK_LEADER));
	assert_true(hooks_configured(r, HOOK_DEMOTED));
	enqueue(r, HOOK_LEADER, 1);
	assert_true(hooks_idle(r));
	run_for(0.1);
	assert_int_equal(done.n, 0);
	assert_int_equal(hooks_runs(r, HOOK_LEADER), 0);
	free_runner();
}

static void test_drop_pending(void **state)
{
	char body[1024];
	const char *s;
	struct hook_runner *r;
	char *out;

	(void)state;
	snprintf(body, sizeof(body), "echo \"$1 $ELECT_TOKEN\" >> %s; sleep 0.1", out_path);
	s = script("h", body);
	r = new_runner((const char *const[HOOK_N]){ s, s, s }, 5000 * MS);
	enqueue(r, HOOK_ELECTED, 1);     /* starts at once */
	enqueue(r, HOOK_LEADER, 2);
	enqueue(r, HOOK_ELECTED, 3);
	enqueue(r, HOOK_DEMOTED, 4);
	enqueue(r, HOOK_ELECTED, 5);
	hooks_drop_pending(r, HOOK_ELECTED);
	enqueue(r, HOOK_LEADER, 6);      /* the queue's tail is still right */
	assert_true(run_until_done(4, 10));
	run_for(0.1);
	assert_int_equal(done.n, 4);
	out = read_out();
	assert_string_equal(out, "elected 1\nleader 2\ndemoted 4\nleader 6\n");
	free(out);
	assert_int_equal(hooks_runs(r, HOOK_ELECTED), 1);
	free_runner();
}

/* Dead: gone, or a zombie waiting for whoever reaps orphans. */
static int process_dead(long pid)
{
	char path[64], buf[512];
	FILE *f;
	char *st;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if ((f = fopen(path, "r")) == NULL)
		return 1;
	if (fgets(buf, sizeof(buf), f) == NULL)
		buf[0] = '\0';
	fclose(f);
	st = strrchr(buf, ')');
	return st != NULL && (st[2] == 'Z' || st[2] == 'X');
}

static void test_free_kills_running(void **state)
{
	char body[1024];
	const char *s;
	struct hook_runner *r;
	char *out = NULL;
	long pid = 0;

	(void)state;
	snprintf(body, sizeof(body), "sleep 30 & echo $! > %s; wait", out_path);
	s = script("h", body);
	r = new_runner((const char *const[HOOK_N]){ s, s, s }, 5000 * MS);
	enqueue(r, HOOK_ELECTED, 1);
	enqueue(r, HOOK_DEMOTED, 2);
	for (int i = 0; i < 250 && pid == 0; i++) {
		run_for(0.02);
		out = read_out();
		if (strchr(out, '\n') != NULL)
			pid = atol(out);
		free(out);
	}
	assert_true(pid > 0);
	free_runner();
	for (int i = 0; i < 250 && !process_dead(pid); i++)
		run_for(0.02);
	assert_true(process_dead(pid));
	run_for(0.1);
	assert_int_equal(done.n, 0);
}

/* The done callback may free the runner, with runs still queued. */
static void test_free_from_callback(void **state)
{
	const char *s = script("h", "exit 0");
	struct hook_runner *r;

	(void)state;
	r = new_runner((const char *const[HOOK_N]){ s, "/nonexistent/hook", s }, 5000 * MS);
	enqueue(r, HOOK_ELECTED, 1);
	enqueue(r, HOOK_LEADER, 2);
	done.free_in_cb = r;
	assert_true(run_until_done(1, 10));
	run_for(0.1);
	assert_int_equal(done.n, 1);

	memset(&done, 0, sizeof(done));
	r = new_runner((const char *const[HOOK_N]){ s, "/nonexistent/hook", s }, 5000 * MS);
	enqueue(r, HOOK_DEMOTED, 1);     /* spawn failure, reported from the loop */
	enqueue(r, HOOK_ELECTED, 2);
	done.free_in_cb = r;
	assert_true(run_until_done(1, 10));
	run_for(0.1);
	assert_int_equal(done.n, 1);
	assert_false(done.ok[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_event_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_strict_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_argv_and_env, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_term_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_then_next_runs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spawn_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_configured, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drop_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_kills_running, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_from_callback, setup, teardown),
	};

	loop = ev_default_loop(0);
	return cmocka_run_group_tests_name("hooks", tests, NULL, NULL);
}
