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
 *     released with release() by lockd, which frees it.
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

#include <stdint.h>

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
	void (*close)(struct lock_session *s);
	void (*destroy)(struct lock_session *s);
	int (*check_timing)(const struct backend_params *p, char *err, size_t errlen);
};

/* Every lock backend, in backends/registry.c (lock_backends[]). */
const struct lock_backend_ops *lock_backend_lookup(const char *url);

/* Each lock backend file defines one of these and registry.c lists it. */
extern const struct lock_backend_ops file_lock_ops;
extern const struct lock_backend_ops etcd_lock_ops;
extern const struct lock_backend_ops zk_lock_ops;

#endif
