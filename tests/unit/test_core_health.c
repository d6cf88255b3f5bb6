/* elector/core.c with health checks (elector_set_health): no campaign before
 * the first verdict, an unhealthy candidate leaves the election, an unhealthy
 * leader steps down the normal way and stays out until healthy. Fixture of
 * test_core (tests/unit/core_fixture.h). */
#include "core_fixture.h"

static struct elector *make_gated(struct fixture *f)
{
	f->cfg.health_gated = true;
	f->cfg.hook[HOOK_DEMOTED] = true;
	return make(f);
}

static void test_no_campaign_before_healthy(void **state)
{
	struct fixture *f = *state;
	struct elector *e = make_gated(f);
	struct elector_status st;

	elector_start(e);
	assert_string_equal(state_of(e), "follower");
	assert_int_equal(the_backend->campaigns, 0);
	advance_to(e, fake_now + 5 * S);
	assert_int_equal(the_backend->campaigns, 0);
	elector_status(e, &st);
	assert_false(st.healthy);
	assert_true(st.health_gated);
	/* Failures before the first pass: still out, status says why. */
	elector_set_health(e, false, "3 checks failed in a row: exit status 1");
	elector_status(e, &st);
	assert_string_equal(st.reason, "unhealthy");
	assert_string_equal(st.health_reason, "3 checks failed in a row: exit status 1");
	elector_set_health(e, true, "1 check passed in a row");
	advance_to(e, fake_now);
	assert_string_equal(state_of(e), "candidate");
	assert_int_equal(the_backend->campaigns, 1);
}

static void test_unhealthy_candidate_leaves_election(void **state)
{
	struct fixture *f = *state;
	struct elector *e = make_gated(f);

	elector_set_health(e, true, "ok");
	elector_start(e);
	assert_string_equal(state_of(e), "candidate");
	the_backend->ev->leader(the_backend->ctx, "node-2");
	elector_set_health(e, false, "bad");
	assert_string_equal(state_of(e), "follower");
	assert_int_equal(the_backend->resigns, 1);
	/* Out of the election: the last reported leader is stale. */
	{
		struct elector_status st;
		elector_status(e, &st);
		assert_null(st.leader);
	}
	advance_to(e, fake_now + 30 * S);
	assert_int_equal(the_backend->campaigns, 1);
	/* A win that was on its way is given back at once. */
	the_backend->ev->session_alive(the_backend->ctx, fake_now);
	the_backend->ev->elected(the_backend->ctx, 5, NULL);
	assert_string_equal(state_of(e), "follower");
	assert_int_equal(the_backend->resigns, 2);
	assert_int_equal(fk.starts, 0);
	elector_set_health(e, true, "ok");
	advance_to(e, fake_now);
	assert_int_equal(the_backend->campaigns, 2);
	assert_string_equal(state_of(e), "candidate");
}

static void test_unhealthy_leader_steps_down_and_stays_out(void **state)
{
	struct fixture *f = *state;
	struct elector *e = make_gated(f);
	struct elector_status st;

	elector_set_health(e, true, "ok");
	win(e, 7);
	assert_int_equal(fk.starts, 1);
	elector_set_health(e, false, "2 checks failed in a row");
	elector_status(e, &st);
	assert_string_equal(st.state, "stepping-down");
	assert_string_equal(st.reason, "unhealthy");
	assert_int_equal(fk.stops, 1);
	assert_int_equal(fk.stop_sig, SIGTERM);
	assert_int_equal(the_backend->resigns, 0);    /* not before the command is dead */
	elector_command_exited(e, 15);
	assert_int_equal(fk.hooks[HOOK_DEMOTED], 1);
	assert_int_equal(the_backend->resigns, 0);    /* not before demoted is done */
	elector_hook_done(e, HOOK_DEMOTED, 1);
	assert_int_equal(the_backend->resigns, 1);
	assert_string_equal(state_of(e), "follower");
	advance_to(e, fake_now + 30 * S);
	assert_int_equal(the_backend->campaigns, 1);
	/* Healthy again: campaigns at once. */
	elector_set_health(e, true, "2 checks passed in a row");
	advance_to(e, fake_now);
	assert_int_equal(the_backend->campaigns, 2);
	/* Healthy again while still stepping down: campaigns once it is done. */
	the_backend->ev->session_alive(the_backend->ctx, fake_now);
	the_backend->ev->elected(the_backend->ctx, 8, NULL);
	elector_set_health(e, false, "bad");
	elector_set_health(e, true, "ok");
	assert_string_equal(state_of(e), "stepping-down");
	elector_command_exited(e, 15);
	elector_hook_done(e, HOOK_DEMOTED, 1);
	assert_string_equal(state_of(e), "follower");
	advance_to(e, fake_now);
	assert_int_equal(the_backend->campaigns, 3);
}

static void test_without_checks(void **state)
{
	struct fixture *f = *state;
	struct elector *e = make(f);
	struct elector_status st;

	/* Without checks the agent campaigns at once and shows no verdict. */
	elector_start(e);
	assert_int_equal(the_backend->campaigns, 1);
	elector_status(e, &st);
	assert_true(st.healthy);
	assert_false(st.health_gated);
	assert_null(st.health_reason);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_no_campaign_before_healthy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unhealthy_candidate_leaves_election, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unhealthy_leader_steps_down_and_stays_out, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_without_checks, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
