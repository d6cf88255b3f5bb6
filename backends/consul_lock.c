/* Consul lock backend for lockd: `consul lock`'s own layouts (api/lock.go,
 * api/semaphore.go), so that `consul lock P/NAME CMD` and `consul lock -n N
 * P/NAME CMD` share locks and semaphores with lockd.
 *
 *   sessions  one Consul session (TTL, no health checks, Behavior "delete":
 *             its keys vanish with it) for the holds of a lockd. Consul keys
 *             a holder by its session, so a second concurrent hold of the
 *             same name in one lockd takes a second session, a third a
 *             third; they are renewed together and retired when unused. The
 *             send time reported to lockd is the oldest of their renewals.
 *   contender P/NAME/<session>, acquired by the session, value = lockd id,
 *             flags consul's LockFlagValue (lock) or SemaphoreFlagValue
 *             (semaphore, as `consul lock -n` writes it). It marks a waiter
 *             and orders waiters by CreateIndex.
 *   lock      P/NAME/.lock acquired (txn verb "lock") with LockFlagValue,
 *             value = lockd id, by the oldest waiting contender once no
 *             session holds it. A `consul lock` waiter leaves no contender
 *             and may come first: consul lock has no queue.
 *   semaphore P/NAME/.lock = {"Limit":N,"Holders":{"<session>":true}} with
 *             SemaphoreFlagValue, changed only by check-and-set. Holders
 *             whose session has no key under P/NAME/ any more are pruned (as
 *             consul does). A waiter takes a free slot when fewer waiting
 *             contenders are older than it than there are free slots.
 *   token     the Raft index of the write that granted: the ModifyIndex in
 *             the transaction's answer. Every grant of a name writes .lock,
 *             so tokens grow across every holder, consul lock's included.
 *   wait      a waiting hold keeps a blocking query on P/NAME/
 *             (?recurse&index=): every change under the name wakes it to
 *             decide again (only the next in line acts). A granted hold
 *             keeps none (Consul refuses more than 200 connections from one
 *             address by default): each renewal checks it
 *             (consul_lock_verify.c), so a .lock or slot that someone else
 *             removed is reported lost within one renewal interval, as on
 *             etcd.
 *   leftovers .lock of the other kind (a lock where a semaphore is wanted,
 *             or the reverse) that nobody holds is taken over (a lock:
 *             acquired first, honouring its lock-delay, then deleted); one
 *             in use is waited for.
 *   release   lock: txn [check-session .lock, delete .lock, delete
 *             contender]; semaphore: txn [cas .lock without us, delete
 *             contender], read again and retry while the cas fails.
 *
 * list() is in consul_lock_list.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/consul_lock.h"
#include "common/clock.h"
#include "common/log.h"

/* ---- holds ---- */

static struct consul_session *hold_session(const struct lock_hold *h)
{
	return h->sidx < h->s->n_sess && h->s->sess[h->sidx] ? &h->s->sess[h->sidx]->s : NULL;
}

const char *consul_hold_sid(const struct lock_hold *h)
{
	const struct consul_session *cs = hold_session(h);

	return cs ? cs->id : NULL;
}

void consul_hold_quiet(struct lock_hold *h)
{
	consul_req_cancel(&h->r);
	ev_timer_stop(h->s->loop, &h->retry);
}

void consul_hold_free(struct lock_hold *h)
{
	struct lock_session *s = h->s;

	etcd_events_forget(&s->q, h);
	consul_lock_verify_forget(s, h);
	ev_timer_stop(s->loop, &h->retry);
	consul_req_free(&h->r);
	if ((*h->pprev = h->next) != NULL)
		h->next->pprev = h->pprev;
	consul_sem_free(&h->sem);
	free(h->name);
	free(h->dir);
	free(h->dir_esc);
	free(h->lock_key);
	free(h->lock_esc);
	free(h->contender);
	free(h);
}

