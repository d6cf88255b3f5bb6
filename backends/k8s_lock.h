/* Internals of the Kubernetes lock backend: k8s_lock.c (the holds: the
 * decision, the acquire write, renewal and release of each hold's Lease),
 * k8s_lock_session.c (the session: reachability, the renewal round and the
 * deadline it reports, the namespace's Leases as listed and watched,
 * lock_backend_ops) and k8s_lock_list.c (list()). The API client, the
 * connection and the Lease format are the election backend's (k8s.h). Not
 * a public interface. */
#ifndef ELECT_K8S_LOCK_H
#define ELECT_K8S_LOCK_H

#include <sys/queue.h>

#include "backends/etcd.h"         /* the event queue */
#include "backends/k8s.h"
#include "backends/lock.h"

/* What lockd's identity needs, for the refusal line. */
#define K8S_LOCK_VERBS "get, list, watch, create and update"
#define K8S_LOCK_RBAC "deploy/kubernetes/rbac-lockd.yaml"
/* Lease names: at most this long (RFC 1123 subdomain). */
#define K8S_NAME_MAX 253
/* Slot numbers take at most this many digits ("-999": lockd's limit is 1000). */
#define K8S_SLOT_DIGITS 3

enum k8s_hold_state {
	KH_PENDING,    /* waits: for the session, the view, its turn or a free slot */
	KH_WRITING,    /* its acquire (POST or PUT) or a re-read after one is in flight */
	KH_GRANTED,    /* holds Lease `lease`; renewed by every round */
	KH_RELEASING,  /* its release PUT (or the re-read before one) is in flight */
	KH_DEAD,       /* lost: only release() is left */
};

/* A Lease of the namespace as last seen (listed, watched, or in the answer
 * to one of our writes), or a deleted one (absent). */
struct k8s_seen {
	char *name;
	struct k8s_lease l;        /* valid unless absent */
	bool absent;
	bool listed;               /* in the last LIST (to find the deleted ones) */
	int64_t observed_ns;       /* when its resourceVersion was first received */
	int64_t max_transitions;   /* highest leaseTransitions seen on it, even deleted */
	int64_t create_after_ns;   /* deleted while held by someone: made again no sooner */
};

struct lock_hold {
	struct lock_session *s;
	TAILQ_ENTRY(lock_hold) link;   /* s->holds, in arrival order: the local FIFO */
	char *name;
	unsigned limit;
	void *ctx;
	enum k8s_hold_state state;
	bool queued_sent;
	bool release_wanted;       /* release() came while a write was in flight */
	bool backing_off;          /* retry is a pause after a failure */
	/* The Lease it writes or holds: slot K of the name. */
	unsigned slot;
	char *lease;
	int64_t transitions;       /* leaseTransitions we wrote (M + 1) */
	uint64_t token;
	char acquire_time[48];     /* the acquireTime we wrote */
	char *rv;                  /* resourceVersion of our last write */
	json_t *obj;               /* the object as our last write returned it */
	/* The deadline rule: unsure_sent_ns is the send time of an acquire
	 * whose outcome is not known yet (0: none); visible_ns the send time of
	 * the last write of ours that client-go could see (its renewTime second
	 * changed), visible_sec that second. */
	int64_t unsure_sent_ns;
	int64_t visible_ns;
	char visible_sec[24], pending_sec[24];
	int64_t give_up_ns;        /* a release is retried until then */
	struct k8s_req r;
	ev_timer retry;
};

TAILQ_HEAD(k8s_holds, lock_hold);
struct k8s_lock_list;

struct lock_session {
	struct ev_loop *loop;
	struct k8s_client c;
	const struct lock_events *ev;
	void *ctx;
	char *ns, *ns_esc;
	char *prefix;              /* "P-" or "" */
	char *id;
	int64_t ttl_s, ttl_ns;
	struct k8s_holds holds;
	/* The namespace's Leases: complete once listed (loaded), current while
	 * the watch runs (live). */
	struct k8s_seen **seen;
	size_t n_seen;
	bool loaded, live;
	char *watch_rv;
	struct k8s_req r_list, r_watch, r_ping;
	ev_timer view_timer;       /* the next LIST after a failure */
	ev_timer ping_timer;       /* the next reachability check before the session is up */
	ev_timer kick;             /* decisions outside libcurl's callbacks */
	ev_timer close_timer;
	/* The session: up once an answer proved the API server reachable with
	 * our rights; alive_reported is the send time lockd counts from. */
	bool want_session, up, closing, closed_sent;
	int64_t ping_ok_ns;
	int64_t alive_reported;
	int64_t close_by_ns;
	char last_refusal[900];
	struct k8s_lock_list *lists;
	struct etcd_events q;
};

/* k8s_lock_session.c */
void k8s_lock_emit(struct lock_session *s, int kind, int64_t num, const char *str,
                   struct lock_hold *h);
void k8s_lock_kick(struct lock_session *s);
/* Reports alive when the oldest visible write of every hold (and every
 * acquire not yet answered) moved past what was reported. */
void k8s_lock_update_alive(struct lock_session *s);
/* A 401/403 or another unexpected answer: the one line (logged once per
 * change) in line. */
void k8s_lock_refused(struct lock_session *s, struct k8s_req *r, long status, char *line,
                      size_t len);
struct k8s_seen *k8s_seen_find(struct lock_session *s, const char *lease);
/* Takes l over into the view (l is emptied). Returns its entry or NULL. */
struct k8s_seen *k8s_seen_observe(struct lock_session *s, struct k8s_lease *l);
/* Parses an answer body as a Lease and observes it; NULL if it is none. */
struct k8s_seen *k8s_seen_observe_json(struct lock_session *s, const char *body, size_t len);
/* The Lease is gone (404, DELETED). */
void k8s_seen_deleted(struct lock_session *s, const char *lease);
/* "P-NAME" (limit 1) or "P-NAME-K" into buf. */
void k8s_lock_lease_name(const struct lock_session *s, const char *name, unsigned limit,
                         unsigned slot, char *buf, size_t len);

/* k8s_lock.c */
struct lock_hold *k8s_lock_acquire(struct lock_session *s, const char *name, unsigned limit,
                                   void *hold_ctx);
void k8s_lock_release(struct lock_hold *h);
void *k8s_lock_hold_ctx(const struct lock_hold *h);
void k8s_hold_decide(struct lock_hold *h);
void k8s_hold_renew(struct lock_hold *h);
void k8s_hold_free(struct lock_hold *h);

/* k8s_lock_list.c */
int k8s_lock_list(struct lock_session *s, const char *const *names, size_t n, bool all,
                  lock_list_cb cb, void *arg);
void k8s_lock_list_abort_all(struct lock_session *s);

#endif
