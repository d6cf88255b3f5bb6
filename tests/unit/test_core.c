/* The elector core with an injected clock (clock_now_ns is wrapped), a
 * scripted backend (records calls; the test fires its events) and fake
 * actions (record what the core asks for). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <stdio.h>

#include "common/clock.h"
#include "common/log.h"
#include "elector/core.h"
#include "elector/lease.h"

#define MS NS_PER_MS
#define S  NS_PER_SEC

/* ---- injected clock -------------------------------------------------- */

static int64_t fake_now = 1000 * S;

int64_t __wrap_clock_now_ns(void);
int64_t __wrap_clock_now_ns(void)
{
	return fake_now;
}

/* ---- captured log ---------------------------------------------------- */

/* Warnings and errors, one per line; info lines counted by what they say. */
static char warnings[4096];
static char infos[4096];

void __wrap_log_msg(enum log_level lvl, const char *fmt, ...);
void __wrap_log_msg(enum log_level lvl, const char *fmt, ...)
{
	char *buf = lvl <= LOG_LVL_WARN ? warnings : lvl == LOG_LVL_INFO ? infos : NULL;
	size_t used;
	va_list ap;

	if (buf == NULL)
		return;
	used = strlen(buf);
	if (used + 2 >= sizeof(warnings))
		return;
	va_start(ap, fmt);
	vsnprintf(buf + used, sizeof(warnings) - used - 1, fmt, ap);
	va_end(ap);
	strcat(buf, "\n");
}

