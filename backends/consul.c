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
 *   handover  (resign --to) the old leader releases with the handover record
 *             (common/handover.h) as the body: Consul's release writes the
 *             body as the key's value and the flags of the query in the same
 *             write that frees the lock (kvsUnlockTxn in Consul's
 *             agent/consul/state/kvs.go stores the request's entry with only
 *             the session cleared), so the record is there for whoever
 *             acquires next. A waiter remembers the record of the unheld key
 *             it read before its acquire and reports it with elected(); its
 *             acquire replaced it (the body is our id), so a candidate that
 *             stands aside puts it back with its own release. The old leader
 *             at the timeout replaces it with an empty value (cas on the
 *             ModifyIndex of the unheld key it read).
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
#include "common/handover.h"
#include "common/log.h"

#define CLEAR_TRIES 3      /* the old leader's clear of its handover record */


struct consul {
	struct backend_params p;
	struct ev_loop *loop;
	struct consul_client c;
	struct consul_session s;
	char *key;                 /* PREFIX/.lock, %-escaped for the URL */
	char *sess_name;
	int64_t lock_delay_ns, wait_ns;
	uint64_t index;            /* of the blocking query; 0 = read now */
	/* The key's ModifyIndex (0: none) in the read before our last acquire,
	 * and whether that acquire was refused: a refusal is followed by a
	 * read at once, and a pause only if the key did not change (the
	 * lock-delay); a candidate that grabbed it meanwhile (one standing
	 * aside for a handover) is watched, so its release wakes us at once. */
	uint64_t tried_index;
	bool refused_acquire;
	bool campaigning, elected, held, closing, release_pending, conflict;
	char *leader;
	bool leader_known;
	struct consul_req r_elect; /* read, acquire or release of the key */
	ev_timer retry;
	/* Handover: the record in the unheld key as the read before our last
	 * acquire found it ("" = none); the record we were elected with, put
	 * back by our release until clear_handover; the value our pending
	 * release writes ("" = our id). */
	char seen[HANDOVER_MAX];
	char kept[HANDOVER_MAX];
	char release_value[HANDOVER_MAX];
	/* The old leader's clear of its record at the timeout. */
	struct consul_req r_clear;
	ev_timer clear_retry;
	char clearing[HANDOVER_MAX];
	int clear_tries;
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

/* kv: the key as read after our acquire (held by our session). */
static void elect(struct consul *b, const struct consul_kv *kv)
{
	uint64_t token = kv->modify_index;

	b->elected = true;
	b->held = false;
	b->conflict = false;
	/* The record our acquire replaced: the one the read just before it
	 * saw. (Candidates standing aside may take and release the key in
	 * between: they put the same record back.) */
	memcpy(b->kept, b->seen, sizeof(b->kept));
	b->seen[0] = '\0';
	if (b->kept[0])    /* the core leads, or stands aside (then every 100 ms: debug) */
		log_debug("consul: acquired %s with session %s, token %" PRIu64 ", with a handover "
		          "record in it", b->key, b->s.id, token);
	else
		log_info("consul: acquired %s with session %s: leading, token %" PRIu64, b->key, b->s.id,
		         token);
	emit(b, EV_ELECTED, (int64_t)token, b->kept[0] ? b->kept : NULL);
	report_leader(b, b->p.id);
}

/* The unheld key's value, if it is a handover record, in b->seen. */
static void note_record(struct consul *b, const struct consul_kv *kv)
{
	struct handover h;

	b->seen[0] = '\0';
	if (!kv->exists || kv->value_len == 0 || kv->value_len >= sizeof(b->seen) ||
	    strlen(kv->value) != kv->value_len || handover_decode(kv->value, &h) < 0)
		return;
	memcpy(b->seen, kv->value, kv->value_len + 1);
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
		b->seen[0] = '\0';
		report_leader(b, NULL);
		return;
	}
	b->conflict = false;
	if (ours) {
		if (!b->elected)
			elect(b, kv);  /* an acquire whose answer we missed */
		return;
	}
	if (b->elected) {
		lose(b, kv->exists ? (kv->session ? "the lock key is held by another session"
		                                  : "the lock key was released")
		                   : "the lock key was deleted");
		return;
	}
	if (kv->exists && kv->session) {
		b->seen[0] = '\0';
		report_leader(b, kv->value_len > 0 && strlen(kv->value) == kv->value_len ? kv->value : kv->session);
		return;
	}
	note_record(b, kv);
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
			elect(b, &kv);
			consul_kv_free(&kv);
			advance(b);
			return;
		}
	}
	apply_kv(b, &kv, &acquire);
	if (acquire && b->refused_acquire && kv.modify_index == b->tried_index) {
		/* Free and unchanged since our acquire was refused: the
		 * lock-delay of the last holder's session. Again after a pause. */
		acquire = false;
		b->index = 0;
	}
	b->refused_acquire = false;
	b->tried_index = kv.modify_index;
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
		/* Taken meanwhile, or the lock-delay of a session that held it:
		 * read again now (see refused_acquire). */
		log_debug("consul: acquire of %s refused (lock-delay or taken): reading it again", b->key);
		b->refused_acquire = true;
		advance(b);
		return;
	}
	b->held = true;    /* read the key now: its ModifyIndex is the token */
	advance(b);
}

