/* ZooKeeper lock backend (backends/lock.h): zk://HOST:PORT[,...]/PATH
 *
 * One session (zk_conn.c, shared with the election backend) for every hold.
 * Lock or semaphore NAME lives under PATH/NAME (persistent, created when
 * missing); a hold is the standard lock recipe's node there:
 *
 *   create PATH/NAME/_c_<guid>-lock-<seq>  (ephemeral sequential, data = id)
 *     a create whose answer was lost is found again by its guid, and a node
 *     is taken as ours only when its ephemeralOwner is our session;
 *   getChildren: held when fewer than `limit` nodes are lower (token = seq
 *     + 1, strictly increasing per name as the server's counter is); else
 *     wait, watching only what zk_lock_view() names (see zk.h): the
 *     predecessor for a lock; for a semaphore, the first in line watches the
 *     `limit` holders and later ones the waiter before them, which sets data
 *     on its node when granted so the next one moves up: a slot freed by any
 *     holder wakes exactly the first in line, and nobody else.
 *   A granted hold watches its own node: deleted by someone else -> hold_lost.
 *   Semaphore tokens are unique and follow queue order, but two slots freed
 *   at once may be taken in either order: fencing is exact for limit 1.
 *
 * Missed wake-ups: a watch is set after the getChildren that chose it, so a
 * node gone in between answers ZNONODE (-> check again), and a predecessor
 * granted in between shows data version > 0 (-> check again). Watches fire
 * into the hold that set them (stale ones cost one getChildren).
 *
 * Listings (list()) only read; they live in zk_lock_list.c. zk_lock.h has
 * what the two files share.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/lock.h"
#include "backends/zk.h"
#include "backends/zk_conn.h"
#include "backends/zk_lock.h"
#include "common/log.h"

static void advance(struct lock_hold *h);
static void send_check(struct lock_hold *h);

static struct lock_hold *hold_of(struct lock_session *s, uint64_t tag)
{
	for (struct lock_hold *h = s->holds; h; h = h->next)
		if (h->tag == tag)
			return h;
	return NULL;
}

static struct zk_req *hold_req(struct lock_hold *h, enum zk_op op, const char *arg)
{
	struct zk_req *r = zk_req_new(&h->s->c, op, arg);

	if (r != NULL)
		r->tag = h->tag;
	return r;
}

/* The answer to a hold's request: the hold, or NULL when it is gone. When
 * the handle is closing (completions run inside zookeeper_close()), *rp was
 * freed and is set to NULL. */
static struct lock_hold *req_hold(struct zk_req **rp, int rc)
{
	struct lock_session *s = zk_req_done(*rp, rc);

	if (s == NULL) {
		*rp = NULL;
		return NULL;
	}
	return hold_of(s, (*rp)->tag);
}

static char *node_path(const struct lock_hold *h, const char *child)
{
	char *p;

	return asprintf(&p, "%s/%s", h->dir, child) < 0 ? NULL : p;
}

static bool live(const struct lock_hold *h)
{
	return !h->released && !h->dead;
}

bool zkl_can_send(const struct lock_session *s)
{
	return s->c.zh != NULL && s->c.connected && !s->c.refused;
}

static void retry_later(struct lock_hold *h, const char *why)
{
	log_debug("zk: lock %s: %s; trying again in a moment", h->name, why);
	zk_retry_later(&h->s->c, h->s->c.retry_ns);
}

/* Something failed that a reconnect will not fix: try again later. */
static void step_error(struct lock_hold *h, int rc, const char *what)
{
	if (zk_connection_error(rc))
		return; /* the reconnect runs advance() for every hold */
	log_error("zk: lock %s: %s failed: %s", h->name, what, zerror(rc));
	retry_later(h, what);
}

/* ---- the hold's life ---------------------------------------------------- */

static bool names_hold(const struct zk_event *e, void *arg)
{
	return e->ptr == arg;
}

static void free_hold(struct lock_hold *h)
{
	struct lock_session *s = h->s;

	zk_purge(&s->c, names_hold, h);
	if (h->prev)
		h->prev->next = h->next;
	else
		s->holds = h->next;
	if (h->next)
		h->next->prev = h->prev;
	else
		s->tail = h->prev;
	free(h->name);
	free(h->dir);
	free(h->node);
	free(h->pred);
	free(h);
}