void consul_hold_retry_later(struct lock_hold *h)
{
	if (!ev_is_active(&h->retry)) {
		ev_timer_set(&h->retry, clock_ns_to_ev(consul_req_retry_ns(&h->r)), 0.0);
		ev_timer_start(h->s->loop, &h->retry);
	}
}

static void hold_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	consul_hold_step(w->data);
}

void consul_hold_lose(struct lock_hold *h, const char *reason)
{
	log_warnx("consul: lock %s: hold lost: %s", h->name, reason);
	consul_hold_quiet(h);
	h->state = H_DEAD;
	consul_lock_emit(h->s, LK_HOLD_LOST, 0, reason, h);
}

static void grant(struct lock_hold *h, uint64_t token)
{
	h->state = H_GRANTED;
	h->token = token;
	h->refused = false;
	log_debug("consul: lock %s: granted to session %s, token %" PRIu64, h->name, consul_hold_sid(h), token);
	consul_lock_emit(h->s, LK_GRANTED, (int64_t)token, NULL, h);
}

/* A status Consul gave instead of an answer (403 of an ACL, 400...). */
static void hold_refused(struct lock_hold *h, long status)
{
	char reason[200];

	consul_status_reason(&h->r, status, reason, sizeof(reason));
	if (!h->refusal_logged)
		log_warnx("consul: lock %s: %s refused: %s", h->name, h->r.what, reason);
	h->refusal_logged = true;   /* one line until an answer comes through */
	h->index = 0;
	consul_hold_retry_later(h);
}

static uint64_t flag_of(const struct lock_hold *h)
{
	return h->limit == 1 ? CONSUL_LOCK_FLAG : CONSUL_SEM_FLAG;
}

/* ---- the contender key ---- */

/* The answer to a PUT ?acquire (true/false): 1 or 0; -1 when it did not
 * come (a retry is set up; the next read shows whether it went through). */
static int acquire_answer(struct lock_hold *h, struct consul_req *r, long status, const char *err)
{
	int ok;

	if (err != NULL) {
		/* Consul answers 500 "invalid session" for a session it ended:
		 * renew it now, its 404 tells for sure. */
		if (strstr(r->resp ? r->resp : "", "nvalid session") != NULL && hold_session(h))
			consul_session_renew(hold_session(h));
		consul_hold_retry_later(h);
		return -1;
	}
	if (status != 200) {
		hold_refused(h, status);
		return -1;
	}
	if ((ok = consul_parse_bool(r->resp, r->resp_len)) < 0) {
		consul_note_failure(r, "malformed answer to an acquire");
		consul_hold_retry_later(h);
	}
	return ok;
}

static void contend_done(struct consul_req *r, long status, const char *err)
{
	struct lock_hold *h = r->owner;
	int ok;

	if (h->state == H_RELEASING) {
		consul_hold_step(h);
		return;
	}
	h->state = H_PENDING;
	if ((ok = acquire_answer(h, r, status, err)) < 0)
		return;
	if (ok == 0) {   /* our own key: only a lock-delay refuses it */
		consul_hold_retry_later(h);
		return;
	}
	h->state = H_WAIT;
	h->index = 0;
	consul_hold_step(h);
}

static void send_contender(struct lock_hold *h)
{
	const char *sid = consul_hold_sid(h);
	char *key = NULL, *esc = NULL;

	if (asprintf(&key, "%s%s", h->dir, sid) < 0 || (esc = consul_escape_key(key)) == NULL) {
		if (esc == NULL)
			free(key);
		h->state = H_PENDING;
		consul_hold_retry_later(h);
		return;
	}
	free(h->contender);
	h->contender = key;
	h->contended = true;
	h->state = H_CONTEND;
	consul_req_send(&h->r, "contender", contend_done, "PUT", h->s->id, 0,
	                "/v1/kv/%s?acquire=%s&flags=%" PRIu64, esc, sid, flag_of(h));
	free(esc);
}

char *consul_txn_delete(const char *key)
{
	return consul_txn_op("delete", key, NULL, NULL, NULL, NULL);
}

