/* The hold table and the deadline rule of lockd (see lockd.h).
 *
 * Safety: a hold's client must have stopped its work before the backend can
 * grant the lock to anyone else. The backend cannot end the session before
 * lease_deadline(); at lease_stop_at() = deadline - (kill grace + slack) every
 * held hold is revoked: clients are told at once and get the kill grace to
 * stop; the backend lock is released when the client's connection closes or
 * at the deadline, whichever is first (a client that stops early frees the
 * lock early; one that hangs cannot keep it past the deadline, when the
 * session may be gone anyway). The same path serves shutdown (rule 5). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/clock.h"
#include "common/duration.h"
#include "common/log.h"
#include "elector/lease.h"
#include "lockd/lockd.h"

/* Time for a client's exit to reach us after its command died. */
#define STOP_SLACK_NS (50 * NS_PER_MS)
#define MIN_RETRY_NS (50 * NS_PER_MS)
#define CLOSE_TIMEOUT_NS (10 * NS_PER_SEC)
/* A revoked hold is remembered this long (at least), so a client that asks
 * after the fact hears "revoked", not "unknown". */
#define REVOKED_KEEP_NS (60 * NS_PER_SEC)
/* Try once (wait 0) with a backend that does not report queued(): the time
 * a free lock takes to be granted. */
#define TRY_ONCE_WINDOW_NS (1 * NS_PER_SEC)

struct lockd {
	struct lockd_config cfg;
	const struct lock_backend_ops *ops;
	struct lock_session *s;
	struct lock_events ev;
	const struct lockd_actions *act;
	void *act_ctx;

	struct lease lease;
	int64_t next_renew_ns;
	struct hold *holds;
	int nholds;
	bool shutting_down, closing, exited;
	int64_t close_by_ns;
	struct lockd_metrics m;
};

static int64_t budget_ns(const struct lockd_config *cfg)
{
	return cfg->kill_grace_ns + STOP_SLACK_NS;
}

int lockd_check_timing(const struct lockd_config *cfg, char *err, size_t errlen)
{
	char ttl[32], renew[32], grace[32], left[32];
	int64_t lead;

	if (cfg->ttl_ns <= 0 || cfg->renew_ns <= 0 || cfg->kill_grace_ns < 0) {
		snprintf(err, errlen, "--ttl and --renew must be positive and --kill-grace not negative");
		return -1;
	}
	duration_format(cfg->ttl_ns, ttl, sizeof(ttl));
	duration_format(cfg->renew_ns, renew, sizeof(renew));
	duration_format(cfg->kill_grace_ns, grace, sizeof(grace));
	lead = lease_lead_time(cfg->ttl_ns, budget_ns(cfg));
	if (cfg->alive_lag_ns > 0 && lead - cfg->alive_lag_ns <= cfg->renew_ns) {
		char lag[32];

		duration_format(cfg->alive_lag_ns - cfg->renew_ns, lag, sizeof(lag));
		duration_format(lead - cfg->alive_lag_ns > 0 ? lead - cfg->alive_lag_ns : 0, left, sizeof(left));
		snprintf(err, errlen,
		         "unsafe timing: a renewal proves the session only as of a request sent up to %s "
		         "(1.5 x the ZooKeeper tick, ?tick= in the URL) plus --renew %s before it, so holds "
		         "must be revoked %s after a renewal (--ttl %s minus margin, --kill-grace %s and that "
		         "lag), which is not later than the next renewal: raise --ttl or lower --renew or "
		         "--kill-grace", lag, renew, left, ttl, grace);
		return -1;
	}
	if (lead <= cfg->renew_ns) {
		duration_format(lead > 0 ? lead : 0, left, sizeof(left));
		snprintf(err, errlen,
		         "unsafe timing: holds must be revoked %s after the last renewal (--ttl %s "
		         "minus margin and --kill-grace %s), which is not later than the next renewal "
		         "(--renew %s): raise --ttl or lower --renew or --kill-grace",
		         left, ttl, grace, renew);
		return -1;
	}
	return 0;
}

