/* The check of a lockd's granted holds on Consul, once per renewal round:
 * they keep no blocking query open (Consul refuses more than
 * limits.http_max_conns_per_client connections from one address, 200 by
 * default, and a lockd may hold thousands of locks).
 *
 * One transaction per VERIFY_BATCH holds, read-only:
 *   lock       check-session P/NAME/.lock (held by the hold's session)
 *   semaphore  get P/NAME/.lock, check-session of our contender key
 * A failed op (409, Errors[].OpIndex) is a lost hold: .lock deleted, taken,
 * or the contender gone (then consul lock -n prunes our slot). When all
 * succeed, a semaphore hold whose session is not among .lock's Holders any
 * more lost its slot. A hold is lost within a renewal interval of the
 * change; its session's end is the deadline rule's, not this check's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/consul_lock.h"
#include "common/log.h"

static void verify_next(struct lock_session *s);

void consul_lock_verify_forget(struct lock_session *s, const struct lock_hold *h)
{
	for (size_t i = 0; i < s->n_verifying; i++)
		if (s->verifying[i] == h)
			s->verifying[i] = NULL;
}

/* The hold whose ops include op index `op` (NULL: forgotten meanwhile). */
static struct lock_hold **hold_of_op(struct lock_session *s, size_t op)
{
	size_t at = 0;

	for (size_t i = 0; i < s->n_verifying; i++) {
		if (op < at + s->verifying_ops[i])
			return &s->verifying[i];
		at += s->verifying_ops[i];
	}
	return NULL;
}

static void check_members(struct lock_session *s, const char *body, size_t len)
{
	struct consul_kv *kvs;
	size_t n;
	char perr[200];

	if (consul_parse_txn_kvs(body, len, &kvs, &n, perr, sizeof(perr)) < 0) {
		log_warnx("consul: checking held locks: %s", perr);
		return;
	}
	for (size_t i = 0; i < s->n_verifying; i++) {
		struct lock_hold *h = s->verifying[i];
		const char *sid;
		if (h == NULL || h->limit == 1 || h->state != H_GRANTED || (sid = consul_hold_sid(h)) == NULL)
			continue;
		for (size_t k = 0; k < n; k++) {
			struct consul_sem sem;
			if (strcmp(kvs[k].key, h->lock_key) != 0)
				continue;
			if (consul_sem_decode(kvs[k].value, kvs[k].value_len, &sem, perr, sizeof(perr)) < 0) {
				consul_hold_lose(h, perr);
			} else {
				if (!consul_sem_has(&sem, sid))
					consul_hold_lose(h, "its slot was taken away");
				consul_sem_free(&sem);
			}
			break;
		}
	}
	consul_kv_list_free(kvs, n);
}

static void verify_done(struct consul_req *r, long status, const char *err)
{
	struct lock_session *s = r->owner;
	size_t ops[2 * VERIFY_BATCH], n = 0;
	char perr[200];

	if (err != NULL) {
		s->n_verifying = 0;   /* the next round tries again */
		return;
	}
	if (status == 200) {
		check_members(s, r->resp, r->resp_len);
	} else if (status == 409 &&
	           consul_parse_txn_errors(r->resp, r->resp_len, ops, 2 * VERIFY_BATCH, &n, perr, sizeof(perr)) == 0) {
		for (size_t i = 0; i < n; i++) {
			struct lock_hold **hp = hold_of_op(s, ops[i]);
			if (hp && *hp && (*hp)->state == H_GRANTED)
				consul_hold_lose(*hp, (*hp)->limit == 1 ? "its .lock key was deleted, released or taken"
				                                        : "its .lock or contender key was deleted");
		}
	} else {
		log_warnx("consul: checking held locks: HTTP status %ld: %.100s", status, r->resp);
		s->n_verifying = 0;
		return;
	}
	s->n_verifying = 0;
	verify_next(s);
}

static void verify_next(struct lock_session *s)
{
	char *body = NULL, *p;
	size_t len = 2, n_ops = 0;

	s->n_verifying = 0;
	for (struct lock_hold *h = s->holds; h != NULL && s->n_verifying < VERIFY_BATCH; h = h->next) {
		const char *sid = consul_hold_sid(h);
		char *op1, *op2 = NULL;
		if (h->state != H_GRANTED || h->verified_round == s->verify_round || sid == NULL)
			continue;
		h->verified_round = s->verify_round;
		if (h->limit == 1) {
			op1 = consul_txn_op("check-session", h->lock_key, NULL, NULL, sid, NULL);
		} else {
			op1 = consul_txn_op("get", h->lock_key, NULL, NULL, NULL, NULL);
			op2 = consul_txn_op("check-session", h->contender, NULL, NULL, sid, NULL);
		}
		if (op1 == NULL || (h->limit > 1 && op2 == NULL) ||
		    (p = realloc(body, len + strlen(op1) + (op2 ? strlen(op2) + 1 : 0) + 2)) == NULL) {
			free(op1);
			free(op2);
			break;
		}
		body = p;
		if (n_ops == 0)
			strcpy(body, "[");
		else
			strcat(body, ",");
		strcat(body, op1);
		if (op2) {
			strcat(body, ",");
			strcat(body, op2);
		}
		len = strlen(body) + 1;
		free(op1);
		free(op2);
		s->verifying_ops[s->n_verifying] = h->limit == 1 ? 1 : 2;
		s->verifying[s->n_verifying++] = h;
		n_ops += h->limit == 1 ? 1 : 2;
	}
	if (n_ops == 0) {
		free(body);
		s->n_verifying = 0;
		return;
	}
	strcat(body, "]");
	consul_req_send(&s->r_verify, "lock check", verify_done, "PUT", body, 0, "/v1/txn");
	free(body);
}

void consul_lock_verify(struct lock_session *s)
{
	if (s->r_verify.busy || s->closing)
		return;
	s->verify_round++;
	verify_next(s);
}
