/* lockd's HTTP API on its Unix socket (common/httpd): acquire, release,
 * renew, wait (long-poll for revocation), command (the pid of lockctl's
 * command, see lockd.h), locks (api_list.c), healthz, metrics. Every
 * answer carries "conn", the serial of the connection it came on, so clients
 * and tests can check that a connection-bound hold and its wait share one. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>
#include <jansson.h>

#include "common/clock.h"
#include "common/duration.h"
#include "common/httpd.h"
#include "lockd/api.h"
#include "lockd/command.h"
#include "lockd/lockd.h"

#define API_MAX_WAIT_NS (5 * 60 * NS_PER_SEC)
#define API_MAX_ACQUIRE_WAIT_NS (24 * 3600 * NS_PER_SEC)
#define API_DEFAULT_TTL_NS (30 * NS_PER_SEC)

/* Per hold: the requests waiting for news of it. */
struct hold_api {
	struct lockd_api *a;
	struct hold *h;
	struct http_request *acquire_req;
	struct http_request *wait_req;
	ev_timer wait_timer;
	int pidfd;                /* the client's command (-1: none registered) */
	bool guard;               /* it is a guard (hooks/guard.h): kill it with its signal */
	ev_io pid_io;             /* readable once the command has exited */
};

struct lockd_api {
	struct ev_loop *loop;
	struct lockd *d;
	struct httpd *http;
};

static void reply_error(struct http_request *req, int status, const char *why)
{
	httpd_respond_error(req, status, why);
}

static struct hold_api *hold_api(struct lockd_api *a, struct hold *h)
{
	struct hold_api *ha = h->api;

	if (ha == NULL && (ha = calloc(1, sizeof(*ha))) != NULL) {
		ha->a = a;
		ha->h = h;
		ev_timer_init(&ha->wait_timer, NULL, 0., 0.);
		ha->pidfd = -1;
		ev_io_init(&ha->pid_io, NULL, -1, EV_READ);
		h->api = ha;
	}
	return ha;
}

static json_t *hold_json(const struct lockd_api *a, const struct hold *h, uint64_t conn)
{
	json_t *o = json_pack("{s:s, s:s, s:o, s:I, s:I, s:s, s:o}", "hold", h->id, "name", h->name,
	                      "token", httpd_json_u64(h->token), "limit", (json_int_t)h->limit,
	                      "revoke_grace_ms",
	                      (json_int_t)(lockd_revoke_grace_ns(a->d) / NS_PER_MS),
	                      "bind", h->bind == BIND_TTL ? "ttl" : "connection",
	                      "conn", httpd_json_u64(conn));

	int fd = lockd_hold_fd(a->d, h);

	if (o && h->bind == BIND_TTL && h->state == HOLD_HELD)
		json_object_set_new(o, "expires_in_ms",
		                    json_integer((h->expires_ns - clock_now_ns()) / NS_PER_MS));
	/* The file backend's lock descriptor: lockctl copies it (pidfd_getfd)
	 * into its command, so the lock outlives a killed lockd until the
	 * command is dead too, as the elector's leader_fd does. */
	if (o && fd >= 0) {
		json_object_set_new(o, "fd", json_integer(fd));
		json_object_set_new(o, "pid", json_integer(getpid()));
	}
	return o;
}

/* ---- wait (long-poll) */

static void answer_wait(struct hold_api *ha, const char *state)
{
	struct http_request *req = ha->wait_req;
	json_t *o;

	if (req == NULL)
		return;
	ha->wait_req = NULL;
	ev_timer_stop(ha->a->loop, &ha->wait_timer);
	o = json_pack("{s:s, s:s, s:o}", "state", state, "name", ha->h->name, "conn",
	              httpd_json_u64(req->conn));
	if (o && strcmp(state, "revoked") == 0)
		json_object_set_new(o, "reason", json_string(ha->h->reason));
	httpd_respond_json_obj(req, 200, o);
}

static void wait_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hold_api *ha = w->data;

	(void)loop;
	(void)revents;
	answer_wait(ha, ha->h->state == HOLD_WAITING ? "waiting" : "held");
}

