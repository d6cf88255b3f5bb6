/* ZooKeeper session driver, shared by the election backend (zk.c,
 * zk_elect.c) and the lock backend (zk_lock.c, zk_lock_list.c): one
 * libzookeeper_st handle driven by libev, the session's states, request
 * slots, the alive proof (session_alive: see "Alive proof" below) and an
 * event queue delivered from the loop, never from inside the call that
 * caused an event.
 *
 * Alive proof. A ZooKeeper follower answers its clients by itself, also
 * when it is cut off from its leader (for up to syncLimit x tickTime), while
 * the leader expires a session one timeout after the last touch it heard
 * of; and the leader hears of a follower's touches only through the
 * follower's replies to its pings (every tickTime/2), which the leader reads
 * in order with the requests the follower forwards. So an answered read
 * proves nothing about the leader's clock. What does: a sync (forwarded to
 * the leader, answered after it answered) sent at s_sync, together with an
 * earlier request sent at s' whose answer came at a' <= s_sync - lag (lag =
 * 1.5 x tickTime): the follower got a ping between a' and the sync's
 * forwarding, so its touch (>= s') reached the leader before the sync, and
 * the leader's expiry is at least s' + timeout. A leader cut off from its
 * quorum answers syncs itself until it notices (about syncLimit ticks, at
 * tick granularity), but its successor starts no earlier than its last
 * answer - lag, when it resets every session's expiry to its start +
 * timeout: s' <= a_sync - lag is before that start. So session_alive is
 * reported only from answered syncs, with s' as the send time; a new
 * session's first one is the handle's creation (the session is created by
 * the leader, after it). The lag is the price: the deadline of a renewal is
 * counted from a request at least lag older (zk_alive_lag()).
 *
 * The owner (struct backend or struct lock_session) embeds a struct zk_conn
 * and is called back through struct zk_conn_owner. */
#ifndef ELECT_ZK_CONN_H
#define ELECT_ZK_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include <ev.h>
#include <zookeeper/zookeeper.h>

#include "backends/backend.h"
#include "common/clock.h"

/* What a request is for (both users' kinds; the driver only needs OP_DELETE:
 * close waits for deletes in flight, the election's handover multi among
 * them). OP_RECORD: reads and removal of the election's handover record. */
enum zk_op {
	OP_PARENT, OP_FIND, OP_OWNER, OP_CREATE, OP_CHECK, OP_WATCH, OP_LEADER, OP_RENEW,
	OP_DELETE, OP_SIGNAL, OP_RECORD, OP_SYNC
};

/* The default tickTime of ZooKeeper's servers (and Debian's zoo.cfg); the
 * URL option ?tick= names another. The alive proof's lag is 1.5 ticks. */
#define ZK_DEFAULT_TICK_NS (2 * NS_PER_SEC)
#define ZK_ANSWERS 32

/* When an answered request was sent and when its answer came; opened_ns:
 * when the first answer this entry stands for came (see note_answer). */
struct zk_answer {
	int64_t sent_ns, answered_ns, opened_ns;
};

/* One asynchronous request. Owned by the connection, not by the completion:
 * the single-threaded client may drop pending completions when the handle
 * is closed (ZOOKEEPER-2894), so closing the handle frees what is left. */
struct zk_req {
	struct zk_conn *c;
	struct zk_req *prev, *next;
	enum zk_op op;
	uint64_t tag;             /* the owner's: candidacy or hold it belongs to */
	int64_t sent_ns;          /* clock_now_ns() just before the send */
	char *arg;                /* node name it is about, or NULL */
};

enum zk_event_kind {
	ZE_ALIVE, ZE_FAILED, ZE_CLOSED,        /* session, from the driver */
	ZE_ELECTED, ZE_LOST, ZE_LEADER,        /* election */
	ZE_GRANTED, ZE_HOLD_LOST, ZE_QUEUED, ZE_SESSION_LOST, /* locks */
	ZE_LISTED                              /* lock listings: ptr = the listing */
};

struct zk_event {
	enum zk_event_kind kind;
	int64_t num;
	char *str;
	void *ptr;
};

struct zk_conn_owner {
	/* Should a session be open now? (the driver connects when it is not) */
	bool (*wants_session)(void *owner);
	/* Connected with an acceptable timeout; new_session is false when the
	 * client got the same session back after a disconnect. */
	void (*connected)(void *owner, bool new_session);
	/* The server refused the timeout; the handle is dropped unless the
	 * owner returns false (it then sets drop_handle itself later). */
	bool (*refused)(void *owner);
	/* The session ended (expired, auth failed): the handle is being dropped. */
	void (*ended)(void *owner, const char *why);
	/* The handle was closed: forget what was in flight on it. */
	void (*handle_closed)(void *owner);
	void (*retry)(void *owner);
	void (*deliver)(void *owner, const struct zk_event *e);
	void (*free)(void *owner);
};

