/* Internals shared by the etcd backends' files: etcd.c (the election,
 * etcd_backend_ops), etcd_lock.c and etcd_lock_list.c (named locks and
 * their listings, etcd_lock_ops; private header etcd_lock.h), etcd_http.c
 * (the client: requests to the v3 JSON gateway over libcurl multi,
 * endpoints, rotation, timeouts, auth) and etcd_session.c (the lease and the
 * event queue both backends use). Not a public interface; the backends are
 * reached through backends/backend.h and backends/lock.h. */
#ifndef ELECT_ETCD_H
#define ELECT_ETCD_H

#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>
#include <ev.h>
#include <jansson.h>

#include "backends/backend.h"
#include "backends/etcd_proto.h"
#include "backends/lock.h"
#include "common/http_endpoints.h"

#define GRPC_NOT_FOUND 5
#define GRPC_PERMISSION_DENIED 7

struct etcd_client;
struct etcd_req;

/* ans: the parsed answer (borrowed) or NULL; err: NULL on success. The
 * request's owner is r->owner. */
typedef void (*etcd_req_done_fn)(struct etcd_req *r, const json_t *ans, const char *err);

/* One request slot: at most one request of its kind in flight. */
struct etcd_req {
	struct etcd_client *c;
	void *owner;               /* what the answer is for (backend, hold) */
	const char *what;          /* "keepalive", ... for logs */
	CURL *easy;
	struct curl_slist *hdrs;
	const char *path;
	char *body;                /* kept to resend (auth, next endpoint) */
	char *resp;
	size_t resp_len, resp_cap;
	int64_t sent_ns;           /* clock_now_ns() just before it was handed to libcurl */
	int64_t timeout_ns;        /* this attempt; 0 = the client's request timeout */
	int endpoint;              /* where it went */
	int tries;                 /* endpoints tried for this request */
	int grpc_code;             /* of the last server error, 0 if none */
	char errbuf[CURL_ERROR_SIZE]; /* libcurl's detail of a transport error (TLS...) */
	bool busy;                 /* in flight or waiting for an auth token */
	bool waiting_auth;
	bool auth_retried;
	bool transport_error;      /* the last failure was the connection, not etcd */
	/* Streams (watch): lines go to on_line(line, len, owner) instead of resp. */
	bool stream;
	struct etcd_lines lines;
	etcd_line_fn on_line;
	etcd_req_done_fn done;
	struct etcd_req *auth_next; /* in the client's list of requests waiting for a token */
};

/* The connection to one etcd cluster. */
struct etcd_client {
	struct ev_loop *loop;
	struct curl_ev *cev;
	/* Endpoints "host:port", the one in use (ep.owner_logs: the owner logs
	 * every change of reachability, as the elector core does: the client's
	 * own line is info, not warn), and the URL scheme. */
	struct http_endpoints ep;
	const char *scheme;
	const char *tls_ca, *tls_cert, *tls_key;
	int64_t req_timeout_ns, retry_ns;
	char *user, *password, *token;
	bool auth_failing;         /* logging: one line per state change of refused credentials */
	/* Refused credentials: the next login waits auth_backoff_ns (doubling
	 * up to AUTH_BACKOFF_MAX_NS), as every login costs etcd a bcrypt. */
	int64_t auth_backoff_ns, auth_next_ns;
	ev_timer auth_timer;
	struct etcd_req r_auth;
	struct etcd_req *auth_waiters;
};

/* etcd_http.c */
/* Checks p (timing, TLS files, URL) and sets the client up; *path is the URL
 * path (malloc'd, without the leading '/'). No I/O. */
int etcd_client_init(struct etcd_client *c, const struct backend_params *p, char **path,
                     char *err, size_t errlen);
/* Free the requests first. */
void etcd_client_free(struct etcd_client *c);
int etcd_check_timing(const struct backend_params *p, char *err, size_t errlen);
void etcd_req_init(struct etcd_client *c, struct etcd_req *r, void *owner, const char *what,
                   etcd_req_done_fn done);
/* Sends body (taken over, may be NULL on out of memory) to path. */
void etcd_req_send(struct etcd_req *r, const char *path, char *body);
/* Sets what and done for a unary request, then sends. */
void etcd_req_call(struct etcd_req *r, const char *what, etcd_req_done_fn done, const char *path,
                   char *body);
/* Sends the same request again (next endpoint after a failure). */
void etcd_req_resend(struct etcd_req *r);
void etcd_req_cancel(struct etcd_req *r);
void etcd_req_free(struct etcd_req *r);
/* Logs (once per change from working to failing) and moves to the next
 * endpoint: for answers that are wrong in a way the parser found. */
void etcd_note_failure(struct etcd_req *r, const char *err);