static void wait_abort(struct http_request *req, void *data)
{
	struct hold_api *ha = data;

	(void)req;
	ha->wait_req = NULL;
	ev_timer_stop(ha->a->loop, &ha->wait_timer);
}

static int hold_param(struct http_request *req, char *id, size_t len)
{
	if (httpd_query_param(req, "hold", id, len) < 0) {
		reply_error(req, 400, "missing hold=ID");
		return -1;
	}
	return 0;
}

static void handle_wait(struct lockd_api *a, struct http_request *req)
{
	char id[80], arg[64], msg[160];
	int64_t wait_ns = API_MAX_WAIT_NS;
	struct hold *h;
	struct hold_api *ha;

	if (hold_param(req, id, sizeof(id)) < 0)
		return;
	if (httpd_query_param(req, "wait", arg, sizeof(arg)) == 0 && duration_parse(arg, &wait_ns) < 0) {
		snprintf(msg, sizeof(msg), "bad wait \"%s\": want a duration such as 30s", arg);
		reply_error(req, 400, msg);
		return;
	}
	if ((h = lockd_find(a->d, id)) == NULL) {
		reply_error(req, 404, "no such hold");
		return;
	}
	if ((ha = hold_api(a, h)) == NULL) {
		reply_error(req, 500, "out of memory");
		return;
	}
	answer_wait(ha, "held");        /* an earlier long-poll gives way */
	ha->wait_req = req;
	if (h->state == HOLD_REVOKED) {
		answer_wait(ha, "revoked");
		return;
	}
	if (wait_ns > API_MAX_WAIT_NS)
		wait_ns = API_MAX_WAIT_NS;
	ev_timer_init(&ha->wait_timer, wait_timeout_cb, clock_ns_to_ev(wait_ns), 0.);
	ha->wait_timer.data = ha;
	ev_timer_start(a->loop, &ha->wait_timer);
	httpd_defer(req, wait_abort, ha);
}

/* ---- acquire */

static void acquire_abort(struct http_request *req, void *data)
{
	struct hold_api *ha = data;

	(void)req;
	ha->acquire_req = NULL;
	lockd_abandon(ha->a->d, ha->h);
}

/* Reads an optional duration member; -1 with an answer sent when bad. */
static int json_duration(struct http_request *req, json_t *body, const char *key, int64_t *out)
{
	json_t *v = json_object_get(body, key);
	char msg[160];

	if (v == NULL)
		return 0;
	if (json_is_string(v) && duration_parse(json_string_value(v), out) == 0)
		return 0;
	snprintf(msg, sizeof(msg), "bad %s: want a duration string such as \"10s\" or \"500ms\"", key);
	reply_error(req, 400, msg);
	return -1;
}

/* Fills r from the body; -1 with an answer sent when it is bad. */
static int parse_acquire(struct lockd_api *a, struct http_request *req, json_t *body,
                         struct acquire_req *r)
{
	json_t *name = json_object_get(body, "name"), *limit = json_object_get(body, "limit");
	json_t *bind = json_object_get(body, "bind");
	char msg[768];

	if (!json_is_string(name) || !lock_name_valid(json_string_value(name))) {
		snprintf(msg, sizeof(msg), "bad name: want 1-%d letters, digits, '.', '_' or '-', "
		         "not starting with '.'", LOCK_NAME_MAX);
		reply_error(req, 400, msg);
		return -1;
	}
	if (lockd_name_check(a->d, json_string_value(name), msg, sizeof(msg)) < 0) {
		reply_error(req, 400, msg);
		return -1;
	}
	r->name = json_string_value(name);
	r->limit = 1;
	if (limit && (!json_is_integer(limit) || json_integer_value(limit) < 1 ||
	              json_integer_value(limit) > LOCKD_MAX_LIMIT)) {
		snprintf(msg, sizeof(msg), "bad limit: want a whole number from 1 (a lock) to %d",
		         LOCKD_MAX_LIMIT);
		reply_error(req, 400, msg);
		return -1;
	}
	if (limit)
		r->limit = (unsigned)json_integer_value(limit);
	r->wait_ns = 0;
	r->ttl_ns = API_DEFAULT_TTL_NS;
	if (json_duration(req, body, "wait", &r->wait_ns) < 0 ||
	    json_duration(req, body, "ttl", &r->ttl_ns) < 0)
		return -1;
	if (r->ttl_ns <= 0 || r->wait_ns > API_MAX_ACQUIRE_WAIT_NS) {
		reply_error(req, 400, "bad ttl or wait: ttl must be positive, wait at most 24h");
		return -1;
	}
	r->bind = BIND_CONNECTION;
	if (bind && json_is_string(bind) && strcmp(json_string_value(bind), "ttl") == 0) {
		r->bind = BIND_TTL;
	} else if (bind && !(json_is_string(bind) &&
	                     strcmp(json_string_value(bind), "connection") == 0)) {
		reply_error(req, 400, "bad bind: want \"connection\" or \"ttl\"");
		return -1;
	}
	r->conn = req->conn;
	return 0;
}

