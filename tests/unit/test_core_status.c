/* The elector core, what it publishes: readiness (elected hook done,
 * command started), one consistent snapshot per input (own id never the
 * leader unless leading), backend reachability, --campaign-timeout and the
 * duplicate --id warning. Fixture in core_fixture.h. */
#include "core_fixture.h"

static int count_of(const char *haystack, const char *needle)
{
	int n = 0;

	for (const char *p = haystack; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

/* ---- tests ----------------------------------------------------------- */

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
		the_backend->ev->elected(the_backend->ctx, 10 + (uint64_t)round, NULL);
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
	the_backend->ev->elected(the_backend->ctx, 3, NULL);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ready_waits_for_elected_hook, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failing_elected_hook_never_ready, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ready_with_command, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_consistent_publish_per_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_step_down_forgets_own_leadership, setup, teardown),
		cmocka_unit_test_setup_teardown(test_duplicate_id_warned_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backend_reachability, setup, teardown),
		cmocka_unit_test_setup_teardown(test_campaign_timeout_exits_75, setup, teardown),
		cmocka_unit_test_setup_teardown(test_campaign_timeout_disarmed_by_leading, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