/* ---- the hold table -------------------------------------------------- */

static void reschedule(struct lockd *d)
{
	int64_t at = -1;

	if (d->exited)
		return;               /* the loop is ending: no more timers */

#define EARLIER(t) do { if ((t) >= 0 && (at < 0 || (t) < at)) at = (t); } while (0)
	if (d->closing) {
		EARLIER(d->close_by_ns);
	} else {
		EARLIER(d->next_renew_ns);
	}
	for (struct hold *h = d->holds; h; h = h->next) {
		if (h->state == HOLD_HELD && lease_known(&d->lease))
			EARLIER(lease_stop_at(&d->lease));
		if (h->state == HOLD_REVOKED && h->bh)
			EARLIER(h->release_at_ns);
		if (h->state != HOLD_HELD || h->bind == BIND_TTL)
			EARLIER(h->expires_ns);
	}
#undef EARLIER
	d->act->set_timer(d->act_ctx, at);
}

static void new_hold_id(char *out)
{
	unsigned char r[HOLD_ID_LEN / 2];
	size_t got = 0;

	while (got < sizeof(r)) {
		ssize_t n = getrandom(r + got, sizeof(r) - got, 0);
		if (n > 0)
			got += (size_t)n;
	}
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(out + 2 * i, 3, "%02x", r[i]);
}

static void backend_release(struct lockd *d, struct hold *h)
{
	if (h->bh) {
		d->ops->release(h->bh);
		h->bh = NULL;
	}
}

static void forget(struct lockd *d, struct hold *h)
{
	backend_release(d, h);
	d->act->forget(d->act_ctx, h);
	if (h->prev)
		h->prev->next = h->next;
	else
		d->holds = h->next;
	if (h->next)
		h->next->prev = h->prev;
	d->nholds--;
	free(h);
}

static void deny(struct lockd *d, struct hold *h, int status, const char *why)
{
	d->act->denied(d->act_ctx, h, status, why);
	forget(d, h);
}

/* Tells the client; the backend lock is released after release_delay_ns
 * (the client's kill grace), or at once when the client is gone. */
static void revoke(struct lockd *d, struct hold *h, const char *reason, int64_t release_delay_ns)
{
	int64_t now = clock_now_ns();

	if (h->state != HOLD_HELD)
		return;
	h->state = HOLD_REVOKED;
	snprintf(h->reason, sizeof(h->reason), "%s", reason);
	h->release_at_ns = now + release_delay_ns;
	h->expires_ns = now + (h->ttl_ns > REVOKED_KEEP_NS ? h->ttl_ns : REVOKED_KEEP_NS);
	d->m.revocations++;
	log_warnx("lock %s: hold revoked (token %" PRIu64 "): %s", h->name, h->token, reason);
	d->act->revoked(d->act_ctx, h);
	if (release_delay_ns <= 0)
		backend_release(d, h);
}

static void revoke_all(struct lockd *d, const char *reason, int64_t release_delay_ns)
{
	for (struct hold *h = d->holds; h; h = h->next)
		revoke(d, h, reason, release_delay_ns);
}

static bool any_backend_holds(const struct lockd *d)
{
	for (const struct hold *h = d->holds; h; h = h->next)
		if (h->bh)
			return true;
	return false;
}

static void begin_close(struct lockd *d)
{
	if (d->closing)
		return;
	d->closing = true;
	d->close_by_ns = clock_now_ns() + CLOSE_TIMEOUT_NS;
	log_info("all holds released; closing the backend session");
	d->ops->close(d->s);
}

static void finish_exit(struct lockd *d)
{
	if (d->exited)
		return;
	d->exited = true;
	d->act->set_timer(d->act_ctx, -1);
	d->act->exit(d->act_ctx, 0);
}

