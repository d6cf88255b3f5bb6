/* Internals of the Consul lock backend: consul_lock.c (the holds: contender
 * keys, the lock and semaphore recipes, release), consul_lock_session.c (the
 * sessions and lock_backend_ops) and consul_lock_list.c (list()). Not a
 * public interface. */
#ifndef ELECT_CONSUL_LOCK_H
#define ELECT_CONSUL_LOCK_H

#include "backends/consul.h"
#include "backends/etcd.h"         /* the event queue */
#include "backends/lock.h"

enum hold_state {
	H_PENDING,     /* waits for its session */
	H_CONTEND,     /* writing its contender key */
	H_WAIT,        /* queued: reading the name, deciding, acquiring */
	H_GRANTED,     /* holds; keeps watching the name */
	H_RELEASING,
	H_DEAD,        /* lost: only release() is left */
};

/* A release: the main step; a read of the name first (a semaphore whose
 * holders we do not know for sure, or whose cas failed) and then the main
 * step on what it read; or the contender key alone (nothing held). */
enum release_step { REL_MAIN, REL_REREAD, REL_READ, REL_CONTENDER };

struct consul_list;

#define VERIFY_BATCH 32            /* holds per check: 2 ops each, Consul takes 64 per txn */

/* One Consul session of a lockd: [0] always, [k] for the k+1-th concurrent
 * hold of one name. */
struct csess {
	struct consul_session s;
	struct lock_session *ls;
	unsigned idx;
	int64_t ok_sent;           /* send time of its last successful create or renewal */
};

struct lock_hold {
	struct lock_session *s;
	struct lock_hold *next, **pprev;
	char *name;
	unsigned limit;
	void *ctx;
	unsigned sidx;             /* its session: s->sess[sidx] */
	char *dir, *dir_esc;       /* "P/NAME/", and %-escaped for URLs */
	char *lock_key, *lock_esc; /* "P/NAME/.lock" */
	char *contender;           /* "P/NAME/<session>" once the session is known */
	enum hold_state state;
	enum release_step rel_step;
	bool contended;            /* its contender key may exist */
	bool refused;              /* the last acquire was refused (lock-delay?) */
	bool queued_sent;
	bool conflict_logged;      /* .lock is of the other kind: said once */
	bool holds_lock_key;
	bool refusal_logged;       /* a refused request (403...) was logged: once */       /* semaphore release: a left-behind lock we took over is ours */
	uint64_t index;            /* of the blocking query; 0 = read now */
	uint64_t token;
	uint64_t lock_mod;         /* semaphore: .lock's ModifyIndex in the last read */
	unsigned verified_round;   /* granted: the renewal round that last checked it */
	struct consul_sem sem;     /* semaphore: its holders in the last read, pruned */
	struct consul_req r;
	ev_timer retry;
};

struct lock_session {
	struct ev_loop *loop;
	struct consul_client c;
	const struct lock_events *ev;
	void *ctx;
	char *prefix;              /* "P/" or "" */
	char *id, *sess_name;
	int64_t ttl_ns, lock_delay_ns, wait_ns;
	struct csess **sess;
	size_t n_sess;
	struct lock_hold *holds;
	struct consul_list *lists;
	int64_t alive_reported;
	unsigned n_open;           /* close(): sessions not closed yet */
	bool want_session, closing;
	char create_err[200];
	ev_timer retry;            /* session creation */
	struct etcd_events q;
	/* Granted holds keep no query open (Consul limits connections per
	 * client, 200 by default): each renewal round checks them, in
	 * transactions of VERIFY_BATCH holds. */
	struct consul_req r_verify;
	unsigned verify_round;
	struct lock_hold *verifying[VERIFY_BATCH];
	unsigned char verifying_ops[VERIFY_BATCH];   /* ops of each in the txn */
	size_t n_verifying;
};

/* The entries of one name in a read of P/NAME/. */
struct name_view {
	const struct consul_kv *lock;      /* P/NAME/.lock, or NULL */
	const struct consul_kv *kvs;
	size_t n;
};

/* consul_lock_session.c */
void consul_lock_emit(struct lock_session *s, int kind, int64_t num, const char *str, struct lock_hold *h);
void consul_lock_ensure_session(struct lock_session *s, unsigned idx);
bool consul_lock_session_ready(const struct lock_session *s, unsigned idx);

/* consul_lock.c */
const char *consul_hold_sid(const struct lock_hold *h);
void consul_hold_step(struct lock_hold *h);
void consul_hold_quiet(struct lock_hold *h);
void consul_hold_free(struct lock_hold *h);
void consul_hold_lose(struct lock_hold *h, const char *reason);
struct lock_hold *consul_lock_acquire(struct lock_session *s, const char *name, unsigned limit,
                                      void *hold_ctx);
void consul_lock_release(struct lock_hold *h);
void *consul_lock_hold_ctx(const struct lock_hold *h);
void consul_hold_retry_later(struct lock_hold *h);
/* PUT /v1/txn of op1 [, op2 [, op3]] (each malloc'd, freed here; a NULL
 * one: out of memory, retried later). */
void consul_hold_send_txn(struct lock_hold *h, const char *what, consul_req_done_fn done, char *op1,
                          char *op2, char *op3);
char *consul_txn_delete(const char *key);
const struct consul_kv *consul_kv_find(const struct name_view *v, const char *key);
void consul_sem_prune(struct consul_sem *sem, const struct name_view *v);

/* consul_lock_release.c */
void consul_hold_send_release(struct lock_hold *h);

/* consul_lock_verify.c: the check of granted holds at each renewal. */
void consul_lock_verify(struct lock_session *s);
void consul_lock_verify_forget(struct lock_session *s, const struct lock_hold *h);

/* consul_lock_list.c */
int consul_lock_list(struct lock_session *s, const char *const *names, size_t n, bool all,
                     lock_list_cb cb, void *arg);
void consul_lock_list_abort_all(struct lock_session *s);

#endif
