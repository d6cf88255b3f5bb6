/* etcd lock backend for lockd: etcd's concurrency.Mutex layout, so that
 * `etcdctl lock PREFIX/NAME` and lockd exclude each other.
 *
 *   session   one lease for every hold (etcd_session.c): grant at open(),
 *             keepalive at renew(), revoke at close() (deletes all our keys)
 *   acquire   txn: if create_revision("PREFIX/NAME/<lease hex>") == 0 put it
 *             (value = lockd id, with the lease) else get it. A second
 *             concurrent hold of NAME in this lockd uses "<lease hex>-<n>".
 *             Both branches also read the `limit` oldest keys: when ours is
 *             among them, granted at once (one round trip, as Mutex does).
 *   check     txn, one consistent view: our key, and the `limit` keys under
 *             PREFIX/NAME/ created just before ours. Fewer than `limit`:
 *             granted, token = our create revision (Mutex: none before us).
 *   wait      watch exactly those `limit` keys (and our own) for deletion
 *             on one stream, from the check's revision + 1, then check again.
 *
 * Why no wake-up is missed: we are granted when fewer than `limit` keys are
 * older than ours. While `limit` or more are, the `limit` youngest of them
 * (the window) are watched; deleting an older key leaves the window whole
 * (no grant due), and deleting a window key wakes us to check again and
 * watch the new window. Keys created after ours never count. The watch
 * starts at the check's revision + 1, so a deletion between the check and
 * the watch is still seen. A lock (limit 1) wakes one waiter per release;
 * a semaphore at most `limit` (those whose window held the key). A watch
 * stream that ends is followed by a check after a pause; after a keepalive
 * failed and the next one succeeded, every waiter checks again, in case its
 * stream died silently in the outage.
 *
 * renew() also reads the keys of granted holds (128 per txn, etcd's default
 * --max-txn-ops) to report hold_lost when someone deleted one.
 *
 * list(), who holds and waits for each name, is in etcd_lock_list.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/etcd_lock.h"
#include "common/clock.h"
#include "common/log.h"


static void hold_step(struct lock_hold *h);
static void session_gone(struct lock_session *s, const char *reason);

/* ---- events ---- */

static void emit(struct lock_session *s, enum lock_event_kind kind, int64_t num, const char *str,
                 struct lock_hold *h)
{
	etcd_emit(&s->q, kind, num, str, h);
}

static void deliver(void *owner, const struct etcd_event *e)
{
	struct lock_session *s = owner;

	lock_deliver(&s->q, s->ev, s->ctx, e);
}

/* ---- holds ---- */

static void hold_quiet(struct lock_hold *h)
{
	etcd_req_cancel(&h->r);
	etcd_watch_stop(&h->w);
	ev_timer_stop(h->s->loop, &h->retry);
}

static void hold_free(struct lock_hold *h)
{
	struct lock_session *s = h->s;

	for (size_t i = 0; i < s->n_verifying; i++)
		if (s->verifying[i] == h)
			s->verifying[i] = NULL;
	etcd_events_forget(&s->q, h);
	ev_timer_stop(s->loop, &h->retry);
	etcd_req_free(&h->r);
	etcd_watch_free(&h->w);
	if ((*h->pprev = h->next) != NULL)
		h->next->pprev = h->pprev;
	free(h->name);
	free(h->pfx);
	free(h->key);
	free(h);
}

static void hold_retry_later(struct lock_hold *h)
{
	if (!ev_is_active(&h->retry)) {
		ev_timer_set(&h->retry, clock_ns_to_ev(h->s->c.retry_ns), 0.0);
		ev_timer_start(h->s->loop, &h->retry);
	}
}

static void hold_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	hold_step(w->data);
}

static void hold_lose(struct lock_hold *h, const char *reason)
{
	log_warnx("etcd: lock %s: hold on %s lost: %s", h->name, h->key, reason);
	hold_quiet(h);
	h->state = H_DEAD;
	emit(h->s, LK_HOLD_LOST, 0, reason, h);
}

