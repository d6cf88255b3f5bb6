/* Kubernetes lock backend for lockd: each lock a coordination.k8s.io Lease
 * in client-go's LeaseLock format, so that a client-go candidate (tools/
 * leaderelection) on the same Lease and lockd exclude each other.
 *
 *   layout    k8s://[HOST:PORT]/NAMESPACE[/PREFIX]: lock NAME is Lease
 *             PREFIX-NAME (NAME without a prefix); a semaphore of N has slot
 *             Leases PREFIX-NAME-K, K = 0..N-1. lockd's Leases carry the
 *             annotations elect.io/lock: NAME and elect.io/limit: N; a held
 *             Lease of the name with another limit is a limit conflict.
 *   holder    holderIdentity = lockd's id; a hold knows its Lease by the
 *             resourceVersion of its last write (two holds of one lockd may
 *             hold two slots; a Lease naming our id with another version is
 *             someone else's, an earlier lockd's say).
 *   acquire   a missing Lease is created (POST), an unheld one (holderIdentity
 *             "") taken with PUT on the resourceVersion read; a held one only
 *             after its record stayed unchanged for its leaseDurationSeconds
 *             on our monotonic clock, from when we received it (never a
 *             comparison of renewTime with our wall clock). 409: read again.
 *   waiting   queued() at once; the session's watch on the namespace tells
 *             of releases, the takeover timer of expiries. Order is a FIFO
 *             per name within one lockd only: there is no queue across
 *             nodes (whoever writes first after a release wins).
 *   token     (M + 1) * N + K, M the highest leaseTransitions among the
 *             name's Leases when deciding (deleted ones remembered); the
 *             write sets leaseTransitions = M + 1. For a lock (N = 1) that is
 *             leaseTransitions itself, which client-go raises at every change
 *             of holder, so tokens grow across every holder. A semaphore's
 *             slots are written independently (each PUT is conditional on
 *             its own Lease only): its tokens are unique and grow per slot,
 *             and across slots as far as the view was current.
 *   renew     the session's round: a PUT of every held Lease with a new
 *             renewTime (k8s_lock_session.c reports the deadline).
 *   release   as client-go's ReleaseOnCancel: holderIdentity "",
 *             leaseDurationSeconds 1, on our resourceVersion (409: read; still
 *             our term: release again, else nothing is ours).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/k8s_lock.h"
#include "common/clock.h"
#include "common/log.h"

static void send_release(struct lock_hold *h);
static void send_reread(struct lock_hold *h);

/* ---- small helpers ---- */

static void set_str(char **dst, const char *src)
{
	free(*dst);
	*dst = src ? strdup(src) : NULL;
}

/* After a failure: nothing is tried for this hold until then (a takeover
 * timer, by contrast, gives way to any news: k8s_hold_decide). */
static void back_off(struct lock_hold *h, int64_t in_ns)
{
	h->backing_off = true;
	ev_timer_stop(h->s->loop, &h->retry);
	ev_timer_set(&h->retry, clock_ns_to_ev(in_ns > 0 ? in_ns : 0), 0.);
	ev_timer_start(h->s->loop, &h->retry);
}

static void retry_later(struct lock_hold *h, int64_t in_ns)
{
	ev_timer_stop(h->s->loop, &h->retry);
	ev_timer_set(&h->retry, clock_ns_to_ev(in_ns > 0 ? in_ns : 0), 0.);
	ev_timer_start(h->s->loop, &h->retry);
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct lock_hold *h = w->data;

	(void)loop;
	(void)revents;
	h->backing_off = false;
	if (h->state == KH_RELEASING)
		send_release(h);
	else if (h->state == KH_WRITING)
		send_reread(h);          /* after a write whose answer did not come */
	else
		k8s_lock_kick(h->s);
}

