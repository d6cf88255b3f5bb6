/* Consul backend: `consul lock`'s own recipe (api/lock.go), so that
 * `consul lock PREFIX CMD` and elect exclude each other and hand over both
 * ways.
 *
 *   session   PUT /v1/session/create with the TTL, a LockDelay and no health
 *             checks; renewed on every renew(); destroyed on close()
 *   key       PREFIX/.lock, flags consul's LockFlagValue, value = our id
 *   wait      GET the key with a blocking query (?index=N&wait=...): held by
 *             a session = that holder leads (its value, else its session);
 *             free = PUT ?acquire=SESSION&flags=...; refused while free =
 *             the lock-delay of the last holder's session: retry after a pause
 *   token     the key's ModifyIndex read right after our acquire: the Raft
 *             index of the acquire, which grows across every holder even when
 *             the key is deleted and made again (LockIndex starts over)
 *   lead      keep the blocking query on the key: it no longer held by our
 *             session = lost at once; so is a session that renew finds gone
 *
 * A key there with other flags is not a lock (a semaphore, someone's data):
 * a conflict, logged, never taken. Events go through the etcd backend's queue
 * (etcd_session.c), flushed by a zero timer, never from inside the operation.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/consul.h"
#include "backends/etcd.h"         /* the event queue */
#include "common/clock.h"
#include "common/duration.h"
#include "common/log.h"

#define MAX_LOCK_DELAY_NS (60 * NS_PER_SEC)   /* Consul's limit */


struct consul {
	struct backend_params p;
	struct ev_loop *loop;
	struct consul_client c;
	struct consul_session s;
	char *key;                 /* PREFIX/.lock, %-escaped for the URL */
	char *sess_name;
	int64_t lock_delay_ns, wait_ns;
	uint64_t index;            /* of the blocking query; 0 = read now */
	bool campaigning, elected, held, closing, release_pending, conflict;
	char *leader;
	bool leader_known;
	struct consul_req r_elect; /* read, acquire or release of the key */
	ev_timer retry;
	char sess_err[200];
	struct etcd_events q;
};

static void advance(struct consul *b);

static void emit(struct consul *b, enum election_event kind, int64_t num, const char *str)
{
	etcd_emit(&b->q, kind, num, str, NULL);
}

static void deliver(void *owner, const struct etcd_event *e)
{
	struct consul *b = owner;

	/* Events queued before resign()/close() are stale, except closed. */
	election_deliver(&b->q, b->p.ev, b->p.ctx, e);
}

/* After r failed: again in a moment, or later while r is refused (403). */
static void retry_later(struct consul *b, const struct consul_req *r)
{
	if (!ev_is_active(&b->retry) && !b->closing) {
		ev_timer_set(&b->retry, clock_ns_to_ev(consul_req_retry_ns(r)), 0.0);
		ev_timer_start(b->loop, &b->retry);
	}
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	advance(w->data);
}

static void report_leader(struct consul *b, const char *id)
{
	election_report_leader(&b->q, &b->leader, &b->leader_known, id);
}

static void lose(struct consul *b, const char *reason)
{
	if (b->campaigning)
		log_warnx("consul: out of the election (key %s): %s", b->key, reason);
	else
		log_info("consul: %s", reason);
	if (!b->release_pending)
		consul_req_cancel(&b->r_elect);
	ev_timer_stop(b->loop, &b->retry);
	b->elected = b->held = false;
	b->index = 0;
	if (b->campaigning) {
		b->campaigning = false;
		emit(b, EV_LOST, 0, reason);
	}
}

/* ---- the session (consul_session.c) ---- */

static void sess_created(void *owner, int64_t sent_ns)
{
	struct consul *b = owner;

	b->sess_err[0] = '\0';
	emit(b, EV_ALIVE, sent_ns, NULL);
	advance(b);
}

static void sess_create_failed(void *owner, const char *err)
{
	struct consul *b = owner;

	snprintf(b->sess_err, sizeof(b->sess_err), "session create failed: %s", err);
	emit(b, EV_FAILED, 0, b->sess_err);
	retry_later(b, &b->s.r);
}

static void sess_alive(void *owner, int64_t sent_ns)
{
	struct consul *b = owner;

	/* A token that may renew the session but not read the key: for a
	 * follower the backend stays refused (one line), not "reachable again"
	 * on every renewal and "refused" on every read. */
	if (!b->elected && backoff_active(&b->r_elect.refused))
		return;
	emit(b, EV_ALIVE, sent_ns, NULL);
}