/* At lease_stop_at() without a later renewal: revoke every hold, release at
 * the deadline. */
static void check_deadline(struct lockd *d, int64_t now)
{
	char buf[32], reason[96];
	bool held = false;

	for (struct hold *h = d->holds; h && !held; h = h->next)
		held = h->state == HOLD_HELD;
	if (!held)
		return;
	if (lease_known(&d->lease) && now < lease_stop_at(&d->lease))
		return;
	if (lease_known(&d->lease)) {
		duration_format(now - d->lease.alive_sent_ns, buf, sizeof(buf));
		snprintf(reason, sizeof(reason), "session may be lost: no successful renewal for %s", buf);
	} else {
		snprintf(reason, sizeof(reason), "session may be lost");
	}
	revoke_all(d, reason, lease_known(&d->lease) ? lease_deadline(&d->lease) - now : 0);
}

/* Holds whose time is up: waiting too long, ttl-bound not renewed, revoked
 * ones due for release or to be forgotten. */
static void expire_holds(struct lockd *d, int64_t now)
{
	struct hold *h, *next;
	char why[LOCK_NAME_MAX + 32];

	for (h = d->holds; h; h = next) {
		next = h->next;
		if (h->state == HOLD_WAITING && h->expires_ns >= 0 && now >= h->expires_ns) {
			snprintf(why, sizeof(why), "timed out waiting for %s", h->name);
			deny(d, h, 408, why);
		} else if (h->state == HOLD_HELD && h->bind == BIND_TTL && now >= h->expires_ns) {
			revoke(d, h, "ttl expired without renewal", 0);
		} else if (h->state == HOLD_REVOKED) {
			if (h->bh && now >= h->release_at_ns) {
				if (h->draining)
					log_error("lock %s: command %d of a client that went away is not "
					          "dead after the kill grace; releasing the lock anyway",
					          h->name, h->cmd_pid);
				backend_release(d, h);
			}
			if (!h->bh && (now >= h->expires_ns || d->shutting_down || h->draining))
				forget(d, h);
		}
	}
}

/* ---- backend events -------------------------------------------------- */

static void on_session_alive(void *ctx, int64_t sent_ns)
{
	struct lockd *d = ctx;

	lease_alive(&d->lease, sent_ns);
	check_deadline(d, clock_now_ns());
	reschedule(d);
}

static void on_session_failed(void *ctx, const char *reason)
{
	struct lockd *d = ctx;
	int64_t now = clock_now_ns(), retry = d->cfg.renew_ns / 4;

	d->m.backend_errors++;
	log_debug("renewal failed: %s", reason);
	if (retry < MIN_RETRY_NS)
		retry = MIN_RETRY_NS;
	if (d->next_renew_ns > now + retry)
		d->next_renew_ns = now + retry;
	check_deadline(d, now);
	reschedule(d);
}

static void on_session_lost(void *ctx, const char *reason)
{
	struct lockd *d = ctx;
	struct hold *h;
	char why[160];

	d->m.backend_errors++;
	lease_forget(&d->lease);
	log_warnx("backend session lost: %s", reason);
	snprintf(why, sizeof(why), "session lost: %s", reason);
	/* The backend already dropped every lock: nothing to wait for. */
	revoke_all(d, why, 0);
	for (h = d->holds; h; h = h->next) {
		backend_release(d, h);
		if (h->state == HOLD_WAITING && !d->shutting_down)
			h->bh = d->ops->acquire(d->s, h->name, h->limit, h);
	}
	if (!d->closing)
		d->ops->open(d->s);
	reschedule(d);
}

