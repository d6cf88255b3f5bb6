/* Kubernetes backend: client-go's leader election on a coordination.k8s.io
 * Lease (tools/leaderelection with a LeaseLock), so that Go controllers and
 * elect share one election.
 *
 *   URL       k8s://[HOST:PORT]/NAMESPACE/NAME (or /NAME: the namespace of
 *             the kubeconfig's context or of the pod); where the API server
 *             is and who we are: k8s_conn.h
 *   read      GET the Lease; a missing one is created (POST) with us as
 *             holder; every change afterwards comes from a watch on the one
 *             object (fieldSelector metadata.name), never from polling
 *   acquire   PUT with the resourceVersion read (409 = someone wrote: read
 *             again): holderIdentity = our id, leaseDurationSeconds = TTL,
 *             acquireTime = renewTime = now (MicroTime), leaseTransitions + 1.
 *             An unheld Lease (holderIdentity "") at once; a held one only
 *             after its record stayed unchanged for its leaseDurationSeconds
 *             on our monotonic clock, counted from when we received it (never
 *             a comparison of renewTime with our wall clock)
 *   renew     PUT with our last resourceVersion and a new renewTime: client-go
 *             peers judge liveness by the record changing as THEY see it,
 *             with renewTime cut to whole seconds (metav1.Time). So the send
 *             time we report alive is that of the last write whose renewTime
 *             second (or holder) changed: a renewal in the same wall second
 *             as the one before is invisible to them and does not move our
 *             deadline (send time + TTL - margin, the core's). --renew is at
 *             least 1 s, so each renewal but one right after an acquire is
 *             seen. A peer that takes over waits leaseDurationSeconds from
 *             when it received a record that changed, after we sent it.
 *   deleted   a Lease deleted while held is made again only after the last
 *             record's leaseDurationSeconds from when the deletion was seen
 *             (its holder may lead on until its next renewal fails), with
 *             leaseTransitions above every value seen, so tokens never go
 *             back
 *   release   as client-go's ReleaseOnCancel: holderIdentity "", duration 1
 *   token     leaseTransitions as we wrote it: +1 on every acquisition of
 *             ours, +1 on every change of holder by client-go, so it grows
 *             across all holders
 *   handover  (resign --to) the release carries the record in the annotation
 *             K8S_HANDOVER_ANNOTATION; the next acquire (from the same read)
 *             reports it and drops it; a candidate that stands aside puts it
 *             back with its release
 *
 * Events go through the etcd backend's queue (etcd_session.c), flushed by a
 * zero timer: never from inside the operation, nor from libcurl's callbacks.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/etcd.h"         /* the event queue */
#include "backends/k8s.h"
#include "common/clock.h"
#include "common/log.h"

#define LEASES K8S_LEASES
/* A watch ends (server side) after this; it is started again at once. */
#define WATCH_SECONDS 290
#define NAME_MAX_LEN 253
/* After a 409 on our acquire, how long the watch has to bring the record
 * that beat us before we read it ourselves. */
#define CONFLICT_WATCH_NS (NS_PER_SEC)

struct k8s {
	struct backend_params p;
	struct ev_loop *loop;
	struct k8s_client c;
	char *ns, *name;           /* as given */
	char *ns_esc, *name_esc;   /* %-escaped for paths */
	int64_t ttl_s;

	bool campaigning, leading, closing, closed_sent;
	/* What client-go peers see of our writes: the renewTime second of the
	 * last write that changed it, and that write's send time. */
	char visible_sec[24];
	int64_t visible_sent_ns;
	char pending_sec[24];      /* of the write in flight */
	int64_t max_transitions;   /* highest leaseTransitions seen */
	int64_t deleted_wait_until_ns; /* a deleted held Lease: create no sooner */
	char *watch_rv;            /* where the watch goes on from (bookmarks too) */
	bool need_read;            /* the next step reads the Lease */
	bool release_pending;      /* a release PUT is to be sent */
	char *release_value;       /* its handover annotation, NULL: none */
	bool renew_conflict;       /* a renewal got 409: the read decides */
	/* Our acquire got 409 while the watch ran: the watch brings what beat
	 * us; read only if it has not by then (0: not waiting). */
	int64_t conflict_wait_until_ns;
	int64_t conflict_sent_ns;  /* that acquire's send time */
	bool acquire_put;          /* the acquire in flight is a PUT (not a create) */

	/* The Lease as last seen (valid when have_cur), and when we first
	 * received its resourceVersion. absent: it does not exist. */
	struct k8s_lease cur;
	bool have_cur, absent;
	int64_t observed_ns;

