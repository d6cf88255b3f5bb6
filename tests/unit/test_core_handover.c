/* elector/core.c and `elect resign --to`: the old leader steps down the
 * normal way and leaves a handover record with the release (never before the
 * command is dead), clears it after the timeout; a candidate elected while a
 * record names another stands aside (no command, no hook, out of the queue),
 * again and again with a growing pause until the timeout passes on its own
 * clock; the named candidate leads and clears it. Fixture of test_core
 * (tests/unit/core_fixture.h). */
#include "core_fixture.h"
#include "common/handover.h"

static void record_for(char *buf, size_t len, const char *to, const char *from, uint64_t token,
                       int64_t timeout_ns)
{
	struct handover h = { .token = token, .timeout_ns = timeout_ns };

	snprintf(h.to, sizeof(h.to), "%s", to);
	snprintf(h.from, sizeof(h.from), "%s", from);
	assert_int_equal(handover_encode(&h, buf, len), 0);
}

static void test_resign_to_leaves_record_after_command(void **state)
{
	struct fixture *f = *state;
	struct elector *e = make(f);
	struct elector_status st;
	struct handover h;
	char err[200];

	win(e, 42);
	assert_int_equal(fk.starts, 1);
	assert_int_equal(elector_resign_to(e, "node-1", 3 * S, err, sizeof(err)), -2);
	assert_non_null(strstr(err, "node-1 is this agent"));
	assert_int_equal(elector_resign_to(e, "node-2", 3 * S, err, sizeof(err)), 0);
	assert_int_equal(fk.stops, 1);
	assert_string_equal(state_of(e), "stepping-down");
	/* Nothing is released while the command runs. */
	assert_int_equal(the_backend->handovers + the_backend->resigns, 0);
	assert_int_equal(elector_resign_to(e, "node-3", 3 * S, err, sizeof(err)), -1);
	elector_command_exited(e, 0);
	assert_int_equal(the_backend->handovers, 1);
	assert_int_equal(the_backend->resigns, 0);
	assert_int_equal(handover_decode(the_backend->record, &h), 0);
	assert_string_equal(h.to, "node-2");
	assert_string_equal(h.from, "node-1");
	assert_int_equal(h.token, 42);
	assert_int_equal(h.timeout_ns, 3 * S);
	elector_status(e, &st);
	assert_string_equal(st.state, "follower");
	assert_non_null(strstr(st.reason, "handing over to node-2"));
	/* We are not the named one either: elected meanwhile, we stand aside. */
	advance_to(e, fake_now + 100 * MS);
	assert_int_equal(the_backend->campaigns, 2);
	the_backend->ev->session_alive(the_backend->ctx, fake_now);
	the_backend->ev->elected(the_backend->ctx, 50, the_backend->record);
	assert_int_equal(fk.starts, 1);
	assert_int_equal(the_backend->resigns, 1);
	/* The timeout passes: the old leader removes its record. */
	advance_to(e, fake_now + 3 * S);
	assert_int_equal(the_backend->clears, 1);
	assert_string_equal(the_backend->cleared, the_backend->record);
}

static void test_not_leader_and_default_timeout(void **state)
{
	struct fixture *f = *state;
	struct elector *e;
	struct handover h;
	char err[200];

	f->cfg.handover_timeout_ns = 7 * S;
	e = make(f);
	elector_start(e);
	assert_int_equal(elector_resign_to(e, "node-2", 0, err, sizeof(err)), -1);
	the_backend->ev->session_alive(the_backend->ctx, fake_now);
	the_backend->ev->elected(the_backend->ctx, 5, NULL);
	assert_int_equal(elector_resign_to(e, "node-2", 0, err, sizeof(err)), 0);
	elector_command_exited(e, 0);
	assert_int_equal(handover_decode(the_backend->record, &h), 0);
	assert_int_equal(h.timeout_ns, 7 * S);
}