static void on_granted(void *ctx, struct lock_hold *bh, uint64_t token)
{
	struct lockd *d = ctx;
	struct hold *h = d->ops->hold_ctx(bh);
	int64_t now = clock_now_ns();

	if (h == NULL || h->bh != bh || h->state != HOLD_WAITING)
		return;
	if (d->shutting_down) {
		deny(d, h, 503, "lockd is shutting down");
	} else if (!lease_known(&d->lease) || now >= lease_stop_at(&d->lease)) {
		deny(d, h, 503, "granted under a session that may be lost; try again");
	} else {
		h->state = HOLD_HELD;
		h->token = token;
		h->granted_wall_ms = clock_wall_ms();
		h->expires_ns = h->bind == BIND_TTL ? now + h->ttl_ns : -1;
		d->m.grants++;
		log_debug("lock %s: granted, token %" PRIu64, h->name, token);
		d->act->granted(d->act_ctx, h);
	}
	reschedule(d);
}

static void on_hold_lost(void *ctx, struct lock_hold *bh, const char *reason)
{
	struct lockd *d = ctx;
	struct hold *h = d->ops->hold_ctx(bh);
	char why[640];      /* a refusal names verb, resource and namespace */

	if (h == NULL || h->bh != bh)
		return;
	d->m.backend_errors++;
	snprintf(why, sizeof(why), "lock lost: %s", reason);
	if (h->state == HOLD_WAITING)
		deny(d, h, strstr(reason, LOCK_LIMIT_CONFLICT) ? 409 : 503, why);
	else if (h->state == HOLD_HELD)
		revoke(d, h, why, 0);
	else
		backend_release(d, h);
	reschedule(d);
}

static void on_queued(void *ctx, struct lock_hold *bh)
{
	struct lockd *d = ctx;
	struct hold *h = d->ops->hold_ctx(bh);
	char why[LOCK_NAME_MAX + 32];

	if (h == NULL || h->bh != bh || h->state != HOLD_WAITING || !h->try_once)
		return;
	snprintf(why, sizeof(why), "timed out waiting for %s", h->name);
	deny(d, h, 408, why);
	reschedule(d);
}

static void on_closed(void *ctx)
{
	struct lockd *d = ctx;

	if (d->closing)
		finish_exit(d);
}

/* ---- requests -------------------------------------------------------- */

int lockd_acquire(struct lockd *d, const struct acquire_req *r, struct hold **out,
                  char *why, size_t whylen)
{
	struct hold *h;

	if (d->shutting_down) {
		snprintf(why, whylen, "lockd is shutting down");
		return 503;
	}
	if (d->cfg.max_holds > 0 && d->nholds >= d->cfg.max_holds) {
		snprintf(why, whylen, "lockd has %d holds, its --max-holds", d->nholds);
		return 503;
	}
	for (h = d->holds; h; h = h->next) {
		if (h->state != HOLD_REVOKED && h->limit != r->limit && strcmp(h->name, r->name) == 0) {
			snprintf(why, whylen, "%s is held here with limit %u, not %u", r->name, h->limit,
			         r->limit);
			return 409;
		}
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		snprintf(why, whylen, "out of memory");
		return 500;
	}
	new_hold_id(h->id);
	snprintf(h->name, sizeof(h->name), "%s", r->name);
	h->limit = r->limit;
	h->bind = r->bind;
	h->conn = r->conn;
	h->ttl_ns = r->ttl_ns;
	h->state = HOLD_WAITING;
	h->release_at_ns = -1;
	h->try_once = r->wait_ns <= 0;
	h->expires_ns = clock_now_ns() + (h->try_once ? TRY_ONCE_WINDOW_NS : r->wait_ns);
	h->bh = d->ops->acquire(d->s, h->name, h->limit, h);
	if (h->bh == NULL) {
		free(h);
		snprintf(why, whylen, "out of memory");
		return 500;
	}
	h->next = d->holds;
	if (d->holds)
		d->holds->prev = h;
	d->holds = h;
	d->nholds++;
	*out = h;
	reschedule(d);
	return 0;
}

struct hold *lockd_find(struct lockd *d, const char *hold_id)
{
	for (struct hold *h = d->holds; h; h = h->next)
		if (strcmp(h->id, hold_id) == 0)
			return h;
	return NULL;
}