/* ---- reading the name and deciding ---- */

static void list_done(struct consul_req *r, long status, const char *err);
static void wait_more(struct lock_hold *h);
static void lock_acquire_done(struct consul_req *r, long status, const char *err);
static void sem_acquire_done(struct consul_req *r, long status, const char *err);


static bool is_contender(const struct lock_hold *h, const struct consul_kv *kv, uint64_t flags)
{
	size_t d = strlen(h->dir);

	return kv->session != NULL && kv->flags == flags && strncmp(kv->key, h->dir, d) == 0 &&
	       strcmp(kv->key + d, ".lock") != 0 && strchr(kv->key + d, '/') == NULL;
}

const struct consul_kv *consul_kv_find(const struct name_view *v, const char *key)
{
	for (size_t i = 0; i < v->n; i++)
		if (key != NULL && strcmp(v->kvs[i].key, key) == 0)
			return &v->kvs[i];
	return NULL;
}

/* Waiting contenders older than ours: those not in `holders` (NULL: not
 * the session holding .lock). */
static unsigned older_waiters(const struct lock_hold *h, const struct name_view *v,
                              const struct consul_kv *mine, const struct consul_sem *holders)
{
	unsigned n = 0;

	for (size_t i = 0; i < v->n; i++) {
		const struct consul_kv *kv = &v->kvs[i];
		if (kv == mine || !is_contender(h, kv, flag_of(h)) || kv->create_index >= mine->create_index)
			continue;
		if (holders ? consul_sem_has(holders, kv->session)
		            : (v->lock && v->lock->session && strcmp(v->lock->session, kv->session) == 0))
			continue;
		n++;
	}
	return n;
}

void consul_hold_send_txn(struct lock_hold *h, const char *what, consul_req_done_fn done, char *op1, char *op2,
                     char *op3)
{
	char *body = NULL;

	if (op1 == NULL || (op2 == NULL && op3 != NULL) ||
	    asprintf(&body, "[%s%s%s%s%s]", op1, op2 ? "," : "", op2 ? op2 : "", op3 ? "," : "",
	             op3 ? op3 : "") < 0)
		body = NULL;
	free(op1);
	free(op2);
	free(op3);
	if (body == NULL) {
		consul_hold_retry_later(h);
		return;
	}
	consul_req_send(&h->r, what, done, "PUT", body, 0, "/v1/txn");
	free(body);
}

static void wait_more(struct lock_hold *h)
{
	if (h->state == H_WAIT && !h->queued_sent) {
		h->queued_sent = true;
		consul_lock_emit(h->s, LK_QUEUED, 0, NULL, h);
	}
	if (h->state == H_GRANTED)
		return;   /* no query open: each renewal checks it (consul_lock_verify.c) */
	if (h->index == 0)
		consul_hold_retry_later(h);
	else
		consul_hold_step(h);
}

/* Drops the holders whose session has no key under the name any more, as
 * consul lock -n does. */
void consul_sem_prune(struct consul_sem *sem, const struct name_view *v)
{
	for (size_t i = 0; i < sem->n; i++) {
		bool alive = false;
		for (size_t j = 0; j < v->n && !alive && sem->holders[i]; j++)
			alive = v->kvs[j].session && strcmp(v->kvs[j].session, sem->holders[i]) == 0;
		if (!alive) {
			free(sem->holders[i]);
			sem->holders[i] = NULL;
		}
	}
}

/* A semaphore's .lock with no live holder (sessions that have no key under
 * the name any more do not count, as consul lock -n prunes them). */
static bool sem_unheld(const struct name_view *v, const struct consul_kv *lk)
{
	struct consul_sem sem;
	char perr[160];
	bool held = false;

	if (consul_sem_decode(lk->value, lk->value_len, &sem, perr, sizeof(perr)) < 0)
		return false;
	for (size_t i = 0; i < sem.n && !held; i++)
		for (size_t j = 0; j < v->n && !held; j++)
			held = v->kvs[j].session && strcmp(v->kvs[j].session, sem.holders[i]) == 0;
	consul_sem_free(&sem);
	return !held;
}