	/* While leading: what we wrote. */
	int64_t my_transitions;
	char *my_acquire_time;
	char *kept;                /* handover record we were elected with (put back
	                            * by a release until clear_handover) */
	char *acq_record;          /* the record on the Lease our acquire in flight
	                            * replaces (the watch may change cur meanwhile) */

	struct k8s_req r_main;     /* GET, POST, PUT */
	struct k8s_req r_watch;
	struct k8s_req r_clear;    /* the old leader's clear of its record */
	ev_timer timer;            /* retry, takeover */
	ev_timer watch_timer;      /* the watch's own retry */
	ev_timer kick;             /* advance() outside libcurl's callbacks */
	char *leader;
	bool leader_known;
	char last_refusal[900];    /* the last 401/403 logged: one line per change */
	struct etcd_events q;
};

static void advance(struct k8s *b);
static void start_watch(struct k8s *b);
static void acquire_done(struct k8s_req *r, long status, const char *err);

/* ---- events ---- */

static void emit(struct k8s *b, enum election_event kind, int64_t num, const char *str)
{
	etcd_emit(&b->q, kind, num, str, NULL);
}

static void deliver(void *owner, const struct etcd_event *e)
{
	struct k8s *b = owner;

	election_deliver(&b->q, b->p.ev, b->p.ctx, e);
}

static void report_leader(struct k8s *b, const char *holder)
{
	election_report_leader(&b->q, &b->leader, &b->leader_known,
	                       holder && *holder ? holder : NULL);
}

static void kick(struct k8s *b)
{
	if (!ev_is_active(&b->kick)) {
		ev_timer_set(&b->kick, 0., 0.);
		ev_timer_start(b->loop, &b->kick);
	}
}

static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	advance(w->data);
}

static void closed(struct k8s *b)
{
	if (!b->closed_sent) {
		b->closed_sent = true;
		emit(b, EV_CLOSED, 0, NULL);
	}
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	advance(w->data);
}

static void arm(struct k8s *b, int64_t in_ns)
{
	ev_timer_stop(b->loop, &b->timer);
	ev_timer_set(&b->timer, clock_ns_to_ev(in_ns > 0 ? in_ns : 0), 0.);
	ev_timer_start(b->loop, &b->timer);
}

/* ---- what we saw ---- */

static void set_str(char **dst, const char *src)
{
	free(*dst);
	*dst = src ? strdup(src) : NULL;
}

/* A Lease as read (GET, watch, our own writes' answers). The takeover clock
 * restarts when its resourceVersion changes. */
static void observe(struct k8s *b, struct k8s_lease *l)
{
	bool changed = !b->have_cur || strcmp(b->cur.rv, l->rv) != 0;

	if (b->have_cur)
		k8s_lease_free(&b->cur);
	b->cur = *l;
	memset(l, 0, sizeof(*l));
	b->have_cur = true;
	b->absent = false;
	b->deleted_wait_until_ns = 0;
	if (b->cur.transitions > b->max_transitions)
		b->max_transitions = b->cur.transitions;
	set_str(&b->watch_rv, b->cur.rv);
	if (changed)
		b->observed_ns = clock_now_ns();
	/* Our own acquire, seen before its answer: reported with ELECTED. */
	if (!b->leading && !(strcmp(b->cur.holder, b->p.id) == 0 && b->r_main.busy &&
	                     b->r_main.done == acquire_done))
		report_leader(b, b->cur.holder);
}

static void forget(struct k8s *b)
{
	if (b->have_cur)
		k8s_lease_free(&b->cur);
	b->have_cur = false;
}

/* The Lease is gone (DELETED, 404). If it was held, its holder may lead on
 * until its next renewal fails: do not make it again before the last
 * record's duration from now. */
static void deleted(struct k8s *b)
{
	if (b->have_cur && b->cur.holder[0] != '\0' && strcmp(b->cur.holder, b->p.id) != 0)
		b->deleted_wait_until_ns = clock_now_ns() +
			(b->cur.duration_s > 0 ? b->cur.duration_s : b->ttl_s) * NS_PER_SEC;
	forget(b);
	b->absent = true;
	if (!b->leading)
		report_leader(b, NULL);
}

static int observe_json(struct k8s *b, const json_t *obj, const char *what)
{
	struct k8s_lease l;
	char err[160];

	if (k8s_lease_parse(obj, &l, err, sizeof(err)) < 0) {
		log_warnx("k8s: %s: %s", what, err);
		return -1;
	}
	observe(b, &l);
	return 0;
}

