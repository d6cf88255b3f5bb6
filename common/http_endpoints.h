/* What the HTTP backends' clients (etcd_http.c, consul_http.c) share about
 * the servers they talk to: the "host:port" list from the backend URL, the
 * one in use and the move to the next on a failure, the log lines (one when
 * the client goes from working to failing, one when it recovers, debug in
 * between), the TLS files, the default timing, and collecting an answer. */
#ifndef ELECT_HTTP_ENDPOINTS_H
#define ELECT_HTTP_ENDPOINTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

struct http_endpoints {
	const char *who;           /* "etcd", "consul": the log lines' prefix */
	char **list;               /* "host:port" */
	int n, cur;                /* how many; the one in use */
	bool failing;              /* logging: one line per state change */
	bool owner_logs;           /* the owner logs reachability too (the elector
	                              core does): the first failure is info, not warn */
};

/* "HOST[:PORT][,HOST[:PORT]...]" (a host may be [IPv6]); default_port where
 * a host has none. noun names an entry in the error ("endpoint", "agent
 * address"). Fills e->list; on error e keeps what it had parsed (free it). */
int http_endpoints_parse(struct http_endpoints *e, const char *who, const char *noun,
                         const char *hosts, const char *default_port, char *err, size_t errlen);
void http_endpoints_free(struct http_endpoints *e);
/* A request that went to entry `used` failed (connection, timeout, garbage):
 * move on from it if it is still the one in use; log once per change. */
void http_endpoints_failed(struct http_endpoints *e, int used, const char *what, const char *err);
/* Entry `used` answered the `what` request: the line that says so after failures. */
void http_endpoints_ok(struct http_endpoints *e, int used, const char *what);

/* The TLS files given (NULL: not given) are readable, else one line in err. */
int http_check_tls_files(const char *who, const char *ca, const char *cert, const char *key,
                         char *err, size_t errlen);
void http_set_tls(CURL *easy, const char *ca, const char *cert, const char *key);
/* Stops the transfer *easy (if any) on cev, cleans it and *hdrs up, NULLs both. */
struct curl_ev;
void http_drop_transfer(struct curl_ev *cev, CURL **easy, struct curl_slist **hdrs);
/* The request timeout (the one asked for, else min(renew, 2 s)) and the
 * pause before a retry (min(renew, 1 s), at least 100 ms). */
void http_default_timing(int64_t request_timeout_ns, int64_t renew_ns, int64_t *req_timeout_ns,
                         int64_t *retry_ns);
/* Appends n bytes to *buf (kept NUL-terminated), at most max in all:
 * -1 when over max or out of memory (abort the transfer). */
int http_collect(char **buf, size_t *len, size_t *cap, const char *data, size_t n, size_t max);

#endif