/* .lock is a semaphore while we want a lock, or the reverse, and in use
 * (or someone's data): wait for it to go, as lockd's own holds of one
 * name with two limits would. */
static void foreign_key(struct lock_hold *h, const struct consul_kv *lk)
{
	if (!h->conflict_logged)
		log_warnx("consul: lock %s: %s is %s in use: waiting for it to be released", h->name, h->lock_key,
		          lk->flags == CONSUL_SEM_FLAG ? "a semaphore (consul lock -n)" :
		          lk->flags == CONSUL_LOCK_FLAG ? "a lock (consul lock)" : "a key of other data, not");
	h->conflict_logged = true;
	wait_more(h);
}

static void takeover_done(struct consul_req *r, long status, const char *err)
{
	struct lock_hold *h = r->owner;

	h->index = 0;   /* whatever happened: read again, at once if it went through */
	if (err == NULL && status == 200)
		consul_hold_step(h);
	else
		consul_hold_retry_later(h);
}

static void takeover_acquired(struct consul_req *r, long status, const char *err)
{
	struct lock_hold *h = r->owner;
	const char *sid = consul_hold_sid(h);

	if (h->state == H_RELEASING) {
		consul_hold_step(h);   /* REL_MAIN of a semaphore reads first: a lock of ours is not seen */
		return;
	}
	if (err != NULL || status != 200 || consul_parse_bool(r->resp, r->resp_len) != 1 || sid == NULL) {
		h->index = 0;
		consul_hold_retry_later(h);   /* the lock-delay, or taken meanwhile */
		return;
	}
	consul_hold_send_txn(h, "take over", takeover_done, consul_txn_op("check-session", h->lock_key, NULL, NULL, sid, NULL),
	         consul_txn_delete(h->lock_key), NULL);
}

static void decide_lock(struct lock_hold *h, const struct name_view *v, const struct consul_kv *mine)
{
	const char *sid = consul_hold_sid(h);
	const struct consul_kv *lk = v->lock;

	if (lk && lk->flags != CONSUL_LOCK_FLAG) {
		if (h->state == H_GRANTED) {
			consul_hold_lose(h, "its .lock key was replaced by one with other flags");
		} else if (lk->flags == CONSUL_SEM_FLAG && sem_unheld(v, lk)) {
			/* A semaphore nobody holds, left behind: take the name over. */
			uint64_t index = lk->modify_index;
			consul_hold_send_txn(h, "take over", takeover_done,
			         consul_txn_op("delete-cas", h->lock_key, NULL, NULL, NULL, &index), NULL, NULL);
		} else {
			foreign_key(h, lk);
		}
		return;
	}
	if (h->state == H_GRANTED) {
		if (lk == NULL || lk->session == NULL || strcmp(lk->session, sid) != 0)
			consul_hold_lose(h, lk == NULL ? "its .lock key was deleted" : "its .lock key was released or taken");
		else
			wait_more(h);
		return;
	}
	if (lk && lk->session && strcmp(lk->session, sid) == 0) {
		grant(h, lk->modify_index);   /* an acquire whose answer we missed */
		wait_more(h);
		return;
	}
	if ((lk && lk->session) || older_waiters(h, v, mine, NULL) > 0) {
		h->refused = false;
		wait_more(h);
		return;
	}
	if (h->refused && !ev_is_active(&h->retry)) {
		/* Free but refused: the lock-delay of the session that held it. */
		h->refused = false;
		h->index = 0;
		consul_hold_retry_later(h);
		return;
	}
	/* Not a txn "lock": only the KV endpoint honours a lock-delay, which
	 * consul lock's sessions (15 s by default) rely on. */
	consul_req_send(&h->r, "acquire", lock_acquire_done, "PUT", h->s->id, 0,
	                "/v1/kv/%s?acquire=%s&flags=%" PRIu64, h->lock_esc, sid, CONSUL_LOCK_FLAG);
}