/* A released hold goes once nothing of it can remain on the server. */
static void maybe_free(struct lock_hold *h)
{
	if (h->released && (h->dead || (!h->busy && h->node == NULL && !h->create_sent)))
		free_hold(h);
}

static void delete_done(int rc, const void *data)
{
	struct zk_req *r = (struct zk_req *)(uintptr_t)data;
	struct lock_hold *h = req_hold(&r, rc);
	struct zk_conn *c;

	if (r == NULL)
		return;
	c = r->c;
	zk_req_free(r);
	zk_kick(c); /* a close may wait for deletes */
	if (h == NULL)
		return;
	if (rc == ZOK || rc == ZNONODE) {
		free(h->node);
		h->node = NULL;
		maybe_free(h);
	} else if (!zk_connection_error(rc)) {
		log_error("zk: lock %s: deleting our node failed: %s", h->name, zerror(rc));
		retry_later(h, "deleting our node failed");
	}
}

static void send_delete(struct lock_hold *h)
{
	char *full;
	struct zk_req *r;

	if (zk_req_pending(&h->s->c, OP_DELETE, h->node))
		return;
	full = node_path(h, h->node);
	r = full ? hold_req(h, OP_DELETE, h->node) : NULL;
	if (r == NULL || zoo_adelete(h->s->c.zh, full, -1, delete_done, r) != ZOK) {
		zk_req_free(r);
		retry_later(h, "could not send the delete");
	}
	free(full);
}

static void adopt(struct lock_hold *h, const char *child)
{
	free(h->node);
	h->node = strdup(child);
	h->create_sent = false;
	if (h->node == NULL) {
		retry_later(h, "out of memory");
		return;
	}
	h->seq = (uint64_t)zk_node_seq(child);
	if (h->released)
		send_delete(h);
	else
		send_check(h);
}

/* ---- create, or find our node again after a lost answer ----------------- */

static void send_create(struct lock_hold *h);

static void parent_done(int rc, const char *value, const void *data)
{
	struct zk_req *r = (struct zk_req *)(uintptr_t)data;
	struct lock_hold *h = req_hold(&r, rc);
	bool last = h != NULL && strcmp(r->arg, h->dir) == 0;

	(void)value;
	zk_req_free(r);
	if (!last)
		return;
	h->parents_sent = false;
	if (rc == ZOK || rc == ZNODEEXISTS)
		advance(h);
	else
		step_error(h, rc, "creating the lock's node");
}

static void create_done(int rc, const char *value, const struct Stat *stat, const void *data)
{
	struct zk_req *r = (struct zk_req *)(uintptr_t)data;
	struct lock_hold *h = req_hold(&r, rc);
	struct lock_session *s = h ? h->s : NULL;

	zk_req_free(r);
	if (h == NULL)
		return;
	h->busy = false;
	if (rc != ZOK && !zk_connection_error(rc))
		h->create_sent = false; /* the server answered: nothing was created */
	if (zk_created_ours(&s->c, rc, value, stat)) {
		adopt(h, zk_basename(value));
	} else if (rc == ZOK) {
		log_error("zk: lock %s: created %s but our session does not own it", h->name,
		          value ? value : "?");
		h->create_sent = false;
		retry_later(h, "created a node we do not own");
	} else if (rc == ZNONODE && h->released) {
		/* nothing was created: nothing to clean up */
	} else if (rc == ZNONODE) {
		h->parents_sent = true;
		if (!zk_send_parents(&s->c, h->dir, h->tag, parent_done)) {
			h->parents_sent = false;
			retry_later(h, "could not send the parent creates");
		}
	} else {
		step_error(h, rc, "creating our node");
	}
	maybe_free(h);
}