static void sess_failed(void *owner, const char *err)
{
	emit(owner, EV_FAILED, 0, err);
}

static void sess_gone(void *owner, const char *reason)
{
	struct consul *b = owner;

	b->release_pending = false;   /* the session took the key with it */
	lose(b, reason);
}

static void sess_closed(void *owner)
{
	emit(owner, EV_CLOSED, 0, NULL);
}

static const struct consul_session_events sess_events = {
	.created = sess_created,
	.create_failed = sess_create_failed,
	.alive = sess_alive,
	.failed = sess_failed,
	.gone = sess_gone,
	.closed = sess_closed,
};

/* ---- the key ---- */

/* A status Consul gave instead of an answer (403 of an ACL, 400...). */
static void refused(struct consul *b, struct consul_req *r, long status)
{
	char reason[200], why[180];

	consul_status_reason(r, status, why, sizeof(why));
	snprintf(reason, sizeof(reason), "%s refused: %s", r->what, why);
	emit(b, EV_FAILED, 0, reason);
	b->index = 0;
	retry_later(b, r);
}

static void new_index(struct consul *b, uint64_t idx)
{
	/* Consul: an index that went backwards (a restored snapshot) starts over. */
	b->index = idx < b->index ? 0 : idx;
}

static void release_done(struct consul_req *r, long status, const char *err)
{
	struct consul *b = r->owner;

	if (b->closing) {
		consul_session_destroy(&b->s);   /* then the session: closed() follows */
		return;
	}
	if (err != NULL || (status != 200 && status != 404)) {
		retry_later(b, r);    /* a key left held would block the election */
		return;
	}
	b->release_pending = false;
	advance(b);
}

static void elect(struct consul *b, uint64_t token)
{
	b->elected = true;
	b->held = false;
	b->conflict = false;
	log_info("consul: acquired %s with session %s: leading, token %" PRIu64, b->key, b->s.id, token);
	emit(b, EV_ELECTED, (int64_t)token, NULL);
	report_leader(b, b->p.id);
}

static void apply_kv(struct consul *b, const struct consul_kv *kv, bool *acquire)
{
	bool ours = kv->exists && kv->session && b->s.id && strcmp(kv->session, b->s.id) == 0;

	*acquire = false;
	if (kv->exists && kv->flags != CONSUL_LOCK_FLAG) {
		if (b->elected) {
			lose(b, "the lock key was replaced by one with other flags");
			return;
		}
		if (!b->conflict)
			log_warnx("consul: key %s has flags %" PRIu64 ", not consul lock's %" PRIu64
			          ": it is not a lock (a semaphore or other data); not taking it", b->key,
			          kv->flags, CONSUL_LOCK_FLAG);
		b->conflict = true;
		report_leader(b, NULL);
		return;
	}
	b->conflict = false;
	if (ours) {
		if (!b->elected)
			elect(b, kv->modify_index);  /* an acquire whose answer we missed */
		return;
	}
	if (b->elected) {
		lose(b, kv->exists ? (kv->session ? "the lock key is held by another session"
		                                  : "the lock key was released")
		                   : "the lock key was deleted");
		return;
	}
	if (kv->exists && kv->session) {
		report_leader(b, kv->value_len > 0 && strlen(kv->value) == kv->value_len ? kv->value : kv->session);
		return;
	}
	report_leader(b, NULL);
	*acquire = true;
}

static void acquire_done(struct consul_req *r, long status, const char *err);

static void read_done(struct consul_req *r, long status, const char *err)
{
	struct consul *b = r->owner;
	struct consul_kv kv;
	char perr[200];
	bool acquire;

	if (!b->campaigning || b->release_pending) {
		advance(b);
		return;
	}
	if (err != NULL) {
		b->index = 0;
		retry_later(b, r);
		return;
	}
	if (status != 200 && status != 404) {
		refused(b, r, status);
		return;
	}
	memset(&kv, 0, sizeof(kv));
	if (status == 200 && consul_parse_kv(r->resp, r->resp_len, &kv, perr, sizeof(perr)) < 0) {
		consul_note_failure(r, perr);
		b->index = 0;
		retry_later(b, r);
		return;
	}
	new_index(b, r->index);
	if (b->held) {
		/* The read right after our acquire: its ModifyIndex is the token. */
		b->held = false;
		if (kv.exists && kv.session && b->s.id && strcmp(kv.session, b->s.id) == 0 &&
		    kv.flags == CONSUL_LOCK_FLAG) {
			elect(b, kv.modify_index);
			consul_kv_free(&kv);
			advance(b);
			return;
		}
	}
	apply_kv(b, &kv, &acquire);
	consul_kv_free(&kv);
	if (!b->campaigning)
		return;
	if (acquire) {
		consul_req_send(&b->r_elect, "acquire", acquire_done, "PUT", b->p.id, 0,
		                "/v1/kv/%s?acquire=%s&flags=%" PRIu64, b->key, b->s.id, CONSUL_LOCK_FLAG);
		return;
	}
	if (b->index == 0)
		retry_later(b, r);
	else
		advance(b);
}