void k8s_hold_free(struct lock_hold *h)
{
	struct lock_session *s = h->s;

	etcd_events_forget(&s->q, h);
	ev_timer_stop(s->loop, &h->retry);
	k8s_req_free(&h->r);
	TAILQ_REMOVE(&s->holds, h, link);
	free(h->name);
	free(h->lease);
	free(h->rv);
	json_decref(h->obj);
	free(h);
	k8s_lock_kick(s);            /* the next in line may go on */
}

/* The hold is lost (or, waiting, fails) with reason; logged by the caller. */
static void lose_quiet(struct lock_hold *h, const char *reason)
{
	k8s_req_cancel(&h->r);
	ev_timer_stop(h->s->loop, &h->retry);
	h->state = KH_DEAD;
	h->unsure_sent_ns = 0;
	json_decref(h->obj);         /* nothing of ours to release */
	h->obj = NULL;
	k8s_lock_emit(h->s, LK_HOLD_LOST, 0, reason, h);
}

static void lose(struct lock_hold *h, const char *reason)
{
	log_warnx("k8s: lock %s: %s", h->name, reason);
	lose_quiet(h, reason);
}

static void queued(struct lock_hold *h)
{
	if (!h->queued_sent) {
		h->queued_sent = true;
		k8s_lock_emit(h->s, LK_QUEUED, 0, NULL, h);
	}
}

/* Our write's answer: the hold's version and object, and the view. */
static int take_answer(struct lock_hold *h, struct k8s_req *r)
{
	json_t *doc = json_loadb(r->resp, r->resp_len, 0, NULL);
	json_t *rv = json_object_get(json_object_get(doc, "metadata"), "resourceVersion");

	if (!json_is_string(rv)) {
		json_decref(doc);
		return -1;
	}
	set_str(&h->rv, json_string_value(rv));
	json_decref(h->obj);
	h->obj = doc;
	k8s_seen_observe_json(h->s, r->resp, r->resp_len);
	return 0;
}

/* The Lease as read shows our term (holder, transitions and acquireTime as
 * we wrote them): a write of ours whose answer was lost went through. */
static bool our_term(const struct lock_hold *h, const struct k8s_seen *e)
{
	return e != NULL && !e->absent && strcmp(e->l.holder, h->s->id) == 0 &&
	       e->l.transitions == h->transitions && e->l.acquire_time != NULL &&
	       strcmp(e->l.acquire_time, h->acquire_time) == 0;
}

/* A refusal or another answer that is not the one asked for. A 401 or 403
 * on a hold's write is not transient: the hold fails with the line. While
 * an acquire's outcome is unknown (the re-read refused) the hold stays
 * KH_WRITING and reads again after the pause, never waits anew; released
 * by lockd meanwhile, it is dropped (a Lease it may have got expires after
 * its duration) and lockd, which forgot it, hears nothing. */
static void hold_refused(struct lock_hold *h, long status)
{
	char line[900];

	k8s_lock_refused(h->s, &h->r, status, line, sizeof(line));   /* logged once */
	if (h->release_wanted) {
		k8s_hold_free(h);
		return;
	}
	if (status == 401 || status == 403) {
		lose_quiet(h, line);
		k8s_lock_update_alive(h->s);
		return;
	}
	if (h->unsure_sent_ns != 0) {
		h->state = KH_WRITING;
		back_off(h, k8s_req_retry_ns(&h->r));
		return;
	}
	h->state = KH_PENDING;
	back_off(h, k8s_req_retry_ns(&h->r));
}

static void write_adopt(struct lock_hold *h, struct k8s_seen *e)
{
	set_str(&h->rv, e->l.rv);
	json_decref(h->obj);
	h->obj = json_deep_copy(e->l.obj);
}

/* ---- granting ---- */

static void granted(struct lock_hold *h, int64_t sent_ns)
{
	h->state = KH_GRANTED;
	h->visible_ns = sent_ns;
	h->unsure_sent_ns = 0;
	snprintf(h->visible_sec, sizeof(h->visible_sec), "%s", h->pending_sec);
	h->token = (uint64_t)h->transitions * h->limit + h->slot;
	log_debug("k8s: lock %s: holding Lease %s/%s, leaseTransitions %" PRId64 ", token %" PRIu64,
	          h->name, h->s->ns, h->lease, h->transitions, h->token);
	k8s_lock_emit(h->s, LK_GRANTED, (int64_t)h->token, NULL, h);
	k8s_lock_update_alive(h->s);
}

