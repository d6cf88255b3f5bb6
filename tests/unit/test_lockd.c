/* lockd's core (lockd/lockd.c) with an injected clock (clock_now_ns is
 * wrapped), a scripted lock backend (records calls; the test fires its
 * events) and fake actions (record what the core tells the API). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/clock.h"
#include "elector/lease.h"
#include "lockd/lockd.h"

#define MS NS_PER_MS
#define S  NS_PER_SEC

static int64_t fake_now = 1000 * S;

int64_t __wrap_clock_now_ns(void);
int64_t __wrap_clock_now_ns(void)
{
	return fake_now;
}

/* ---- scripted lock backend ------------------------------------------- */

struct lock_hold {
	void *ctx;
	char name[LOCK_NAME_MAX + 1];
	unsigned limit;
	struct lock_hold *next;
};

struct lock_session {
	const struct lock_events *ev;
	void *ctx;
	int opens, renews, closes, acquires, releases;
	struct lock_hold *holds;
};

static struct lock_session *sb;

static int sb_create(struct lock_session **out, const struct backend_params *p,
                     const struct lock_events *ev, void *ctx, char *err, size_t len)
{
	(void)p;
	(void)err;
	(void)len;
	sb = calloc(1, sizeof(*sb));
	sb->ev = ev;
	sb->ctx = ctx;
	*out = sb;
	return 0;
}
static void sb_open(struct lock_session *s) { s->opens++; }
static void sb_renew(struct lock_session *s) { s->renews++; }
static void sb_close(struct lock_session *s) { s->closes++; }

static struct lock_hold *sb_acquire(struct lock_session *s, const char *name, unsigned limit,
                                    void *ctx)
{
	struct lock_hold *h = calloc(1, sizeof(*h));

	h->ctx = ctx;
	h->limit = limit;
	snprintf(h->name, sizeof(h->name), "%s", name);
	h->next = s->holds;
	s->holds = h;
	s->acquires++;
	return h;
}

static void sb_release(struct lock_hold *h)
{
	struct lock_hold **pp;

	for (pp = &sb->holds; *pp != h; pp = &(*pp)->next)
		;
	*pp = h->next;
	sb->releases++;
	free(h);
}

static void *sb_hold_ctx(const struct lock_hold *h) { return h->ctx; }

static void sb_destroy(struct lock_session *s)
{
	while (s->holds)
		sb_release(s->holds);
	free(s);
	sb = NULL;
}

static const struct lock_backend_ops scripted_ops = {
	.scheme = "scripted", .create = sb_create, .open = sb_open, .renew = sb_renew,
	.acquire = sb_acquire, .release = sb_release, .hold_ctx = sb_hold_ctx,
	.close = sb_close, .destroy = sb_destroy,
};

/* The backend hold of a core hold. */
static struct lock_hold *bh_of(struct hold *h)
{
	for (struct lock_hold *b = sb->holds; b; b = b->next)
		if (b->ctx == h)
			return b;
	return NULL;
}

/* ---- fake actions ---------------------------------------------------- */

struct fake {
	int granted, denied, revoked, forgotten, exited, killed;
	int last_status;
	char last_why[200];
	int64_t timer_at;
};

static struct fake fk;

static void a_granted(void *c, struct hold *h) { (void)c; (void)h; fk.granted++; }
static void a_denied(void *c, struct hold *h, int status, const char *why)
{
	(void)c;
	(void)h;
	fk.denied++;
	fk.last_status = status;
	snprintf(fk.last_why, sizeof(fk.last_why), "%s", why);
}
static void a_revoked(void *c, struct hold *h)
{
	(void)c;
	fk.revoked++;
	snprintf(fk.last_why, sizeof(fk.last_why), "%s", h->reason);
}
static void a_forget(void *c, struct hold *h) { (void)c; (void)h; fk.forgotten++; }
static void a_kill_command(void *c, struct hold *h) { (void)c; (void)h; fk.killed++; }
static void a_set_timer(void *c, int64_t at) { (void)c; fk.timer_at = at; }
static void a_exit(void *c, int status) { (void)c; (void)status; fk.exited++; }

