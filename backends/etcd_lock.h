/* Private to etcd_lock.c and etcd_lock_list.c: the etcd lock backend's
 * session and holds, which its listings read too (our own holds are marked
 * in a listing's answer, and freeing the session answers the listings still
 * pending). Not an interface: the backend is reached through etcd_lock_ops
 * (backends/lock.h). */
#ifndef ELECT_ETCD_LOCK_H
#define ELECT_ETCD_LOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/etcd.h"
#include "backends/lock.h"

#define VERIFY_BATCH 128       /* keys per renew() txn: etcd's default --max-txn-ops */

enum hold_state {
	H_QUEUED,     /* no session yet */
	H_WAITING,    /* creating our key, checking, or watching the window */
	H_GRANTED,
	H_DEAD,       /* lost, or the session is gone: waits for release() */
	H_RELEASING   /* released: deleting our key, then freed */
};

struct lock_listing;          /* etcd_lock_list.c */

struct lock_session {
	const struct lock_events *ev;
	void *ctx;
	struct ev_loop *loop;
	char *id;
	char *prefix;              /* "PREFIX/" or "" */
	struct etcd_client c;
	struct etcd_lease lease;
	struct etcd_events q;      /* q.gen drops hold events of a lost session */
	bool want_session, closing;
	bool recheck;              /* a keepalive failed: check waiters once it works */
	struct lock_hold *holds;
	ev_timer retry;            /* lease grant after a failure */
	/* renew(): granted holds whose keys are being read, VERIFY_BATCH at a time. */
	struct etcd_req r_verify;
	struct lock_hold *verifying[VERIFY_BATCH];
	size_t n_verifying;
	unsigned verify_round;
	struct lock_listing *lists; /* list() calls not answered yet */
};

struct lock_hold {
	struct lock_session *s;
	struct lock_hold *next, **pprev;
	void *ctx;
	char *name;
	unsigned limit;
	char *pfx;                 /* "PREFIX/NAME/" */
	char *key;                 /* ours, NULL until the session is up */
	int64_t rev;               /* create revision of key, 0 until known */
	enum hold_state state;
	unsigned verified_round;
	struct etcd_req r;         /* create, check or delete */
	struct etcd_watch w;       /* of the window */
	bool queued_sent;          /* queued() reported */
	ev_timer retry;
};

/* etcd_lock_list.c: list() of etcd_lock_ops. And the lists still pending
 * answered (with an error, or their result if it is in) and freed: by
 * destroy() before it returns, and by the session's free before the client
 * goes. */
int etcd_lock_list(struct lock_session *s, const char *const *names, size_t n, bool all,
                   lock_list_cb cb, void *arg);
void etcd_lock_list_abort_all(struct lock_session *s);

#endif
