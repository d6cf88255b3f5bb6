/* etcd v3 backend: etcd's own concurrency.Election recipe over the JSON
 * gateway, so that `etcdctl elect NAME` and Go programs share elections with us.
 *
 *   session   lease grant (TTL), keepalive on every renew(), revoke on close()
 *   campaign  txn: if create_revision("<prefix>/<lease hex>") == 0 put it
 *             (value = our id, with the lease) else get it
 *   check     txn of three ranges, one consistent view: our key, the lowest
 *             key (the leader, whose value we report), and our predecessor
 *             (highest create revision below ours)
 *   wait      no predecessor: we lead, token = our create revision; else
 *             watch only the predecessor for deletion (no herd effect)
 *
 * handover  resign in favour of a named candidate: one txn puts the record
 *           (common/handover.h) at "<prefix minus '/'>.handover", outside
 *           the election's range, with our lease, and deletes our key; the
 *           check reads it in its own txn, so the view that makes a
 *           candidate leader includes the record left with the release
 *
 * The check also runs on every renew(): it refreshes the observed leader for
 * followers (whose predecessor is not always the leader), catches a deleted
 * key of ours, and backs up a watch stream that died silently. A DELETE event
 * (or the watch stream ending) triggers a check at once.
 *
 * All events go through a queue flushed by a zero timer, so none is ever
 * reported from inside the operation that caused it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/etcd.h"
#include "common/clock.h"
#include "common/log.h"


struct etcd {
	struct backend_params p;
	struct ev_loop *loop;
	struct etcd_client c;
	struct etcd_lease lease;
	/* The election: keys "<prefix>/<lease hex>" (prefix ends in '/'). */
	char *prefix, *my_key;
	char *ho_key;              /* the handover record's key */
	bool ho_denied;            /* no permission on it (auth grants only PREFIX/):
	                            * checks without it, releases without a record */
	char *ho_record;           /* to leave with the pending delete (handover()) */
	struct etcd_req r_ho;      /* clear_handover */
	int64_t my_rev;
	bool campaigning, elected, closing, delete_pending;
	char *leader;              /* last leader() reported; NULL = none */
	bool leader_known;
	struct etcd_watch watch;   /* of the predecessor */
	struct etcd_req r_elect;
	ev_timer retry;
	char grant_err[200];       /* why the last lease grant failed ("" = it did not) */
	/* q.gen drops election events queued before a resign() or close(). */
	struct etcd_events q;
};

static void advance(struct etcd *b);

/* ---- events: queued, delivered from the flush timer ---- */

static void emit(struct etcd *b, enum election_event kind, int64_t num, const char *str)
{
	etcd_emit(&b->q, kind, num, str, NULL);
}

static void deliver(void *owner, const struct etcd_event *e)
{
	struct etcd *b = owner;

	/* Events queued before resign()/close() are stale, except closed. */
	election_deliver(&b->q, b->p.ev, b->p.ctx, e);
}

/* ---- helpers ---- */

static void retry_later(struct etcd *b)
{
	if (!ev_is_active(&b->retry) && !b->closing) {
		ev_timer_set(&b->retry, clock_ns_to_ev(b->c.retry_ns), 0.0);
		ev_timer_start(b->loop, &b->retry);
	}
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	advance(w->data);
}

static void report_leader(struct etcd *b, const char *id)
{
	election_report_leader(&b->q, &b->leader, &b->leader_known, id);
}

/* Our key is gone (or the lease with it): leave the election; the core steps
 * down if it leads and calls campaign() again. */
static void lose(struct etcd *b, const char *reason)
{
	log_warnx("etcd: out of the election (key %s): %s", b->my_key ? b->my_key : "-", reason);
	etcd_req_cancel(&b->r_elect);
	etcd_watch_stop(&b->watch);
	ev_timer_stop(b->loop, &b->retry);
	b->my_rev = 0;
	b->elected = false;
	if (b->campaigning) {
		b->campaigning = false;
		emit(b, EV_LOST, 0, reason);
	}
}

static void lease_gone(void *owner, const char *reason)
{
	struct etcd *b = owner;

	b->lease.id = 0;    /* lose() logs it */
	lose(b, reason);
}