static void send_create(struct lock_hold *h)
{
	char *prefix = NULL;
	struct zk_req *r;
	const char *id = h->s->id ? h->s->id : "";

	if (asprintf(&prefix, "%s/" ZK_NODE_PREFIX "%s" ZK_LOCK_SUFFIX, h->dir, h->guid) < 0)
		prefix = NULL;
	r = prefix ? hold_req(h, OP_CREATE, NULL) : NULL;
	h->create_sent = h->busy = true;
	if (r == NULL || zoo_acreate2(h->s->c.zh, prefix, id, (int)strlen(id), h->s->c.acl,
	                              ZOO_EPHEMERAL_SEQUENTIAL, create_done, r) != ZOK) {
		zk_req_free(r);
		h->create_sent = h->busy = false;
		retry_later(h, "could not send the create");
	}
	free(prefix);
}

/* A node with our guid: ours only if our session owns it. */
static void owner_done(int rc, const struct Stat *stat, const void *data)
{
	struct zk_req *r = (struct zk_req *)(uintptr_t)data;
	struct lock_hold *h = req_hold(&r, rc);
	struct lock_session *s = h ? h->s : NULL;

	if (h != NULL) {
		h->busy = false;
		if (rc == ZOK && stat->ephemeralOwner == s->c.session_id) {
			log_info("zk: lock %s: found our node %s again after a lost create answer",
			         h->name, r->arg);
			adopt(h, r->arg);
		} else if (rc == ZOK || rc == ZNONODE) {
			h->create_sent = false;
			advance(h);
		} else {
			step_error(h, rc, "checking the owner of our node");
		}
		maybe_free(h);
	}
	zk_req_free(r);
}

static void find_done(int rc, const struct String_vector *sv, const void *data)
{
	struct zk_req *r = (struct zk_req *)(uintptr_t)data;
	struct lock_hold *h = req_hold(&r, rc);
	char *full = NULL;
	int i;

	zk_req_free(r);
	if (h == NULL)
		return;
	h->busy = false;
	i = rc == ZOK ? zk_find_guid((const char *const *)sv->data, sv->count, h->guid) : -1;
	if (rc == ZOK && i >= 0 && (full = node_path(h, sv->data[i])) != NULL) {
		struct zk_req *o = hold_req(h, OP_OWNER, sv->data[i]);

		h->busy = true;
		if (o == NULL || zoo_aexists(h->s->c.zh, full, 0, owner_done, o) != ZOK) {
			zk_req_free(o);
			h->busy = false;
			retry_later(h, "could not send the owner check");
		}
	} else if (rc == ZOK || rc == ZNONODE) {
		h->create_sent = false; /* not there: it was never created */
		advance(h);
	} else {
		step_error(h, rc, "looking for our node");
	}
	free(full);
	maybe_free(h);
}

static void send_find(struct lock_hold *h)
{
	struct zk_req *r = hold_req(h, OP_FIND, NULL);

	h->busy = true;
	if (r == NULL || zoo_aget_children(h->s->c.zh, h->dir, 0, find_done, r) != ZOK) {
		zk_req_free(r);
		h->busy = false;
		retry_later(h, "could not send the search for our node");
	}
}

/* The next step for a hold, whenever something changed (connected, an
 * answer, the retry timer). */
static void advance(struct lock_hold *h)
{
	struct lock_session *s = h->s;

	if (h->dead || !zkl_can_send(s) || h->busy || h->parents_sent || ev_is_active(&s->c.retry))
		return;
	if (h->node != NULL)
		h->released ? send_delete(h) : send_check(h);
	else if (h->create_sent)
		send_find(h);
	else if (!h->released)
		send_create(h);
}

/* ---- where do we stand? ------------------------------------------------- */

/* The watch's context is the hold's tag, not a pointer: a watch outlives a
 * released hold until its node changes. */
static void lock_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
	struct zk_conn *c = (struct zk_conn *)(uintptr_t)zoo_get_context(zh);
	struct lock_hold *h;

	(void)state;
	/* Session events reach every watcher; the session watcher has them. */
	if (c == NULL || c->in_zk_close || type == ZOO_SESSION_EVENT)
		return;
	h = hold_of(c->owner, (uint64_t)(uintptr_t)ctx);
	if (h != NULL && live(h)) {
		log_debug("zk: lock %s: watch fired on %s (event %d): checking again", h->name, path, type);
		send_check(h);
	}
}

