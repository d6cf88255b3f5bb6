/* What the etcd election (etcd.c) and the etcd locks (etcd_lock.c) share
 * above the client: the lease that carries their keys (grant, keepalive,
 * revoke with a bounded wait) and the queue that delivers their events from
 * the loop, never from inside the operation that caused them. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/etcd.h"
#include "common/clock.h"
#include "common/log.h"

/* ---- the lease ---- */

/* The member's version, asked once after the first grant: a version whose
 * stalled raft leader revokes live leases on resume gets a warning (README,
 * Safety 6), as no client can see such a revocation coming. */
static void status_done(struct etcd_req *r, const json_t *ans, const char *err)
{
	char ver[32];

	if (err != NULL || ans == NULL) {
		log_debug("etcd: no version from %s: %s", r->c->ep.list[r->endpoint], err ? err : "-");
		return;
	}
	if (etcd_parse_status_revokes_early(ans, ver, sizeof(ver)) == 1)
		log_warnx("etcd: %s runs etcd %s, which can revoke live leases when a stalled raft "
		          "leader resumes (etcd issue #15247): two leaders are possible then; etcd "
		          "3.5.11 or later, or 3.4.28 or later, fixes it but for a frozen (paused) "
		          "member (README, Safety 6)", r->c->ep.list[r->endpoint], ver);
}

static void grant_done(struct etcd_req *r, const json_t *ans, const char *err)
{
	struct etcd_lease *l = r->owner;
	char perr[160];
	int64_t id, ttl;

	if (err == NULL && etcd_parse_grant(ans, &id, &ttl, perr, sizeof(perr)) < 0) {
		etcd_note_failure(r, perr);
		err = perr;
	}
	if (err == NULL && ttl * NS_PER_SEC < l->ttl_ns) {
		/* Our deadline math assumes the TTL we asked for; less is unsafe. */
		log_warnx("etcd: granted lease TTL %" PRId64 "s is shorter than asked for; retrying", ttl);
		err = "short TTL";
	}
	if (err != NULL) {
		l->ev->grant_failed(l->owner, err);
		return;
	}
	l->id = id;
	log_info("etcd: lease %" PRIx64 " granted by %s (TTL %" PRId64 "s)", (uint64_t)id,
	         r->c->ep.list[r->endpoint], ttl);
	if (!l->status_asked) {
		l->status_asked = true;
		etcd_req_call(&l->r_status, "status", status_done, "/v3/maintenance/status", strdup("{}"));
	}
	l->ev->granted(l->owner, r->sent_ns);
}

static void keepalive_done(struct etcd_req *r, const json_t *ans, const char *err)
{
	struct etcd_lease *l = r->owner;
	char perr[160];
	int64_t ttl;

	if (l->id == 0)
		return;
	if (err == NULL && etcd_parse_keepalive(ans, &ttl, perr, sizeof(perr)) < 0) {
		etcd_note_failure(r, perr);
		err = perr;
	}
	if (err != NULL) {
		l->ev->failed(l->owner, err);
		/* Another member may answer in time: try the next one at once. */
		if (r->transport_error && r->tries < r->c->ep.n)
			etcd_req_resend(r);
		return;
	}
	if (ttl == 0) {
		l->id = 0;
		l->ev->gone(l->owner, "lease expired");
		return;
	}
	l->ev->alive(l->owner, r->sent_ns);
}

static void finish_close(struct etcd_lease *l)
{
	if (l->closed_sent)
		return;
	l->closed_sent = true;
	ev_timer_stop(l->c->loop, &l->close_timer);
	etcd_req_cancel(&l->r);
	l->id = 0;
	l->ev->closed(l->owner);
}

static void revoke_done(struct etcd_req *r, const json_t *ans, const char *err)
{
	struct etcd_lease *l = r->owner;

	(void)ans;
	if (err != NULL && r->transport_error && r->tries < r->c->ep.n) {
		etcd_req_resend(r);   /* the close timer bounds the whole thing */
		return;
	}
	if (err != NULL && r->grpc_code != GRPC_NOT_FOUND)
		log_warnx("etcd: revoking lease %" PRIx64 " failed (%s); it expires by its TTL",
		          (uint64_t)l->id, err);
	finish_close(l);
}

static void close_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	log_warnx("etcd: no answer to the lease revoke in time; the lease expires by its TTL");
	finish_close(w->data);
}

