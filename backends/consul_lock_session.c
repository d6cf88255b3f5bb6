/* The sessions of the Consul lock backend (see consul_lock.c for the
 * layout): the first one, made at open(), and one more for each further
 * concurrent hold of one name; all renewed together, the oldest renewal's
 * send time reported to lockd; and lock_backend_ops. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/consul_lock.h"
#include "common/clock.h"
#include "common/log.h"


static void session_gone(struct lock_session *s, const char *reason);

/* ---- events ---- */

void consul_lock_emit(struct lock_session *s, int kind, int64_t num, const char *str,
                 struct lock_hold *h)
{
	etcd_emit(&s->q, kind, num, str, h);
}

static void deliver(void *owner, const struct etcd_event *e)
{
	struct lock_session *s = owner;

	lock_deliver(&s->q, s->ev, s->ctx, e);
}

/* ---- sessions ---- */

static struct csess *csess_of(void *owner)
{
	return owner;
}

static void update_alive(struct lock_session *s)
{
	int64_t oldest = INT64_MAX;

	if (s->n_sess == 0 || s->sess[0] == NULL || s->sess[0]->s.id == NULL)
		return;
	for (size_t i = 0; i < s->n_sess; i++)
		if (s->sess[i] && s->sess[i]->s.id && !s->sess[i]->s.closing && s->sess[i]->ok_sent < oldest)
			oldest = s->sess[i]->ok_sent;
	if (oldest > s->alive_reported) {
		s->alive_reported = oldest;
		consul_lock_emit(s, LK_ALIVE, oldest, NULL, NULL);
	}
}

static void step_session_holds(struct lock_session *s, unsigned idx)
{
	for (struct lock_hold *h = s->holds, *next; h != NULL; h = next) {
		next = h->next;
		if (h->sidx == idx && h->state == H_PENDING)
			consul_hold_step(h);
	}
}

static void sess_created(void *owner, int64_t sent_ns)
{
	struct csess *cs = csess_of(owner);
	struct lock_session *s = cs->ls;

	cs->ok_sent = sent_ns;
	update_alive(s);
	if (cs->idx > 0) {
		step_session_holds(s, cs->idx);
		return;
	}
	s->create_err[0] = '\0';
	for (size_t i = 0; i < s->n_sess; i++)
		step_session_holds(s, (unsigned)i);   /* the others wait for the first */
}

static void sess_create_failed(void *owner, const char *err)
{
	struct csess *cs = csess_of(owner);
	struct lock_session *s = cs->ls;

	if (cs->idx == 0) {
		snprintf(s->create_err, sizeof(s->create_err), "session create failed: %s", err);
		consul_lock_emit(s, LK_FAILED, 0, s->create_err, NULL);
	} else {
		log_warnx("consul: creating a second session for concurrent holds of one name failed: %s", err);
	}
	if (!ev_is_active(&s->retry)) {
		ev_timer_set(&s->retry, clock_ns_to_ev(s->c.retry_ns), 0.0);
		ev_timer_start(s->loop, &s->retry);
	}
}

static void sess_alive(void *owner, int64_t sent_ns)
{
	struct csess *cs = csess_of(owner);

	cs->ok_sent = sent_ns;
	update_alive(cs->ls);
	if (cs->idx > 0)
		step_session_holds(cs->ls, cs->idx);   /* those that waited for this renewal */
}

static void sess_failed(void *owner, const char *err)
{
	struct csess *cs = csess_of(owner);

	consul_lock_emit(cs->ls, LK_FAILED, 0, err, NULL);
}

static void sess_gone(void *owner, const char *reason)
{
	struct csess *cs = csess_of(owner);
	struct lock_session *s = cs->ls;

	if (cs->idx == 0) {
		session_gone(s, reason);
		return;
	}
	/* A second session: only the holds on it go. */
	for (struct lock_hold *h = s->holds, *next; h != NULL; h = next) {
		next = h->next;
		if (h->sidx != cs->idx)
			continue;
		if (h->state == H_RELEASING) {
			consul_hold_quiet(h);
			consul_hold_free(h);
		} else if (h->state != H_DEAD) {
			consul_hold_lose(h, reason);
		}
	}
}

static void csess_free(struct csess *cs)
{
	consul_session_free(&cs->s);
	free(cs);
}

