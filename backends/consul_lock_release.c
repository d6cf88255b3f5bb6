/* Releasing a hold of the Consul lock backend (see consul_lock.c for the
 * layout): whatever the hold knew, the release ends with nothing of ours
 * under the name, since an acquire whose answer was lost may have gone
 * through.
 *
 *   lock       txn [check-session .lock, delete .lock, delete contender];
 *              409 (not ours): the contender alone
 *   semaphore  txn [cas .lock without us (delete-cas when we are the last
 *              holder, as consul lock -n's Destroy), delete contender], from
 *              what the hold last read; when that is not known for sure, or
 *              the cas fails, read the name again first
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/consul_lock.h"
#include "common/log.h"

static void release_done(struct consul_req *r, long status, const char *err)
{
	struct lock_hold *h = r->owner;

	if (err == NULL && (status == 200 || status == 404)) {
		consul_hold_free(h);
		return;
	}
	if (err == NULL && status == 409 && h->rel_step != REL_CONTENDER) {
		/* lock: not ours; semaphore: .lock changed since we read it. */
		h->rel_step = h->limit == 1 ? REL_CONTENDER : REL_REREAD;
		h->holds_lock_key = false;
		consul_hold_step(h);
		return;
	}
	if (consul_hold_sid(h) == NULL) {
		consul_hold_free(h);   /* the session, and its keys, are gone */
		return;
	}
	consul_hold_retry_later(h);   /* a key left behind blocks the name until the session ends */
}

static void reread_done(struct consul_req *r, long status, const char *err)
{
	struct lock_hold *h = r->owner;
	struct consul_kv *kvs = NULL;
	size_t n = 0;
	char perr[200];

	if (err != NULL || (status != 200 && status != 404) ||
	    (status == 200 && consul_parse_kv_list(r->resp, r->resp_len, &kvs, &n, perr, sizeof(perr)) < 0)) {
		release_done(r, 500, "read failed");
		return;
	}
	{
		struct name_view v = { .kvs = kvs, .n = n };
		const struct consul_kv *lk = consul_kv_find(&v, h->lock_key);
		const char *sid = consul_hold_sid(h);
		consul_sem_free(&h->sem);
		h->lock_mod = 0;
		/* A left-behind lock we took over and did not delete yet. */
		h->holds_lock_key = lk && lk->session && sid && strcmp(lk->session, sid) == 0;
		if (lk && lk->flags == CONSUL_SEM_FLAG &&
		    consul_sem_decode(lk->value, lk->value_len, &h->sem, perr, sizeof(perr)) == 0) {
			h->lock_mod = lk->modify_index;
			consul_sem_prune(&h->sem, &v);
		}
	}
	consul_kv_list_free(kvs, n);
	h->rel_step = REL_READ;
	consul_hold_step(h);
}

/* Whatever we knew, the release ends with nothing of ours under the name:
 * an acquire whose answer was lost may have gone through. */
void consul_hold_send_release(struct lock_hold *h)
{
	const char *sid = consul_hold_sid(h);
	uint64_t flags = CONSUL_SEM_FLAG;
	char *json;

	if (sid == NULL || !h->contended) {
		consul_hold_free(h);
		return;
	}
	if (h->rel_step == REL_REREAD) {
		consul_req_send(&h->r, "release read", reread_done, "GET", NULL, 0, "/v1/kv/%s?recurse&consistent",
		                h->dir_esc);
		return;
	}
	if (h->rel_step == REL_CONTENDER) {
		consul_hold_send_txn(h, "release", release_done, consul_txn_delete(h->contender), NULL, NULL);
		return;
	}
	if (h->limit == 1 || h->holds_lock_key) {
		/* Fails (409) unless our session holds .lock: then the contender alone. */
		consul_hold_send_txn(h, "release", release_done,
		         consul_txn_op("check-session", h->lock_key, NULL, NULL, sid, NULL),
		         consul_txn_delete(h->lock_key), consul_txn_delete(h->contender));
		return;
	}
	if (h->lock_mod == 0 || !consul_sem_has(&h->sem, sid)) {
		if (h->rel_step == REL_MAIN) {
			h->rel_step = REL_REREAD;   /* not known for sure: read first */
			consul_hold_send_release(h);
		} else {
			consul_hold_send_txn(h, "release", release_done, consul_txn_delete(h->contender), NULL, NULL);
		}
		return;
	}
	for (size_t i = 0; i < h->sem.n; i++)
		if (h->sem.holders[i] && strcmp(h->sem.holders[i], sid) == 0) {
			free(h->sem.holders[i]);
			h->sem.holders[i] = NULL;
		}
	{
		bool others = false;
		for (size_t i = 0; i < h->sem.n; i++)
			others |= h->sem.holders[i] != NULL;
		if (!others) {
			/* The last holder: the semaphore goes, as consul lock -n's
			 * Destroy does, so that the name may be a lock next. */
			consul_hold_send_txn(h, "release", release_done,
			         consul_txn_op("delete-cas", h->lock_key, NULL, NULL, NULL, &h->lock_mod),
			         consul_txn_delete(h->contender), NULL);
			return;
		}
	}
	json = consul_sem_encode(&h->sem);
	consul_hold_send_txn(h, "release", release_done,
	         json ? consul_txn_op("cas", h->lock_key, json, &flags, NULL, &h->lock_mod) : NULL,
	         consul_txn_delete(h->contender), NULL);
	free(json);
}