static const struct lockd_actions fake_actions = {
	.granted = a_granted, .denied = a_denied, .revoked = a_revoked, .forget = a_forget,
	.kill_command = a_kill_command, .set_timer = a_set_timer, .exit = a_exit,
};

/* ---- fixtures -------------------------------------------------------- */

static const struct lockd_config cfg = {
	.id = "t", .ttl_ns = 9 * S, .renew_ns = 3 * S, .kill_grace_ns = 1 * S, .max_holds = 3,
};

static int setup(void **state)
{
	struct backend_params bp = { .url = "scripted://x", .ttl_ns = cfg.ttl_ns };
	char err[256];

	memset(&fk, 0, sizeof(fk));
	fake_now = 1000 * S;
	*state = lockd_new(&cfg, &scripted_ops, &bp, &fake_actions, NULL, err, sizeof(err));
	assert_non_null(*state);
	lockd_start(*state);
	assert_int_equal(sb->opens, 1);
	return 0;
}

static int teardown(void **state)
{
	lockd_free(*state);
	return 0;
}

static struct hold *acquire(struct lockd *d, const char *name, unsigned limit, int64_t wait,
                            enum hold_bind bind, uint64_t conn)
{
	struct acquire_req r = { .name = name, .limit = limit, .wait_ns = wait, .bind = bind,
	                         .ttl_ns = 2 * S, .conn = conn };
	struct hold *h = NULL;
	char why[200];

	assert_int_equal(lockd_acquire(d, &r, &h, why, sizeof(why)), 0);
	return h;
}

/* A granted hold under a session alive since now. */
static struct hold *held(struct lockd *d, const char *name, uint64_t token)
{
	struct hold *h = acquire(d, name, 1, 10 * S, BIND_CONNECTION, 1);

	sb->ev->session_alive(sb->ctx, fake_now);
	sb->ev->granted(sb->ctx, bh_of(h), token);
	assert_int_equal(h->state, HOLD_HELD);
	return h;
}

/* ---- tests ----------------------------------------------------------- */

static void test_unsafe_timing_refused(void **state)
{
	struct lockd_config c = cfg;
	char err[300];

	(void)state;
	assert_int_equal(lockd_check_timing(&c, err, sizeof(err)), 0);
	c.kill_grace_ns = 6 * S;
	assert_int_equal(lockd_check_timing(&c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "unsafe timing"));
	c = cfg;
	c.renew_ns = 9 * S;
	assert_int_equal(lockd_check_timing(&c, err, sizeof(err)), -1);
	/* ZooKeeper's lag (1.5 ticks + the renew interval) counts too. */
	c = cfg;
	c.alive_lag_ns = 3 * S / 2 + c.renew_ns;    /* tick 1s */
	assert_int_equal(lockd_check_timing(&c, err, sizeof(err)), 0);
	c.alive_lag_ns = 3 * S + c.renew_ns;        /* tick 2s */
	assert_int_equal(lockd_check_timing(&c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "?tick="));
	assert_true(lock_name_valid("db-migrate.v2_x"));
	assert_false(lock_name_valid(".x"));
	assert_false(lock_name_valid("a/b"));
	assert_false(lock_name_valid(""));
}

/* The deadline rule: revoked at stop_at, released in the backend at the
 * deadline (the kill grace later), never later. */
static void test_deadline_revokes_then_releases(void **state)
{
	struct lockd *d = *state;
	int64_t sent = fake_now;
	struct lease l;
	struct hold *h = held(d, "a", 5);

	lease_init(&l, cfg.ttl_ns, cfg.kill_grace_ns + 50 * MS);
	lease_alive(&l, sent);
	assert_int_equal(fk.granted, 1);
	fake_now = lease_stop_at(&l) - 1;
	lockd_on_timer(d);
	assert_int_equal(fk.revoked, 0);
	assert_true(fk.timer_at <= lease_stop_at(&l));
	fake_now = lease_stop_at(&l);
	lockd_on_timer(d);
	assert_int_equal(fk.revoked, 1);
	assert_non_null(strstr(fk.last_why, "session may be lost"));
	assert_int_equal(h->state, HOLD_REVOKED);
	assert_int_equal(sb->releases, 0);
	assert_true(fk.timer_at <= lease_deadline(&l));
	fake_now = lease_deadline(&l);
	lockd_on_timer(d);
	assert_int_equal(sb->releases, 1);
	/* Still known (as revoked) to a client that asks late. */
	assert_ptr_equal(lockd_find(d, h->id), h);
}