static int observe_answer(struct k8s *b, struct k8s_req *r)
{
	json_t *doc = json_loadb(r->resp, r->resp_len, 0, NULL);
	int rc = observe_json(b, doc, r->what);

	json_decref(doc);
	return rc;
}

/* ---- failures ---- */

/* What is missing, for a 401 or 403: the API server's message names the
 * verb and resource; we say what grants it. */
static void refused(struct k8s *b, struct k8s_req *r, long status)
{
	char reason[700], line[900];

	k8s_status_reason(r, status, reason, sizeof(reason));
	k8s_refusal_line(&b->c, r, status, "get, create, update and watch", b->ns,
	                 "deploy/kubernetes/rbac.yaml", line, sizeof(line));
	if (strcmp(line, b->last_refusal) != 0) {
		log_error("%s", line);
		snprintf(b->last_refusal, sizeof(b->last_refusal), "%s", line);
	}
	emit(b, EV_FAILED, 0, reason);
}

/* Any other answer that is not the one asked for (404 of the namespace, 422,
 * ...): reported, retried after the slot's pause. */
static void unexpected(struct k8s *b, struct k8s_req *r, long status)
{
	char reason[700];

	k8s_status_reason(r, status, reason, sizeof(reason));
	log_warnx("k8s: %s: %s", r->what, reason);
	emit(b, EV_FAILED, 0, reason);
}

static void failed(struct k8s *b, struct k8s_req *r, long status, const char *err)
{
	if (b->closing && !b->release_pending) {
		closed(b);               /* close() ends within the request timeout */
		return;
	}
	if (err)
		emit(b, EV_FAILED, 0, err);
	else if (status == 401 || status == 403)
		refused(b, r, status);
	else
		unexpected(b, r, status);
	arm(b, k8s_req_retry_ns(r));
}

/* ---- leading ---- */

static void lose(struct k8s *b, const char *reason)
{
	b->leading = false;
	set_str(&b->kept, NULL);
	emit(b, EV_LOST, 0, reason);
	b->campaigning = false;     /* the core campaigns again */
}

static void put_spec(struct k8s *b, const char *what, k8s_req_done_fn done, const json_t *base,
                     const char *rv, const struct k8s_spec *s)
{
	char now[48], *body;
	struct k8s_spec sp = *s;

	/* client-go sees renewTime to the second: what we write, we remember. */
	k8s_micro_time(now, sizeof(now));
	sp.renew_time = now;
	snprintf(b->pending_sec, sizeof(b->pending_sec), "%.19s", now);
	body = k8s_lease_body(base, b->ns, b->name, rv, &sp);

	if (body == NULL) {
		log_warnx("k8s: %s: out of memory", what);
		arm(b, b->c.retry_ns);
		return;
	}
	if (base == NULL)
		k8s_req_send(&b->r_main, what, done, "POST", body, 0, LEASES, b->ns_esc);
	else
		k8s_req_send(&b->r_main, what, done, "PUT", body, 0, LEASES "/%s", b->ns_esc, b->name_esc);
	free(body);
}

/* The answer to an acquire (POST or PUT) that made us the holder. */
static void now_leading(struct k8s *b, struct k8s_req *r, int64_t transitions, const char *acquired,
                        const char *record)
{
	b->leading = true;               /* observe() reports no leader then */
	if (observe_answer(b, r) < 0) {
		b->leading = false;
		b->need_read = true;
		return;
	}
	b->my_transitions = transitions;
	set_str(&b->my_acquire_time, acquired);
	snprintf(b->visible_sec, sizeof(b->visible_sec), "%s", b->pending_sec);
	b->visible_sent_ns = r->sent_ns;
	if (!b->campaigning) {
		/* resign() or close() came while the acquire was in flight. */
		b->leading = false;
		b->release_pending = true;
		return;
	}
	k8s_req_cancel(&b->r_watch);     /* renewals tell the leader what it needs */
	ev_timer_stop(b->loop, &b->watch_timer);
	set_str(&b->kept, record);
	log_info("k8s: holding Lease %s/%s, leaseTransitions %" PRId64, b->ns, b->name, transitions);
	emit(b, EV_ALIVE, r->sent_ns, NULL);
	emit(b, EV_ELECTED, transitions, record);
	report_leader(b, b->p.id);
}