/* The Lease is ours: granted, or released at once if lockd let the hold
 * go meanwhile. */
static void won(struct lock_hold *h, int64_t sent_ns)
{
	if (h->release_wanted) {
		h->unsure_sent_ns = 0;
		h->state = KH_RELEASING;
		send_release(h);
		return;
	}
	granted(h, sent_ns);
}

/* After a write whose outcome is not known: read the Lease. */
static void reread_done(struct k8s_req *r, long status, const char *err)
{
	struct lock_hold *h = r->owner;
	struct k8s_seen *e = NULL;

	if (err != NULL) {
		back_off(h, k8s_req_retry_ns(r));       /* still unsure: read again */
		return;
	}
	if (status == 200)
		e = k8s_seen_observe_json(h->s, r->resp, r->resp_len);
	else if (status == 404)
		k8s_seen_deleted(h->s, h->lease);
	else {
		hold_refused(h, status);
		return;
	}
	if (our_term(h, e)) {
		write_adopt(h, e);
		won(h, h->unsure_sent_ns);
		return;
	}
	h->unsure_sent_ns = 0;
	if (h->release_wanted) {
		k8s_hold_free(h);
		return;
	}
	h->state = KH_PENDING;
	k8s_lock_update_alive(h->s);
	k8s_lock_kick(h->s);
}

static void send_reread(struct lock_hold *h)
{
	char esc[K8S_NAME_MAX * 3 + 1];

	k8s_url_escape(h->lease, esc, sizeof(esc));
	h->state = KH_WRITING;
	k8s_req_send(&h->r, "read", reread_done, "GET", NULL, 0, K8S_LEASES "/%s", h->s->ns_esc, esc);
}

static void write_done(struct k8s_req *r, long status, const char *err)
{
	struct lock_hold *h = r->owner;

	if (err != NULL) {
		/* It may have gone through: read it (after the pause) before
		 * anything else; its send time counts until then. */
		k8s_lock_emit(h->s, LK_FAILED, 0, err, NULL);
		h->state = KH_WRITING;
		back_off(h, k8s_req_retry_ns(r));
		return;
	}
	if (status == 200 || status == 201) {
		if (take_answer(h, r) < 0) {
			send_reread(h);
			return;
		}
		won(h, r->sent_ns);
		return;
	}
	h->unsure_sent_ns = 0;
	if (h->release_wanted) {
		k8s_hold_free(h);
		return;
	}
	if (status == 409) {
		/* Someone wrote (or made) it first: read it again, then decide. */
		k8s_lock_update_alive(h->s);
		send_reread(h);
		return;
	}
	if (status == 404) {
		k8s_seen_deleted(h->s, h->lease);
		h->state = KH_PENDING;
		k8s_lock_update_alive(h->s);
		k8s_lock_kick(h->s);
		return;
	}
	k8s_lock_update_alive(h->s);
	hold_refused(h, status);
}

/* Writes us into slot `slot` as leaseTransitions `transitions`: a POST of a
 * new Lease, or a PUT over the one seen. */