static void release_now(struct lockd *d, struct hold *h)
{
	if (h->state == HOLD_HELD)
		log_debug("lock %s: released, token %" PRIu64, h->name, h->token);
	forget(d, h);
	if (d->shutting_down && !any_backend_holds(d))
		begin_close(d);
	reschedule(d);
}

void lockd_release(struct lockd *d, struct hold *h)
{
	/* A draining hold is released when its command is dead, not sooner. */
	if (!h->draining)
		release_now(d, h);
}

int lockd_renew(struct lockd *d, struct hold *h, char *why, size_t whylen)
{
	if (h->state == HOLD_REVOKED) {
		snprintf(why, whylen, "hold was revoked: %s", h->reason);
		return 409;
	}
	if (h->state != HOLD_HELD || h->bind != BIND_TTL) {
		snprintf(why, whylen, "only a granted ttl-bound hold can be renewed");
		return 409;
	}
	h->expires_ns = clock_now_ns() + h->ttl_ns;
	reschedule(d);
	return 0;
}

/* The client of a hold with a command is gone. kill -9 of lockctl closes
 * its socket before the kernel sends PDEATHSIG to the command, so the
 * command may still be running: keep the backend lock until it is dead
 * (lockd_command_gone), for the kill grace and the usual slack at most. */
static void drain(struct lockd *d, struct hold *h)
{
	int64_t until = clock_now_ns() + budget_ns(&d->cfg);

	if (h->state == HOLD_HELD) {
		h->state = HOLD_REVOKED;
		snprintf(h->reason, sizeof(h->reason), "the client went away");
		h->release_at_ns = until;
	} else if (h->release_at_ns > until) {
		h->release_at_ns = until;
	}
	h->draining = true;
	h->conn = 0;
	h->expires_ns = h->release_at_ns;
	log_debug("lock %s: client gone; killing command %d, releasing once it is dead",
	          h->name, h->cmd_pid);
	d->act->kill_command(d->act_ctx, h);
}

void lockd_conn_closed(struct lockd *d, uint64_t conn)
{
	struct hold *h, *next;

	for (h = d->holds; h; h = next) {
		next = h->next;
		if (h->conn != conn || (h->bind != BIND_CONNECTION && h->state != HOLD_WAITING))
			continue;
		if (h->cmd_pid > 0 && h->bh && h->state != HOLD_WAITING && !d->exited &&
		    d->act->kill_command)
			drain(d, h);
		else
			release_now(d, h);
	}
	reschedule(d);
}

void lockd_command_gone(struct lockd *d, struct hold *h)
{
	if (!h->draining)
		return;
	log_debug("lock %s: command %d is dead; releasing", h->name, h->cmd_pid);
	release_now(d, h);
}

void lockd_abandon(struct lockd *d, struct hold *h)
{
	if (h->state == HOLD_WAITING)
		release_now(d, h);
}

/* ---- timer, life cycle ----------------------------------------------- */

void lockd_on_timer(struct lockd *d)
{
	int64_t now = clock_now_ns();

	if (d->exited)
		return;
	if (d->closing && now >= d->close_by_ns) {
		log_warnx("backend did not confirm the close in time; exiting anyway");
		finish_exit(d);
		return;
	}
	check_deadline(d, now);
	expire_holds(d, now);
	if (!d->closing && now >= d->next_renew_ns) {
		d->next_renew_ns = now + d->cfg.renew_ns;
		d->ops->renew(d->s);
	}
	if (d->shutting_down && !any_backend_holds(d))
		begin_close(d);
	reschedule(d);
}

void lockd_start(struct lockd *d)
{
	d->next_renew_ns = clock_now_ns() + d->cfg.renew_ns;
	d->ops->open(d->s);
	reschedule(d);
}