static void acquire_done(struct k8s_req *r, long status, const char *err)
{
	struct k8s *b = r->owner;
	json_t *doc;
	const char *acq;
	int64_t tr;

	if (err == NULL && (status == 200 || status == 201)) {
		doc = json_loadb(r->resp, r->resp_len, 0, NULL);
		acq = json_string_value(json_object_get(json_object_get(doc, "spec"), "acquireTime"));
		tr = json_integer_value(json_object_get(json_object_get(doc, "spec"), "leaseTransitions"));
		char *acq_copy = acq ? strdup(acq) : NULL;
		json_decref(doc);
		now_leading(b, r, tr, acq_copy, b->acq_record);
		free(acq_copy);
	} else if (err == NULL && status == 409 && b->r_watch.busy && b->acquire_put) {
		/* Someone wrote first, and the watch brings what they wrote:
		 * reading it as well would double what every follower sends
		 * when a Lease many wait on is released. */
		b->conflict_sent_ns = r->sent_ns;
		b->conflict_wait_until_ns = clock_now_ns() + CONFLICT_WATCH_NS;
	} else if (err == NULL && (status == 409 || status == 404)) {
		/* Someone wrote (or created, or deleted) it first: read again. */
		b->need_read = true;
		if (status == 404)
			deleted(b);
	} else {
		failed(b, r, status, err);
		return;
	}
	advance(b);
}

/* Take the Lease: create it (absent) or PUT over what we read. */
static void acquire(struct k8s *b)
{
	struct k8s_spec s = { .holder = b->p.id, .duration_s = b->ttl_s };

	set_str(&b->acq_record, b->have_cur ? b->cur.handover : NULL);
	/* A create's 409 is followed by a read: "absent" is no news then. */
	b->acquire_put = b->have_cur;
	if (!b->have_cur) {
		s.transitions = b->max_transitions + 1;
		log_info("k8s: creating Lease %s/%s", b->ns, b->name);
		put_spec(b, "create", acquire_done, NULL, NULL, &s);
		return;
	}
	s.transitions = (b->cur.transitions > b->max_transitions ? b->cur.transitions
	                                                         : b->max_transitions) + 1;
	log_debug("k8s: taking Lease %s/%s (held by '%s')", b->ns, b->name, b->cur.holder);
	put_spec(b, "acquire", acquire_done, b->cur.obj, b->cur.rv, &s);
}

static void renew_done(struct k8s_req *r, long status, const char *err)
{
	struct k8s *b = r->owner;

	if (!b->leading) {
		advance(b);
		return;
	}
	if (err == NULL && status == 200) {
		if (observe_answer(b, r) == 0) {
			if (strcmp(b->pending_sec, b->visible_sec) != 0) {
				snprintf(b->visible_sec, sizeof(b->visible_sec), "%s", b->pending_sec);
				b->visible_sent_ns = r->sent_ns;
			}
			/* A renewal in the same second is invisible to client-go:
			 * the deadline stays at the last one it could see. */
			emit(b, EV_ALIVE, b->visible_sent_ns, NULL);
		}
	} else if (err == NULL && status == 409) {
		/* Another write: ours whose answer was lost, or a taker's. */
		b->renew_conflict = true;
		b->need_read = true;
	} else if (err == NULL && status == 404) {
		forget(b);
		b->absent = true;
		lose(b, "the Lease was deleted");
	} else {
		failed(b, r, status, err);
		return;
	}
	advance(b);
}

static void send_renew(struct k8s *b)
{
	struct k8s_spec s = { .holder = b->p.id, .duration_s = b->ttl_s,
	                      .transitions = b->my_transitions, .acquire_time = b->my_acquire_time };

	put_spec(b, "renew", renew_done, b->cur.obj, b->cur.rv, &s);
}

/* After a 409 on a renewal: still ours (the same term: holder, transitions
 * and acquireTime as we wrote them), or taken. */
static void settle_conflict(struct k8s *b)
{
	const char *rt;

	b->renew_conflict = false;
	if (b->have_cur && strcmp(b->cur.holder, b->p.id) == 0 &&
	    b->cur.transitions == b->my_transitions && b->cur.acquire_time && b->my_acquire_time &&
	    strcmp(b->cur.acquire_time, b->my_acquire_time) == 0) {
		/* The record may be a renewal of ours whose answer was lost:
		 * client-go sees its renewTime second, so a renewal of ours in
		 * that same second must not count as seen. Our deadline stays
		 * at the last one we know was seen (sent earlier: safe). */
		rt = json_string_value(json_object_get(json_object_get(b->cur.obj, "spec"),
		                                       "renewTime"));
		if (rt != NULL)
			snprintf(b->visible_sec, sizeof(b->visible_sec), "%.19s", rt);
		send_renew(b);       /* with the resourceVersion just read */
		return;
	}
	log_warnx("k8s: Lease %s/%s was written by someone else (holder now '%s')", b->ns, b->name,
	          b->have_cur ? b->cur.holder : "");
	lose(b, "the Lease was taken over");
}