void etcd_lease_init(struct etcd_lease *l, struct etcd_client *c, int64_t ttl_ns,
                     const struct etcd_lease_events *ev, void *owner)
{
	memset(l, 0, sizeof(*l));
	l->c = c;
	l->ttl_ns = ttl_ns;
	l->ev = ev;
	l->owner = owner;
	etcd_req_init(c, &l->r, l, "lease", grant_done);
	etcd_req_init(c, &l->r_status, l, "status", status_done);
	ev_init(&l->close_timer, close_timer_cb);
	l->close_timer.data = l;
}

void etcd_lease_grant(struct etcd_lease *l)
{
	if (!l->r.busy)
		etcd_req_call(&l->r, "lease grant", grant_done, "/v3/lease/grant",
		              etcd_body_grant(l->ttl_ns / NS_PER_SEC));
}

void etcd_lease_keepalive(struct etcd_lease *l)
{
	if (!l->r.busy && l->id != 0)
		etcd_req_call(&l->r, "keepalive", keepalive_done, "/v3/lease/keepalive",
		              etcd_body_lease(l->id));
}

void etcd_lease_revoke(struct etcd_lease *l)
{
	etcd_req_cancel(&l->r);
	if (l->id == 0) {
		finish_close(l);
		return;
	}
	ev_timer_set(&l->close_timer, clock_ns_to_ev(l->c->req_timeout_ns), 0.0);
	ev_timer_start(l->c->loop, &l->close_timer);
	etcd_req_call(&l->r, "lease revoke", revoke_done, "/v3/lease/revoke", etcd_body_lease(l->id));
}

void etcd_lease_free(struct etcd_lease *l)
{
	if (l->c == NULL)
		return;
	ev_timer_stop(l->c->loop, &l->close_timer);
	etcd_req_free(&l->r);
	etcd_req_free(&l->r_status);
}

/* ---- the event queue ---- */

static void flush_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct etcd_events *q = w->data;

	(void)loop;
	(void)revents;
	q->in_flush = true;
	while (q->head && !q->free_pending) {
		struct etcd_event *e = q->head;
		q->head = e->next;
		if (q->head == NULL)
			q->tail = NULL;
		q->deliver(q->owner, e);
		free(e->str);
		free(e);
	}
	q->in_flush = false;
	if (q->free_pending)
		q->free_owner(q->owner);
}

void etcd_events_init(struct etcd_events *q, struct ev_loop *loop, etcd_deliver_fn deliver,
                      void (*free_owner)(void *owner), void *owner)
{
	memset(q, 0, sizeof(*q));
	q->loop = loop;
	q->deliver = deliver;
	q->free_owner = free_owner;
	q->owner = owner;
	ev_init(&q->flush, flush_cb);
	q->flush.data = q;
}

void etcd_emit(struct etcd_events *q, int kind, int64_t num, const char *str, void *hold)
{
	struct etcd_event *e = calloc(1, sizeof(*e));

	if (e == NULL || (str && (e->str = strdup(str)) == NULL)) {
		free(e);
		log_error("etcd: out of memory: an event is lost");
		return;
	}
	e->kind = kind;
	e->num = num;
	e->hold = hold;
	e->gen = q->gen;
	if (q->tail)
		q->tail->next = e;
	else
		q->head = e;
	q->tail = e;
	if (!ev_is_active(&q->flush)) {
		ev_timer_set(&q->flush, 0.0, 0.0);
		ev_timer_start(q->loop, &q->flush);
	}
}

void election_deliver(const struct etcd_events *q, const struct backend_events *ev, void *ctx,
                      const struct etcd_event *e)
{
	if (e->kind != EV_CLOSED && e->gen != q->gen)
		return;
	switch ((enum election_event)e->kind) {
	case EV_ALIVE:   ev->session_alive(ctx, e->num); break;
	case EV_FAILED:  ev->session_failed(ctx, e->str); break;
	case EV_ELECTED: ev->elected(ctx, (uint64_t)e->num, e->str); break;
	case EV_LOST:    ev->lost(ctx, e->str); break;
	case EV_LEADER:  ev->leader(ctx, e->str); break;
	case EV_CLOSED:  ev->closed(ctx); break;
	}
}