/* The body as a JSON object; NULL with an answer sent when it is not one. */
static json_t *body_object(struct http_request *req)
{
	json_error_t jerr;
	json_t *body = json_loadb(req->body, req->body_len, 0, &jerr);
	char msg[200];

	if (body == NULL || !json_is_object(body)) {
		snprintf(msg, sizeof(msg), "body must be a JSON object%s%s",
		         body ? "" : ": ", body ? "" : jerr.text);
		reply_error(req, 400, msg);
		json_decref(body);
		return NULL;
	}
	return body;
}

static void handle_acquire(struct lockd_api *a, struct http_request *req)
{
	json_t *body = body_object(req);
	struct acquire_req r;
	struct hold_api *ha;
	struct hold *h;
	char why[200];
	int status;

	if (body == NULL)
		return;
	if (parse_acquire(a, req, body, &r) < 0) {
		json_decref(body);
		return;
	}
	status = lockd_acquire(a->d, &r, &h, why, sizeof(why));
	json_decref(body);
	if (status != 0) {
		reply_error(req, status, why);
		return;
	}
	if ((ha = hold_api(a, h)) == NULL) {
		lockd_abandon(a->d, h);
		reply_error(req, 500, "out of memory");
		return;
	}
	ha->acquire_req = req;
	/* A full socket must not make room by dropping a client's lock. */
	if (r.bind == BIND_CONNECTION)
		httpd_keep_connection(req);
	httpd_defer(req, acquire_abort, ha);
}

/* ---- release, renew */

/* The hold named by the body's "hold"; NULL with an answer sent. */
static struct hold *body_hold(struct lockd_api *a, struct http_request *req)
{
	json_t *body = body_object(req), *id;
	struct hold *h = NULL;

	if (body == NULL)
		return NULL;
	id = json_object_get(body, "hold");
	if (!json_is_string(id))
		reply_error(req, 400, "missing \"hold\": the id that acquire returned");
	else if ((h = lockd_find(a->d, json_string_value(id))) == NULL)
		reply_error(req, 404, "no such hold");
	json_decref(body);
	return h;
}

static void handle_release(struct lockd_api *a, struct http_request *req)
{
	struct hold *h = body_hold(a, req);
	bool revoked;

	if (h == NULL)
		return;
	revoked = h->state == HOLD_REVOKED;
	lockd_release(a->d, h);
	httpd_respond_json_obj(req, 200, json_pack("{s:b, s:b}", "released", 1, "was_revoked", revoked));
}

static void handle_renew(struct lockd_api *a, struct http_request *req)
{
	struct hold *h = body_hold(a, req);
	char why[200];
	int status;

	if (h == NULL)
		return;
	status = lockd_renew(a->d, h, why, sizeof(why));
	if (status != 0)
		reply_error(req, status, why);
	else
		httpd_respond_json_obj(req, 200, hold_json(a, h, req->conn));
}

/* ---- command: {"hold","pid"} on the hold's own connection */