static void send_acquire(struct lock_hold *h, unsigned slot, const char *lease,
                         int64_t transitions, const struct k8s_seen *e)
{
	struct lock_session *s = h->s;
	struct k8s_spec sp = { .holder = s->id, .duration_s = s->ttl_s, .transitions = transitions,
	                       .lock_name = h->name, .lock_limit = h->limit };
	char esc[K8S_NAME_MAX * 3 + 1], *body;

	k8s_micro_time(h->acquire_time, sizeof(h->acquire_time));
	sp.acquire_time = sp.renew_time = h->acquire_time;
	snprintf(h->pending_sec, sizeof(h->pending_sec), "%.19s", h->acquire_time);
	h->slot = slot;
	h->transitions = transitions;
	set_str(&h->lease, lease);
	body = e && !e->absent ? k8s_lease_body(e->l.obj, s->ns, lease, e->l.rv, &sp)
	                       : k8s_lease_body(NULL, s->ns, lease, NULL, &sp);
	if (body == NULL || h->lease == NULL) {
		free(body);
		log_warnx("k8s: lock %s: out of memory", h->name);
		back_off(h, s->c.retry_ns);
		return;
	}
	h->state = KH_WRITING;
	if (e && !e->absent) {
		k8s_url_escape(lease, esc, sizeof(esc));
		log_debug("k8s: lock %s: taking Lease %s (held by '%s')", h->name, lease, e->l.holder);
		k8s_req_send(&h->r, "acquire", write_done, "PUT", body, 0, K8S_LEASES "/%s", s->ns_esc,
		             esc);
	} else {
		log_debug("k8s: lock %s: creating Lease %s", h->name, lease);
		k8s_req_send(&h->r, "create", write_done, "POST", body, 0, K8S_LEASES, s->ns_esc);
	}
	free(body);
	if (h->r.busy)
		h->unsure_sent_ns = h->r.sent_ns;
	else {
		h->state = KH_PENDING;
		back_off(h, s->c.retry_ns);
	}
}

/* ---- deciding ---- */

/* Holds of this lockd for h's name: waiting before it (ahead), using a slot
 * (busy: writing or holding; releasing: soon free); used[] marks the slots. */
static void local_view(const struct lock_hold *h, unsigned *ahead, unsigned *busy,
                       unsigned *releasing, bool *used)
{
	const struct lock_hold *o;
	bool before = true;

	*ahead = *busy = *releasing = 0;
	/* A hold of this name with another limit still releasing here: its
	 * Lease would look like a limit conflict; wait for it (lockd refused
	 * other limits while it was held). */
	TAILQ_FOREACH(o, &h->s->holds, link) {
		if (o == h) {
			before = false;
			continue;
		}
		if (strcmp(o->name, h->name) != 0)
			continue;
		if (o->state == KH_WRITING || o->state == KH_GRANTED || o->state == KH_RELEASING) {
			if (o->state == KH_RELEASING)
				*releasing += o->limit == h->limit ? 1 : h->limit;
			else
				(*busy)++;
			if (o->lease != NULL && o->slot < h->limit && o->limit == h->limit)
				used[o->slot] = true;
		} else if (o->state == KH_PENDING && before) {
			(*ahead)++;
		}
	}
}

/* A held Lease of this name with another limit. */
static const struct k8s_seen *conflict(const struct lock_hold *h)
{
	const struct lock_session *s = h->s;

	for (size_t i = 0; i < s->n_seen; i++) {
		const struct k8s_seen *e = s->seen[i];
		if (!e->absent && e->l.holder[0] != '\0' && e->l.lock_name != NULL &&
		    strcmp(e->l.lock_name, h->name) == 0 && e->l.lock_limit != 0 &&
		    e->l.lock_limit != h->limit)
			return e;
	}
	return NULL;
}