static int count_of(const char *haystack, const char *needle)
{
	int n = 0;

	for (const char *p = haystack; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

/* ---- scripted backend ------------------------------------------------ */

struct backend {
	const struct backend_events *ev;
	void *ctx;
	int campaigns, renews, resigns, closes;
};

static struct backend *the_backend;

static int sb_create(struct backend **out, const struct backend_params *p, char *err, size_t len)
{
	(void)err;
	(void)len;
	the_backend = calloc(1, sizeof(*the_backend));
	the_backend->ev = p->ev;
	the_backend->ctx = p->ctx;
	*out = the_backend;
	return 0;
}
static void sb_campaign(struct backend *b) { b->campaigns++; }
static void sb_renew(struct backend *b) { b->renews++; }
static void sb_resign(struct backend *b) { b->resigns++; }
static void sb_close(struct backend *b) { b->closes++; }
static void sb_destroy(struct backend *b) { free(b); the_backend = NULL; }
static int sb_leader_fd(struct backend *b) { (void)b; return 7; }

static const struct backend_ops scripted_ops = {
	.scheme = "scripted", .create = sb_create, .campaign = sb_campaign, .renew = sb_renew,
	.resign = sb_resign, .close = sb_close, .destroy = sb_destroy, .leader_fd = sb_leader_fd,
};

/* ---- fake actions ---------------------------------------------------- */

struct fake {
	int starts, start_rc, inherit_fd;
	bool drop_elected;
	uint64_t started_token;
	int stops, stop_sig;
	int64_t stop_grace, stop_at;
	int hooks[HOOK_N];
	enum hook_event hook_order[16];
	int n_hooks;
	int drops;
	int64_t timer_at;
	int changes;
	int exited, exit_status;
	/* Every published snapshot, checked for consistency when published. */
	uint64_t last_index;
	int published_ready;        /* snapshots with ready true */
	int inconsistent;
};

static struct fake fk;
static struct elector *cur_e;   /* the elector under test, for fa_changed */

static int fa_start(void *ctx, uint64_t token, int fd)
{
	(void)ctx;
	fk.starts++;
	fk.started_token = token;
	fk.inherit_fd = fd;
	return fk.start_rc;
}
static void fa_stop(void *ctx, int sig, int64_t grace)
{
	(void)ctx;
	fk.stops++;
	fk.stop_sig = sig;
	fk.stop_grace = grace;
	fk.stop_at = fake_now;
}
static void fa_hook(void *ctx, enum hook_event ev, const char *reason)
{
	(void)ctx;
	(void)reason;
	fk.hooks[ev]++;
	if (fk.n_hooks < 16)
		fk.hook_order[fk.n_hooks++] = ev;
}
static bool fa_drop(void *ctx) { (void)ctx; fk.drops++; return fk.drop_elected; }
static void fa_timer(void *ctx, int64_t at) { (void)ctx; fk.timer_at = at; }
/* A published snapshot must be consistent: leading states name us as leader,
 * others never do; ready only while leading; one index per publish. */
static void fa_changed(void *ctx)
{
	struct elector_status st;
	bool leads;

	(void)ctx;
	fk.changes++;
	if (cur_e == NULL)
		return;
	elector_status(cur_e, &st);
	leads = strcmp(st.state, "leader") == 0 || strcmp(st.state, "suspended") == 0;
	if (leads != (st.leader != NULL && strcmp(st.leader, st.id) == 0))
		fk.inconsistent++;
	if (st.ready && !leads)
		fk.inconsistent++;
	if (st.index != fk.last_index + 1)
		fk.inconsistent++;
	fk.last_index = st.index;
	fk.published_ready += st.ready;
}
static void fa_exit(void *ctx, int status) { (void)ctx; fk.exited++; fk.exit_status = status; }

static const struct elector_actions fake_actions = {
	.start_command = fa_start, .stop_command = fa_stop, .run_hook = fa_hook,
	.drop_stale_hooks = fa_drop, .set_timer = fa_timer, .changed = fa_changed, .exit = fa_exit,
};

/* ---- fixture --------------------------------------------------------- */

struct fixture {
	struct elector_config cfg;
	struct elector *e;
};

static struct elector_config base_config(void)
{
	struct elector_config c = {
		.name = "web", .id = "node-1", .backend_url = "scripted://",
		.ttl_ns = 10 * S, .renew_ns = 2 * S, .kill_grace_ns = 1 * S,
		.hook_timeout_ns = 1 * S, .backoff_ns = 2 * S, .has_command = true,
	};
	return c;
}

static struct elector *make(struct fixture *f)
{
	char err[256];
	struct backend_params bp = { .url = "scripted://" };

	assert_int_equal(elector_check_timing(&f->cfg, err, sizeof(err)), 0);
	f->e = elector_new(&f->cfg, &scripted_ops, &bp, &fake_actions, NULL, err, sizeof(err));
	assert_non_null(f->e);
	cur_e = f->e;
	fk.last_index = 0;
	return f->e;
}

static int setup(void **state)
{
	static struct fixture f;

	memset(&fk, 0, sizeof(fk));
	memset(&f, 0, sizeof(f));
	warnings[0] = infos[0] = '\0';
	cur_e = NULL;
	fake_now = 1000 * S;
	f.cfg = base_config();
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	cur_e = NULL;
	elector_free(f->e);
	/* Every test: no snapshot was ever published inconsistent. */
	assert_int_equal(fk.inconsistent, 0);
	return 0;
}

static const char *state_of(struct elector *e)
{
	struct elector_status st;

	elector_status(e, &st);
	return st.state;
}

/* Campaign and win at the current time with this token. */
static void win(struct elector *e, uint64_t token)
{
	elector_start(e);
	the_backend->ev->session_alive(the_backend->ctx, fake_now);
	the_backend->ev->elected(the_backend->ctx, token);
}

/* Time as the loop sees it: a timer already due fires now, never in the past. */
static void advance_to(struct elector *e, int64_t t)
{
	if (t > fake_now)
		fake_now = t;
	elector_on_timer(e);
}

/* ---- tests ----------------------------------------------------------- */

static void test_acquisition(void **state)
{
	struct fixture *f = *state;
	struct elector *e = make(f);
	struct elector_status st;

	elector_start(e);
	assert_string_equal(state_of(e), "candidate");
	assert_int_equal(the_backend->campaigns, 1);
	the_backend->ev->leader(the_backend->ctx, "other");
	elector_status(e, &st);
	assert_string_equal(st.leader, "other");
	the_backend->ev->session_alive(the_backend->ctx, fake_now);
	the_backend->ev->elected(the_backend->ctx, 42);
	elector_status(e, &st);
	assert_string_equal(st.state, "leader");
	assert_true(st.is_leader);
	assert_int_equal(st.token, 42);
	assert_string_equal(st.leader, "node-1");
	assert_int_equal(fk.starts, 1);
	assert_int_equal(fk.started_token, 42);
	/* The backend's hold is handed to the command (file lock descriptor). */
	assert_int_equal(fk.inherit_fd, 7);
	assert_true(st.deadline_left_ns > 0 && st.deadline_left_ns <= f->cfg.ttl_ns);
}

static void test_renewal_extends_deadline(void **state)
{
	struct fixture *f = *state;
	struct elector *e = make(f);
	int64_t t0 = fake_now;

	win(e, 1);
	/* The timer asks for the first renewal one renew interval later. */
	assert_int_equal(fk.timer_at, t0 + f->cfg.renew_ns);
	for (int i = 1; i <= 20; i++) {
		int64_t sent = t0 + i * f->cfg.renew_ns;
		advance_to(e, sent);
		assert_int_equal(the_backend->renews, i);
		fake_now = sent + 30 * MS;
		the_backend->ev->session_alive(the_backend->ctx, sent);
	}
	/* 40 s later, still leading: every renewal moved the deadline. */
	assert_string_equal(state_of(e), "leader");
	assert_int_equal(fk.stops, 0);
}

static void test_failing_renewals_step_down_by_deadline(void **state)
{
	struct fixture *f = *state;
	struct elector *e = make(f);
	int64_t t0 = fake_now, deadline, budget;

	f->cfg.hook[HOOK_DEMOTED] = true;
	elector_free(e);
	e = make(f);
	win(e, 7);
	deadline = t0 + f->cfg.ttl_ns - lease_margin(f->cfg.ttl_ns);
	budget = elector_step_down_budget(&f->cfg);
	/* Renewals fail from now on: the leader is suspended but keeps leading. */
	advance_to(e, t0 + f->cfg.renew_ns);
	the_backend->ev->session_failed(the_backend->ctx, "timeout");
	assert_string_equal(state_of(e), "suspended");
	/* Retries come sooner than the renew interval. */
	assert_true(fk.timer_at < t0 + 2 * f->cfg.renew_ns);
	/* Drive the timer as the loop would, failing every retry. */
	while (fk.stops == 0) {
		assert_true(fk.timer_at > fake_now - 1);
		advance_to(e, fk.timer_at);
		if (fk.stops == 0)
			the_backend->ev->session_failed(the_backend->ctx, "timeout");
	}
	assert_string_equal(state_of(e), "stepping-down");
	assert_int_equal(fk.stop_sig, SIGTERM);
	assert_int_equal(fk.stop_grace, f->cfg.kill_grace_ns);
	/* Stepping down starts early enough for the slowest child and hook. */
	assert_true(fk.stop_at + budget <= deadline);
	assert_true(fk.stop_at >= deadline - budget);
	/* A slow child: it dies only at the end of the kill grace. */
	fake_now = fk.stop_at + f->cfg.kill_grace_ns + 10 * MS;
	elector_command_exited(e, SIGKILL);
	assert_int_equal(fk.hooks[HOOK_DEMOTED], 1);
	assert_int_equal(the_backend->resigns, 0);   /* not before demoted finishes */
	fake_now += f->cfg.hook_timeout_ns;
	elector_hook_done(e, HOOK_DEMOTED, 1);
	assert_true(fake_now <= deadline);
	assert_int_equal(the_backend->resigns, 1);
	assert_string_equal(state_of(e), "follower");
	/* Then it campaigns again. */
	advance_to(e, fk.timer_at);
	assert_string_equal(state_of(e), "candidate");
	assert_int_equal(the_backend->campaigns, 2);
}

static void test_renewal_recovers_from_suspended(void **state)
{
	struct fixture *f = *state;
	struct elector *e = make(f);
	int64_t sent;

	win(e, 3);
	advance_to(e, fake_now + f->cfg.renew_ns);
	the_backend->ev->session_failed(the_backend->ctx, "connection refused");
	assert_string_equal(state_of(e), "suspended");
	sent = fk.timer_at;
	advance_to(e, sent);
	the_backend->ev->session_alive(the_backend->ctx, sent);
	assert_string_equal(state_of(e), "leader");
	assert_int_equal(fk.stops, 0);
}

static void test_frozen_agent_steps_down_on_resume(void **state)
{
	struct fixture *f = *state;
	struct elector *e = make(f);

	win(e, 3);
	/* SIGSTOP for longer than the TTL, then the first timer after resume. */
	advance_to(e, fake_now + 3 * f->cfg.ttl_ns);
	assert_string_equal(state_of(e), "stepping-down");
	assert_int_equal(fk.stops, 1);
	/* A renewal answer that was in flight does not bring leadership back. */
	the_backend->ev->session_alive(the_backend->ctx, fake_now - 3 * f->cfg.ttl_ns);
	assert_string_equal(state_of(e), "stepping-down");
}

static void test_lost_steps_down_at_once(void **state)
{
	struct fixture *f = *state;
	struct elector *e = make(f);

	win(e, 3);
	the_backend->ev->lost(the_backend->ctx, "lease expired");
	assert_string_equal(state_of(e), "stepping-down");
	assert_int_equal(fk.stops, 1);
	elector_command_exited(e, 15);
	assert_string_equal(state_of(e), "follower");
	/* Not the command's own exit: campaign again at once. */
	assert_int_equal(fk.timer_at, fake_now);
	advance_to(e, fake_now);
	assert_string_equal(state_of(e), "candidate");
	assert_int_equal(fk.exited, 0);
}

static void test_resign_backs_off(void **state)
{
	struct fixture *f = *state;
	struct elector *e = make(f);

	assert_int_equal(elector_resign(e), -1);     /* not leading */
	win(e, 9);
	assert_int_equal(elector_resign(e), 0);
	assert_int_equal(fk.stops, 1);
	elector_command_exited(e, 15);
	assert_int_equal(the_backend->resigns, 1);
	assert_string_equal(state_of(e), "follower");
	advance_to(e, fake_now + f->cfg.backoff_ns / 2);
	assert_string_equal(state_of(e), "follower");
	advance_to(e, fake_now + f->cfg.backoff_ns);
	assert_string_equal(state_of(e), "candidate");
}

static void test_elected_hook_failure_resigns(void **state)
{
	struct fixture *f = *state;
	struct elector *e;

	f->cfg.hook[HOOK_ELECTED] = true;
	f->cfg.hook[HOOK_DEMOTED] = true;
	e = make(f);
	win(e, 5);
	assert_int_equal(fk.hooks[HOOK_ELECTED], 1);
	assert_int_equal(fk.starts, 0);             /* the command waits for the hook */
	elector_hook_done(e, HOOK_ELECTED, 0);
	assert_int_equal(fk.starts, 0);
	assert_string_equal(state_of(e), "stepping-down");
	assert_int_equal(fk.hooks[HOOK_DEMOTED], 1);
	elector_hook_done(e, HOOK_DEMOTED, 1);
	assert_string_equal(state_of(e), "follower");
	assert_int_equal(the_backend->resigns, 1);
	assert_int_equal(fk.hook_order[0], HOOK_ELECTED);
	assert_int_equal(fk.hook_order[1], HOOK_DEMOTED);
}

static void test_hooks_order_elected_before_leader(void **state)
{
	struct fixture *f = *state;
	struct elector *e;

	f->cfg.hook[HOOK_ELECTED] = true;
	f->cfg.hook[HOOK_LEADER] = true;
	e = make(f);
	win(e, 5);
	assert_int_equal(fk.n_hooks, 2);
	assert_int_equal(fk.hook_order[0], HOOK_ELECTED);
	assert_int_equal(fk.hook_order[1], HOOK_LEADER);
}

static void test_no_demoted_when_elected_never_ran(void **state)
{
	struct fixture *f = *state;
	struct elector *e;

	f->cfg.hook[HOOK_ELECTED] = true;
	f->cfg.hook[HOOK_DEMOTED] = true;
	f->cfg.hook[HOOK_LEADER] = true;
	e = make(f);
	win(e, 5);
	/* The elected hook was still queued behind another hook when we resigned. */
	fk.drop_elected = true;
	assert_int_equal(elector_resign(e), 0);
	assert_int_equal(fk.hooks[HOOK_DEMOTED], 0);
	assert_string_equal(state_of(e), "follower");
	assert_int_equal(the_backend->resigns, 1);
	/* A late completion of the dropped hook does not start the command. */
	elector_hook_done(e, HOOK_ELECTED, 1);
	assert_int_equal(fk.starts, 0);
}

static void test_command_exit_ends_agent(void **state)
{
	struct fixture *f = *state;
	struct elector *e = make(f);

	win(e, 5);
	elector_command_exited(e, 9);               /* killed by SIGKILL */
	assert_string_equal(state_of(e), "follower");
	assert_int_equal(the_backend->resigns, 1);
	assert_int_equal(the_backend->closes, 1);
	the_backend->ev->closed(the_backend->ctx);
	assert_int_equal(fk.exited, 1);
	assert_int_equal(fk.exit_status, 137);
}

static void test_command_cannot_start(void **state)
{
	struct fixture *f = *state;
	struct elector *e = make(f);

	fk.start_rc = 127;
	win(e, 5);
	assert_string_equal(state_of(e), "follower");
	the_backend->ev->closed(the_backend->ctx);
	assert_int_equal(fk.exit_status, 127);
}

static void test_shutdown_hands_over(void **state)
{
	struct fixture *f = *state;
	struct elector *e = make(f);

	win(e, 5);
	elector_shutdown(e, SIGINT);
	assert_int_equal(fk.stop_sig, SIGINT);      /* the signal is forwarded */
	elector_command_exited(e, SIGINT);
	assert_int_equal(the_backend->resigns, 1);
	assert_int_equal(the_backend->closes, 1);
	assert_int_equal(fk.exited, 0);
	the_backend->ev->closed(the_backend->ctx);
	assert_int_equal(fk.exit_status, 130);
}

static void test_shutdown_gives_up_on_silent_backend(void **state)
{
	struct fixture *f = *state;
	struct elector *e = make(f);

	elector_start(e);
	elector_shutdown(e, SIGTERM);
	assert_int_equal(the_backend->closes, 1);
	advance_to(e, fk.timer_at);
	assert_int_equal(fk.exited, 1);
	assert_int_equal(fk.exit_status, 0);
}

static void test_once_exits_after_lost_term(void **state)
{
	struct fixture *f = *state;
	struct elector *e;

	f->cfg.once = true;
	e = make(f);
	win(e, 5);
	the_backend->ev->lost(the_backend->ctx, "lease expired");
	elector_command_exited(e, SIGTERM);
	assert_int_equal(the_backend->closes, 1);
	the_backend->ev->closed(the_backend->ctx);
	assert_int_equal(fk.exit_status, 143);
}

static void test_elected_without_alive_is_refused(void **state)
{
	struct fixture *f = *state;
	struct elector *e = make(f);

	elector_start(e);
	the_backend->ev->elected(the_backend->ctx, 1);
	assert_string_equal(state_of(e), "follower");
	assert_int_equal(fk.starts, 0);
	assert_int_equal(the_backend->resigns, 1);
}

/* Ready (readyz, is_leader, wait-leader) only once the elected hook has
 * finished and the command runs; a failing hook never makes it ready. */
static void test_ready_waits_for_elected_hook(void **state)
{
	struct fixture *f = *state;
	struct elector_status st;
	struct elector *e;

	f->cfg.hook[HOOK_ELECTED] = true;
	e = make(f);
	win(e, 5);
	elector_status(e, &st);
	assert_string_equal(st.state, "leader");     /* elected, hook running */
	assert_false(st.ready);
	assert_false(st.is_leader);
	assert_int_equal(fk.published_ready, 0);
	elector_hook_done(e, HOOK_ELECTED, 1);
	assert_int_equal(fk.starts, 1);
	elector_status(e, &st);
	assert_true(st.ready);
	assert_true(st.is_leader);
	/* The change to ready was published (waiters woken). */
	assert_int_equal(fk.published_ready, 1);
	assert_int_equal(fk.last_index, st.index);
}

static void test_failing_elected_hook_never_ready(void **state)
{
	struct fixture *f = *state;
	struct elector_status st;
	struct elector *e;

	f->cfg.hook[HOOK_ELECTED] = true;
	e = make(f);
	elector_start(e);
	for (int round = 0; round < 5; round++) {
		the_backend->ev->session_alive(the_backend->ctx, fake_now);
		the_backend->ev->elected(the_backend->ctx, 10 + (uint64_t)round);
		elector_status(e, &st);
		assert_false(st.ready);
		elector_hook_done(e, HOOK_ELECTED, 0);
		elector_status(e, &st);
		assert_false(st.ready);
		assert_string_equal(st.state, "follower");
		advance_to(e, fk.timer_at);             /* the backoff, then campaign again */
		assert_string_equal(state_of(e), "candidate");
	}
	assert_int_equal(fk.published_ready, 0);
	assert_int_equal(fk.starts, 0);
}

/* Wrapper mode without hooks: ready as soon as the command is started. */
static void test_ready_with_command(void **state)
{
	struct fixture *f = *state;
	struct elector_status st;
	struct elector *e = make(f);

	win(e, 5);
	elector_status(e, &st);
	assert_true(st.ready);
	/* The command exits: not ready while stepping down. */
	elector_command_exited(e, 0);
	elector_status(e, &st);
	assert_false(st.ready);
}

/* One input of the core publishes one snapshot, with state and leader of
 * the same moment (the old code woke waiters after set_state(leader) and
 * again after the leader changed: {"state":"leader","leader":"other"}). */
static void test_one_consistent_publish_per_input(void **state)
{
	struct fixture *f = *state;
	struct elector_status st;
	struct elector *e = make(f);
	int before;

	elector_start(e);
	the_backend->ev->leader(the_backend->ctx, "other");
	the_backend->ev->session_alive(the_backend->ctx, fake_now);
	before = fk.changes;
	the_backend->ev->elected(the_backend->ctx, 3);
	assert_int_equal(fk.changes, before + 1);
	elector_status(e, &st);
	assert_string_equal(st.leader, "node-1");
	assert_int_equal(fk.last_index, st.index);
	assert_int_equal(fk.inconsistent, 0);
	/* An input that changes nothing publishes nothing. */
	before = fk.changes;
	the_backend->ev->leader(the_backend->ctx, "node-1");
	assert_int_equal(fk.changes, before);
}

/* After stepping down, our own id is never the published leader: unknown
 * until the backend reports another. */
static void test_step_down_forgets_own_leadership(void **state)
{
	struct fixture *f = *state;
	struct elector_status st;
	struct elector *e = make(f);

	win(e, 9);
	assert_int_equal(elector_resign(e), 0);
	elector_status(e, &st);
	assert_string_equal(st.state, "stepping-down");
	assert_null(st.leader);
	elector_command_exited(e, 15);
	elector_status(e, &st);
	assert_string_equal(st.state, "follower");
	assert_null(st.leader);
	/* A late report of our own id (the backend's stale view) is not shown,
	 * and is no duplicate-id warning. */
	the_backend->ev->leader(the_backend->ctx, "node-1");
	elector_status(e, &st);
	assert_null(st.leader);
	assert_null(strstr(warnings, "another candidate"));
	the_backend->ev->leader(the_backend->ctx, "node-2");
	elector_status(e, &st);
	assert_string_equal(st.leader, "node-2");
	assert_int_equal(fk.inconsistent, 0);
}

static void test_duplicate_id_warned_once(void **state)
{
	struct fixture *f = *state;
	struct elector_status st;
	struct elector *e = make(f);

	elector_start(e);
	the_backend->ev->leader(the_backend->ctx, "node-1");
	elector_status(e, &st);
	assert_null(st.leader);                     /* not us: we do not lead */
	assert_non_null(strstr(warnings, "another candidate uses the id node-1 "));
	assert_non_null(strstr(warnings, "; give each candidate its own --id"));
	the_backend->ev->leader(the_backend->ctx, "node-2");
	the_backend->ev->leader(the_backend->ctx, "node-1");
	assert_int_equal(count_of(warnings, "another candidate"), 1);
}

/* Reachability: logged on the first failure and on each change, not per
 * retry; shown in the status and published. */
static void test_backend_reachability(void **state)
{
	struct fixture *f = *state;
	struct elector_status st;
	struct elector *e = make(f);
	uint64_t index;

	elector_start(e);
	elector_status(e, &st);
	assert_int_equal(st.backend, BACKEND_UNKNOWN);
	assert_null(st.last_error);
	index = st.index;
	for (int i = 0; i < 5; i++) {
		advance_to(e, fake_now + f->cfg.renew_ns);
		the_backend->ev->session_failed(the_backend->ctx, "connection refused");
	}
	elector_status(e, &st);
	assert_int_equal(st.backend, BACKEND_DOWN);
	assert_string_equal(st.last_error, "connection refused");
	assert_string_equal(st.state, "candidate");
	assert_true(st.index > index);
	assert_int_equal(count_of(warnings, "backend unreachable: connection refused"), 1);
	the_backend->ev->session_failed(the_backend->ctx, "timed out");
	elector_status(e, &st);
	assert_string_equal(st.last_error, "timed out");
	assert_int_equal(count_of(warnings, "backend unreachable"), 1);
	index = st.index;
	the_backend->ev->session_alive(the_backend->ctx, fake_now);
	elector_status(e, &st);
	assert_int_equal(st.backend, BACKEND_UP);
	assert_true(st.index > index);
	assert_int_equal(count_of(infos, "backend reachable again"), 1);
	the_backend->ev->session_alive(the_backend->ctx, fake_now);
	assert_int_equal(count_of(infos, "backend reachable again"), 1);
	the_backend->ev->session_failed(the_backend->ctx, "connection refused");
	assert_int_equal(count_of(warnings, "backend unreachable"), 2);
}

static void test_campaign_timeout_exits_75(void **state)
{
	struct fixture *f = *state;
	struct elector *e;

	f->cfg.campaign_timeout_ns = 5 * S;
	e = make(f);
	elector_start(e);
	the_backend->ev->session_failed(the_backend->ctx, "connection refused");
	while (the_backend->closes == 0 && fake_now < 1000 * S + 60 * S)
		advance_to(e, fk.timer_at);
	assert_int_equal(the_backend->closes, 1);
	assert_true(fake_now <= 1000 * S + 5 * S + f->cfg.renew_ns);
	assert_non_null(strstr(warnings, "campaign timeout: could not reach the backend within 5s "
	                                 "(connection refused)"));
	the_backend->ev->closed(the_backend->ctx);
	assert_int_equal(fk.exited, 1);
	assert_int_equal(fk.exit_status, ELECT_EXIT_CAMPAIGN_TIMEOUT);
}

/* Leading in time disarms it; it counts again once leadership ends. */
static void test_campaign_timeout_disarmed_by_leading(void **state)
{
	struct fixture *f = *state;
	struct elector *e;
	int64_t t0 = fake_now;

	f->cfg.campaign_timeout_ns = 5 * S;
	e = make(f);
	win(e, 4);
	for (int i = 1; i <= 10; i++) {
		advance_to(e, t0 + i * f->cfg.renew_ns);
		the_backend->ev->session_alive(the_backend->ctx, fake_now);
	}
	assert_int_equal(the_backend->closes, 0);
	assert_string_equal(state_of(e), "leader");
	/* Lost, and another candidate keeps the lead. */
	the_backend->ev->lost(the_backend->ctx, "lease expired");
	elector_command_exited(e, SIGTERM);
	the_backend->ev->leader(the_backend->ctx, "node-2");
	t0 = fake_now;
	while (the_backend->closes == 0 && fake_now < t0 + 60 * S)
		advance_to(e, fk.timer_at);
	assert_true(fake_now <= t0 + 5 * S + f->cfg.renew_ns);
	assert_non_null(strstr(warnings, "campaign timeout: not leading after 5s (leader: node-2)"));
	the_backend->ev->closed(the_backend->ctx);
	assert_int_equal(fk.exit_status, ELECT_EXIT_CAMPAIGN_TIMEOUT);
}

static void test_timing_refusals(void **state)
{
	struct elector_config c;
	char err[512];

	(void)state;
	c = base_config();
	assert_int_equal(elector_check_timing(&c, err, sizeof(err)), 0);
	c.renew_ns = c.ttl_ns;
	assert_int_equal(elector_check_timing(&c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "--renew"));
	c = base_config();
	c.kill_grace_ns = 8 * S;                    /* 10s TTL: no time left to renew */
	assert_int_equal(elector_check_timing(&c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "unsafe timing"));
	assert_non_null(strstr(err, "--kill-grace"));
	c = base_config();
	c.hook[HOOK_DEMOTED] = true;
	c.hook_timeout_ns = 3 * S;                  /* 1 + 2 * 3.5 > 10 - 2 */
	assert_int_equal(elector_check_timing(&c, err, sizeof(err)), -1);
	c = base_config();
	c.has_command = false;
	c.kill_grace_ns = 8 * S;                    /* no command: kill grace does not count */
	assert_int_equal(elector_check_timing(&c, err, sizeof(err)), 0);
	c = base_config();
	c.ttl_ns = 0;
	assert_int_equal(elector_check_timing(&c, err, sizeof(err)), -1);
	/* The budget overshoots the TTL: the lead time is negative, said as it
	 * is (10s - 150ms margin - 12s grace - 50ms reap slack). */
	c = base_config();
	c.kill_grace_ns = 12 * S;
	assert_int_equal(elector_check_timing(&c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "stepping down -2.2s after"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_acquisition, setup, teardown),
		cmocka_unit_test_setup_teardown(test_renewal_extends_deadline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failing_renewals_step_down_by_deadline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_renewal_recovers_from_suspended, setup, teardown),
		cmocka_unit_test_setup_teardown(test_frozen_agent_steps_down_on_resume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_steps_down_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resign_backs_off, setup, teardown),
		cmocka_unit_test_setup_teardown(test_elected_hook_failure_resigns, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hooks_order_elected_before_leader, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_demoted_when_elected_never_ran, setup, teardown),
		cmocka_unit_test_setup_teardown(test_command_exit_ends_agent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_command_cannot_start, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_hands_over, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_gives_up_on_silent_backend, setup, teardown),
		cmocka_unit_test_setup_teardown(test_once_exits_after_lost_term, setup, teardown),
		cmocka_unit_test_setup_teardown(test_elected_without_alive_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ready_waits_for_elected_hook, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failing_elected_hook_never_ready, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ready_with_command, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_consistent_publish_per_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_step_down_forgets_own_leadership, setup, teardown),
		cmocka_unit_test_setup_teardown(test_duplicate_id_warned_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backend_reachability, setup, teardown),
		cmocka_unit_test_setup_teardown(test_campaign_timeout_exits_75, setup, teardown),
		cmocka_unit_test_setup_teardown(test_campaign_timeout_disarmed_by_leading, setup, teardown),
		cmocka_unit_test(test_timing_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
