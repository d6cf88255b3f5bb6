/* Internals of the Kubernetes backend: k8s.c (the election on a Lease,
 * k8s_backend_ops), k8s_http.c (the API client: requests and the watch
 * stream over libcurl multi on the loop, the bearer token and its rotation,
 * back-off), k8s_proto.c (the Lease object in client-go's LeaseLock format)
 * and k8s_conn.c (where the API server is, k8s_conn.h). Not a public
 * interface. */
#ifndef ELECT_K8S_H
#define ELECT_K8S_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <ev.h>
#include <jansson.h>

#include "backends/backend.h"
#include "backends/etcd_proto.h"     /* struct etcd_lines: the watch stream's lines */
#include "backends/k8s_conn.h"
#include "common/backoff.h"

/* The annotation that carries a handover record (common/handover.h) on a
 * released Lease. */
#define K8S_HANDOVER_ANNOTATION "elect.io/handover"
/* lockd's Leases (k8s_lock*.c) carry the lock name and its limit. */
#define K8S_LOCK_ANNOTATION "elect.io/lock"
#define K8S_LIMIT_ANNOTATION "elect.io/limit"
/* The Leases of a namespace (printf format, the namespace %-escaped). */
#define K8S_LEASES "/apis/coordination.k8s.io/v1/namespaces/%s/leases"
/* Backing off after 429, 5xx, connection errors and refusals, up to this,
 * and never longer than the lease duration (k8s_client.backoff_max_ns). */
#define K8S_BACKOFF_MAX_NS (30 * NS_PER_SEC)
/* The token file is read again after this (bound tokens rotate). */
#define K8S_TOKEN_REREAD_NS (60 * NS_PER_SEC)

/* ---- k8s_proto.c: the Lease ---------------------------------------- */

/* What elect reads of a Lease. Strings malloc'd; holder "" when none. */
struct k8s_lease {
	char *name;                /* metadata.name ("" if unset) */
	char *rv;                  /* metadata.resourceVersion */
	char *holder;              /* spec.holderIdentity ("" if unset) */
	int64_t duration_s;        /* spec.leaseDurationSeconds (0 if unset) */
	int64_t transitions;       /* spec.leaseTransitions */
	char *acquire_time;        /* spec.acquireTime as written, NULL if unset */
	char *handover;            /* the handover annotation, NULL if none */
	char *lock_name;           /* K8S_LOCK_ANNOTATION, NULL if none */
	unsigned lock_limit;       /* K8S_LIMIT_ANNOTATION, 0 if none or not a number */
	json_t *obj;               /* the whole object, to PUT back with changes */
};

/* Reads a Lease object (not consumed). -1 with a message if it is not one. */
int k8s_lease_parse(const json_t *obj, struct k8s_lease *l, char *err, size_t errlen);
void k8s_lease_free(struct k8s_lease *l);
/* MicroTime now: "2006-01-02T15:04:05.000000Z". */
void k8s_micro_time(char *buf, size_t len);

/* What to write. holder "" releases (client-go's ReleaseOnCancel writes
 * holder "", duration 1); acquire_time NULL = now; handover NULL removes
 * the annotation. */
struct k8s_spec {
	const char *holder;
	int64_t duration_s;
	int64_t transitions;
	const char *acquire_time;
	const char *renew_time;    /* NULL = now */
	const char *handover;
	const char *lock_name;     /* lockd: set K8S_LOCK_ANNOTATION and, with */
	unsigned lock_limit;       /* it, K8S_LIMIT_ANNOTATION; NULL: left as they are */
};
/* The body of a PUT of base (the object last read, NULL to create one named
 * namespace/name) with spec s and resourceVersion rv: every other field of
 * base (labels, other annotations, owner references) kept. malloc'd. */
char *k8s_lease_body(const json_t *base, const char *namespace, const char *name, const char *rv,
                     const struct k8s_spec *s);

/* One line of a watch stream: {"type": ..., "object": {...}}. */
enum k8s_watch_type { KW_ADDED, KW_MODIFIED, KW_DELETED, KW_BOOKMARK, KW_ERROR, KW_OTHER };
/* *obj: the event's object (a reference into *doc, which the caller frees).
 * -1 if the line is not an event. */
int k8s_watch_parse(const char *line, size_t len, json_t **doc, enum k8s_watch_type *type,
                    json_t **obj);
/* The message and code of a Status object (an error answer or a watch
 * ERROR): code 0 and "" if there are none. */