static void handle_command(struct lockd_api *a, struct http_request *req)
{
	json_t *body = body_object(req), *jpid;
	struct hold *h = NULL;
	struct hold_api *ha;
	json_int_t pid = 0;
	char why[200];
	int status, fd;
	bool guard;

	if (body == NULL)
		return;
	jpid = json_object_get(body, "pid");
	if (json_is_integer(jpid))
		pid = json_integer_value(jpid);
	guard = json_is_true(json_object_get(body, "guard"));
	json_decref(body);
	if (pid <= 1 || pid > INT32_MAX) {
		reply_error(req, 400, "missing or bad \"pid\": the process id of the command");
		return;
	}
	if ((h = body_hold(a, req)) == NULL)
		return;
	if (h->conn != req->conn || h->bind != BIND_CONNECTION || h->state != HOLD_HELD ||
	    h->cmd_pid != 0) {
		reply_error(req, 409, "a command can be registered once, for a granted "
		            "connection-bound hold, on the hold's connection");
		return;
	}
	if ((fd = command_open((pid_t)pid, req->peer_pid, &status, why, sizeof(why))) < 0) {
		reply_error(req, status, why);
		return;
	}
	if ((ha = hold_api(a, h)) == NULL) {
		close(fd);
		reply_error(req, 500, "out of memory");
		return;
	}
	ha->pidfd = fd;
	ha->guard = guard;
	h->cmd_pid = (int)pid;
	httpd_respond_json_obj(req, 200, json_pack("{s:i, s:b, s:o}", "pid", h->cmd_pid,
	                                           "watched", 1, "conn", httpd_json_u64(req->conn)));
}

static void command_exit_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct hold_api *ha = w->data;

	(void)revents;
	ev_io_stop(loop, w);
	lockd_command_gone(ha->a->d, ha->h);      /* may free ha */
}

static void handle_locks(struct lockd_api *a, struct http_request *req)
{
	lockd_api_locks(a->loop, a->d, req);
}

static void handle_healthz(struct lockd_api *a, struct http_request *req)
{
	httpd_respond_json_obj(req, 200, json_pack("{s:s, s:b}", "status", "ok", "session_up",
	                                           lockd_session_up(a->d)));
}

static void handle_metrics(struct lockd_api *a, struct http_request *req)
{
	const struct lockd_metrics *m = lockd_metrics(a->d);
	int holds = 0, waiters = 0;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	for (struct hold *h = lockd_holds(a->d); h; h = h->next) {
		holds += h->state == HOLD_HELD;
		waiters += h->state == HOLD_WAITING;
	}
	if ((f = open_memstream(&text, &len)) == NULL) {
		reply_error(req, 500, "out of memory");
		return;
	}
	fprintf(f, "# HELP lockd_holds Holds granted and not revoked.\n# TYPE lockd_holds gauge\n"
	        "lockd_holds %d\n", holds);
	fprintf(f, "# HELP lockd_waiters Acquisitions queued.\n# TYPE lockd_waiters gauge\n"
	        "lockd_waiters %d\n", waiters);
	fprintf(f, "# HELP lockd_grants_total Holds granted.\n# TYPE lockd_grants_total counter\n"
	        "lockd_grants_total %" PRIu64 "\n", m->grants);
	fprintf(f, "# HELP lockd_revocations_total Holds revoked.\n"
	        "# TYPE lockd_revocations_total counter\nlockd_revocations_total %" PRIu64 "\n",
	        m->revocations);
	fprintf(f, "# HELP lockd_backend_errors_total Failed backend requests and lost locks.\n"
	        "# TYPE lockd_backend_errors_total counter\nlockd_backend_errors_total %" PRIu64 "\n",
	        m->backend_errors);
	fprintf(f, "# HELP lockd_session_up 1 while the backend session is known alive.\n"
	        "# TYPE lockd_session_up gauge\nlockd_session_up %d\n", lockd_session_up(a->d));
	fclose(f);
	httpd_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
}

/* ---- routing */

struct route {
	const char *path, *method;
	void (*fn)(struct lockd_api *a, struct http_request *req);
};

static const struct route routes[] = {
	{ "/v1/acquire", "POST", handle_acquire },
	{ "/v1/release", "POST", handle_release },
	{ "/v1/renew", "POST", handle_renew },
	{ "/v1/wait", "GET", handle_wait },
	{ "/v1/command", "POST", handle_command },
	{ "/v1/locks", "GET", handle_locks },
	{ "/healthz", "GET", handle_healthz },
	{ "/metrics", "GET", handle_metrics },
};