/* ---- session: the lease (etcd_session.c) ---- */

static void lease_granted(void *owner, int64_t sent_ns)
{
	struct etcd *b = owner;

	b->grant_err[0] = '\0';
	free(b->my_key);
	if (asprintf(&b->my_key, "%s%" PRIx64, b->prefix, (uint64_t)b->lease.id) < 0) {
		b->my_key = NULL;
		b->lease.id = 0;    /* out of memory: it expires by its TTL */
		retry_later(b);
		return;
	}
	emit(b, EV_ALIVE, sent_ns, NULL);
	advance(b);
}

/* No session yet: tell the core why (backend reachability while
 * campaigning), then try again. */
static void lease_grant_failed(void *owner, const char *err)
{
	struct etcd *b = owner;

	snprintf(b->grant_err, sizeof(b->grant_err), "lease grant failed: %s", err);
	emit(b, EV_FAILED, 0, b->grant_err);
	retry_later(b);
}

static void lease_alive(void *owner, int64_t sent_ns)
{
	emit(owner, EV_ALIVE, sent_ns, NULL);
}

static void lease_failed(void *owner, const char *err)
{
	emit(owner, EV_FAILED, 0, err);
}

static void lease_closed(void *owner)
{
	emit(owner, EV_CLOSED, 0, NULL);
}

static const struct etcd_lease_events lease_events = {
	.granted = lease_granted,
	.grant_failed = lease_grant_failed,
	.alive = lease_alive,
	.failed = lease_failed,
	.gone = lease_gone,
	.closed = lease_closed,
};

/* ---- election: campaign txn, check, watch, delete ---- */

/* etcd auth that grants only the election's range (PREFIX/) does not cover
 * the record's key next to it: go on without handovers, say so once. */
static void ho_denied(struct etcd *b)
{
	if (!b->ho_denied)
		log_warnx("etcd: no permission on %s: this agent ignores handover records (resign "
		          "--to) and leaves none; grant read and write on it too (e.g. the prefix "
		          "without its '/')", b->ho_key);
	b->ho_denied = true;
}

static void delete_done(struct etcd_req *r, const json_t *ans, const char *err)
{
	struct etcd *b = r->owner;

	(void)ans;
	if (err != NULL) {
		if (r->grpc_code == GRPC_PERMISSION_DENIED && b->ho_record) {
			/* The record's key is outside what we may write: release
			 * without it (the handover becomes a plain resign). */
			ho_denied(b);
			free(b->ho_record);
			b->ho_record = NULL;
			advance(b);
			return;
		}
		retry_later(b);    /* a key left behind would block the election */
		return;
	}
	b->delete_pending = false;
	free(b->ho_record);
	b->ho_record = NULL;
	advance(b);
}

static void campaign_done(struct etcd_req *r, const json_t *ans, const char *err)
{
	struct etcd *b = r->owner;
	char perr[160];
	int64_t rev;

	if (b->delete_pending || !b->campaigning) {
		advance(b);
		return;
	}
	if (err != NULL) {
		if (r->grpc_code == GRPC_NOT_FOUND)
			lease_gone(b, "lease expired");
		else
			retry_later(b);
		return;
	}
	if (etcd_parse_campaign(ans, &rev, perr, sizeof(perr)) < 0) {
		etcd_note_failure(r, perr);
		retry_later(b);
		return;
	}
	b->my_rev = rev;
	log_info("etcd: campaigning as %s with key %s (create revision %" PRId64 ")", b->p.id,
	         b->my_key, rev);
	advance(b);
}

static void watch_done(void *owner, bool fired)
{
	struct etcd *b = owner;

	if (!b->campaigning)
		return;
	if (fired)
		advance(b);
	else
		retry_later(b);    /* the stream broke: check after a pause */
}