/* ---- release ---- */

static void release_done(struct k8s_req *r, long status, const char *err)
{
	struct k8s *b = r->owner;

	if (err == NULL && status == 409) {
		b->need_read = true;         /* read, then release again if still ours */
	} else {
		if (err != NULL || (status != 200 && status != 404))
			log_warnx("k8s: releasing Lease %s/%s failed (%s): the next candidate waits "
			          "for it to expire", b->ns, b->name, err ? err : "unexpected answer");
		else if (b->release_value)
			log_info("k8s: released Lease %s/%s with a handover record", b->ns, b->name);
		else
			log_info("k8s: released Lease %s/%s", b->ns, b->name);
		b->release_pending = false;
		set_str(&b->release_value, NULL);
		if (err == NULL && status == 200)
			observe_answer(b, r);
		if (b->closing) {
			closed(b);
			return;
		}
	}
	advance(b);
}

static void send_release(struct k8s *b)
{
	struct k8s_spec s = { .holder = "", .duration_s = 1, .transitions = b->my_transitions,
	                      .handover = b->release_value };

	if (!b->have_cur || strcmp(b->cur.holder, b->p.id) != 0) {
		/* Not ours any more (read after a 409): nothing to release. */
		b->release_pending = false;
		set_str(&b->release_value, NULL);
		if (b->closing)
			closed(b);
		else
			advance(b);
		return;
	}
	put_spec(b, "release", release_done, b->cur.obj, b->cur.rv, &s);
}

/* ---- reading and watching ---- */

static void read_done(struct k8s_req *r, long status, const char *err)
{
	struct k8s *b = r->owner;

	if (err == NULL && status == 200) {
		if (observe_answer(b, r) < 0) {
			arm(b, k8s_req_retry_ns(r));
			return;
		}
		b->need_read = false;
		if (!b->leading && !b->release_pending)
			emit(b, EV_ALIVE, r->sent_ns, NULL);    /* reachable */
	} else if (err == NULL && status == 404) {
		deleted(b);
		b->need_read = false;
	} else {
		failed(b, r, status, err);
		return;
	}
	if (b->renew_conflict && b->leading) {
		settle_conflict(b);
		if (b->r_main.busy)
			return;
	}
	advance(b);
}

static int watch_line(struct k8s_req *r, const char *line, size_t len)
{
	struct k8s *b = r->owner;
	enum k8s_watch_type type;
	json_t *doc, *obj, *rv;
	long code;
	char msg[300];

	if (k8s_watch_parse(line, len, &doc, &type, &obj) < 0) {
		log_debug("k8s: watch: not an event: %.80s", line);
		return 0;
	}
	if (b->leading) {            /* a stale event of the watch before */
		json_decref(doc);
		return 0;
	}
	switch (type) {
	case KW_ADDED:
	case KW_MODIFIED:
		observe_json(b, obj, "watch");
		break;
	case KW_DELETED:
		rv = json_object_get(json_object_get(obj, "metadata"), "resourceVersion");
		deleted(b);
		if (json_is_string(rv))
			set_str(&b->watch_rv, json_string_value(rv));
		break;
	case KW_BOOKMARK:
		/* Only where the watch goes on from: never a PUT's precondition,
		 * and not a change of the record (the takeover clock runs on). */
		rv = json_object_get(json_object_get(obj, "metadata"), "resourceVersion");
		if (json_is_string(rv))
			set_str(&b->watch_rv, json_string_value(rv));
		break;
	case KW_ERROR:
		k8s_status_message(obj, &code, msg, sizeof(msg));
		log_debug("k8s: watch ended by the server: %ld %s", code, msg);
		b->need_read = true;     /* 410 Gone: our resourceVersion is too old */
		break;
	case KW_OTHER:
		break;
	}
	json_decref(doc);
	kick(b);                     /* act outside libcurl's callback */
	return 0;
}

