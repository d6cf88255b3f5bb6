/* The lock backend interface: many named locks and semaphores held under one
 * backend session (one etcd lease, one ZooKeeper session, one lockd process
 * for the file backend). lockd (lockd/) is its only user.
 *
 * The same rules as backends/backend.h apply: every operation returns at once,
 * results arrive later as calls of struct lock_events, always from the libev
 * loop and never from inside the operation that caused them; no blocking call
 * on the loop.
 *
 * Session events (the deadline rule of DESIGN.md, as for the elector):
 *   session_alive(sent_ns): a request that proves the session lived was SENT
 *     at sent_ns and has succeeded (creation and every renewal). lockd revokes
 *     every hold before sent_ns + ttl - margin unless a later one succeeds.
 *   session_failed(reason): one renewal failed (transient).
 *   session_lost(reason): the session is definitely gone (lease expired,
 *     ZooKeeper session expired). Every hold is gone with it: the backend
 *     reports no per-hold event for them; lockd drops them all. lockd then calls
 *     open() again before acquiring anew.
 *   closed(): close() finished or gave up (within the request timeout).
 * Hold events:
 *   granted(hold, token): the hold now owns the lock (or one slot of the
 *     semaphore). token strictly increases across all grants of this name in
 *     the whole cluster (etcd: create revision; zk: sequence number + 1; file:
 *     a counter kept per name). Only after session_alive.
 *   hold_lost(hold, reason): this one hold is gone (its key/node was deleted by
 *     someone else, the lock file was replaced). The hold must still be
 *     released with release() by lockd, which frees it. A waiting hold
 *     that cannot be granted because the name is held with another limit
 *     is lost with a reason containing LOCK_LIMIT_CONFLICT: lockd answers
 *     409, as for a conflict among its own holds.
 *   After session_lost, too, lockd calls release() once on every hold it
 *   had (which then only frees it): every acquire() is paired with exactly
 *   one release().
 *
 * Lifecycle: create -> open -> (renew | acquire | release)* -> close -> destroy.
 * acquire() may be called before the session is up; the backend queues the
 * request until it is. release() of a pending hold leaves the queue; of a
 * granted one releases the lock. After release() no event names that hold.
 */
#ifndef ELECT_LOCK_H
#define ELECT_LOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "backends/backend.h"

struct lock_session;
struct lock_hold;

struct lock_events {
	void (*session_alive)(void *ctx, int64_t sent_ns);
	void (*session_failed)(void *ctx, const char *reason);
	void (*session_lost)(void *ctx, const char *reason);
	void (*granted)(void *ctx, struct lock_hold *h, uint64_t token);
	void (*hold_lost)(void *ctx, struct lock_hold *h, const char *reason);
	void (*closed)(void *ctx);
	/* Optional for a backend to report (lockd always sets it): the hold was
	 * not granted at once and now waits behind other holders. lockd answers
	 * a try-once acquire (wait 0) with 408 at this event; without it, after
	 * a short window. */
	void (*queued)(void *ctx, struct lock_hold *h);
};

/* Names are checked by lockd before they reach a backend: 1-128 characters of
 * [A-Za-z0-9._-], not starting with '.', so they map safely to keys, znodes
 * and file names. */
#define LOCK_NAME_MAX 128
/* In a hold_lost reason: the name is held with another limit (see above). */
#define LOCK_LIMIT_CONFLICT "limit conflict"

/* The n bytes at name are a valid lock name. */
static inline bool lock_name_valid_n(const char *name, size_t n)
{
	if (n == 0 || n > LOCK_NAME_MAX || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", name[i]) ||
		    name[i] == '\0')
			return false;
	return true;
}

static inline bool lock_name_valid(const char *name)
{
	return lock_name_valid_n(name, strlen(name));
}

/* Listings (lock_backend_ops.list). One holder or waiter of a name as the
 * backend sees it, whichever node it belongs to. */