static void acquire_done(struct consul_req *r, long status, const char *err)
{
	struct consul *b = r->owner;
	int ok;

	if (!b->campaigning || b->release_pending) {
		advance(b);
		return;
	}
	b->index = 0;
	if (err != NULL) {
		/* Consul answers 500 "invalid session" for a session it ended:
		 * renew now, its 404 tells for sure. */
		if (strstr(r->resp ? r->resp : "", "nvalid session") != NULL)
			consul_session_renew(&b->s);
		retry_later(b, r);    /* the next read shows whether it went through */
		return;
	}
	if (status != 200) {
		refused(b, r, status);
		return;
	}
	if ((ok = consul_parse_bool(r->resp, r->resp_len)) < 0) {
		consul_note_failure(r, "malformed answer to an acquire");
		retry_later(b, r);
		return;
	}
	if (ok == 0) {
		/* Taken meanwhile, or the lock-delay of a session that held it. */
		log_debug("consul: acquire of %s refused (lock-delay or taken): retrying", b->key);
		retry_later(b, r);
		return;
	}
	b->held = true;    /* read the key now: its ModifyIndex is the token */
	advance(b);
}

/* A release PUT writes Flags and Value too: keep consul lock's flag (as its
 * Unlock does), or the key stops being a lock. */
static void send_release(struct consul *b)
{
	consul_req_send(&b->r_elect, "release", release_done, "PUT", b->p.id, 0,
	                "/v1/kv/%s?release=%s&flags=%" PRIu64, b->key, b->s.id, CONSUL_LOCK_FLAG);
}

/* The next step, if nothing is in flight: release, session, read, wait. */
static void advance(struct consul *b)
{
	if (b->closing || b->r_elect.busy)
		return;
	ev_timer_stop(b->loop, &b->retry);
	if (b->release_pending) {
		if (b->s.id == NULL) {
			b->release_pending = false;
		} else {
			send_release(b);
			return;
		}
	}
	if (!b->campaigning)
		return;
	if (b->s.id == NULL) {
		consul_session_create(&b->s);
	} else if (b->held || b->index == 0) {
		consul_req_send(&b->r_elect, "read", read_done, "GET", NULL, 0, "/v1/kv/%s?consistent", b->key);
	} else {
		/* Consul adds up to wait/16 of jitter to a blocking query. */
		consul_req_send(&b->r_elect, "watch", read_done, "GET", NULL,
		                b->wait_ns + b->wait_ns / 16 + b->c.req_timeout_ns,
		                "/v1/kv/%s?index=%" PRIu64 "&wait=%llds", b->key, b->index,
		                (long long)(b->wait_ns / NS_PER_SEC));
	}
}

/* ---- backend_ops ---- */

static void consul_campaign(struct backend *be)
{
	struct consul *b = (struct consul *)be;

	if (b->closing || b->campaigning)
		return;
	b->campaigning = true;
	b->elected = b->held = false;
	b->index = 0;
	advance(b);
}

static void consul_renew(struct backend *be)
{
	struct consul *b = (struct consul *)be;

	if (b->closing)
		return;
	if (b->s.id == NULL)
		emit(b, EV_FAILED, 0, b->sess_err[0] ? b->sess_err : "no session");
	else
		consul_session_renew(&b->s);
	/* A retry already waiting (a back-off after a refusal among them)
	 * does the next step: the renew tick must not cut it short. */
	if (!ev_is_active(&b->retry))
		advance(b);
}

/* Stops reading; an acquire in flight may still take the key, so the
 * release goes after it. */
static void stop_election(struct consul *b)
{
	b->q.gen++;
	b->campaigning = b->elected = b->held = false;
	ev_timer_stop(b->loop, &b->retry);
	if (b->r_elect.busy && b->r_elect.done != acquire_done && b->r_elect.done != release_done)
		consul_req_cancel(&b->r_elect);
	b->release_pending = b->s.id != NULL;
}

