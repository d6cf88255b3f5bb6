/* Blocking HTTP requests to a local daemon over its Unix socket (libcurl easy
 * with CURLOPT_UNIX_SOCKET_PATH), for the command-line clients (`elect
 * status|resign|wait-leader`, lockctl). uclient_setup() only sets the options
 * of one request on a handle, so an asynchronous user (curl_ev) can share it.
 * Messages name the program and the peer: "elect: cannot reach the agent at
 * PATH: ..." or "lockctl: cannot reach lockd at PATH: ...". */
#ifndef ELECT_UCLIENT_H
#define ELECT_UCLIENT_H

#include <stdio.h>

#include <curl/curl.h>

struct uclient_reply {
	long code;
	char *body;               /* NUL-terminated, NULL if empty */
	size_t len;
};

struct uclient {
	const char *prog;         /* "elect" */
	const char *peer;         /* "the agent" */
	const char *socket_path;
	char errbuf[CURL_ERROR_SIZE];
};

/* Sets up easy for one request; body NULL for none (a POST then sends an
 * empty body). The answer collects into r (zeroed here). */
void uclient_setup(struct uclient *c, CURL *easy, const char *method, const char *target,
                   const char *body, long timeout_ms, struct uclient_reply *r);
/* After a transfer: 0 with r->code set, or -1 after printing why the peer
 * could not be reached (r is then emptied). */
int uclient_finish(struct uclient *c, CURL *easy, CURLcode rc, struct uclient_reply *r);
/* One blocking request on a fresh handle: uclient_setup, perform, finish. */
int uclient_request(struct uclient *c, const char *method, const char *target,
                    const char *body, long timeout_ms, struct uclient_reply *r);
void uclient_reply_free(struct uclient_reply *r);
/* The body, pretty-printed if it is JSON. */
void uclient_print_body(FILE *f, const struct uclient_reply *r);
/* "PROG: PEER answered HTTP N: body" on stderr. */
void uclient_print_unexpected(const struct uclient *c, const struct uclient_reply *r);

#endif