static void api_handle(struct http_request *req, void *data)
{
	struct lockd_api *a = data;
	const char *method = strcmp(req->method, "HEAD") == 0 ? "GET" : req->method;
	char msg[160];

	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const struct route *r = &routes[i];

		if (strcmp(r->path, req->path) != 0)
			continue;
		if (strcmp(r->method, method) != 0) {
			snprintf(msg, sizeof(msg), "%s %s: method not allowed (use %s)", req->method,
			         r->path, r->method);
			reply_error(req, 405, msg);
			return;
		}
		r->fn(a, req);
		return;
	}
	snprintf(msg, sizeof(msg), "no such endpoint: %.100s", req->path);
	reply_error(req, 404, msg);
}

static void on_conn_closed(uint64_t conn, void *data)
{
	struct lockd_api *a = data;

	lockd_conn_closed(a->d, conn);
}

/* ---- events from the core */

void lockd_api_granted(struct lockd_api *a, struct hold *h)
{
	struct hold_api *ha = h->api;
	struct http_request *req = ha ? ha->acquire_req : NULL;

	if (req == NULL)
		return;
	ha->acquire_req = NULL;
	httpd_respond_json_obj(req, 200, hold_json(a, h, req->conn));
}

void lockd_api_denied(struct lockd_api *a, struct hold *h, int status, const char *why)
{
	struct hold_api *ha = h->api;

	(void)a;
	if (ha && ha->acquire_req) {
		struct http_request *req = ha->acquire_req;

		ha->acquire_req = NULL;
		reply_error(req, status, why);
	}
}

void lockd_api_revoked(struct lockd_api *a, struct hold *h)
{
	(void)a;
	if (h->api)
		answer_wait(h->api, "revoked");
}

void lockd_api_kill_command(struct lockd_api *a, struct hold *h)
{
	struct hold_api *ha = h->api;

	if (ha == NULL || ha->pidfd < 0)
		return;               /* not reached: cmd_pid comes with a pidfd */
	command_kill(ha->pidfd, h->cmd_pid, ha->guard);
	ev_io_init(&ha->pid_io, command_exit_cb, ha->pidfd, EV_READ);
	ha->pid_io.data = ha;
	ev_io_start(a->loop, &ha->pid_io);
}

void lockd_api_forget(struct lockd_api *a, struct hold *h)
{
	struct hold_api *ha = h->api;

	if (ha == NULL)
		return;
	ev_io_stop(a->loop, &ha->pid_io);
	if (ha->pidfd >= 0)
		close(ha->pidfd);
	answer_wait(ha, "released");
	if (ha->acquire_req) {
		struct http_request *req = ha->acquire_req;

		ha->acquire_req = NULL;
		reply_error(req, 503, "hold ended before it was granted");
	}
	h->api = NULL;
	free(ha);
}

/* ---- life cycle */

struct lockd_api *lockd_api_new(struct ev_loop *loop, struct lockd *d)
{
	struct lockd_api *a = calloc(1, sizeof(*a));

	if (a == NULL)
		return NULL;
	a->loop = loop;
	a->d = d;
	if ((a->http = httpd_new(loop, api_handle, a)) == NULL) {
		free(a);
		return NULL;
	}
	httpd_on_close(a->http, on_conn_closed);
	return a;
}

int lockd_api_listen(struct lockd_api *a, const char *path, unsigned mode, long group,
                     char *err, size_t errlen)
{
	return httpd_listen_unix(a->http, path, (mode_t)mode, group < 0 ? (gid_t)-1 : (gid_t)group,
	                         err, errlen);
}

void lockd_api_free(struct lockd_api *a)
{
	if (a == NULL)
		return;
	/* Closing the connections ends their holds in the core. */
	httpd_free(a->http);
	/* Holds the core still has (revoked, draining) lose their API side
	 * now: no request of theirs is left, the loop is about to go. */
	for (struct hold *h = lockd_holds(a->d); h; h = h->next)
		lockd_api_forget(a, h);
	free(a);
}