void k8s_hold_decide(struct lock_hold *h)
{
	struct lock_session *s = h->s;
	bool *used;
	unsigned ahead, busy, releasing, pick = 0, take = 0;
	bool have_pick = false, have_take = false;
	int64_t now = clock_now_ns(), earliest = INT64_MAX, max_tr = 0;
	char lease[K8S_NAME_MAX + 1], why[400];
	const struct k8s_seen *c;

	if (h->state != KH_PENDING || h->r.busy || h->backing_off || !s->up || !s->loaded)
		return;
	/* A fresh view (listed, watched), or the last one while the watch
	 * fails: the writes are on resourceVersions, stale only costs a 409. */
	if (!s->live && !ev_is_active(&s->view_timer))
		return;
	ev_timer_stop(s->loop, &h->retry);      /* a takeover timer: decided anew now */
	if ((used = calloc(h->limit, sizeof(*used))) == NULL)
		return;
	local_view(h, &ahead, &busy, &releasing, used);
	if (ahead + busy + releasing >= h->limit) {
		free(used);
		/* A slot being released here is free in a moment: no queue. */
		if (ahead + busy >= h->limit)
			queued(h);
		return;
	}
	if ((c = conflict(h)) != NULL) {
		snprintf(why, sizeof(why), "semaphore limit conflict: Lease %s/%s holds %s with a limit "
		         "of %u, asked for %u", s->ns, c->name, h->name, c->l.lock_limit, h->limit);
		free(used);
		lose(h, why);
		return;
	}
	for (unsigned k = 0; k < h->limit; k++) {
		const struct k8s_seen *e;
		k8s_lock_lease_name(s, h->name, h->limit, k, lease, sizeof(lease));
		e = k8s_seen_find(s, lease);
		if (e && e->max_transitions > max_tr)
			max_tr = e->max_transitions;
		if (used[k])
			continue;
		if (e && !e->absent && e->l.lock_name && strcmp(e->l.lock_name, h->name) != 0)
			continue;   /* another lock's Lease by that name ("a-0" vs slot 0 of "a") */
		if (e == NULL || e->absent) {
			if (e && now < e->create_after_ns) {
				earliest = e->create_after_ns < earliest ? e->create_after_ns : earliest;
				continue;
			}
		} else if (e->l.holder[0] != '\0') {
			int64_t dur = (e->l.duration_s > 0 ? e->l.duration_s : s->ttl_s) * NS_PER_SEC;
			if (now < e->observed_ns + dur) {
				earliest = e->observed_ns + dur < earliest ? e->observed_ns + dur : earliest;
				continue;
			}
			if (!have_take) {
				have_take = true;
				take = k;
			}
			continue;
		}
		if (!have_pick) {
			have_pick = true;
			pick = k;
		}
	}
	free(used);
	if (!have_pick && have_take) {
		const struct k8s_seen *e;
		pick = take;
		have_pick = true;
		k8s_lock_lease_name(s, h->name, h->limit, pick, lease, sizeof(lease));
		e = k8s_seen_find(s, lease);
		log_info("k8s: lock %s: Lease %s held by '%s' unchanged for %" PRId64 "s: taking it over",
		         h->name, lease, e->l.holder, e->l.duration_s > 0 ? e->l.duration_s : s->ttl_s);
	}
	if (!have_pick) {
		queued(h);
		if (earliest != INT64_MAX)
			retry_later(h, earliest - now);
		return;
	}
	k8s_lock_lease_name(s, h->name, h->limit, pick, lease, sizeof(lease));
	send_acquire(h, pick, lease, max_tr + 1, k8s_seen_find(s, lease));
}

/* ---- renewing ---- */

static void renew_reread_done(struct k8s_req *r, long status, const char *err)
{
	struct lock_hold *h = r->owner;
	struct k8s_seen *e = NULL;
	char why[300];

	if (h->state != KH_GRANTED)
		return;
	if (err != NULL) {
		k8s_lock_emit(h->s, LK_FAILED, 0, err, NULL);
		return;                      /* the next round tries again */
	}
	if (status == 404) {
		k8s_seen_deleted(h->s, h->lease);
		lose(h, "its Lease was deleted");
		return;
	}
	if (status != 200) {
		k8s_lock_refused(h->s, r, status, why, sizeof(why));
		k8s_lock_emit(h->s, LK_FAILED, 0, why, NULL);
		return;
	}
	e = k8s_seen_observe_json(h->s, r->resp, r->resp_len);
	if (our_term(h, e)) {
		/* A renewal of ours whose answer was lost: what client-go sees
		 * now is its renewTime second. A later renewal in that second is
		 * invisible; visible_ns stays that of the write before (earlier,
		 * so the deadline only errs early). */
		const char *rt;
		write_adopt(h, e);
		rt = json_string_value(json_object_get(json_object_get(h->obj, "spec"), "renewTime"));
		snprintf(h->visible_sec, sizeof(h->visible_sec), "%.19s", rt ? rt : "");
		return;
	}
	snprintf(why, sizeof(why), "its Lease %s was taken over (holder now '%.100s')", h->lease,
	         e ? e->l.holder : "");
	lose(h, why);
}