/* etcd_session.c: the lease that holds a session's keys. */
struct etcd_lease_events {
	void (*granted)(void *owner, int64_t sent_ns);  /* l->id is set */
	void (*grant_failed)(void *owner, const char *err); /* try again later */
	void (*alive)(void *owner, int64_t sent_ns);    /* a keepalive succeeded */
	void (*failed)(void *owner, const char *err);   /* a keepalive failed (transient) */
	void (*gone)(void *owner, const char *reason);  /* expired; l->id is 0 again */
	void (*closed)(void *owner);                    /* revoked, or given up */
};

struct etcd_lease {
	struct etcd_client *c;
	int64_t id, ttl_ns;
	struct etcd_req r;         /* grant, keepalive or revoke */
	struct etcd_req r_status;  /* the member's version, once (etcd_session.c) */
	ev_timer close_timer;
	bool closed_sent, status_asked;
	const struct etcd_lease_events *ev;
	void *owner;
};

void etcd_lease_init(struct etcd_lease *l, struct etcd_client *c, int64_t ttl_ns,
                     const struct etcd_lease_events *ev, void *owner);
/* Each does nothing while another lease request is in flight. */
void etcd_lease_grant(struct etcd_lease *l);
void etcd_lease_keepalive(struct etcd_lease *l);
/* Revokes (deleting every key attached to it) and reports closed() within the
 * request timeout, at once (from inside this call) without a lease. */
void etcd_lease_revoke(struct etcd_lease *l);
void etcd_lease_free(struct etcd_lease *l);

/* etcd_session.c: events to the backend's user go out from a zero timer, in
 * order, never from inside the operation that caused them. */
struct etcd_event {
	int kind;
	int64_t num;
	char *str;
	void *hold;                /* lock backend: the hold it names, or NULL */
	unsigned gen;              /* q->gen when queued: the owner drops stale ones */
	struct etcd_event *next;
};

typedef void (*etcd_deliver_fn)(void *owner, const struct etcd_event *e);

struct etcd_events {
	struct ev_loop *loop;
	ev_timer flush;
	struct etcd_event *head, *tail;
	unsigned gen;
	bool in_flush, free_pending;
	etcd_deliver_fn deliver;
	void (*free_owner)(void *owner);
	void *owner;
};

void etcd_events_init(struct etcd_events *q, struct ev_loop *loop, etcd_deliver_fn deliver,
                      void (*free_owner)(void *owner), void *owner);
void etcd_emit(struct etcd_events *q, int kind, int64_t num, const char *str, void *hold);
/* Drops the queued events that name hold. */
void etcd_events_forget(struct etcd_events *q, const void *hold);

/* The events of an election backend (etcd.c, consul.c) for the core. */
enum election_event { EV_ALIVE, EV_FAILED, EV_ELECTED, EV_LOST, EV_LEADER, EV_CLOSED };
/* Hands e to the core's callbacks; events queued before q's current
 * generation (before a resign or close) are stale and dropped, except
 * closed. */
void election_deliver(const struct etcd_events *q, const struct backend_events *ev, void *ctx,
                      const struct etcd_event *e);
/* The events of a lock backend (etcd_lock.c, consul_lock*.c) for lockd. */
enum lock_event_kind { LK_ALIVE, LK_FAILED, LK_LOST, LK_GRANTED, LK_HOLD_LOST, LK_CLOSED, LK_QUEUED };
/* Delivers one, except a hold's queued before the session was lost or
 * closed (e->gen != q->gen). */
void lock_deliver(const struct etcd_events *q, const struct lock_events *ev, void *ctx,
                  const struct etcd_event *e);
/* Queues EV_LEADER if id (NULL: none) differs from *leader, which is
 * updated (*known: a leader was reported at all). */
void election_report_leader(struct etcd_events *q, char **leader, bool *known, const char *id);
/* The owner's destroy(): frees it now, or after the event being delivered. */
void etcd_events_destroy(struct etcd_events *q);
/* Part of freeing the owner: stops the timer, drops what is queued. */
void etcd_events_free(struct etcd_events *q);

/* etcd_session.c: a watch for the deletion of some keys on one stream. done()
 * runs from the loop: fired = one of them was deleted (or the server ended
 * or garbled the watch: check again now); !fired = the stream broke (check
 * again after a pause). */
struct etcd_watch {
	struct etcd_req r;
	char *keys;                /* what is watched, '\n'-joined */
	bool fired;
	void (*done)(void *owner, bool fired);
	void *owner;
};

void etcd_watch_init(struct etcd_watch *w, struct etcd_client *c,
                     void (*done)(void *owner, bool fired), void *owner);
/* Watches keys from start_rev on, unless exactly these are watched already.
 * -1: out of memory (nothing is watched). */
int etcd_watch_start(struct etcd_watch *w, char *const *keys, size_t n, int64_t start_rev);
void etcd_watch_stop(struct etcd_watch *w);
void etcd_watch_free(struct etcd_watch *w);

/* "<path>/" without repeated trailing slashes, or "<name>/" when path is
 * empty; NULL when both are empty or out of memory. */
char *etcd_key_prefix(const char *path, const char *name);

#endif