static void apply_check(struct etcd *b, const struct etcd_check *c)
{
	if (!c->own_exists) {
		lose(b, "our key was deleted");
		return;
	}
	b->my_rev = c->own_rev;
	if (c->pred_key == NULL) {
		if (!b->elected) {
			b->elected = true;
			etcd_watch_stop(&b->watch);
			log_info("etcd: key %s is the oldest: leading, token %" PRId64, b->my_key, b->my_rev);
			emit(b, EV_ELECTED, b->my_rev, c->handover);
		}
	} else if (b->elected) {
		lose(b, "an older key appeared in the election");
		return;
	} else if (etcd_watch_start(&b->watch, &c->pred_key, 1, c->revision + 1) < 0) {
		retry_later(b);
	}
	report_leader(b, c->leader_id);
}

static void check_done(struct etcd_req *r, const json_t *ans, const char *err)
{
	struct etcd *b = r->owner;
	struct etcd_check c;
	char perr[160];

	if (b->delete_pending || !b->campaigning) {
		advance(b);
		return;
	}
	if (err != NULL) {
		if (r->grpc_code == GRPC_PERMISSION_DENIED && !b->ho_denied) {
			ho_denied(b);      /* check again without the record's key */
			advance(b);
			return;
		}
		retry_later(b);
		return;
	}
	if (etcd_parse_check(ans, !b->ho_denied, &c, perr, sizeof(perr)) < 0) {
		etcd_note_failure(r, perr);
		retry_later(b);
		return;
	}
	apply_check(b, &c);
	etcd_check_free(&c);
}

/* The next step of the election, if nothing is in flight. Called on every
 * trigger: campaign(), renew(), answers, watch events, the retry timer. */
static void advance(struct etcd *b)
{
	if (b->closing || b->r_elect.busy)
		return;
	ev_timer_stop(b->loop, &b->retry);
	if (b->delete_pending) {
		if (b->lease.id == 0 || b->my_key == NULL)
			b->delete_pending = false;   /* the lease took the key with it */
		else if (b->ho_record)
			etcd_req_call(&b->r_elect, "handover", delete_done, "/v3/kv/txn",
			              etcd_body_handover(b->ho_key, b->ho_record, b->lease.id, b->my_key));
		else
			etcd_req_call(&b->r_elect, "delete", delete_done, "/v3/kv/deleterange", etcd_body_delete(b->my_key));
		if (b->delete_pending)
			return;
	}
	if (!b->campaigning)
		return;
	if (b->lease.id == 0) {
		etcd_lease_grant(&b->lease);
	} else if (b->my_rev == 0) {
		etcd_req_call(&b->r_elect, "campaign", campaign_done, "/v3/kv/txn",
		     etcd_body_campaign(b->my_key, b->p.id, b->lease.id));
	} else {
		etcd_req_call(&b->r_elect, "election check", check_done, "/v3/kv/txn",
		     etcd_body_check(b->prefix, b->my_key, b->my_rev, b->ho_denied ? NULL : b->ho_key));
	}
}

/* ---- backend_ops ---- */

static void etcd_campaign(struct backend *be)
{
	struct etcd *b = (struct etcd *)be;

	if (b->closing || b->campaigning)
		return;
	b->campaigning = true;
	b->elected = false;
	advance(b);
}

static void etcd_renew(struct backend *be)
{
	struct etcd *b = (struct etcd *)be;

	if (b->closing)
		return;
	if (b->lease.id == 0)
		emit(b, EV_FAILED, 0, b->grant_err[0] ? b->grant_err : "no session");
	else
		etcd_lease_keepalive(&b->lease);
	advance(b);
}

static void etcd_resign(struct backend *be)
{
	struct etcd *b = (struct etcd *)be;

	if (b->closing)
		return;
	b->q.gen++;
	b->campaigning = false;
	b->elected = false;
	etcd_watch_stop(&b->watch);
	ev_timer_stop(b->loop, &b->retry);
	/* A campaign txn in flight may still create our key: delete after it. */
	if (b->r_elect.busy && b->r_elect.done != campaign_done)
		etcd_req_cancel(&b->r_elect);
	if (b->my_rev != 0 || b->r_elect.busy) {
		log_info("etcd: resigning: deleting %s", b->my_key);
		b->delete_pending = true;
	}
	b->my_rev = 0;
	advance(b);
}

