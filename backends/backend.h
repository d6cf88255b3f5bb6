/* The backend interface: one election in one coordination service.
 *
 * A backend is asynchronous. Every operation returns at once; results arrive
 * later as calls of the `backend_events` callbacks, always from the libev loop
 * the backend was created with (never from another thread, never from inside
 * the operation that caused them). Backends never block the loop.
 *
 * The elector core (elector/core.c) owns the safety rule. A backend's part of
 * it is to report honestly:
 *   - session_alive(sent_ns): a request that proves the session (lease,
 *     ZooKeeper session, file lock) was alive was SENT at sent_ns
 *     (clock_now_ns() taken just before the send) and has now succeeded. The
 *     core computes the leader's deadline as sent_ns + ttl - margin. Report it
 *     for the session's creation and every successful renewal. Reporting the
 *     time the answer arrived instead would be unsafe. A backend whose
 *     renewal proves only an earlier request (ZooKeeper) reports that one's
 *     send time and declares the lag (alive_lag).
 *   - elected(token, handover): we now lead. Call session_alive first (the
 *     core refuses to lead without a known alive time). The token strictly
 *     increases across all holders of this election (etcd: create revision of
 *     our key; zk: sequence number; file: counter kept in the file).
 *     handover: the handover record (common/handover.h) found next to the
 *     election in the same consistent read that made us leader, or NULL. The
 *     core may answer at once with resign() (the record names another
 *     candidate: we stand aside) or clear_handover() (we lead; it is done).
 *   - lost(reason): the session or our key is definitely gone (lease expired,
 *     key deleted, ZooKeeper session expired, lock file replaced). The core
 *     steps down at once if it leads, then calls campaign() again.
 *   - session_failed(reason): one renewal failed or timed out (transient); the
 *     core keeps its deadline and may go `suspended`. Report it also while
 *     campaigning when the backend cannot be reached (connect refused, lease
 *     grant failed, lock file cannot be opened), with the reason: the core
 *     logs reachability changes and shows them (backend_ok, last_error).
 *     session_alive means reachable again.
 *   - leader(id): the observed leader of the election changed (NULL: none).
 *     Reported to leaders and followers alike, on change only.
 *   - closed(): close() has finished (or given up); the core may exit.
 *
 * Lifecycle, all driven by the core:
 *   create -> campaign -> (renew)* -> [resign -> campaign]* -> close -> destroy
 * campaign(): open a session if there is none, enter the election, keep trying
 *   (with the backend's own retry/backoff) until elected, resign() or close().
 * renew(): send one renewal now (keepalive / ping / lock check). With no
 *   session yet, report session_failed("no session"). If a renewal is still in
 *   flight, the backend may skip sending another.
 * resign(): leave the election (delete our key/node, unlock), keep the session
 *   if it has one. Nothing more is reported until the next campaign().
 * handover(record): resign, leaving record (a string of up to HANDOVER_MAX
 *   bytes) for the next candidates: written before, or atomically with, the
 *   release of our key/lock, so that any candidate elected after the release
 *   reads it. A backend that found a record when elected and resigns keeps
 *   that record in place in resign() (a candidate standing aside must not
 *   erase it).
 * clear_handover(record): remove record if it is still the one in force
 *   (leader that took over, or the old leader after the timeout); a no-op
 *   where the record went with our acquisition or cannot be removed now.
 * close(): resign and end the session (revoke lease, close ZooKeeper session),
 *   then report closed(). Must report closed() within the request timeout even
 *   if the server does not answer.
 * destroy(): free everything; no callbacks after it. Safe after closed().
 */
#ifndef ELECT_BACKEND_H
#define ELECT_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct backend;

struct backend_events {
	void (*session_alive)(void *ctx, int64_t sent_ns);
	void (*session_failed)(void *ctx, const char *reason);
	void (*elected)(void *ctx, uint64_t token, const char *handover);
	void (*lost)(void *ctx, const char *reason);
	void (*leader)(void *ctx, const char *leader_id);
	void (*closed)(void *ctx);
};

/* What the core hands to a backend. Strings stay valid for the backend's life. */
struct backend_params {
	struct ev_loop *loop;
	const char *url;          /* e.g. "etcd://127.0.0.1:2379/web", "file:///run/elect/web.lock" */
	const char *name;         /* election name; the key/path when the URL has none */
	const char *id;           /* this candidate's id (the value others see as leader) */
	int64_t ttl_ns;           /* session TTL / ZooKeeper session timeout asked for */
	int64_t renew_ns;         /* renew interval */
	int64_t request_timeout_ns; /* one request's timeout */
	/* Optional, NULL when unset. */
	const char *tls_ca, *tls_cert, *tls_key;
	const char *auth;         /* "user:password" (etcd auth, ZooKeeper digest); Consul:
	                           * the ACL token; Kubernetes: a bearer token */
	const char *kubeconfig;   /* Kubernetes: --kubeconfig (NULL: $KUBECONFIG or in-cluster) */
	const struct backend_events *ev;
	void *ctx;                /* passed back to every event */
};

struct backend_ops {
	const char *scheme;       /* URL scheme: "file", "etcd", "zk", "consul" */
	/* Parse the URL and options, check them, allocate. No I/O that can block.
	 * On error return -1 with a one-line message in err (what is wrong and
	 * how to fix it). */
	int (*create)(struct backend **out, const struct backend_params *p, char *err, size_t errlen);
	void (*campaign)(struct backend *b);
	void (*renew)(struct backend *b);
	void (*resign)(struct backend *b);
	void (*handover)(struct backend *b, const char *record);
	void (*clear_handover)(struct backend *b, const char *record);
	void (*close)(struct backend *b);
	void (*destroy)(struct backend *b);
	/* Optional: extra static check of timing (e.g. etcd's 2 s minimum TTL, ZooKeeper's
	 * tick bounds). NULL = none. Return -1 with a message to refuse. */
	int (*check_timing)(const struct backend_params *p, char *err, size_t errlen);
	/* Optional: how much older than a renewal's send time the sent_ns of
	 * the session_alive it yields may be (ZooKeeper proves a renewal with a
	 * request sent at least a lag before it, see backends/zk_conn.h). The
	 * core's timing check counts it. NULL = 0: sent_ns is the renewal's. */
	int64_t (*alive_lag)(const struct backend_params *p);
	/* Optional: a descriptor the leader command inherits, so that the hold
	 * outlives a killed agent until the command is gone too. The file
	 * backend needs it: the kernel closes a dying agent's files (releasing
	 * its lock) before PDEATHSIG reaches the child, so without it the next
	 * leader could start while the old command still runs. NULL or -1: none. */
	int (*leader_fd)(struct backend *b);
};

/* Every backend, in backends/registry.c. */
const struct backend_ops *backend_lookup(const char *url);
/* "file, zk, etcd, consul" for messages. */
const char *backend_schemes(void);

/* Each backend file defines one of these and registry.c lists it. */
extern const struct backend_ops file_backend_ops;
extern const struct backend_ops zk_backend_ops;
extern const struct backend_ops etcd_backend_ops;
extern const struct backend_ops consul_backend_ops;
extern const struct backend_ops k8s_backend_ops;

/* Helpers shared by backends (backends/registry.c). */
/* Splits "scheme://hosts/path": hosts and path are malloc'd (path without the
 * leading '/', may be empty). Returns -1 with a message on a malformed URL. */
int backend_split_url(const char *url, char **hosts, char **path, char *err, size_t errlen);

#endif