static void decide_sem(struct lock_hold *h, const struct name_view *v, const struct consul_kv *mine)
{
	const char *sid = consul_hold_sid(h);
	const struct consul_kv *lk = v->lock;
	struct consul_sem sem;
	char perr[160], *json;
	uint64_t flags = CONSUL_SEM_FLAG, index;
	unsigned free_slots;

	if (lk && lk->flags != CONSUL_SEM_FLAG) {
		if (h->state == H_GRANTED) {
			consul_hold_lose(h, "its .lock key was replaced by one with other flags");
			return;
		}
		if (lk->flags != CONSUL_LOCK_FLAG || lk->session != NULL) {
			foreign_key(h, lk);
			return;
		}
		/* A lock nobody holds, left behind: acquire it first (the KV
		 * endpoint honours the lock-delay of the session that held it,
		 * a transaction would not), then delete it. */
		consul_req_send(&h->r, "take over", takeover_acquired, "PUT", h->s->id, 0,
		                "/v1/kv/%s?acquire=%s&flags=%" PRIu64, h->lock_esc, sid, CONSUL_LOCK_FLAG);
		return;
	}
	memset(&sem, 0, sizeof(sem));
	if (lk && lk->flags == CONSUL_SEM_FLAG &&
	    consul_sem_decode(lk->value, lk->value_len, &sem, perr, sizeof(perr)) < 0) {
		consul_hold_lose(h, perr);
		return;
	}
	if (sem.limit == 0)
		sem.limit = h->limit;
	if (sem.limit != h->limit) {
		snprintf(perr, sizeof(perr), "semaphore limit conflict: %.60s holds a limit of %u, asked for %u",
		         h->lock_key, sem.limit, h->limit);
		consul_sem_free(&sem);
		consul_hold_lose(h, perr);
		return;
	}
	consul_sem_prune(&sem, v);
	consul_sem_free(&h->sem);
	h->sem = sem;
	h->lock_mod = lk ? lk->modify_index : 0;
	if (h->state == H_GRANTED) {
		if (!consul_sem_has(&sem, sid))
			consul_hold_lose(h, lk == NULL ? "its .lock key was deleted" : "its slot was taken away");
		else
			wait_more(h);
		return;
	}
	if (consul_sem_has(&sem, sid)) {
		/* A cas whose answer we missed: it wrote our contender too. */
		grant(h, mine->modify_index);
		wait_more(h);
		return;
	}
	free_slots = 0;
	for (size_t i = 0; i < sem.n; i++)
		free_slots += sem.holders[i] != NULL;
	free_slots = free_slots < sem.limit ? sem.limit - free_slots : 0;
	if (older_waiters(h, v, mine, &sem) >= free_slots) {
		wait_more(h);
		return;
	}
	/* Take a slot: the holders, pruned, and us; our contender is written
	 * in the same transaction, so its ModifyIndex is our token too. */
	{
		char **hs = realloc(h->sem.holders, (h->sem.n + 1) * sizeof(char *));
		if (hs == NULL) {
			consul_hold_retry_later(h);
			return;
		}
		h->sem.holders = hs;
		hs[h->sem.n++] = (char *)sid;
		json = consul_sem_encode(&h->sem);
		hs[--h->sem.n] = NULL;
	}
	index = h->lock_mod;
	consul_hold_send_txn(h, "acquire", sem_acquire_done,
	         json ? consul_txn_op("cas", h->lock_key, json, &flags, NULL, &index) : NULL,
	         consul_txn_op("lock", h->contender, h->s->id, &flags, sid, NULL), NULL);
	free(json);
}