static void sess_closed(void *owner)
{
	struct csess *cs = csess_of(owner);
	struct lock_session *s = cs->ls;

	if (s->closing) {
		if (--s->n_open == 0)
			consul_lock_emit(s, LK_CLOSED, 0, NULL, NULL);
		return;
	}
	/* A retired second session, or one destroyed with a lost first one:
	 * a hold that came for its place meanwhile gets a new one. */
	{
		unsigned idx = cs->idx;
		s->sess[idx] = NULL;
		csess_free(cs);
		for (struct lock_hold *h = s->holds, *next; h != NULL; h = next) {
			next = h->next;
			if (h->sidx != idx || h->state == H_PENDING)
				continue;
			if (h->state == H_RELEASING) {
				consul_hold_quiet(h);
				consul_hold_free(h);
			} else if (h->state != H_DEAD) {
				consul_hold_lose(h, "its session ended");
			}
		}
		step_session_holds(s, idx);
	}
}

static const struct consul_session_events sess_events = {
	.created = sess_created,
	.create_failed = sess_create_failed,
	.alive = sess_alive,
	.failed = sess_failed,
	.gone = sess_gone,
	.closed = sess_closed,
};

void consul_lock_ensure_session(struct lock_session *s, unsigned idx)
{
	struct csess *cs;

	if (s->closing || (idx > 0 && (s->sess[0] == NULL || s->sess[0]->s.id == NULL)))
		return;   /* the first session comes first (open()) */
	if (idx >= s->n_sess) {
		struct csess **n = realloc(s->sess, (idx + 1) * sizeof(*n));
		if (n == NULL)
			return;
		for (size_t i = s->n_sess; i <= idx; i++)
			n[i] = NULL;
		s->sess = n;
		s->n_sess = idx + 1;
	}
	if ((cs = s->sess[idx]) == NULL) {
		if ((cs = calloc(1, sizeof(*cs))) == NULL)
			return;
		cs->ls = s;
		cs->idx = idx;
		consul_session_init(&cs->s, &s->c, s->sess_name, s->ttl_ns, s->lock_delay_ns, &sess_events, cs);
		cs->s.behavior = "delete";
		s->sess[idx] = cs;
	}
	if (cs->s.id == NULL && !cs->s.closing)
		consul_session_create(&cs->s);
	else if (cs->s.id != NULL && !cs->s.closing && cs->ok_sent < s->alive_reported)
		consul_session_renew(&cs->s);   /* made before lockd's deadline base: renew first */
}

bool consul_lock_session_ready(const struct lock_session *s, unsigned idx)
{
	const struct csess *cs = idx < s->n_sess ? s->sess[idx] : NULL;

	/* Its last renewal (or creation) was sent no earlier than the time
	 * lockd's deadline counts from: a hold on it ends no later than lockd
	 * thinks. A second session whose create answer came late is renewed
	 * first. */
	return cs != NULL && cs->s.id != NULL && !cs->s.closing && cs->ok_sent >= s->alive_reported;
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct lock_session *s = w->data;

	(void)loop;
	(void)revents;
	if (s->want_session)
		consul_lock_ensure_session(s, 0);
	for (size_t i = 1; i < s->n_sess; i++)
		step_session_holds(s, (unsigned)i);
}

/* Every hold goes with the first session: no event per hold, lockd drops
 * them all. The other sessions are destroyed, their keys with them. */
static void session_gone(struct lock_session *s, const char *reason)
{
	log_warnx("consul: lock session lost: %s", reason);
	s->q.gen++;
	s->want_session = false;
	s->alive_reported = 0;
	consul_req_cancel(&s->r_verify);
	s->n_verifying = 0;
	for (struct lock_hold *h = s->holds, *next; h != NULL; h = next) {
		next = h->next;
		consul_hold_quiet(h);
		if (h->state == H_RELEASING)
			consul_hold_free(h);
		else
			h->state = H_DEAD;
	}
	for (size_t i = 1; i < s->n_sess; i++)
		if (s->sess[i] && !s->sess[i]->s.closing)
			consul_session_destroy(&s->sess[i]->s);   /* may free it at once */
	consul_lock_emit(s, LK_LOST, 0, reason, NULL);
}

/* Second sessions no hold uses any more: destroyed. */
static void retire_sessions(struct lock_session *s)
{
	for (size_t i = 1; i < s->n_sess; i++) {
		struct csess *cs = s->sess[i];
		bool used = false;
		if (cs == NULL || cs->s.closing)
			continue;
		for (const struct lock_hold *h = s->holds; h != NULL && !used; h = h->next)
			used = h->sidx == i;
		if (!used)
			consul_session_destroy(&cs->s);
	}
}

/* ---- lock_backend_ops ---- */

static void lk_open(struct lock_session *s)
{
	if (s->closing)
		return;
	s->want_session = true;
	consul_lock_ensure_session(s, 0);
}