/* Our key: "<lease hex>", or "<lease hex>-<n>" when another hold of the same
 * name in this session has that key already (they share the lease). */
static int pick_key(struct lock_hold *h)
{
	struct lock_session *s = h->s;

	for (unsigned n = 0;; n++) {
		char *key;
		int rc = n == 0 ? asprintf(&key, "%s%" PRIx64, h->pfx, (uint64_t)s->lease.id)
		                : asprintf(&key, "%s%" PRIx64 "-%u", h->pfx, (uint64_t)s->lease.id, n);
		const struct lock_hold *o;

		if (rc < 0)
			return -1;
		for (o = s->holds; o != NULL; o = o->next)
			if (o != h && o->key != NULL && strcmp(o->key, key) == 0)
				break;
		if (o == NULL) {
			free(h->key);
			h->key = key;
			return 0;
		}
		free(key);
	}
}

static void delete_done(struct etcd_req *r, const json_t *ans, const char *err)
{
	struct lock_hold *h = r->owner;

	(void)ans;
	if (err != NULL && h->s->lease.id != 0) {
		hold_retry_later(h);   /* a key left behind blocks the name until the lease ends */
		return;
	}
	hold_free(h);
}

static void grant(struct lock_hold *h)
{
	etcd_watch_stop(&h->w);
	h->state = H_GRANTED;
	h->verified_round = h->s->verify_round;
	log_debug("etcd: lock %s: granted to %s, token %" PRId64, h->name, h->key, h->rev);
	emit(h->s, LK_GRANTED, h->rev, NULL, h);
}

static void create_done(struct etcd_req *r, const json_t *ans, const char *err)
{
	struct lock_hold *h = r->owner;
	char perr[160];
	bool first;

	if (h->state == H_RELEASING) {
		hold_step(h);          /* the key may exist now: delete it */
		return;
	}
	if (err != NULL && r->grpc_code == GRPC_NOT_FOUND) {
		session_gone(h->s, "lease not found");
		return;
	}
	if (err == NULL && etcd_parse_lock_create(ans, &h->rev, &first, perr, sizeof(perr)) < 0) {
		etcd_note_failure(r, perr);
		err = perr;
	}
	if (err != NULL) {
		hold_retry_later(h);
		return;
	}
	log_debug("etcd: lock %s: queued as %s (create revision %" PRId64 ")", h->name, h->key, h->rev);
	if (first)
		grant(h);          /* among the `limit` oldest in the txn's own view */
	else
		hold_step(h);
}

static void watch_done(void *owner, bool fired)
{
	struct lock_hold *h = owner;

	if (h->state != H_WAITING)
		return;
	if (fired)
		hold_step(h);
	else
		hold_retry_later(h);   /* the stream broke: check after a pause */
}

/* The window, and our own key: deleting it (etcdctl del) is a lost hold. */
static void watch_window(struct lock_hold *h, const struct etcd_lock_check *c)
{
	char **keys = malloc((c->n_before + 1) * sizeof(*keys));

	if (keys != NULL) {
		memcpy(keys, c->before, c->n_before * sizeof(*keys));
		keys[c->n_before] = h->key;
	}
	if (keys == NULL || etcd_watch_start(&h->w, keys, c->n_before + 1, c->revision + 1) < 0)
		hold_retry_later(h);
	else
		log_debug("etcd: lock %s: %s waits for %s", h->name, h->key, c->before[0]);
	free(keys);
}

static void apply_check(struct lock_hold *h, const struct etcd_lock_check *c)
{
	if (c->own_rev != h->rev) {
		hold_lose(h, "our key was deleted");
		return;
	}
	if (c->n_before >= h->limit) {
		if (!h->queued_sent) {
			h->queued_sent = true;
			emit(h->s, LK_QUEUED, 0, NULL, h);
		}
		watch_window(h, c);
		return;
	}
	grant(h);
}