void lockd_shutdown(struct lockd *d)
{
	struct hold *h, *next;

	if (d->shutting_down) {
		/* A second signal: do not wait out the kill grace. */
		for (h = d->holds; h; h = h->next)
			backend_release(d, h);
	} else {
		d->shutting_down = true;
		log_info("shutting down: revoking %d holds", d->nholds);
		for (h = d->holds; h; h = next) {
			next = h->next;
			if (h->state == HOLD_WAITING)
				deny(d, h, 503, "lockd is shutting down");
		}
		revoke_all(d, "lockd is shutting down", budget_ns(&d->cfg));
	}
	if (!any_backend_holds(d))
		begin_close(d);
	reschedule(d);
}

struct lockd *lockd_new(const struct lockd_config *cfg, const struct lock_backend_ops *ops,
                        struct backend_params *bp, const struct lockd_actions *act,
                        void *act_ctx, char *err, size_t errlen)
{
	struct lockd *d = calloc(1, sizeof(*d));

	if (d == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	d->cfg = *cfg;
	d->ops = ops;
	d->act = act;
	d->act_ctx = act_ctx;
	d->next_renew_ns = -1;
	lease_init(&d->lease, cfg->ttl_ns, budget_ns(cfg));
	d->ev = (struct lock_events){
		.session_alive = on_session_alive, .session_failed = on_session_failed,
		.session_lost = on_session_lost, .granted = on_granted,
		.hold_lost = on_hold_lost, .closed = on_closed, .queued = on_queued,
	};
	if ((ops->check_timing && ops->check_timing(bp, err, errlen) < 0) ||
	    ops->create(&d->s, bp, &d->ev, d, err, errlen) < 0) {
		free(d);
		return NULL;
	}
	return d;
}

void lockd_free(struct lockd *d)
{
	if (d == NULL)
		return;
	while (d->holds)
		forget(d, d->holds);
	d->ops->destroy(d->s);
	free(d);
}

struct hold *lockd_holds(struct lockd *d)
{
	return d->holds;
}

bool lockd_session_up(const struct lockd *d)
{
	return lease_known(&d->lease) && clock_now_ns() < lease_deadline(&d->lease);
}

int64_t lockd_revoke_grace_ns(const struct lockd *d)
{
	return d->cfg.kill_grace_ns;
}

const struct lockd_metrics *lockd_metrics(const struct lockd *d)
{
	return &d->m;
}

bool lockd_shutting_down(const struct lockd *d)
{
	return d->shutting_down;
}

int lockd_hold_fd(const struct lockd *d, const struct hold *h)
{
	if (h->state != HOLD_HELD || h->bh == NULL || d->ops->hold_fd == NULL)
		return -1;
	return d->ops->hold_fd(h->bh);
}

int lockd_list(struct lockd *d, const char *const *names, size_t n, bool all, lock_list_cb cb,
               void *arg)
{
	if (d->ops->list == NULL)
		return -1;
	return d->ops->list(d->s, names, n, all, cb, arg);
}

struct hold *lockd_hold_of(struct lockd *d, struct lock_hold *bh)
{
	struct hold *h = bh ? d->ops->hold_ctx(bh) : NULL;

	return h && h->bh == bh ? h : NULL;
}

int lockd_name_check(const struct lockd *d, const char *name, char *why, size_t whylen)
{
	if (d->ops->name_check == NULL)
		return 0;
	return d->ops->name_check(d->s, name, why, whylen);
}

int64_t lockd_request_timeout_ns(const struct lockd *d)
{
	int64_t renew = d->cfg.renew_ns;

	if (d->cfg.request_timeout_ns > 0)
		return d->cfg.request_timeout_ns;
	return renew > 0 && renew < 2 * NS_PER_SEC ? renew : 2 * NS_PER_SEC;   /* as the backends */
}

const char *lockd_id(const struct lockd *d)
{
	return d->cfg.id ? d->cfg.id : "";
}