static void watch_done(struct k8s_req *r, long status, const char *err)
{
	struct k8s *b = r->owner;

	if (err == NULL && status == 200 && clock_now_ns() - r->sent_ns >= NS_PER_SEC) {
		kick(b);                 /* the server's timeout: watch again at once */
		return;
	}
	if (err == NULL && status == 410) {
		b->need_read = true;
		kick(b);
		return;
	}
	log_debug("k8s: watch of Lease %s/%s ended: %s", b->ns, b->name,
	          err ? err : status == 200 ? "at once" : "unexpected answer");
	if (err == NULL && (status == 401 || status == 403))
		refused(b, r, status);
	else if (err)
		emit(b, EV_FAILED, 0, err);
	/* Read again after the pause, on a timer of its own: the takeover
	 * timer runs on meanwhile. */
	ev_timer_stop(b->loop, &b->watch_timer);
	ev_timer_set(&b->watch_timer, clock_ns_to_ev(k8s_req_retry_ns(r)), 0.);
	ev_timer_start(b->loop, &b->watch_timer);
}

static void watch_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct k8s *b = w->data;

	(void)loop;
	(void)revents;
	b->need_read = true;
	advance(b);
}

static void start_watch(struct k8s *b)
{
	char sel[NAME_MAX_LEN * 3 + 32], raw[NAME_MAX_LEN + 32], rv[200];

	if (b->r_watch.busy || b->watch_rv == NULL || ev_is_active(&b->watch_timer))
		return;
	snprintf(raw, sizeof(raw), "metadata.name=%s", b->name);
	k8s_url_escape(raw, sel, sizeof(sel));
	k8s_url_escape(b->watch_rv, rv, sizeof(rv));
	k8s_req_stream(&b->r_watch, "watch", watch_line, watch_done,
	               (int64_t)(WATCH_SECONDS + 30) * NS_PER_SEC,
	               LEASES "?watch=1&fieldSelector=%s&resourceVersion=%s&allowWatchBookmarks=true"
	               "&timeoutSeconds=%d", b->ns_esc, sel, rv, WATCH_SECONDS);
}

/* ---- the next step ---- */

static void advance(struct k8s *b)
{
	int64_t now, at, dur;

	if (b->r_main.busy)
		return;
	ev_timer_stop(b->loop, &b->timer);
	if (b->release_pending) {
		if (b->need_read)
			k8s_req_send(&b->r_main, "read", read_done, "GET", NULL, 0, LEASES "/%s", b->ns_esc,
			             b->name_esc);
		else
			send_release(b);
		return;
	}
	if (b->closing) {
		closed(b);               /* nothing left to release */
		return;
	}
	if (!b->campaigning)
		return;
	now = clock_now_ns();
	if (b->conflict_wait_until_ns != 0) {
		if (b->absent || (b->have_cur && b->observed_ns > b->conflict_sent_ns)) {
			b->conflict_wait_until_ns = 0;     /* the watch brought it */
		} else if (now < b->conflict_wait_until_ns && b->r_watch.busy && !b->need_read) {
			arm(b, b->conflict_wait_until_ns - now);
			return;
		} else {
			b->conflict_wait_until_ns = 0;
			b->need_read = true;
		}
	}
	if (b->need_read || (!b->have_cur && !b->absent)) {
		k8s_req_send(&b->r_main, "read", read_done, "GET", NULL, 0, LEASES "/%s", b->ns_esc,
		             b->name_esc);
		return;
	}
	if (b->leading)
		return;                  /* renew() drives the leader */
	if (b->absent && now < b->deleted_wait_until_ns) {
		/* Deleted while held: its holder may still lead. */
		arm(b, b->deleted_wait_until_ns - now);
		start_watch(b);
		return;
	}
	if (b->absent || b->cur.holder[0] == '\0') {
		acquire(b);
		return;
	}
	/* Held: take over only after its record stayed unchanged for its
	 * leaseDurationSeconds, on our clock, from when we received it. */
	dur = (b->cur.duration_s > 0 ? b->cur.duration_s : b->ttl_s) * NS_PER_SEC;
	at = b->observed_ns + dur;
	if (now >= at) {
		log_info("k8s: Lease %s/%s held by '%s' unchanged for %" PRId64 "s: taking it over",
		         b->ns, b->name, b->cur.holder, dur / NS_PER_SEC);
		acquire(b);
		return;
	}
	arm(b, at - now);
	start_watch(b);
}

/* ---- the old leader's clear of its handover record ---- */

static void clear_done(struct k8s_req *r, long status, const char *err)
{
	struct k8s *b = r->owner;

	if (err == NULL && status == 200) {
		log_info("k8s: removed the expired handover record from Lease %s/%s", b->ns, b->name);
		observe_answer(b, r);
	} else {
		log_debug("k8s: could not remove the handover record: %s",
		          err ? err : "conflict or unexpected answer");
	}
}

/* ---- backend_ops ---- */

static void k8s_campaign(struct backend *be)
{
	struct k8s *b = (struct k8s *)be;

	if (b->closing || b->campaigning)
		return;
	b->campaigning = true;
	b->need_read = !b->r_watch.busy;
	b->conflict_wait_until_ns = 0;
	advance(b);
}

