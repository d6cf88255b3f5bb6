/* Internals of the Consul backend: consul.c (the election, consul_backend_ops),
 * consul_session.c (the session: create, renew, destroy) and consul_http.c
 * (the client: requests over libcurl multi on the loop, agents, rotation,
 * timeouts, the ACL token). Not a public interface. */
#ifndef ELECT_CONSUL_H
#define ELECT_CONSUL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <ev.h>

#include "backends/backend.h"
#include "backends/consul_proto.h"
#include "common/backoff.h"
#include "common/clock.h"
#include "common/http_endpoints.h"

/* A refused ACL token (HTTP 403: "ACL not found", "Permission denied"):
 * retries of that request slot back off from the client's retry_ns,
 * doubling up to this, with jitter; the slot's next success resets it. */
#define CONSUL_REFUSED_BACKOFF_MAX_NS (30 * NS_PER_SEC)

struct consul_client;
struct consul_req;

/* The request ended. err NULL: Consul answered with HTTP status `status`
 * (any status, 404 included) and the body in r->resp (r->resp_len bytes,
 * NUL-terminated); r->index is its X-Consul-Index (0 if none). err set: no
 * usable answer (connection, timeout, a 5xx): the client moved to the next
 * agent. */
typedef void (*consul_req_done_fn)(struct consul_req *r, long status, const char *err);

struct consul_req {
	struct consul_client *c;
	void *owner;
	const char *what;          /* for logs */
	CURL *easy;
	struct curl_slist *hdrs;
	const char *method;
	char *path;                /* with the query */
	char *body;
	char *resp;
	size_t resp_len, resp_cap;
	uint64_t index;
	int64_t sent_ns;           /* clock_now_ns() just before the send */
	int64_t timeout_ns;        /* 0 = the client's request timeout */
	int endpoint;
	bool busy;
	char errbuf[CURL_ERROR_SIZE];
	consul_req_done_fn done;
	struct backoff refused;    /* 403s in a row on this slot */
	int64_t refused_wait_ns;   /* the wait drawn for the last one */
};

struct consul_client {
	struct ev_loop *loop;
	struct curl_ev *cev;
	struct http_endpoints ep;  /* the agents "host:port", the one in use */
	const char *scheme;
	const char *tls_ca, *tls_cert, *tls_key;
	char *token;               /* ACL token, never logged */
	int64_t req_timeout_ns, retry_ns;
};

/* consul_http.c */
int consul_check_timing(const struct backend_params *p, char *err, size_t errlen);
/* Checks p, reads the Consul environment (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN,
 * CONSUL_HTTP_TOKEN_FILE, CONSUL_CACERT), sets the client up; *path is the
 * URL path (malloc'd, without the leading '/' and the query); *query the part
 * after '?' or NULL. No I/O but reading a token file. */
int consul_client_init(struct consul_client *c, const struct backend_params *p, char **path,
                       char **query, char *err, size_t errlen);
void consul_client_free(struct consul_client *c);   /* free the requests first */
void consul_req_init(struct consul_client *c, struct consul_req *r, void *owner);
/* Sends; path (a printf format) is built here. body may be NULL. Cancels what
 * r had in flight. */
void consul_req_send(struct consul_req *r, const char *what, consul_req_done_fn done,
                     const char *method, const char *body, int64_t timeout_ns, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));
void consul_req_cancel(struct consul_req *r);
void consul_req_free(struct consul_req *r);
/* The agent ("host:port") that r's last request went to, for log lines. */
const char *consul_req_agent(const struct consul_req *r);
/* An answer that is wrong in a way the parser found: log once, next agent. */
void consul_note_failure(struct consul_req *r, const char *err);
/* How long to wait before retrying what r last did: the client's retry_ns,
 * or while r's requests are refused (403) the back-off's wait. */
int64_t consul_req_retry_ns(const struct consul_req *r);
/* A status that is not the answer asked for, for a log line or an event:
 * "HTTP status 403: ACL not found (check the ACL token)"; one line. */
void consul_status_reason(const struct consul_req *r, long status, char *buf, size_t len);

#endif

/* consul_session.c: the session that holds our keys. */
struct consul_session_events {
	void (*created)(void *owner, int64_t sent_ns);     /* s->id is set */
	void (*create_failed)(void *owner, const char *err);
	void (*alive)(void *owner, int64_t sent_ns);       /* a renewal succeeded */
	void (*failed)(void *owner, const char *err);      /* a renewal failed (transient) */
	void (*gone)(void *owner, const char *reason);     /* invalidated; s->id is NULL again */
	void (*closed)(void *owner);                       /* destroyed, or given up */
};

struct consul_session {
	struct consul_client *c;
	char *id;
	char *name;
	int64_t ttl_ns, lock_delay_ns;
	const char *behavior;      /* on invalidation: "release" (default) or "delete" its keys */
	struct consul_req r;       /* create, renew or destroy */
	ev_timer close_timer;
	bool closing, closed_sent;
	const struct consul_session_events *ev;
	void *owner;
};

void consul_session_init(struct consul_session *s, struct consul_client *c, const char *name,
                         int64_t ttl_ns, int64_t lock_delay_ns,
                         const struct consul_session_events *ev, void *owner);
/* Each does nothing while another session request is in flight. */
void consul_session_create(struct consul_session *s);
void consul_session_renew(struct consul_session *s);
/* Arms the close timer (the request timeout): closed() comes by then. */
void consul_session_begin_close(struct consul_session *s);
/* Destroys it (releasing what it holds) and reports closed(); at once
 * (from inside this call) when there is no session. */
void consul_session_destroy(struct consul_session *s);
void consul_session_free(struct consul_session *s);