static void renew_done(struct k8s_req *r, long status, const char *err)
{
	struct lock_hold *h = r->owner;
	char esc[K8S_NAME_MAX * 3 + 1], why[900];

	if (h->state != KH_GRANTED)
		return;
	if (err != NULL) {
		k8s_lock_emit(h->s, LK_FAILED, 0, err, NULL);
		return;
	}
	if (status == 200) {
		if (take_answer(h, r) == 0 && strcmp(h->pending_sec, h->visible_sec) != 0) {
			/* client-go sees renewTime to the second: a renewal in the
			 * same second as the last one is invisible to it. */
			snprintf(h->visible_sec, sizeof(h->visible_sec), "%s", h->pending_sec);
			h->visible_ns = r->sent_ns;
		}
		k8s_lock_update_alive(h->s);
		return;
	}
	if (status == 409) {
		k8s_url_escape(h->lease, esc, sizeof(esc));
		k8s_req_send(&h->r, "read", renew_reread_done, "GET", NULL, 0, K8S_LEASES "/%s",
		             h->s->ns_esc, esc);
		return;
	}
	if (status == 404) {
		k8s_seen_deleted(h->s, h->lease);
		lose(h, "its Lease was deleted");
		return;
	}
	k8s_lock_refused(h->s, r, status, why, sizeof(why));
	k8s_lock_emit(h->s, LK_FAILED, 0, why, NULL);
}

void k8s_hold_renew(struct lock_hold *h)
{
	struct lock_session *s = h->s;
	struct k8s_spec sp = { .holder = s->id, .duration_s = s->ttl_s, .transitions = h->transitions,
	                       .acquire_time = h->acquire_time, .lock_name = h->name,
	                       .lock_limit = h->limit };
	char esc[K8S_NAME_MAX * 3 + 1], now[48], *body;

	if (h->state != KH_GRANTED || h->r.busy || h->obj == NULL)
		return;
	k8s_micro_time(now, sizeof(now));
	sp.renew_time = now;
	snprintf(h->pending_sec, sizeof(h->pending_sec), "%.19s", now);
	if ((body = k8s_lease_body(h->obj, s->ns, h->lease, h->rv, &sp)) == NULL)
		return;
	k8s_url_escape(h->lease, esc, sizeof(esc));
	k8s_req_send(&h->r, "renew", renew_done, "PUT", body, 0, K8S_LEASES "/%s", s->ns_esc, esc);
	free(body);
}

/* ---- releasing ---- */

static void release_end(struct lock_hold *h, const char *problem)
{
	if (problem)
		log_warnx("k8s: lock %s: releasing Lease %s/%s failed (%s): others take it when its "
		          "leaseDurationSeconds have passed", h->name, h->s->ns, h->lease, problem);
	else
		log_debug("k8s: lock %s: released Lease %s/%s", h->name, h->s->ns, h->lease);
	k8s_hold_free(h);
}

static void release_reread_done(struct k8s_req *r, long status, const char *err)
{
	struct lock_hold *h = r->owner;
	struct k8s_seen *e;

	if (err == NULL && status == 200) {
		e = k8s_seen_observe_json(h->s, r->resp, r->resp_len);
		if (!our_term(h, e)) {
			release_end(h, NULL);    /* nothing of ours left */
			return;
		}
		write_adopt(h, e);
		send_release(h);
		return;
	}
	if (err == NULL && status == 404) {
		k8s_seen_deleted(h->s, h->lease);
		release_end(h, NULL);
		return;
	}
	if (clock_now_ns() >= h->give_up_ns || h->s->closing) {
		release_end(h, err ? err : "unexpected answer");
		return;
	}
	back_off(h, k8s_req_retry_ns(r));
}