/* A release PUT writes Flags and Value too: keep consul lock's flag (as its
 * Unlock does), or the key stops being a lock. The value: our id, or the
 * handover record to leave (it writes only if our session holds the key). */
static void send_release(struct consul *b)
{
	consul_req_send(&b->r_elect, "release", release_done, "PUT",
	                b->release_value[0] ? b->release_value : b->p.id, 0,
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
	b->refused_acquire = false;
	b->seen[0] = b->kept[0] = '\0';
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
 * release goes after it. A record found in the key goes back into it: the
 * one we were elected with, or (not elected) the one an acquire of ours
 * may have replaced; the release writes only if we hold the key. */
static void stop_election(struct consul *b)
{
	b->q.gen++;
	b->campaigning = b->elected = b->held = false;
	ev_timer_stop(b->loop, &b->retry);
	if (b->r_elect.busy && b->r_elect.done != acquire_done && b->r_elect.done != release_done)
		consul_req_cancel(&b->r_elect);
	b->release_pending = b->s.id != NULL;
	memcpy(b->release_value, b->kept[0] ? b->kept : b->seen, sizeof(b->release_value));
	b->seen[0] = b->kept[0] = '\0';
}

static void consul_resign(struct backend *be)
{
	struct consul *b = (struct consul *)be;

	if (b->closing)
		return;
	if (b->elected && b->kept[0])
		log_debug("consul: resigning: releasing %s with the handover record it held", b->key);
	else if (b->elected)
		log_info("consul: resigning: releasing %s", b->key);
	stop_election(b);
	advance(b);
}

static void consul_handover(struct backend *be, const char *record)
{
	struct consul *b = (struct consul *)be;

	if (b->closing)
		return;
	log_info("consul: handing over: releasing %s with the handover record as its value", b->key);
	stop_election(b);
	snprintf(b->release_value, sizeof(b->release_value), "%s", record);
	advance(b);
}

/* ---- the old leader's clear of its record at the timeout ---- */

static void clear_read(struct consul *b);

static void clear_failed(struct consul *b, const char *what)
{
	if (++b->clear_tries < CLEAR_TRIES && !b->closing) {
		ev_timer_set(&b->clear_retry, clock_ns_to_ev(consul_req_retry_ns(&b->r_clear)), 0.0);
		ev_timer_start(b->loop, &b->clear_retry);
		return;
	}
	log_warnx("consul: could not remove the handover record from %s (%s): candidates that see it "
	          "stand aside until its timeout on their own clocks", b->key, what);
}

static void clear_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	clear_read(w->data);
}

static void clear_put_done(struct consul_req *r, long status, const char *err)
{
	struct consul *b = r->owner;
	int ok;

	if (err != NULL) {
		clear_failed(b, err);    /* the read again tells whether it went through */
		return;
	}
	if (status != 200 || (ok = consul_parse_bool(r->resp, r->resp_len)) < 0) {
		char why[180];
		consul_status_reason(r, status, why, sizeof(why));
		log_warnx("consul: removing the handover record from %s refused: %s", b->key, why);
		return;
	}
	if (ok)
		log_info("consul: removed the expired handover record from %s", b->key);
	else
		log_debug("consul: %s changed before the handover record was removed: left as it is", b->key);
}

static void clear_read_done(struct consul_req *r, long status, const char *err)
{
	struct consul *b = r->owner;
	struct consul_kv kv;
	char perr[200];

	if (err != NULL) {
		clear_failed(b, err);
		return;
	}
	if (status == 404)
		return;
	memset(&kv, 0, sizeof(kv));
	if (status != 200 || consul_parse_kv(r->resp, r->resp_len, &kv, perr, sizeof(perr)) < 0) {
		if (status != 200)
			consul_status_reason(r, status, perr, sizeof(perr));
		clear_failed(b, perr);
		return;
	}
	/* Held: the holder's acquire replaced it; changed: not ours any more. */
	if (kv.exists && kv.session == NULL && kv.flags == CONSUL_LOCK_FLAG &&
	    kv.value_len == strlen(b->clearing) && strcmp(kv.value, b->clearing) == 0)
		consul_req_send(&b->r_clear, "handover clear", clear_put_done, "PUT", "", 0,
		                "/v1/kv/%s?cas=%" PRIu64 "&flags=%" PRIu64, b->key, kv.modify_index,
		                CONSUL_LOCK_FLAG);
	consul_kv_free(&kv);
}

static void clear_read(struct consul *b)
{
	if (!b->closing)
		consul_req_send(&b->r_clear, "handover read", clear_read_done, "GET", NULL, 0,
		                "/v1/kv/%s?consistent", b->key);
}

static void consul_clear_handover(struct backend *be, const char *record)
{
	struct consul *b = (struct consul *)be;

	if (b->closing)
		return;
	if (b->elected || strcmp(b->kept, record) == 0) {
		b->kept[0] = '\0';    /* our acquire replaced it: a release writes our id */
		return;
	}
	snprintf(b->clearing, sizeof(b->clearing), "%s", record);
	b->clear_tries = 0;
	ev_timer_stop(b->loop, &b->clear_retry);
	clear_read(b);
}

static void consul_close(struct backend *be)
{
	struct consul *b = (struct consul *)be;

	if (b->closing)
		return;
	stop_election(b);
	b->closing = true;
	ev_timer_stop(b->loop, &b->clear_retry);
	consul_req_cancel(&b->r_clear);
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
	ev_timer_stop(b->loop, &b->clear_retry);
	etcd_events_free(&b->q);
	consul_session_free(&b->s);
	consul_req_free(&b->r_elect);
	consul_req_free(&b->r_clear);
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

static int consul_create(struct backend **out, const struct backend_params *p, char *err, size_t errlen)
{
	struct consul *b;
	struct consul_opts opts;
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
	ev_init(&b->clear_retry, clear_retry_cb);
	b->clear_retry.data = b;
	etcd_events_init(&b->q, b->loop, deliver, consul_free, b);
	consul_req_init(&b->c, &b->r_elect, b);
	consul_req_init(&b->c, &b->r_clear, b);
	if (consul_client_init(&b->c, p, &path, &query, err, errlen) < 0 ||
	    consul_parse_options(query, p->ttl_ns, &opts, err, errlen) < 0)
		goto fail;
	b->lock_delay_ns = opts.lock_delay_ns;
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
	.handover = consul_handover,
	.clear_handover = consul_clear_handover,
	.close = consul_close,
	.destroy = consul_destroy,
	.check_timing = consul_check_timing,
};