static void watch_done(int rc, const struct Stat *stat, const void *data)
{
	struct zk_req *r = (struct zk_req *)(uintptr_t)data;
	struct lock_hold *h = req_hold(&r, rc);

	if (h != NULL && live(h)) {
		bool signalled = rc == ZOK && h->pred && strcmp(h->pred, r->arg) == 0 &&
		                 stat->version > 0 && !h->pred_signal_seen;

		if (signalled)
			h->pred_signal_seen = true; /* granted before the watch was set */
		if (rc == ZNONODE || signalled)
			send_check(h);
		else if (rc != ZOK)
			step_error(h, rc, "watching a node");
	}
	zk_req_free(r);
}

static void send_watch(struct lock_hold *h, const char *child)
{
	char *full = node_path(h, child);
	struct zk_req *r = full ? hold_req(h, OP_WATCH, child) : NULL;

	if (r == NULL || zoo_awexists(h->s->c.zh, full, lock_watcher, (void *)(uintptr_t)h->tag,
	                                      watch_done, r) != ZOK) {
		zk_req_free(r);
		retry_later(h, "could not set a watch");
	}
	free(full);
}

static void signal_done(int rc, const struct Stat *stat, const void *data)
{
	struct zk_req *r = (struct zk_req *)(uintptr_t)data;

	(void)stat;
	if (zk_req_done(r, rc) == NULL)
		return; /* freed: the handle is closing */
	if (rc != ZOK && !zk_connection_error(rc))
		log_debug("zk: marking %s granted: %s", r->arg, zerror(rc));
	zk_req_free(r);
}

/* Granted: mark our node (the waiter behind us watches it) and watch it
 * ourselves, in this order, so our own mark does not wake us. */
static void on_granted(struct lock_hold *h)
{
	const char *id = h->s->id ? h->s->id : "";
	char *full = node_path(h, h->node);
	struct zk_req *r;

	h->granted = true;
	log_debug("zk: lock %s: %s/%s granted, token %" PRIu64, h->name, h->dir, h->node, h->seq + 1);
	zk_queue(&h->s->c, ZE_GRANTED, (int64_t)h->seq + 1, NULL, h);
	if (full != NULL && h->limit > 1) {
		r = hold_req(h, OP_SIGNAL, h->node);
		if (r != NULL && zoo_aset(h->s->c.zh, full, id, (int)strlen(id), -1, signal_done, r) != ZOK)
			zk_req_free(r);
	}
	free(full);
}

static void evaluate(struct lock_hold *h, const struct String_vector *sv)
{
	int rank, n, *watch = calloc((size_t)sv->count + 1, sizeof(int));

	if (watch == NULL) {
		retry_later(h, "out of memory");
		return;
	}
	n = zk_lock_view((const char *const *)sv->data, sv->count, h->node, h->limit, &rank, watch);
	if (n < 0 && h->granted) {
		log_warnx("zk: lock %s: our node %s was deleted", h->name, h->node);
		free(h->node);
		h->node = NULL;
		h->dead = true; /* nothing more to do until lockd releases it */
		zk_queue(&h->s->c, ZE_HOLD_LOST, 0, "our ZooKeeper node was deleted", h);
	} else if (n < 0) {
		/* Deleted by someone else while we waited: queue again. */
		log_warnx("zk: lock %s: our waiting node %s was deleted; queueing again", h->name, h->node);
		free(h->node);
		h->node = NULL;
		advance(h);
	} else if ((unsigned)rank < h->limit) {
		if (!h->granted)
			on_granted(h);
		if (!h->own_watched) {
			h->own_watched = true;
			send_watch(h, h->node);
		}
	} else {
		const char *pred = n == 1 && (unsigned)rank > h->limit ? sv->data[watch[0]] : NULL;

		if (!h->told_queued) {
			h->told_queued = true;
			zk_queue(&h->s->c, ZE_QUEUED, 0, NULL, h);
		}
		if (pred == NULL || h->pred == NULL || strcmp(pred, h->pred) != 0) {
			free(h->pred);
			h->pred = pred ? strdup(pred) : NULL;
			h->pred_signal_seen = false;
		}
		for (int i = 0; i < n; i++)
			send_watch(h, sv->data[watch[i]]);
	}
	free(watch);
}