static void release_done(struct k8s_req *r, long status, const char *err)
{
	struct lock_hold *h = r->owner;
	char esc[K8S_NAME_MAX * 3 + 1];

	if (err == NULL && status == 200) {
		k8s_seen_observe_json(h->s, r->resp, r->resp_len);
		release_end(h, NULL);
		return;
	}
	if (err == NULL && status == 404) {
		k8s_seen_deleted(h->s, h->lease);
		release_end(h, NULL);
		return;
	}
	if (err == NULL && status == 409) {
		/* A renewal of ours whose answer we did not wait for, or a taker. */
		k8s_url_escape(h->lease, esc, sizeof(esc));
		k8s_req_send(&h->r, "read", release_reread_done, "GET", NULL, 0, K8S_LEASES "/%s",
		             h->s->ns_esc, esc);
		return;
	}
	if (err == NULL || clock_now_ns() >= h->give_up_ns || h->s->closing) {
		release_end(h, err ? err : "unexpected answer");
		return;
	}
	back_off(h, k8s_req_retry_ns(r));
}

static void send_release(struct lock_hold *h)
{
	struct lock_session *s = h->s;
	struct k8s_spec sp = { .holder = "", .duration_s = 1, .transitions = h->transitions,
	                       .acquire_time = h->acquire_time, .lock_name = h->name,
	                       .lock_limit = h->limit };
	char esc[K8S_NAME_MAX * 3 + 1], *body;

	h->state = KH_RELEASING;
	if (h->give_up_ns == 0)
		h->give_up_ns = clock_now_ns() + s->ttl_ns;   /* then it is free for anyone anyway */
	if (h->obj == NULL || (body = k8s_lease_body(h->obj, s->ns, h->lease, h->rv, &sp)) == NULL) {
		release_end(h, "out of memory");
		return;
	}
	k8s_url_escape(h->lease, esc, sizeof(esc));
	k8s_req_send(&h->r, "release", release_done, "PUT", body, 0, K8S_LEASES "/%s", s->ns_esc, esc);
	free(body);
	if (!h->r.busy)
		back_off(h, s->c.retry_ns);
}

/* ---- lock_backend_ops ---- */

struct lock_hold *k8s_lock_acquire(struct lock_session *s, const char *name, unsigned limit,
                                   void *hold_ctx)
{
	struct lock_hold *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return NULL;
	h->s = s;
	h->ctx = hold_ctx;
	h->limit = limit > 0 ? limit : 1;
	if ((h->name = strdup(name)) == NULL) {
		free(h);
		return NULL;
	}
	h->state = s->closing ? KH_DEAD : KH_PENDING;
	k8s_req_init(&s->c, &h->r, h);
	ev_init(&h->retry, retry_cb);
	h->retry.data = h;
	TAILQ_INSERT_TAIL(&s->holds, h, link);
	k8s_lock_kick(s);
	return h;
}

void k8s_lock_release(struct lock_hold *h)
{
	if (h == NULL)
		return;
	etcd_events_forget(&h->s->q, h);
	switch (h->state) {
	case KH_GRANTED:
		k8s_req_cancel(&h->r);       /* a renewal in flight: the release replaces it */
		ev_timer_stop(h->s->loop, &h->retry);
		if (h->s->closing) {
			k8s_hold_free(h);
			return;
		}
		send_release(h);
		break;
	case KH_WRITING:
		/* Its write may go through: release after the answer. */
		h->release_wanted = true;
		break;
	case KH_RELEASING:
		break;
	case KH_DEAD:
		/* After session_lost: lockd revoked it, the Lease may still be
		 * ours (the release is on our resourceVersion): free it now
		 * rather than after its duration. */
		if (h->obj != NULL && h->lease != NULL && !h->s->closing) {
			send_release(h);
			break;
		}
		k8s_hold_free(h);
		break;
	default:
		k8s_hold_free(h);
		break;
	}
}

void *k8s_lock_hold_ctx(const struct lock_hold *h)
{
	return h->ctx;
}