static void lk_renew(struct lock_session *s)
{
	if (s->closing)
		return;
	if (s->n_sess == 0 || s->sess[0] == NULL || s->sess[0]->s.id == NULL) {
		consul_lock_emit(s, LK_FAILED, 0, s->create_err[0] ? s->create_err : "no session", NULL);
		if (s->want_session)
			consul_lock_ensure_session(s, 0);
		return;
	}
	retire_sessions(s);
	for (size_t i = 0; i < s->n_sess; i++)
		if (s->sess[i] && s->sess[i]->s.id && !s->sess[i]->s.closing)
			consul_session_renew(&s->sess[i]->s);
	consul_lock_verify(s);
}

static void lk_close(struct lock_session *s)
{
	if (s->closing)
		return;
	s->q.gen++;
	consul_req_cancel(&s->r_verify);
	s->n_verifying = 0;
	for (struct lock_hold *h = s->holds; h != NULL; h = h->next) {
		consul_hold_quiet(h);
		h->state = H_DEAD;
	}
	s->closing = true;
	s->want_session = false;
	ev_timer_stop(s->loop, &s->retry);
	/* Destroying a session deletes every key of it (Behavior "delete"):
	 * waiters elsewhere go on at once. */
	s->n_open = 1;   /* held until every destroy was started */
	for (size_t i = 0; i < s->n_sess; i++)
		if (s->sess[i] != NULL && !s->sess[i]->s.closed_sent) {
			s->n_open++;
			consul_session_destroy(&s->sess[i]->s);
		}
	if (--s->n_open == 0)
		consul_lock_emit(s, LK_CLOSED, 0, NULL, NULL);
}

static void lk_free(void *owner)
{
	struct lock_session *s = owner;

	consul_lock_list_abort_all(s);
	while (s->holds)
		consul_hold_free(s->holds);
	ev_timer_stop(s->loop, &s->retry);
	etcd_events_free(&s->q);
	for (size_t i = 0; i < s->n_sess; i++)
		if (s->sess[i])
			csess_free(s->sess[i]);
	free(s->sess);
	consul_req_free(&s->r_verify);
	consul_client_free(&s->c);   /* after the requests: cleans up the multi handle */
	free(s->prefix);
	free(s->id);
	free(s->sess_name);
	free(s);
}

static void lk_destroy(struct lock_session *s)
{
	if (s == NULL)
		return;
	consul_lock_list_abort_all(s);
	etcd_events_destroy(&s->q);
}

static int lk_create(struct lock_session **out, const struct backend_params *p,
                     const struct lock_events *ev, void *ctx, char *err, size_t errlen)
{
	struct lock_session *s;
	char *path = NULL, *query = NULL;
	struct consul_opts opts;
	size_t n;

	*out = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	s->ev = ev;
	s->ctx = ctx;
	s->loop = p->loop;
	s->ttl_ns = p->ttl_ns;
	s->wait_ns = p->ttl_ns;
	ev_init(&s->retry, retry_cb);
	s->retry.data = s;
	etcd_events_init(&s->q, s->loop, deliver, lk_free, s);
	consul_req_init(&s->c, &s->r_verify, s);
	if (consul_client_init(&s->c, p, &path, &query, err, errlen) < 0 ||
	    consul_parse_options(query, p->ttl_ns, &opts, err, errlen) < 0)
		goto fail;
	s->lock_delay_ns = opts.lock_delay_ns;
	n = strlen(path);
	while (n > 0 && path[n - 1] == '/')
		n--;
	/* An empty path puts locks at the top: NAME/.lock, as `consul lock NAME`. */
	path[n] = '\0';
	s->prefix = malloc(n + 2);
	s->id = strdup(p->id ? p->id : "");
	s->sess_name = malloc(strlen(p->id ? p->id : "") + 8);
	if (s->prefix == NULL || s->id == NULL || s->sess_name == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	sprintf(s->prefix, n > 0 ? "%s/" : "%s", path);
	sprintf(s->sess_name, "lockd %s", s->id);
	free(path);
	free(query);
	*out = s;
	return 0;
fail:
	lk_free(s);
	free(path);
	free(query);
	return -1;
}

const struct lock_backend_ops consul_lock_ops = {
	.scheme = "consul",
	.create = lk_create,
	.open = lk_open,
	.renew = lk_renew,
	.acquire = consul_lock_acquire,
	.release = consul_lock_release,
	.hold_ctx = consul_lock_hold_ctx,
	.hold_fd = NULL,
	.list = consul_lock_list,
	.close = lk_close,
	.destroy = lk_destroy,
	.check_timing = consul_check_timing,
};
