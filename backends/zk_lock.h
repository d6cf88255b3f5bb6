/* ZooKeeper lock backend: private to backends/zk_lock.c (the holds, the
 * session, the ops table) and backends/zk_lock_list.c (listings). */
#ifndef ELECT_ZK_LOCK_H
#define ELECT_ZK_LOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/lock.h"
#include "backends/zk.h"
#include "backends/zk_conn.h"

struct zk_list;                  /* a listing, in zk_lock_list.c */

struct lock_hold {
	struct lock_session *s;
	struct lock_hold *prev, *next;
	uint64_t tag;                /* names the hold in requests (never reused) */
	char *name, *dir;            /* "db", "/locks/db" */
	unsigned limit;
	void *ctx;
	char guid[ZK_GUID_LEN + 1];
	char *node;                  /* our node's name under dir, NULL if none */
	uint64_t seq;
	char *pred;                  /* a waiter before us that we watch */
	bool released;               /* by lockd: only cleaning up remains */
	bool dead;                   /* its session or (held) its node is gone */
	bool create_sent;            /* a create may have succeeded unseen */
	bool busy;                   /* a create / find / owner step in flight */
	bool parents_sent;           /* PATH/NAME was missing: creating it */
	bool check_inflight, check_again;
	bool granted, told_queued, own_watched, pred_signal_seen;
};

struct lock_session {
	struct zk_conn c;
	const struct lock_events *ev;
	void *ctx;
	const char *id;
	bool open;
	struct lock_hold *holds, *tail;
	struct zk_list *lists;       /* list() calls not answered yet */
	uint64_t next_tag;           /* tags of holds and listings */
};

/* zk_lock.c */
/* A handle, connected, its session timeout accepted: requests may be sent. */
bool zkl_can_send(const struct lock_session *s);

/* zk_lock_list.c */
/* lock_backend_ops.list (zk_lock_ops points here). */
int zkl_list(struct lock_session *s, const char *const *names, size_t n, bool all,
             lock_list_cb cb, void *arg);
/* The ZE_LISTED event: answers l (with an error unless it was read
 * completely) and frees it. */
void zkl_deliver_list(struct lock_session *s, struct zk_list *l);
/* Answers every listing now (the session is being freed or destroyed). */
void zkl_deliver_lists(struct lock_session *s);
/* The handle was closed: every listing still reading fails with why. */
void zkl_fail_lists(struct lock_session *s, const char *why);

#endif
