/* The elector core: acquisition, the deadline, hooks, shutdown and timing
 * checks, with an injected clock, a scripted backend and fake actions
 * (tests/unit/core_fixture.h). What it publishes: test_core_status.c. */
#include "core_fixture.h"

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
	the_backend->ev->elected(the_backend->ctx, 42, NULL);
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
	the_backend->ev->elected(the_backend->ctx, 1, NULL);
	assert_string_equal(state_of(e), "follower");
	assert_int_equal(fk.starts, 0);
	assert_int_equal(the_backend->resigns, 1);
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
	/* A backend whose renewals prove an older request (ZooKeeper): 10s -
	 * 150ms margin - 1.05s budget = 8.8s; minus the lag it must still
	 * outlast the renew interval. */
	c = base_config();
	c.alive_lag_ns = 3 * S + c.renew_ns;        /* tick 2s: 8.8 - 5 > 2 */
	assert_int_equal(elector_check_timing(&c, err, sizeof(err)), 0);
	c.alive_lag_ns = 6 * S + c.renew_ns;        /* tick 4s: 8.8 - 8 < 2 */
	assert_int_equal(elector_check_timing(&c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "unsafe timing"));
	assert_non_null(strstr(err, "?tick="));
	assert_null(strchr(err, '\n'));
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
		cmocka_unit_test(test_timing_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
