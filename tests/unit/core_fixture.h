/* Shared by the elector core's unit tests (test_core.c, test_core_status.c):
 * an injected clock (clock_now_ns is wrapped), captured log lines (log_msg
 * is wrapped), a scripted backend (records calls; the test fires its events)
 * and fake actions (record what the core asks for, and check every
 * published snapshot). Included once per test binary. */
#ifndef TEST_CORE_FIXTURE_H
#define TEST_CORE_FIXTURE_H

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

/* ---- scripted backend ------------------------------------------------ */

struct backend {
	const struct backend_events *ev;
	void *ctx;
	int campaigns, renews, resigns, closes;
	int handovers, clears;
	char record[1024];           /* the last handover()'s record */
	char cleared[1024];          /* the last clear_handover()'s record */
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
static void sb_handover(struct backend *b, const char *r)
{
	b->handovers++;
	snprintf(b->record, sizeof(b->record), "%s", r);
}
static void sb_clear(struct backend *b, const char *r)
{
	b->clears++;
	snprintf(b->cleared, sizeof(b->cleared), "%s", r);
}
static void sb_destroy(struct backend *b) { free(b); the_backend = NULL; }
static int sb_leader_fd(struct backend *b) { (void)b; return 7; }

static const struct backend_ops scripted_ops = {
	.scheme = "scripted", .create = sb_create, .campaign = sb_campaign, .renew = sb_renew,
	.resign = sb_resign, .close = sb_close, .destroy = sb_destroy, .leader_fd = sb_leader_fd,
	.handover = sb_handover, .clear_handover = sb_clear,
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
	the_backend->ev->elected(the_backend->ctx, token, NULL);
}

/* Time as the loop sees it: a timer already due fires now, never in the past. */
static void advance_to(struct elector *e, int64_t t)
{
	if (t > fake_now)
		fake_now = t;
	elector_on_timer(e);
}

#endif