void lock_deliver(const struct etcd_events *q, const struct lock_events *ev, void *ctx,
                  const struct etcd_event *e)
{
	if (e->hold != NULL && e->gen != q->gen)
		return;
	switch ((enum lock_event_kind)e->kind) {
	case LK_ALIVE:     ev->session_alive(ctx, e->num); break;
	case LK_FAILED:    ev->session_failed(ctx, e->str); break;
	case LK_LOST:      ev->session_lost(ctx, e->str); break;
	case LK_GRANTED:   ev->granted(ctx, e->hold, (uint64_t)e->num); break;
	case LK_HOLD_LOST: ev->hold_lost(ctx, e->hold, e->str); break;
	case LK_CLOSED:    ev->closed(ctx); break;
	case LK_QUEUED:
		if (ev->queued)
			ev->queued(ctx, e->hold);
		break;
	}
}

void election_report_leader(struct etcd_events *q, char **leader, bool *known, const char *id)
{
	if (*known && (*leader == id || (*leader && id && strcmp(*leader, id) == 0)))
		return;
	free(*leader);
	*leader = id ? strdup(id) : NULL;
	*known = true;
	etcd_emit(q, EV_LEADER, 0, id, NULL);
}

void etcd_events_forget(struct etcd_events *q, const void *hold)
{
	struct etcd_event **pp = &q->head;

	q->tail = NULL;
	while (*pp != NULL) {
		struct etcd_event *e = *pp;
		if (e->hold == hold) {
			*pp = e->next;
			free(e->str);
			free(e);
		} else {
			q->tail = e;
			pp = &e->next;
		}
	}
}

void etcd_events_destroy(struct etcd_events *q)
{
	if (q->in_flush)
		q->free_pending = true;   /* called from an event: free after it */
	else
		q->free_owner(q->owner);
}

void etcd_events_free(struct etcd_events *q)
{
	if (q->loop)
		ev_timer_stop(q->loop, &q->flush);
	while (q->head) {
		struct etcd_event *e = q->head;
		q->head = e->next;
		free(e->str);
		free(e);
	}
	q->tail = NULL;
}

/* ---- watching keys for deletion ---- */

static int watch_line(const char *line, size_t len, void *arg)
{
	struct etcd_watch *w = arg;

	if (etcd_parse_watch_line(line, len) == ETCD_WATCH_NOTHING)
		return 0;
	w->fired = true;   /* deleted, canceled or garbage: check again */
	return 1;          /* ends the transfer; watch_done runs from the loop */
}

static void watch_done(struct etcd_req *r, const json_t *ans, const char *err)
{
	struct etcd_watch *w = r->owner;
	bool fired = w->fired;

	(void)ans;
	(void)err;
	w->fired = false;
	w->done(w->owner, fired);
}

void etcd_watch_init(struct etcd_watch *w, struct etcd_client *c,
                     void (*done)(void *owner, bool fired), void *owner)
{
	memset(w, 0, sizeof(*w));
	etcd_req_init(c, &w->r, w, "watch", watch_done);
	w->r.stream = true;
	w->r.on_line = watch_line;
	w->done = done;
	w->owner = owner;
}

static char *join_keys(char *const *keys, size_t n)
{
	size_t len = 1;
	char *out, *p;

	for (size_t i = 0; i < n; i++)
		len += strlen(keys[i]) + 1;
	if ((p = out = malloc(len)) == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "%s\n", keys[i]);
	*p = '\0';
	return out;
}

int etcd_watch_start(struct etcd_watch *w, char *const *keys, size_t n, int64_t start_rev)
{
	char *joined = join_keys(keys, n), *body;

	if (joined != NULL && w->r.busy && w->keys && strcmp(joined, w->keys) == 0) {
		free(joined);      /* the same keys, still watched */
		return 0;
	}
	etcd_watch_stop(w);
	body = etcd_body_watch_keys((const char *const *)keys, n, start_rev);
	if (joined == NULL || body == NULL) {
		free(joined);
		free(body);
		return -1;
	}
	w->keys = joined;
	etcd_req_send(&w->r, "/v3/watch", body);
	return 0;
}

void etcd_watch_stop(struct etcd_watch *w)
{
	etcd_req_cancel(&w->r);
	free(w->keys);
	w->keys = NULL;
	w->fired = false;
}

void etcd_watch_free(struct etcd_watch *w)
{
	etcd_watch_stop(w);
	etcd_req_free(&w->r);
}

char *etcd_key_prefix(const char *path, const char *name)
{
	size_t n = strlen(path);
	char *prefix;

	while (n > 0 && path[n - 1] == '/')
		n--;
	if (n == 0) {
		path = name ? name : "";
		n = strlen(path);
	}
	if (n == 0 || asprintf(&prefix, "%.*s/", (int)n, path) < 0)
		return NULL;
	return prefix;
}