static void test_stand_aside_until_timeout(void **state)
{
	struct fixture *f = *state;
	struct elector *e = make(f);
	struct elector_status st;
	char rec[HANDOVER_MAX];
	int64_t first = fake_now;
	int asides = 0;

	record_for(rec, sizeof(rec), "node-2", "node-0", 9, 1 * S);
	elector_start(e);
	the_backend->ev->session_alive(the_backend->ctx, fake_now);
	the_backend->ev->elected(the_backend->ctx, 10, rec);
	elector_status(e, &st);
	assert_string_equal(st.state, "follower");
	assert_non_null(strstr(st.reason, "standing aside: node-0 hands over to node-2"));
	assert_null(st.leader);
	assert_int_equal(fk.starts, 0);
	assert_int_equal(the_backend->resigns, 1);
	assert_int_equal(the_backend->clears, 0);
	/* Again and again, each pause longer, never past the timeout. */
	while (fake_now - first < 1 * S) {
		int64_t before = fake_now;
		advance_to(e, fk.timer_at);
		assert_true(fake_now > before);
		assert_true(fake_now - first <= 1 * S);
		if (strcmp(state_of(e), "candidate") != 0)
			continue;
		the_backend->ev->session_alive(the_backend->ctx, fake_now);
		the_backend->ev->elected(the_backend->ctx, 11, rec);
		if (strcmp(state_of(e), "follower") == 0)
			asides++;
	}
	assert_true(asides >= 2 && asides <= 5);
	/* On our clock the record is over: we lead, and remove it. */
	assert_string_equal(state_of(e), "leader");
	assert_int_equal(fk.starts, 1);
	assert_int_equal(the_backend->clears, 1);
	assert_string_equal(the_backend->cleared, rec);
	assert_non_null(strstr(warnings, "node-2 did not take over in time"));
}

static void test_named_candidate_takes_over(void **state)
{
	struct fixture *f = *state;
	struct elector *e = make(f);
	char rec[HANDOVER_MAX];

	record_for(rec, sizeof(rec), "node-1", "node-0", 9, 10 * S);
	elector_start(e);
	the_backend->ev->session_alive(the_backend->ctx, fake_now);
	the_backend->ev->elected(the_backend->ctx, 10, rec);
	assert_string_equal(state_of(e), "leader");
	assert_int_equal(fk.starts, 1);
	assert_int_equal(the_backend->resigns, 0);
	assert_int_equal(the_backend->clears, 1);
	assert_non_null(strstr(infos, "took over from node-0 by handover"));
}

/* Not a record (garbage, another tool's value): lead as usual. */
static void test_garbage_record_ignored(void **state)
{
	struct fixture *f = *state;
	struct elector *e = make(f);

	elector_start(e);
	the_backend->ev->session_alive(the_backend->ctx, fake_now);
	the_backend->ev->elected(the_backend->ctx, 10, "{\"to\":\"node-2\"}");
	assert_string_equal(state_of(e), "leader");
	assert_int_equal(the_backend->clears, 0);
	assert_int_equal(the_backend->resigns, 0);
}

/* A new record (another handover) starts its own timeout. */
static void test_new_record_new_timeout(void **state)
{
	struct fixture *f = *state;
	struct elector *e = make(f);
	char r1[HANDOVER_MAX], r2[HANDOVER_MAX];

	record_for(r1, sizeof(r1), "node-2", "node-0", 9, 1 * S);
	record_for(r2, sizeof(r2), "node-3", "node-2", 12, 1 * S);
	elector_start(e);
	the_backend->ev->session_alive(the_backend->ctx, fake_now);
	the_backend->ev->elected(the_backend->ctx, 10, r1);
	assert_string_equal(state_of(e), "follower");
	fake_now += 900 * MS;
	advance_to(e, fake_now);
	assert_string_equal(state_of(e), "candidate");
	the_backend->ev->session_alive(the_backend->ctx, fake_now);
	the_backend->ev->elected(the_backend->ctx, 13, r2);
	assert_string_equal(state_of(e), "follower");
	assert_int_equal(fk.starts, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_resign_to_leaves_record_after_command, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_leader_and_default_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stand_aside_until_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_named_candidate_takes_over, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage_record_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_record_new_timeout, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