static void check_done(struct etcd_req *r, const json_t *ans, const char *err)
{
	struct lock_hold *h = r->owner;
	struct etcd_lock_check c;
	char perr[160];

	if (h->state != H_WAITING) {
		hold_step(h);
		return;
	}
	if (err == NULL && etcd_parse_lock_check(ans, &c, perr, sizeof(perr)) < 0) {
		etcd_note_failure(r, perr);
		err = perr;
	}
	if (err != NULL) {
		hold_retry_later(h);
		return;
	}
	apply_check(h, &c);
	etcd_lock_check_free(&c);
}

/* The next request of a hold, if none is in flight: on every trigger
 * (session up, answers, watch events, retries, release). */
static void hold_step(struct lock_hold *h)
{
	struct lock_session *s = h->s;

	if (h->r.busy || s->closing)
		return;
	ev_timer_stop(s->loop, &h->retry);
	switch (h->state) {
	case H_RELEASING:
		if (h->key == NULL || s->lease.id == 0)
			hold_free(h);      /* never created, or the lease took it along */
		else
			etcd_req_call(&h->r, "lock release", delete_done, "/v3/kv/deleterange",
			              etcd_body_delete(h->key));
		return;
	case H_QUEUED:
		if (s->lease.id == 0)
			return;
		if (pick_key(h) < 0) {
			hold_retry_later(h);
			return;
		}
		h->state = H_WAITING;
		h->rev = 0;
		/* fall through */
	case H_WAITING:
		if (h->rev == 0)
			etcd_req_call(&h->r, "lock create", create_done, "/v3/kv/txn",
			              etcd_body_lock_create(h->pfx, h->key, s->id, s->lease.id, h->limit));
		else
			etcd_req_call(&h->r, "lock check", check_done, "/v3/kv/txn",
			              etcd_body_lock_check(h->pfx, h->key, h->rev, h->limit));
		return;
	case H_GRANTED:
	case H_DEAD:
		return;
	}
}

/* ---- granted holds: is our key still there? ---- */

static void verify_next(struct lock_session *s);

static void verify_done(struct etcd_req *r, const json_t *ans, const char *err)
{
	struct lock_session *s = r->owner;
	int64_t revs[VERIFY_BATCH];
	char perr[160];

	if (err == NULL && etcd_parse_keys(ans, s->n_verifying, revs, perr, sizeof(perr)) < 0) {
		etcd_note_failure(r, perr);
		err = perr;
	}
	if (err != NULL) {
		s->n_verifying = 0;    /* the next renew() reads them again */
		return;
	}
	for (size_t i = 0; i < s->n_verifying; i++) {
		struct lock_hold *h = s->verifying[i];
		if (h != NULL && h->state == H_GRANTED && revs[i] != h->rev)
			hold_lose(h, "our key was deleted");
	}
	verify_next(s);
}

static void verify_next(struct lock_session *s)
{
	const char *keys[VERIFY_BATCH];

	s->n_verifying = 0;
	for (struct lock_hold *h = s->holds; h && s->n_verifying < VERIFY_BATCH; h = h->next) {
		if (h->state != H_GRANTED || h->verified_round == s->verify_round)
			continue;
		h->verified_round = s->verify_round;
		keys[s->n_verifying] = h->key;
		s->verifying[s->n_verifying++] = h;
	}
	if (s->n_verifying > 0)
		etcd_req_call(&s->r_verify, "lock key check", verify_done, "/v3/kv/txn",
		              etcd_body_keys(keys, s->n_verifying));
}

/* ---- session ---- */

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct lock_session *s = w->data;

	(void)loop;
	(void)revents;
	if (s->want_session && s->lease.id == 0 && !s->closing)
		etcd_lease_grant(&s->lease);
}

