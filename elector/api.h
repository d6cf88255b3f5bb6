/* The agent's HTTP API on its socket (and optional TCP address):
 *   GET  /v1/status[?wait=DURATION&index=N]  status JSON; with wait, returns as
 *        soon as the status index differs from N (or after DURATION; longer
 *        than 5m is cut to 5m)
 *   POST /v1/resign    200 {"resigned":true} / 409 {"error":"not leader"}
 *   GET  /healthz      200 {"status":"ok"}, also while the backend is unreachable
 *   GET  /readyz       200 while ready (leading, elected hook done, command
 *                      started), else 503
 *   GET  /metrics      Prometheus text format
 *   GET  /             (TCP only) {"name":"<leader id>"} like k8s leader-elector
 * Over TCP only reads (GET, HEAD) are served unless api_set_access() allows
 * writes; anything else gets 403 with how to allow it.
 * Status JSON: {"name","id","state","leader","token","is_leader","ready","since",
 *   "since_unix_ms","deadline_left_ms","index","reason","backend","backend_ok",
 *   "last_error","health"}
 *   health: null without health checks, else {"status" (unknown, healthy,
 *   unhealthy), "reason", "output" (the last check's), "last_ok",
 *   "last_check_unix_ms", "last_duration_ms", "checks", "failures", "timeouts"}
 *   leader null when unknown (never our id unless leading); is_leader = ready;
 *   backend_ok null until known; last_error null if none; deadline_left_ms null
 *   unless leading; token 0 before the first acquisition; since is RFC 3339 UTC
 *   with milliseconds.
 */
#ifndef ELECT_API_H
#define ELECT_API_H

#include <stdbool.h>
#include <stddef.h>

struct ev_loop;
struct elector;
struct api;

struct api *api_new(struct ev_loop *loop, struct elector *e, const char *backend_url);
/* mode: e.g. 0660. path NULL = no Unix socket; tcp_addr NULL = none. */
int api_listen(struct api *a, const char *socket_path, unsigned mode, const char *tcp_addr,
               char *err, size_t errlen);
/* Before api_listen: the Unix socket's group (-1: the agent's) and whether
 * writes (POST /v1/resign) are allowed over TCP (default: read-only there,
 * 403 with how to allow it). */
void api_set_access(struct api *a, long socket_group, bool tcp_write);
struct health_info;
/* Health checks to show in the status and metrics (read at each request). */
void api_set_health(struct api *a, const struct health_info *h);
/* The elector's state changed: answer the long-poll waiters. */
void api_changed(struct api *a);
void api_free(struct api *a);

/* Client side, for `elect status|resign|wait-leader` (blocking, libcurl easy
 * with CURLOPT_UNIX_SOCKET_PATH). Each returns the process exit status and
 * prints a one-line error on stderr when the agent cannot be reached. */
int client_status(const char *socket_path);
int client_resign(const char *socket_path);
/* elect resign --to ID: hand over to ID and follow the agent's view of the
 * leader until ID leads (0), another leads or the timeout passes (1). */
int client_resign_to(const char *socket_path, const char *to, long long timeout_ns);
/* Blocks until the agent leads and is ready (0), the timeout passes (1; timeout_ns < 0 =
 * forever), or the agent cannot be reached (2). */
int client_wait_leader(const char *socket_path, long long timeout_ns);
/* Prints the leader as one JSON line ({"leader","token","state","reason",
 * "since","index"}), then one line per leader change as the long-poll sees
 * it, until the timeout (0; timeout_ns < 0 = forever) or the agent goes away
 * (2). */
int client_watch(const char *socket_path, long long timeout_ns);

#endif