void k8s_status_message(const json_t *status, long *code, char *msg, size_t len);

/* ---- k8s_http.c: the client --------------------------------------- */

struct k8s_client;
struct k8s_req;

/* The request ended. err NULL: an answer with HTTP status `status` (any, 404
 * and 409 included), the body in r->resp (NUL-terminated). err set: no usable
 * answer (connection, timeout, 5xx, 429): back off (k8s_req_retry_ns). */
typedef void (*k8s_req_done_fn)(struct k8s_req *r, long status, const char *err);
/* A streamed request (watch): each complete line. Non-zero aborts it. */
typedef int (*k8s_line_fn)(struct k8s_req *r, const char *line, size_t len);

struct k8s_req {
	struct k8s_client *c;
	void *owner;
	const char *what;          /* for logs */
	CURL *easy;
	struct curl_slist *hdrs;
	const char *method;
	char *path, *body;
	char *resp;
	size_t resp_len, resp_cap;
	int64_t sent_ns;           /* clock_now_ns() just before the send */
	bool busy;
	char errbuf[CURL_ERROR_SIZE];
	k8s_req_done_fn done;
	k8s_line_fn on_line;       /* NULL: collect the body */
	struct etcd_lines lines;
	struct backoff backoff;    /* failures and refusals in a row on this slot */
	int64_t retry_wait_ns;     /* the wait drawn for the last one */
};

struct k8s_client {
	struct ev_loop *loop;
	struct curl_ev *cev;
	struct k8s_conn conn;
	char *user_agent;          /* "elect (ID)": who sent it, in audit logs */
	int64_t token_read_ns;     /* when the token file was last read */
	int64_t req_timeout_ns, retry_ns;
	int64_t backoff_max_ns;    /* K8S_BACKOFF_MAX_NS, at most the lease duration */
	bool failing;              /* logging: one line per change */
};

/* Resolves the connection (k8s_conn_resolve) and sets the client up; path
 * is the URL's path after the host (malloc'd, no leading '/'). */
int k8s_client_init(struct k8s_client *c, const struct backend_params *p, char **path,
                    char *err, size_t errlen);
void k8s_client_free(struct k8s_client *c);    /* free the requests first */
void k8s_req_init(struct k8s_client *c, struct k8s_req *r, void *owner);
/* Sends (cancelling what r had in flight). timeout_ns 0: the client's. */
void k8s_req_send(struct k8s_req *r, const char *what, k8s_req_done_fn done, const char *method,
                  const char *body, int64_t timeout_ns, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));
/* A streamed GET: lines go to on_line, done() when it ends. */
void k8s_req_stream(struct k8s_req *r, const char *what, k8s_line_fn on_line, k8s_req_done_fn done,
                    int64_t timeout_ns, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
void k8s_req_cancel(struct k8s_req *r);
void k8s_req_free(struct k8s_req *r);
/* How long to wait before retrying what r last did: the client's retry
 * pause while r's requests succeed, else a jittered back-off that doubles
 * up to the client's backoff_max_ns (429, 5xx, connection errors, 401, 403). */
int64_t k8s_req_retry_ns(const struct k8s_req *r);
/* One line for a log or an event about an answer that is not the one asked
 * for: "HTTP 403: leases.coordination.k8s.io \"web\" is forbidden: User
 * \"x\" cannot update resource \"leases\" ... (the Role needs ...)". */
void k8s_status_reason(const struct k8s_req *r, long status, char *buf, size_t len);
/* The one line for a 401 or 403 (logged once per change by the caller):
 * what was refused, the API server's reason (which names the verb, the
 * resource and the namespace) and what grants it: `verbs` ("get, create,
 * update and watch") on leases in namespace ns, as `rbac_file` shows. */
void k8s_refusal_line(const struct k8s_client *c, const struct k8s_req *r, long status,
                      const char *verbs, const char *ns, const char *rbac_file, char *line,
                      size_t len);
/* "%"-escapes s for a URL path segment or query value into buf. */
void k8s_url_escape(const char *s, char *buf, size_t len);

/* ---- k8s.c: shared with the lock backend -------------------------- */

/* Whole-second TTL, request timeout below it, --renew at least 1 s. */
int k8s_check_timing(const struct backend_params *p, char *err, size_t errlen);
/* A lowercase RFC 1123 subdomain (dots) or label (no dots) of at most max. */
bool k8s_valid_name(const char *s, size_t max, bool dots);

#endif