static void decide(struct lock_hold *h, const struct consul_kv *kvs, size_t n)
{
	struct name_view v = { .kvs = kvs, .n = n };
	const struct consul_kv *mine;

	v.lock = consul_kv_find(&v, h->lock_key);
	mine = consul_kv_find(&v, h->contender);
	if (mine == NULL || mine->session == NULL || strcmp(mine->session, consul_hold_sid(h)) != 0) {
		if (h->state == H_GRANTED) {
			consul_hold_lose(h, "its contender key was deleted");
			return;
		}
		send_contender(h);   /* deleted while we waited: queue again */
		return;
	}
	if (h->limit == 1)
		decide_lock(h, &v, mine);
	else
		decide_sem(h, &v, mine);
}

static void list_done(struct consul_req *r, long status, const char *err)
{
	struct lock_hold *h = r->owner;
	struct consul_kv *kvs = NULL;
	size_t n = 0;
	char perr[200];

	if (h->state == H_RELEASING) {
		consul_hold_step(h);
		return;
	}
	if (err != NULL) {
		h->index = 0;
		consul_hold_retry_later(h);
		return;
	}
	if (status != 200 && status != 404) {
		hold_refused(h, status);
		return;
	}
	if (status == 200 && consul_parse_kv_list(r->resp, r->resp_len, &kvs, &n, perr, sizeof(perr)) < 0) {
		consul_note_failure(r, perr);
		h->index = 0;
		consul_hold_retry_later(h);
		return;
	}
	/* Consul: an index that went backwards (a restored snapshot) starts over. */
	h->index = r->index < h->index ? 0 : r->index;
	h->refusal_logged = false;
	decide(h, kvs, n);
	consul_kv_list_free(kvs, n);
}

/* After an acquire or cas that may have gone through, in a release. */
static bool acquire_released(struct lock_hold *h)
{
	if (h->state != H_RELEASING)
		return false;
	consul_hold_step(h);
	return true;
}


/* PUT ?acquire of .lock: true = ours, the read that follows (its
 * ModifyIndex, as the election's token) grants; false = taken meanwhile or
 * the lock-delay of a session that held it. */
static void lock_acquire_done(struct consul_req *r, long status, const char *err)
{
	struct lock_hold *h = r->owner;
	int ok;

	if (acquire_released(h))
		return;
	h->index = 0;
	if ((ok = acquire_answer(h, r, status, err)) < 0)
		return;
	h->refused = ok == 0;
	consul_hold_step(h);
}

/* The txn [cas .lock with us, our contender]: 409 = the cas lost a race. */
static void sem_acquire_done(struct consul_req *r, long status, const char *err)
{
	struct lock_hold *h = r->owner;
	uint64_t token;
	char perr[200];

	if (acquire_released(h))
		return;
	h->index = 0;
	if (err != NULL) {
		acquire_answer(h, r, 0, err);
		return;
	}
	if (status == 409) {
		consul_hold_step(h);
		return;
	}
	if (status != 200) {
		hold_refused(h, status);
		return;
	}
	if (consul_parse_txn_index(r->resp, r->resp_len, &token, perr, sizeof(perr)) < 0) {
		consul_note_failure(r, perr);
		consul_hold_retry_later(h);
		return;
	}
	/* .lock now holds what we wrote: the release's cas starts from it. */
	{
		char **hs = realloc(h->sem.holders, (h->sem.n + 1) * sizeof(char *));
		if (hs != NULL) {
			h->sem.holders = hs;
			if ((hs[h->sem.n] = strdup(consul_hold_sid(h))) != NULL)
				h->sem.n++;
		}
		h->lock_mod = token;
	}
	grant(h, token);
}

