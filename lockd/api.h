/* lockd's socket API (HTTP/1.1 + JSON on a Unix socket, mode 0660):
 *   POST /v1/acquire {"name","limit","wait","ttl","bind"}  200 hold JSON,
 *        408 timed out, 409 limit mismatch, 400 bad input, 503 shutting down
 *        or over --max-holds
 *   POST /v1/release {"hold"}   200 / 404 unknown hold
 *   POST /v1/renew   {"hold"}   200 with expires_in_ms / 404 / 409
 *   GET  /v1/wait?hold=ID&wait=D  {"state":"revoked","reason"} at once on
 *        revocation, {"state":"held"} when D (max 5m) passes
 *   POST /v1/command {"hold","pid"}  on the hold's connection: lockd watches
 *        the command (see lockd.h); 200, 403 not a child of the client
 *        leading its own group, 409 wrong hold state or connection, 501 no
 *        pidfd support
 *   GET  /v1/locks[?name=NAME&limit=N&local=1]  every node's holders and
 *        waiters as the backend tells, merged with ours (api_list.c):
 *        {"locks":[{"name","limit","holders":[{"owner","token","key","here"}],
 *        "waiting":[...],"holders_here","waiting_here","tokens"}],
 *        "truncated","backend_error"}
 *   GET  /healthz, GET /metrics
 * The calls from the core (lockd_actions) are forwarded to lockd_api_*. */
#ifndef ELECT_LOCKD_API_H
#define ELECT_LOCKD_API_H

#include <stddef.h>

struct ev_loop;
struct lockd;
struct hold;
struct lockd_api;
struct http_request;

/* Semaphore sizes a client may ask for. */
#define LOCKD_MAX_LIMIT 1000

struct lockd_api *lockd_api_new(struct ev_loop *loop, struct lockd *d);
/* mode e.g. 0660; group -1: lockd's own. */
int lockd_api_listen(struct lockd_api *a, const char *path, unsigned mode, long group,
                     char *err, size_t errlen);
void lockd_api_free(struct lockd_api *a);

void lockd_api_granted(struct lockd_api *a, struct hold *h);
void lockd_api_denied(struct lockd_api *a, struct hold *h, int status, const char *why);
void lockd_api_revoked(struct lockd_api *a, struct hold *h);
void lockd_api_kill_command(struct lockd_api *a, struct hold *h);
void lockd_api_forget(struct lockd_api *a, struct hold *h);

/* GET /v1/locks (api_list.c), answered now or later (deferred). */
void lockd_api_locks(struct ev_loop *loop, struct lockd *d, struct http_request *req);

#endif