static void etcd_handover(struct backend *be, const char *record)
{
	struct etcd *b = (struct etcd *)be;

	if (b->closing)
		return;
	/* Read by advance() when it sends the delete that resign() plans. */
	free(b->ho_record);
	b->ho_record = b->lease.id != 0 ? strdup(record) : NULL;
	etcd_resign(be);
	if (!b->delete_pending) {
		/* No key to release: nobody would read a record left now. */
		free(b->ho_record);
		b->ho_record = NULL;
	}
}

static void ho_clear_done(struct etcd_req *r, const json_t *ans, const char *err)
{
	(void)r;
	(void)ans;
	if (err != NULL)
		log_debug("etcd: could not clear the handover record: %s", err);
}

static void etcd_clear_handover(struct backend *be, const char *record)
{
	struct etcd *b = (struct etcd *)be;

	if (b->closing)
		return;
	if (b->r_ho.busy)
		etcd_req_cancel(&b->r_ho);
	etcd_req_call(&b->r_ho, "handover clear", ho_clear_done, "/v3/kv/txn",
	              etcd_body_handover_clear(b->ho_key, record));
}

static void etcd_close(struct backend *be)
{
	struct etcd *b = (struct etcd *)be;

	if (b->closing)
		return;
	b->closing = true;
	b->q.gen++;
	b->campaigning = b->elected = false;
	ev_timer_stop(b->loop, &b->retry);
	etcd_watch_stop(&b->watch);
	etcd_req_cancel(&b->r_elect);
	/* Revoking deletes our key with the lease: waiters take over at once. */
	etcd_lease_revoke(&b->lease);
}

static void etcd_free(void *owner)
{
	struct etcd *b = owner;

	ev_timer_stop(b->loop, &b->retry);
	etcd_events_free(&b->q);
	etcd_lease_free(&b->lease);
	etcd_req_free(&b->r_elect);
	etcd_req_free(&b->r_ho);
	etcd_watch_free(&b->watch);
	etcd_client_free(&b->c);   /* after the requests: cleans up the multi handle */
	free(b->prefix);
	free(b->my_key);
	free(b->ho_key);
	free(b->ho_record);
	free(b->leader);
	free(b);
}

static void etcd_destroy(struct backend *be)
{
	struct etcd *b = (struct etcd *)be;

	if (b != NULL)
		etcd_events_destroy(&b->q);
}

static int etcd_create(struct backend **out, const struct backend_params *p, char *err, size_t errlen)
{
	struct etcd *b;
	char *path = NULL;

	*out = NULL;
	if ((b = calloc(1, sizeof(*b))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	b->p = *p;
	b->loop = p->loop;
	ev_init(&b->retry, retry_cb);
	b->retry.data = b;
	etcd_events_init(&b->q, b->loop, deliver, etcd_free, b);
	if (etcd_client_init(&b->c, p, &path, err, errlen) < 0)
		goto fail;
	b->c.ep.owner_logs = true;      /* the core logs reachability */
	etcd_lease_init(&b->lease, &b->c, p->ttl_ns, &lease_events, b);
	etcd_req_init(&b->c, &b->r_elect, b, "election", check_done);
	etcd_req_init(&b->c, &b->r_ho, b, "handover", ho_clear_done);
	etcd_watch_init(&b->watch, &b->c, watch_done, b);
	if ((b->prefix = etcd_key_prefix(path, p->name)) == NULL) {
		snprintf(err, errlen, "etcd: no election prefix: write etcd://HOST:PORT/PREFIX or give a name");
		goto fail;
	}
	/* "a/b/" -> "a/b.handover": a sibling of the range "a/b/". */
	if (asprintf(&b->ho_key, "%.*s.handover", (int)strlen(b->prefix) - 1, b->prefix) < 0) {
		b->ho_key = NULL;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	free(path);
	*out = (struct backend *)b;
	return 0;
fail:
	etcd_free(b);
	free(path);
	return -1;
}

const struct backend_ops etcd_backend_ops = {
	.scheme = "etcd",
	.create = etcd_create,
	.campaign = etcd_campaign,
	.renew = etcd_renew,
	.resign = etcd_resign,
	.handover = etcd_handover,
	.clear_handover = etcd_clear_handover,
	.close = etcd_close,
	.destroy = etcd_destroy,
	.check_timing = etcd_check_timing,
};