/* The next step of a hold, if nothing is in flight. */
void consul_hold_step(struct lock_hold *h)
{
	struct lock_session *s = h->s;

	if (s->closing || h->r.busy || h->state == H_DEAD)
		return;
	ev_timer_stop(s->loop, &h->retry);
	switch (h->state) {
	case H_PENDING:
		if (!consul_lock_session_ready(s, h->sidx))
			consul_lock_ensure_session(s, h->sidx);
		else
			send_contender(h);
		break;
	case H_WAIT:
		if (h->index == 0)
			consul_req_send(&h->r, "read", list_done, "GET", NULL, 0, "/v1/kv/%s?recurse&consistent",
			                h->dir_esc);
		else
			/* Consul adds up to wait/16 of jitter to a blocking query. */
			consul_req_send(&h->r, "watch", list_done, "GET", NULL,
			                s->wait_ns + s->wait_ns / 16 + s->c.req_timeout_ns,
			                "/v1/kv/%s?recurse&index=%" PRIu64 "&wait=%llds", h->dir_esc, h->index,
			                (long long)(s->wait_ns / NS_PER_SEC));
		break;
	case H_RELEASING:
		consul_hold_send_release(h);
		break;
	default:
		break;
	}
}

/* The lowest session that no other hold of this name uses. */
static unsigned pick_session(const struct lock_session *s, const char *name)
{
	for (unsigned idx = 0;; idx++) {
		const struct lock_hold *o;
		for (o = s->holds; o != NULL; o = o->next)
			if (o->sidx == idx && strcmp(o->name, name) == 0)
				break;
		if (o == NULL && !(idx < s->n_sess && s->sess[idx] && s->sess[idx]->s.closing))
			return idx;   /* not a session being retired */
	}
}

struct lock_hold *consul_lock_acquire(struct lock_session *s, const char *name, unsigned limit,
                                    void *hold_ctx)
{
	struct lock_hold *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return NULL;
	h->s = s;
	h->ctx = hold_ctx;
	h->limit = limit > 0 ? limit : 1;
	h->sidx = pick_session(s, name);
	if ((h->name = strdup(name)) == NULL || asprintf(&h->dir, "%s%s/", s->prefix, name) < 0 ||
	    (h->dir_esc = consul_escape_key(h->dir)) == NULL ||
	    asprintf(&h->lock_key, "%s.lock", h->dir) < 0 || (h->lock_esc = consul_escape_key(h->lock_key)) == NULL) {
		free(h->name);
		free(h->dir);
		free(h->dir_esc);
		free(h->lock_key);
		free(h);
		return NULL;
	}
	h->state = s->closing ? H_DEAD : H_PENDING;
	consul_req_init(&s->c, &h->r, h);
	ev_init(&h->retry, hold_retry_cb);
	h->retry.data = h;
	if ((h->next = s->holds) != NULL)
		s->holds->pprev = &h->next;
	s->holds = h;
	h->pprev = &s->holds;
	consul_hold_step(h);
	return h;
}

void consul_lock_release(struct lock_hold *h)
{
	if (h == NULL)
		return;
	etcd_events_forget(&h->s->q, h);
	if (h->state == H_GRANTED)
		log_debug("consul: lock %s: releasing", h->name);
	if ((h->state == H_DEAD || h->state == H_PENDING) && !h->r.busy && h->contended &&
	    consul_hold_sid(h) != NULL && !h->s->closing) {
		/* Lost, or back to pending after a write that may have gone
		 * through: its keys may still be there (a slot, .lock). */
		ev_timer_stop(h->s->loop, &h->retry);
		h->state = H_RELEASING;
		h->rel_step = REL_MAIN;
		consul_hold_step(h);
		return;
	}
	if (h->state == H_DEAD || h->s->closing || (h->state == H_PENDING && !h->r.busy)) {
		consul_hold_free(h);
		return;
	}
	/* A contender or acquire in flight may still write: release after it. */
	if (!(h->r.busy && (h->r.done == contend_done || h->r.done == lock_acquire_done ||
	                    h->r.done == sem_acquire_done || h->r.done == takeover_acquired ||
	                    h->r.done == takeover_done)))
		consul_req_cancel(&h->r);
	ev_timer_stop(h->s->loop, &h->retry);
	h->state = H_RELEASING;
	h->rel_step = REL_MAIN;
	consul_hold_step(h);
}

void *consul_lock_hold_ctx(const struct lock_hold *h)
{
	return h->ctx;
}