static void k8s_renew(struct backend *be)
{
	struct k8s *b = (struct k8s *)be;

	if (b->closing)
		return;
	if (b->leading) {
		if (!b->r_main.busy)
			send_renew(b);
		return;
	}
	/* A follower renews nothing: the watch tells it of every change. If it
	 * is down and nothing is planned, start over. */
	if (b->campaigning && !b->r_main.busy && !b->r_watch.busy && !ev_is_active(&b->timer)) {
		b->need_read = true;
		advance(b);
	}
}

static void stop_election(struct k8s *b, const char *handover)
{
	b->q.gen++;
	b->campaigning = false;
	ev_timer_stop(b->loop, &b->timer);
	ev_timer_stop(b->loop, &b->watch_timer);
	k8s_req_cancel(&b->r_watch);
	if (b->leading) {
		b->leading = false;
		b->release_pending = true;
		set_str(&b->release_value, handover ? handover : b->kept);
		if (b->r_main.busy && b->r_main.done == renew_done)
			k8s_req_cancel(&b->r_main);     /* the release replaces it */
	}
	set_str(&b->kept, NULL);
	/* An acquire in flight may still make us holder: its answer releases. */
	advance(b);
}

static void k8s_resign(struct backend *be)
{
	struct k8s *b = (struct k8s *)be;

	if (!b->closing)
		stop_election(b, NULL);
}

static void k8s_handover(struct backend *be, const char *record)
{
	struct k8s *b = (struct k8s *)be;

	if (!b->closing)
		stop_election(b, record);
}

static void k8s_clear_handover(struct backend *be, const char *record)
{
	struct k8s *b = (struct k8s *)be;
	struct k8s_spec s;

	if (b->closing)
		return;
	if (b->kept && strcmp(b->kept, record) == 0) {
		set_str(&b->kept, NULL);     /* our acquire dropped it: just forget it */
		return;
	}
	/* The old leader at the timeout: the record still on an unheld Lease. */
	if (b->leading || !b->have_cur || b->cur.holder[0] != '\0' || b->cur.handover == NULL ||
	    strcmp(b->cur.handover, record) != 0 || b->r_clear.busy)
		return;
	s = (struct k8s_spec){ .holder = "", .duration_s = b->cur.duration_s > 0 ? b->cur.duration_s : 1,
	                       .transitions = b->cur.transitions, .acquire_time = b->cur.acquire_time };
	char *body = k8s_lease_body(b->cur.obj, b->ns, b->name, b->cur.rv, &s);
	if (body) {
		k8s_req_send(&b->r_clear, "handover clear", clear_done, "PUT", body, 0, LEASES "/%s",
		             b->ns_esc, b->name_esc);
		free(body);
	}
}

static void k8s_close(struct backend *be)
{
	struct k8s *b = (struct k8s *)be;

	if (b->closing)
		return;
	stop_election(b, NULL);
	b->closing = true;
	k8s_req_cancel(&b->r_clear);
	if (!b->release_pending) {
		if (b->r_main.busy && (b->r_main.done == acquire_done)) {
			/* An acquire in flight: its answer releases, then closes. */
			return;
		}
		k8s_req_cancel(&b->r_main);
		closed(b);
	}
}

static void k8s_free(void *owner)
{
	struct k8s *b = owner;

	ev_timer_stop(b->loop, &b->timer);
	ev_timer_stop(b->loop, &b->watch_timer);
	ev_timer_stop(b->loop, &b->kick);
	etcd_events_free(&b->q);
	k8s_req_free(&b->r_main);
	k8s_req_free(&b->r_watch);
	k8s_req_free(&b->r_clear);
	k8s_client_free(&b->c);
	forget(b);
	free(b->ns);
	free(b->name);
	free(b->ns_esc);
	free(b->name_esc);
	free(b->release_value);
	free(b->my_acquire_time);
	free(b->kept);
	free(b->acq_record);
	free(b->watch_rv);
	free(b->leader);
	free(b);
}

static void k8s_destroy(struct backend *be)
{
	struct k8s *b = (struct k8s *)be;

	if (b != NULL)
		etcd_events_destroy(&b->q);
}