struct lock_entry {
	const char *name;
	/* Held: its fencing token. Waiting: the token it will be granted with
	 * where the backend knows it (etcd create revision, ZooKeeper sequence
	 * + 1). 0 if unknown. */
	uint64_t token;
	const char *owner;        /* the id its node stored; "" if none (etcdctl lock) */
	const char *key;          /* where it lives: etcd key, znode path, lock file */
	/* 1 holds, 0 waits, -1 cannot tell without the name's limit (etcd and
	 * ZooKeeper keep no limit): lockd then holds position < limit. */
	int held;
	unsigned position;        /* 0-based place in the name's queue, by token */
	struct lock_hold *mine;   /* this session's hold, or NULL */
};
/* At most this many entries per listing; more -> truncated. */
#define LOCK_LIST_MAX 10000
/* The answer of list(): entries grouped by name, each name's in queue order.
 * err != NULL: the backend could not be read (n is then 0). Entries and their
 * strings live only during the call. */
typedef void (*lock_list_cb)(void *arg, const struct lock_entry *e, size_t n, bool truncated,
                             const char *err);

struct lock_backend_ops {
	const char *scheme;
	/* Parse the URL (its path is the prefix/parent for all locks; the
	 * election name is not used) and allocate. No blocking I/O. p->ev and
	 * p->ctx of backend_params are unused; events go to ev/ctx here. */
	int (*create)(struct lock_session **out, const struct backend_params *p,
	              const struct lock_events *ev, void *ctx, char *err, size_t errlen);
	void (*open)(struct lock_session *s);
	void (*renew)(struct lock_session *s);
	/* Queue for `name`: a lock when limit == 1, a slot of a semaphore of
	 * `limit` holders otherwise (all holders of one name must use the same
	 * limit). Waiters are served in arrival order (backend sequence or
	 * revision), waking only the next in line. hold_ctx is returned by
	 * lock_hold_ctx(). NULL only when out of memory. */
	struct lock_hold *(*acquire)(struct lock_session *s, const char *name, unsigned limit,
	                             void *hold_ctx);
	void (*release)(struct lock_hold *h);
	void *(*hold_ctx)(const struct lock_hold *h);
	/* Optional: descriptor a command holding h must inherit (file backend,
	 * see backend_ops.leader_fd). NULL or -1: none. */
	int (*hold_fd)(struct lock_hold *h);
	/* Optional: who holds and waits for each of `names` (n of them, valid
	 * lock names, possibly repeated: each is listed once) and, when `all` is set, for every other name under the
	 * session's prefix that the backend can enumerate (names without any
	 * holder or waiter are left out). A read of the backend as it is now,
	 * independent of the holds; works whether or not the session is up (etcd
	 * and ZooKeeper need a connection). cb runs exactly once, from the loop
	 * and never inside list(): with the result, or with err (a request
	 * failed or timed out, or close()/destroy() came first; destroy() calls
	 * it before returning). -1 when it cannot start (out of memory): no cb. */
	int (*list)(struct lock_session *s, const char *const *names, size_t n, bool all,
	            lock_list_cb cb, void *arg);
	void (*close)(struct lock_session *s);
	void (*destroy)(struct lock_session *s);
	/* Optional: the backend's own rule on names, after lock_name_valid()
	 * (Kubernetes: a Lease name is a lowercase RFC 1123 subdomain). -1 with
	 * one line in err: what is wrong with the name and how to fix it; lockd
	 * answers 400 with it (lockctl exits 2). NULL: every valid name. */
	int (*name_check)(const struct lock_session *s, const char *name, char *err, size_t errlen);
	int (*check_timing)(const struct backend_params *p, char *err, size_t errlen);
	/* Optional: as backend_ops.alive_lag (backends/backend.h). */
	int64_t (*alive_lag)(const struct backend_params *p);
};

/* Every lock backend, in backends/registry.c (lock_backends[]). */
const struct lock_backend_ops *lock_backend_lookup(const char *url);

/* Each lock backend file defines one of these and registry.c lists it. */
extern const struct lock_backend_ops file_lock_ops;
extern const struct lock_backend_ops etcd_lock_ops;
extern const struct lock_backend_ops zk_lock_ops;
extern const struct lock_backend_ops consul_lock_ops;
extern const struct lock_backend_ops k8s_lock_ops;

#endif