static void check_done(int rc, const struct String_vector *sv, const void *data)
{
	struct zk_req *r = (struct zk_req *)(uintptr_t)data;
	struct lock_hold *h = req_hold(&r, rc);

	zk_req_free(r);
	if (h == NULL)
		return;
	h->check_inflight = false;
	if (!live(h) || h->node == NULL) {
		maybe_free(h);
		return;
	}
	if (rc == ZOK || rc == ZNONODE) {
		struct String_vector none = { 0, NULL };
		evaluate(h, rc == ZOK ? sv : &none);
	} else {
		step_error(h, rc, "listing the lock's nodes");
	}
	if (h->check_again && h->node != NULL) {
		h->check_again = false;
		send_check(h);
	}
}

static void send_check(struct lock_hold *h)
{
	struct zk_req *r;

	if (!live(h) || h->node == NULL || !zkl_can_send(h->s))
		return;
	if (h->check_inflight) {
		h->check_again = true;
		return;
	}
	r = hold_req(h, OP_CHECK, NULL);
	h->check_inflight = true;
	if (r == NULL || zoo_aget_children(h->s->c.zh, h->dir, 0, check_done, r) != ZOK) {
		zk_req_free(r);
		h->check_inflight = false;
		retry_later(h, "could not send the check");
	}
}

/* ---- the session's changes ---------------------------------------------- */

/* A listing's answer is no hold's: it must reach lockd anyway. */
static bool hold_event(const struct zk_event *e, void *arg)
{
	(void)arg;
	return e->ptr != NULL && e->kind != ZE_LISTED;
}

/* Every hold went with the session: lockd hears session_lost only and
 * releases them all. */
static void lose_session(struct lock_session *s, const char *why)
{
	struct lock_hold *h, *next;

	zk_purge(&s->c, hold_event, NULL);
	for (h = s->holds; h; h = next) {
		next = h->next;
		h->dead = true;
		free(h->node);
		h->node = NULL;
		maybe_free(h);
	}
	zk_queue(&s->c, ZE_SESSION_LOST, 0, why, NULL);
}

static bool wants_session(void *owner)
{
	return ((struct lock_session *)owner)->open;
}

static void advance_all(void *owner)
{
	struct lock_session *s = owner;
	struct lock_hold *h, *next;

	for (h = s->holds; h; h = next) {
		next = h->next;
		advance(h);
	}
}

static void on_connected(void *owner, bool new_session)
{
	struct lock_session *s = owner;
	bool had_nodes = false;

	for (struct lock_hold *h = s->holds; h; h = h->next)
		had_nodes |= !h->dead && (h->node != NULL || h->create_sent || h->granted);
	if (new_session && had_nodes)
		lose_session(s, "ZooKeeper gave us a new session");
	/* After a reconnect: check every hold again (a node may have been
	 * deleted meanwhile), take up what was interrupted. */
	advance_all(s);
}

static bool on_refused(void *owner)
{
	(void)owner;
	return true; /* no hold has a node in a session we never accepted */
}

static void on_ended(void *owner, const char *why)
{
	lose_session(owner, why);
}

static void on_handle_closed(void *owner)
{
	struct lock_session *s = owner;

	/* The requests and watches went with the handle. */
	for (struct lock_hold *h = s->holds; h; h = h->next) {
		h->busy = h->parents_sent = h->check_inflight = h->check_again = false;
		h->own_watched = false;
	}
	zkl_fail_lists(s, "the connection to ZooKeeper was closed");
}

static void deliver(void *owner, const struct zk_event *e)
{
	struct lock_session *s = owner;
	const struct lock_events *ev = s->ev;

	switch (e->kind) {
	case ZE_ALIVE:        ev->session_alive(s->ctx, e->num); break;
	case ZE_FAILED:       ev->session_failed(s->ctx, e->str ? e->str : "error"); break;
	case ZE_SESSION_LOST: ev->session_lost(s->ctx, e->str ? e->str : "session lost"); break;
	case ZE_GRANTED:      ev->granted(s->ctx, e->ptr, (uint64_t)e->num); break;
	case ZE_HOLD_LOST:    ev->hold_lost(s->ctx, e->ptr, e->str ? e->str : "lost"); break;
	case ZE_QUEUED:       if (ev->queued) ev->queued(s->ctx, e->ptr); break;
	case ZE_CLOSED:       ev->closed(s->ctx); break;
	case ZE_LISTED:       zkl_deliver_list(s, e->ptr); break;
	default:              break;
	}
}