static void test_renewal_keeps_holds(void **state)
{
	struct lockd *d = *state;

	held(d, "a", 1);
	for (int i = 0; i < 10; i++) {
		fake_now += 3 * S;
		lockd_on_timer(d);
		sb->ev->session_alive(sb->ctx, fake_now);
	}
	assert_int_equal(fk.revoked, 0);
	assert_true(sb->renews >= 9);
}

static void test_connection_close_releases_early(void **state)
{
	struct lockd *d = *state;
	struct hold *h = held(d, "a", 1);

	fake_now += 8 * S;          /* past stop_at: revoked, release pending */
	lockd_on_timer(d);
	assert_int_equal(h->state, HOLD_REVOKED);
	assert_int_equal(sb->releases, 0);
	lockd_conn_closed(d, 1);    /* the client stopped and went away */
	assert_int_equal(sb->releases, 1);
	assert_null(lockd_holds(d));
}

/* kill -9 of lockctl: its connection closes before its command is dead, so
 * the lock is kept until the command is gone, or for the kill grace. */
static void test_client_gone_waits_for_its_command(void **state)
{
	struct lockd *d = *state;
	struct hold *h = held(d, "a", 1);

	h->cmd_pid = 4242;
	lockd_conn_closed(d, 1);
	assert_int_equal(fk.killed, 1);
	assert_int_equal(h->state, HOLD_REVOKED);
	assert_int_equal(sb->releases, 0);
	lockd_release(d, h);        /* not before the command is dead */
	assert_int_equal(sb->releases, 0);
	fake_now += 10 * MS;
	lockd_on_timer(d);
	assert_int_equal(sb->releases, 0);
	lockd_command_gone(d, h);
	assert_int_equal(sb->releases, 1);
	assert_null(lockd_holds(d));
	/* A command that does not die: released after the kill grace. */
	h = held(d, "a", 2);
	h->cmd_pid = 4243;
	lockd_conn_closed(d, 1);
	assert_int_equal(fk.killed, 2);
	assert_true(fk.timer_at > fake_now && fk.timer_at <= fake_now + cfg.kill_grace_ns + 50 * MS);
	fake_now = fk.timer_at;
	lockd_on_timer(d);
	assert_int_equal(sb->releases, 2);
	assert_null(lockd_holds(d));
}

static void test_session_lost_revokes_and_reopens(void **state)
{
	struct lockd *d = *state;
	struct hold *h = held(d, "a", 1);
	struct hold *w = acquire(d, "a", 1, 30 * S, BIND_CONNECTION, 2);

	sb->ev->session_lost(sb->ctx, "lease expired");
	assert_int_equal(fk.revoked, 1);
	assert_int_equal(h->state, HOLD_REVOKED);
	assert_null(h->bh);
	assert_int_equal(sb->opens, 2);
	/* The waiter queues again under the new session. */
	assert_int_equal(w->state, HOLD_WAITING);
	assert_non_null(bh_of(w));
	assert_int_equal(sb->acquires, 3);
	assert_false(lockd_session_up(d));
}

static void test_grant_needs_a_live_session(void **state)
{
	struct lockd *d = *state;
	struct hold *h = acquire(d, "a", 1, 10 * S, BIND_CONNECTION, 1);

	sb->ev->granted(sb->ctx, bh_of(h), 1);
	assert_int_equal(fk.denied, 1);
	assert_int_equal(fk.last_status, 503);
	assert_int_equal(sb->releases, 1);
}