static void lease_granted(void *owner, int64_t sent_ns)
{
	struct lock_session *s = owner;

	emit(s, LK_ALIVE, sent_ns, NULL, NULL);
	for (struct lock_hold *h = s->holds, *next; h != NULL; h = next) {
		next = h->next;
		hold_step(h);
	}
}

static void lease_grant_failed(void *owner, const char *err)
{
	struct lock_session *s = owner;

	(void)err;     /* etcd_http.c logged it */
	if (!ev_is_active(&s->retry) && !s->closing) {
		ev_timer_set(&s->retry, clock_ns_to_ev(s->c.retry_ns), 0.0);
		ev_timer_start(s->loop, &s->retry);
	}
}

static void lease_alive(void *owner, int64_t sent_ns)
{
	struct lock_session *s = owner;

	emit(s, LK_ALIVE, sent_ns, NULL, NULL);
	if (!s->recheck)
		return;
	s->recheck = false;
	for (struct lock_hold *h = s->holds, *next; h != NULL; h = next) {
		next = h->next;
		if (h->state == H_WAITING && h->rev != 0)
			hold_step(h);
	}
}

static void lease_failed(void *owner, const char *err)
{
	struct lock_session *s = owner;

	s->recheck = true;
	emit(s, LK_FAILED, 0, err, NULL);
}

/* Every hold goes with the lease: no event per hold, lockd drops them all. */
static void drop_holds(struct lock_session *s)
{
	s->q.gen++;
	etcd_req_cancel(&s->r_verify);
	s->n_verifying = 0;
	for (struct lock_hold *h = s->holds, *next; h != NULL; h = next) {
		next = h->next;
		hold_quiet(h);
		if (h->state == H_RELEASING)
			hold_free(h);
		else
			h->state = H_DEAD;
	}
}

static void lease_gone(void *owner, const char *reason)
{
	session_gone(owner, reason);
}

static void session_gone(struct lock_session *s, const char *reason)
{
	log_warnx("etcd: lock session lost: %s", reason);
	s->lease.id = 0;
	etcd_req_cancel(&s->lease.r);
	s->want_session = false;
	drop_holds(s);
	emit(s, LK_LOST, 0, reason, NULL);
}

static void lease_closed(void *owner)
{
	emit(owner, LK_CLOSED, 0, NULL, NULL);
}

static const struct etcd_lease_events lease_events = {
	.granted = lease_granted,
	.grant_failed = lease_grant_failed,
	.alive = lease_alive,
	.failed = lease_failed,
	.gone = lease_gone,
	.closed = lease_closed,
};

/* ---- lock_backend_ops ---- */

static void lk_open(struct lock_session *s)
{
	if (s->closing)
		return;
	s->want_session = true;
	if (s->lease.id == 0)
		etcd_lease_grant(&s->lease);
}

static void lk_renew(struct lock_session *s)
{
	if (s->closing)
		return;
	if (s->lease.id == 0) {
		emit(s, LK_FAILED, 0, "no session", NULL);
		if (s->want_session)
			etcd_lease_grant(&s->lease);
		return;
	}
	etcd_lease_keepalive(&s->lease);
	if (!s->r_verify.busy) {
		s->verify_round++;
		verify_next(s);
	}
}

static struct lock_hold *lk_acquire(struct lock_session *s, const char *name, unsigned limit,
                                    void *hold_ctx)
{
	struct lock_hold *h = calloc(1, sizeof(*h));

	if (h == NULL || (h->name = strdup(name)) == NULL ||
	    asprintf(&h->pfx, "%s%s/", s->prefix, name) < 0) {
		if (h)
			free(h->name);
		free(h);
		return NULL;
	}
	h->s = s;
	h->ctx = hold_ctx;
	h->limit = limit > 0 ? limit : 1;
	h->state = s->closing ? H_DEAD : H_QUEUED;
	etcd_req_init(&s->c, &h->r, h, "lock", create_done);
	etcd_watch_init(&h->w, &s->c, watch_done, h);
	ev_init(&h->retry, hold_retry_cb);
	h->retry.data = h;
	if ((h->next = s->holds) != NULL)
		s->holds->pprev = &h->next;
	s->holds = h;
	h->pprev = &s->holds;
	hold_step(h);
	return h;
}