static void free_session(void *owner)
{
	struct lock_session *s = owner;

	zkl_deliver_lists(s);
	zk_conn_cleanup(&s->c);
	while (s->holds)
		free_hold(s->holds);
	free(s);
}

static const struct zk_conn_owner lock_owner = {
	.wants_session = wants_session,
	.connected = on_connected,
	.refused = on_refused,
	.ended = on_ended,
	.handle_closed = on_handle_closed,
	.retry = advance_all,
	.deliver = deliver,
	.free = free_session,
};

/* ---- lock_backend_ops --------------------------------------------------- */

static int zkl_create(struct lock_session **out, const struct backend_params *p,
                      const struct lock_events *ev, void *ctx, char *err, size_t errlen)
{
	struct lock_session *s = calloc(1, sizeof(*s));

	*out = NULL;
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	s->ev = ev;
	s->ctx = ctx;
	s->id = p->id;
	/* A URL without a path keeps the locks under /lockd. */
	if (zk_conn_init(&s->c, p, "lockd", &lock_owner, s, err, errlen) < 0) {
		free(s);
		return -1;
	}
	*out = s;
	return 0;
}

static void zkl_open(struct lock_session *s)
{
	s->open = true;
	zk_kick(&s->c);
}

/* One sync is the renewal: its answer is the alive proof (see zk_conn.h). */
static void zkl_renew(struct lock_session *s)
{
	if (zk_renew_wanted(&s->c))
		zk_send_renew_sync(&s->c);
}

static struct lock_hold *zkl_acquire(struct lock_session *s, const char *name, unsigned limit,
                                     void *hold_ctx)
{
	struct lock_hold *h = calloc(1, sizeof(*h));

	if (h == NULL || zk_make_guid(h->guid) < 0 || (h->name = strdup(name)) == NULL ||
	    (h->dir = zk_child_path(&s->c, name)) == NULL) {
		if (h != NULL)
			free(h->name);
		free(h);
		return NULL;
	}
	h->s = s;
	h->tag = ++s->next_tag;
	h->limit = limit ? limit : 1;
	h->ctx = hold_ctx;
	/* Appended: after a reconnect, holds take up their work in arrival order. */
	h->prev = s->tail;
	if (s->tail)
		s->tail->next = h;
	else
		s->holds = h;
	s->tail = h;
	advance(h);
	zk_kick(&s->c);
	return h;
}

static void zkl_release(struct lock_hold *h)
{
	struct zk_conn *c = &h->s->c;

	zk_purge(c, names_hold, h);
	h->released = true;
	h->ctx = NULL;
	/* Without a handle no session of ours lives: its nodes are gone. */
	if (c->zh == NULL)
		h->dead = true;
	if (h->node != NULL && !h->dead)
		advance(h); /* deletes it, now or after the reconnect */
	maybe_free(h);
	zk_kick(c);
}

static void *zkl_hold_ctx(const struct lock_hold *h)
{
	return h->ctx;
}

static void zkl_close(struct lock_session *s)
{
	if (s->c.closing)
		return;
	zk_purge(&s->c, hold_event, NULL);
	s->open = false;
	/* closeSession deletes every node of ours at once. */
	zk_conn_close(&s->c);
}

static void zkl_destroy(struct lock_session *s)
{
	if (s == NULL)
		return;
	/* Now, not when the session is freed (later if inside an event). */
	zkl_deliver_lists(s);
	zk_conn_destroy(&s->c);
}

const struct lock_backend_ops zk_lock_ops = {
	.scheme = "zk",
	.create = zkl_create,
	.open = zkl_open,
	.renew = zkl_renew,
	.acquire = zkl_acquire,
	.release = zkl_release,
	.hold_ctx = zkl_hold_ctx,
	.hold_fd = NULL,
	.list = zkl_list,
	.close = zkl_close,
	.destroy = zkl_destroy,
	.check_timing = NULL,
	.alive_lag = zk_alive_lag,
};