struct zk_conn {
	const struct zk_conn_owner *ops;
	void *owner;
	struct ev_loop *loop;
	const char *auth;            /* "user:password" or NULL */
	char *hosts, *path;          /* "h1:2181,h2:2181", "/elect/web" */
	int ttl_ms;
	int64_t tick_ns, lag_ns;     /* the servers' tickTime (?tick=), 1.5 x that */
	int64_t retry_ns, renew_timeout_ns, close_timeout_ns;
	struct ACL_vector *acl;
	zhandle_t *zh;
	int64_t session_id;          /* of the current handle's session, 0 = none yet */

	ev_io io;                    /* the client's socket */
	ev_timer zk_timer;           /* the client's own timeout (pings, reconnect) */
	ev_timer kick;               /* deferred work: events, handle close */
	ev_timer retry;              /* back-off before the next attempt */
	ev_timer renew_timeout, close_timer;

	bool connected, refused, warned_longer, warned_tick;
	int64_t handle_created_ns;   /* clock_now_ns() before zookeeper_init2() */
	/* Answered requests of this session, oldest first, by answer time:
	 * the candidates for a sync's alive proof. */
	struct zk_answer answers[ZK_ANSWERS];
	int n_answers;
	bool closing, close_expired, close_done;
	bool drop_handle, in_zk_close;
	bool renew_inflight, renew_late;
	int64_t alive_reported_ns;
	/* Answers prove the session but, after a reconnect, not the owner's
	 * node: while held, session_alive is kept back (zk_release_alive). */
	bool hold_alive;
	int64_t held_alive_ns;
	/* Reachability while not connected: the client's last error (it logs
	 * each failed connect; we read them), reported once per outage as a
	 * ZE_FAILED, then with every renewal the owner asks for. */
	unsigned client_err_seq;
	bool unreachable_reported;
	char client_err[200];

	struct zk_req *reqs;         /* in flight */
	struct zk_event *q;          /* events waiting for delivery: q[qhead..qlen) */
	int qhead, qlen, qcap;
	bool in_flush, destroy_pending;
};

/* Parse the URL (path_name names the path when the URL has none), check the
 * timing and auth, set up the watchers. No I/O. -1 with a message. */
int zk_conn_init(struct zk_conn *c, const struct backend_params *p, const char *path_name,
                 const struct zk_conn_owner *ops, void *owner, char *err, size_t errlen);
/* Stop everything and free what the connection owns (not the owner). */
void zk_conn_cleanup(struct zk_conn *c);
/* The owner's destroy: frees now, or after the event being delivered. */
void zk_conn_destroy(struct zk_conn *c);
/* Start closing: the handle is closed (closeSession) once no delete is in
 * flight or after the close timeout, then ZE_CLOSED is delivered. */
void zk_conn_close(struct zk_conn *c);

void zk_queue(struct zk_conn *c, enum zk_event_kind kind, int64_t num, const char *str, void *ptr);
/* Drop queued events for which drop(e, arg) is true. */
void zk_purge(struct zk_conn *c, bool (*drop)(const struct zk_event *e, void *arg), void *arg);
void zk_kick(struct zk_conn *c);
void zk_retry_later(struct zk_conn *c, int64_t after_ns);

struct zk_req *zk_req_new(struct zk_conn *c, enum zk_op op, const char *arg);
void zk_req_free(struct zk_req *r);
/* The request's completion came; returns the owner, or NULL when the handle
 * is closing (r is then already freed). Notes the session alive when the
 * server answered. */
void *zk_req_done(struct zk_req *r, int rc);
/* Is a request of this kind (about arg, unless NULL) in flight? */
bool zk_req_pending(const struct zk_conn *c, enum zk_op op, const char *arg);
bool zk_connection_error(int rc);
/* The last component of a path. */
const char *zk_basename(const char *path);
/* A create's answer: the node exists and our session owns it (the
 * ephemeralOwner check of DESIGN.md: never take a node that is not ours). */
bool zk_created_ours(const struct zk_conn *c, int rc, const char *value, const struct Stat *stat);
/* "<conn path>/<name>", malloc'd (NULL when out of memory). */
char *zk_child_path(const struct zk_conn *c, const char *name);

/* Creates path and its parents (persistent, empty), one pipelined request
 * each; done() runs for each, the one with r->arg == path decides. false if
 * a send failed (the caller retries later). */
bool zk_send_parents(struct zk_conn *c, const char *path, uint64_t tag, string_completion_t done);

/* How much older than a renewal's send time its alive proof may be, for
 * the timing checks: the lag and one renew interval (the proving request
 * may be the previous renewal). 0 for a URL it cannot parse (create()
 * then refuses it). */
int64_t zk_alive_lag(const struct backend_params *p);

/* Reports (or, while held, keeps) a session_alive for this send time. */
void zk_note_alive(struct zk_conn *c, int64_t sent_ns);
void zk_release_alive(struct zk_conn *c);

/* Renewals: a renewal can be sent now (else a session_failed is queued);
 * the renewal was sent (starts its timeout); its answer came. */
bool zk_renew_wanted(struct zk_conn *c);
/* Sends the renewal's sync (on the connection's path): its answer is the
 * alive proof (see above) and ends the renewal. false (a session_failed is
 * queued) if it could not be sent. */
bool zk_send_renew_sync(struct zk_conn *c);

#endif