static void consul_resign(struct backend *be)
{
	struct consul *b = (struct consul *)be;

	if (b->closing)
		return;
	if (b->elected)
		log_info("consul: resigning: releasing %s", b->key);
	stop_election(b);
	advance(b);
}

static void consul_close(struct backend *be)
{
	struct consul *b = (struct consul *)be;

	if (b->closing)
		return;
	stop_election(b);
	b->closing = true;
	/* Release the key (no lock-delay for a release), then destroy the
	 * session; the session's close timer bounds both. */
	consul_session_begin_close(&b->s);
	if (b->s.id == NULL) {
		consul_req_cancel(&b->r_elect);
		consul_session_destroy(&b->s);
	} else if (!b->r_elect.busy) {
		send_release(b);
	} else {
		b->r_elect.done = release_done;   /* the acquire in flight: destroy after it */
	}
}

static void consul_free(void *owner)
{
	struct consul *b = owner;

	ev_timer_stop(b->loop, &b->retry);
	etcd_events_free(&b->q);
	consul_session_free(&b->s);
	consul_req_free(&b->r_elect);
	consul_client_free(&b->c);
	free(b->key);
	free(b->sess_name);
	free(b->leader);
	free(b);
}

static void consul_destroy(struct backend *be)
{
	struct consul *b = (struct consul *)be;

	if (b != NULL)
		etcd_events_destroy(&b->q);
}

int consul_parse_lock_delay(const char *query, int64_t *lock_delay_ns, char *err, size_t errlen)
{
	*lock_delay_ns = 0;
	if (query == NULL || *query == '\0')
		return 0;
	if (strncmp(query, "lock-delay=", 11) != 0 || strchr(query, '&') != NULL ||
	    duration_parse(query + 11, lock_delay_ns) < 0 || *lock_delay_ns < 0 ||
	    *lock_delay_ns > MAX_LOCK_DELAY_NS) {
		snprintf(err, errlen, "consul: unknown URL option '%s': the only one is lock-delay=DURATION "
		         "(0s to 60s), as in consul://HOST/PREFIX?lock-delay=5s", query);
		return -1;
	}
	return 0;
}

static int consul_create(struct backend **out, const struct backend_params *p, char *err, size_t errlen)
{
	struct consul *b;
	char *path = NULL, *query = NULL, *prefix = NULL;
	size_t n;

	*out = NULL;
	if ((b = calloc(1, sizeof(*b))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	b->p = *p;
	b->loop = p->loop;
	ev_init(&b->retry, retry_cb);
	b->retry.data = b;
	etcd_events_init(&b->q, b->loop, deliver, consul_free, b);
	consul_req_init(&b->c, &b->r_elect, b);
	if (consul_client_init(&b->c, p, &path, &query, err, errlen) < 0 ||
	    consul_parse_lock_delay(query, &b->lock_delay_ns, err, errlen) < 0)
		goto fail;
	b->wait_ns = p->ttl_ns;
	n = strlen(path);
	while (n > 0 && path[n - 1] == '/')
		n--;
	if (n == 0 && p->name) {
		path[0] = '\0';
		if (asprintf(&prefix, "%s", p->name) < 0)
			prefix = NULL;
	} else if (asprintf(&prefix, "%.*s", (int)n, path) < 0) {
		prefix = NULL;
	}
	if (prefix == NULL || *prefix == '\0') {
		snprintf(err, errlen, "consul: no lock prefix: write consul://HOST:PORT/PREFIX or give a name");
		goto fail;
	}
	{
		char *k = NULL;
		if (asprintf(&k, "%s/.lock", prefix) < 0 || (b->key = consul_escape_key(k)) == NULL ||
		    asprintf(&b->sess_name, "elect %s", p->id) < 0) {
			free(k);
			b->sess_name = NULL;
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		free(k);
	}
	consul_session_init(&b->s, &b->c, b->sess_name, p->ttl_ns, b->lock_delay_ns, &sess_events, b);
	free(path);
	free(query);
	free(prefix);
	*out = (struct backend *)b;
	return 0;
fail:
	consul_free(b);
	free(path);
	free(query);
	free(prefix);
	return -1;
}

const struct backend_ops consul_backend_ops = {
	.scheme = "consul",
	.create = consul_create,
	.campaign = consul_campaign,
	.renew = consul_renew,
	.resign = consul_resign,
	.close = consul_close,
	.destroy = consul_destroy,
	.check_timing = consul_check_timing,
};