static void lk_release(struct lock_hold *h)
{
	if (h == NULL)
		return;
	etcd_events_forget(&h->s->q, h);
	if (h->state == H_GRANTED)
		log_debug("etcd: lock %s: releasing %s", h->name, h->key);
	if (h->state == H_QUEUED || h->state == H_DEAD || h->s->closing) {
		hold_free(h);
		return;
	}
	/* A create txn in flight may still make our key: delete after it. */
	if (!(h->r.busy && h->r.done == create_done))
		etcd_req_cancel(&h->r);
	etcd_watch_stop(&h->w);
	h->state = H_RELEASING;
	hold_step(h);
}

static void *lk_hold_ctx(const struct lock_hold *h)
{
	return h->ctx;
}

static void lk_close(struct lock_session *s)
{
	if (s->closing)
		return;
	drop_holds(s);
	s->closing = true;
	s->want_session = false;
	ev_timer_stop(s->loop, &s->retry);
	/* Revoking deletes every key of ours: waiters elsewhere go on at once. */
	etcd_lease_revoke(&s->lease);
}

static void lk_free(void *owner)
{
	struct lock_session *s = owner;

	etcd_lock_list_abort_all(s); /* none left after destroy(); before the client goes */
	while (s->holds)
		hold_free(s->holds);
	ev_timer_stop(s->loop, &s->retry);
	etcd_events_free(&s->q);
	etcd_lease_free(&s->lease);
	etcd_req_free(&s->r_verify);
	etcd_client_free(&s->c);   /* after the requests: cleans up the multi handle */
	free(s->prefix);
	free(s->id);
	free(s);
}

static void lk_destroy(struct lock_session *s)
{
	if (s == NULL)
		return;
	/* Now, not in lk_free: that may run later, after the current event. */
	etcd_lock_list_abort_all(s);
	etcd_events_destroy(&s->q);
}

static int lk_create(struct lock_session **out, const struct backend_params *p,
                     const struct lock_events *ev, void *ctx, char *err, size_t errlen)
{
	struct lock_session *s;
	char *path = NULL;

	*out = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	s->ev = ev;
	s->ctx = ctx;
	s->loop = p->loop;
	ev_init(&s->retry, retry_cb);
	s->retry.data = s;
	etcd_events_init(&s->q, s->loop, deliver, lk_free, s);
	if (etcd_client_init(&s->c, p, &path, err, errlen) < 0)
		goto fail;
	etcd_lease_init(&s->lease, &s->c, p->ttl_ns, &lease_events, s);
	etcd_req_init(&s->c, &s->r_verify, s, "lock key check", verify_done);
	/* An empty path puts locks at the top: NAME/<lease hex>, as `etcdctl lock NAME`. */
	s->prefix = path[0] ? etcd_key_prefix(path, NULL) : strdup("");
	s->id = strdup(p->id ? p->id : "");
	if (s->prefix == NULL || s->id == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	free(path);
	*out = s;
	return 0;
fail:
	lk_free(s);
	free(path);
	return -1;
}

const struct lock_backend_ops etcd_lock_ops = {
	.scheme = "etcd",
	.create = lk_create,
	.open = lk_open,
	.renew = lk_renew,
	.acquire = lk_acquire,
	.release = lk_release,
	.hold_ctx = lk_hold_ctx,
	.hold_fd = NULL,
	.list = etcd_lock_list,
	.close = lk_close,
	.destroy = lk_destroy,
	.check_timing = etcd_check_timing,
};