int k8s_check_timing(const struct backend_params *p, char *err, size_t errlen)
{
	if (p->ttl_ns % NS_PER_SEC != 0 || p->ttl_ns < NS_PER_SEC) {
		snprintf(err, errlen, "k8s: leaseDurationSeconds is whole seconds: use a TTL like 15s");
		return -1;
	}
	if (p->request_timeout_ns < 0 || p->request_timeout_ns >= p->ttl_ns) {
		snprintf(err, errlen, "k8s: the request timeout must be positive and shorter than the TTL");
		return -1;
	}
	if (p->renew_ns < NS_PER_SEC) {
		snprintf(err, errlen, "k8s: --renew must be at least 1s: client-go peers see renewTime "
		         "in whole seconds, so a faster renewal would not count for them");
		return -1;
	}
	return 0;
}

/* Lowercase RFC 1123 subdomain (Lease names), or label (namespaces). */
bool k8s_valid_name(const char *s, size_t max, bool dots)
{
	size_t n = strlen(s);

	if (n == 0 || n > max || s[0] == '-' || s[0] == '.' || s[n - 1] == '-' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
		      (dots && s[i] == '.')))
			return false;
	return true;
}

static int parse_path(struct k8s *b, const char *path, char *err, size_t errlen)
{
	const char *slash = strchr(path, '/');
	char *ns = NULL, *name = NULL;

	if (slash) {
		ns = strndup(path, (size_t)(slash - path));
		name = strdup(slash + 1);
	} else if (*path) {
		ns = strdup(b->c.conn.namespace ? b->c.conn.namespace : "default");
		name = strdup(path);
	} else if (b->p.name) {
		ns = strdup(b->c.conn.namespace ? b->c.conn.namespace : "default");
		name = strdup(b->p.name);
	}
	if (ns == NULL || name == NULL) {
		free(ns);
		free(name);
		snprintf(err, errlen, "k8s: no Lease named: write k8s:///NAMESPACE/NAME, e.g. "
		         "k8s:///default/my-app");
		return -1;
	}
	b->ns = ns;
	b->name = name;
	if (!k8s_valid_name(ns, 63, false)) {
		snprintf(err, errlen, "k8s: namespace '%s' is not a valid name (lowercase letters, "
		         "digits and '-', at most 63): write k8s:///NAMESPACE/NAME", ns);
		return -1;
	}
	if (!k8s_valid_name(name, NAME_MAX_LEN, true)) {
		snprintf(err, errlen, "k8s: Lease name '%s' is not a valid name: Kubernetes names are "
		         "lowercase letters, digits, '-' and '.' (RFC 1123), e.g. k8s:///%s/my-app",
		         name, ns);
		return -1;
	}
	return 0;
}

static int k8s_create(struct backend **out, const struct backend_params *p, char *err, size_t errlen)
{
	struct k8s *b;
	char *path = NULL, esc[NAME_MAX_LEN * 3 + 1];

	*out = NULL;
	if ((b = calloc(1, sizeof(*b))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	b->p = *p;
	b->loop = p->loop;
	b->ttl_s = p->ttl_ns / NS_PER_SEC;
	ev_init(&b->timer, timer_cb);
	ev_init(&b->watch_timer, watch_timer_cb);
	ev_init(&b->kick, kick_cb);
	b->timer.data = b->watch_timer.data = b->kick.data = b;
	etcd_events_init(&b->q, b->loop, deliver, k8s_free, b);
	if (k8s_check_timing(p, err, errlen) < 0 || k8s_client_init(&b->c, p, &path, err, errlen) < 0)
		goto fail;
	k8s_req_init(&b->c, &b->r_main, b);
	k8s_req_init(&b->c, &b->r_watch, b);
	k8s_req_init(&b->c, &b->r_clear, b);
	if (parse_path(b, path, err, errlen) < 0)
		goto fail;
	k8s_url_escape(b->ns, esc, sizeof(esc));
	b->ns_esc = strdup(esc);
	k8s_url_escape(b->name, esc, sizeof(esc));
	b->name_esc = strdup(esc);
	if (b->ns_esc == NULL || b->name_esc == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	free(path);
	log_debug("k8s: Lease %s/%s on %s (%s)", b->ns, b->name, b->c.conn.server,
	          b->c.conn.source ? b->c.conn.source : "");
	*out = (struct backend *)b;
	return 0;
fail:
	free(path);
	k8s_free(b);
	return -1;
}

const struct backend_ops k8s_backend_ops = {
	.scheme = "k8s",
	.create = k8s_create,
	.campaign = k8s_campaign,
	.renew = k8s_renew,
	.resign = k8s_resign,
	.handover = k8s_handover,
	.clear_handover = k8s_clear_handover,
	.close = k8s_close,
	.destroy = k8s_destroy,
	.check_timing = k8s_check_timing,
};