static void test_try_once_and_wait_timeout(void **state)
{
	struct lockd *d = *state;
	struct hold *h = acquire(d, "a", 1, 0, BIND_CONNECTION, 1);

	sb->ev->queued(sb->ctx, bh_of(h));
	assert_int_equal(fk.denied, 1);
	assert_int_equal(fk.last_status, 408);
	assert_string_equal(fk.last_why, "timed out waiting for a");
	h = acquire(d, "b", 1, 2 * S, BIND_CONNECTION, 1);
	sb->ev->queued(sb->ctx, bh_of(h));       /* waiting: no answer yet */
	assert_int_equal(fk.denied, 1);
	fake_now += 2 * S;
	lockd_on_timer(d);
	assert_int_equal(fk.denied, 2);
	assert_int_equal(fk.last_status, 408);
	assert_null(lockd_holds(d));
}

static void test_limits_and_mismatch(void **state)
{
	struct lockd *d = *state;
	struct acquire_req r = { .name = "s", .limit = 3, .wait_ns = S, .bind = BIND_CONNECTION };
	struct hold *h;
	char why[200];

	acquire(d, "s", 2, S, BIND_CONNECTION, 1);
	assert_int_equal(lockd_acquire(d, &r, &h, why, sizeof(why)), 409);
	acquire(d, "s", 2, S, BIND_CONNECTION, 1);
	acquire(d, "t", 1, S, BIND_CONNECTION, 1);
	r.name = "u";
	assert_int_equal(lockd_acquire(d, &r, &h, why, sizeof(why)), 503);
	assert_non_null(strstr(why, "max-holds"));
}

static void test_ttl_hold_expires_unless_renewed(void **state)
{
	struct lockd *d = *state;
	struct hold *h = acquire(d, "a", 1, S, BIND_TTL, 1);
	char why[200];

	sb->ev->session_alive(sb->ctx, fake_now);
	sb->ev->granted(sb->ctx, bh_of(h), 1);
	fake_now += 1500 * MS;
	assert_int_equal(lockd_renew(d, h, why, sizeof(why)), 0);
	sb->ev->session_alive(sb->ctx, fake_now);
	fake_now += 1500 * MS;
	lockd_on_timer(d);
	assert_int_equal(h->state, HOLD_HELD);
	fake_now += 600 * MS;
	lockd_on_timer(d);
	assert_int_equal(h->state, HOLD_REVOKED);
	assert_string_equal(h->reason, "ttl expired without renewal");
	assert_int_equal(sb->releases, 1);
	assert_int_equal(lockd_renew(d, h, why, sizeof(why)), 409);
	/* A ttl-bound hold outlives its connection. */
	lockd_conn_closed(d, 1);
	assert_ptr_equal(lockd_find(d, h->id), h);
}

static void test_shutdown_revokes_waits_then_closes(void **state)
{
	struct lockd *d = *state;
	struct hold *h = held(d, "a", 1);

	acquire(d, "b", 1, 10 * S, BIND_CONNECTION, 2);
	lockd_shutdown(d);
	assert_int_equal(fk.denied, 1);
	assert_int_equal(fk.last_status, 503);
	assert_int_equal(h->state, HOLD_REVOKED);
	assert_int_equal(sb->closes, 0);
	fake_now += cfg.kill_grace_ns + 50 * MS;
	lockd_on_timer(d);
	assert_int_equal(sb->releases, 2);
	assert_int_equal(sb->closes, 1);
	sb->ev->closed(sb->ctx);
	assert_int_equal(fk.exited, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unsafe_timing_refused),
		cmocka_unit_test_setup_teardown(test_deadline_revokes_then_releases, setup, teardown),
		cmocka_unit_test_setup_teardown(test_renewal_keeps_holds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_close_releases_early, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_gone_waits_for_its_command, setup, teardown),
		cmocka_unit_test_setup_teardown(test_session_lost_revokes_and_reopens, setup, teardown),
		cmocka_unit_test_setup_teardown(test_grant_needs_a_live_session, setup, teardown),
		cmocka_unit_test_setup_teardown(test_try_once_and_wait_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limits_and_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ttl_hold_expires_unless_renewed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_revokes_waits_then_closes, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
