/* The agent's HTTP API (see api.h): routes on top of common/httpd, status
 * long-polling, Prometheus metrics. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>
#include <jansson.h>

#include "common/clock.h"
#include "common/duration.h"
#include "common/httpd.h"
#include "common/log.h"
#include "elector/api.h"
#include "elector/core.h"
#include "elector/health.h"

#define API_MAX_WAIT_NS (5 * 60 * NS_PER_SEC)

struct waiter {
	struct api *a;
	struct http_request *req;
	uint64_t index;         /* answer once the status index differs */
	ev_timer timer;
	struct waiter *prev, *next;
};

struct api {
	struct ev_loop *loop;
	struct elector *e;
	char *backend;          /* backend URL without credentials */
	struct httpd *http;
	struct waiter *waiters;
	gid_t socket_group;     /* (gid_t)-1: the agent's own */
	bool tcp_write;         /* POST etc. allowed over TCP (--http-allow-write) */
	const struct health_info *health;   /* NULL without health checks */
};

/* Names for metric labels, in enum hook_event order. */
static const char *const hook_names[HOOK_N] = { "elected", "demoted", "leader" };
_Static_assert(HOOK_N == 3, "hook_names must list every hook event");

/* ---- JSON */

static void reply_json(struct http_request *req, int status, json_t *obj)
{
	httpd_respond_json_obj(req, status, obj);
}

/* RFC 3339 UTC with milliseconds, e.g. 2024-05-01T12:00:00.250Z. */
static void format_rfc3339(int64_t wall_ms, char *buf, size_t len)
{
	time_t secs;
	struct tm tm;
	char date[32];

	if (wall_ms < 0)
		wall_ms = 0;
	secs = (time_t)(wall_ms / 1000);
	gmtime_r(&secs, &tm);
	strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%03dZ", date, (int)(wall_ms % 1000));
}

static json_t *backend_ok_json(enum backend_reach r)
{
	return r == BACKEND_UNKNOWN ? json_null() : json_boolean(r == BACKEND_UP);
}

static json_t *health_json(const struct health_info *h)
{
	if (!h)
		return json_null();
	return json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o}",
	                 "status", health_state_name(h->state), "reason", h->reason,
	                 "output", h->output,
	                 "last_ok", h->last_wall_ms < 0 ? json_null() : json_boolean(h->last_ok),
	                 "last_check_unix_ms", h->last_wall_ms < 0 ? json_null()
	                                                           : json_integer(h->last_wall_ms),
	                 "last_duration_ms", h->last_wall_ms < 0 ? json_null()
	                         : json_integer(h->last_duration_ns / NS_PER_MS),
	                 "checks", httpd_json_u64(h->checks), "failures", httpd_json_u64(h->failures),
	                 "timeouts", httpd_json_u64(h->timeouts));
}

static json_t *status_json(const struct api *a, const struct elector_status *st)
{
	char since[48];

	format_rfc3339(st->since_wall_ms, since, sizeof since);
	return json_pack("{s:s?, s:s?, s:s?, s:s?, s:o, s:b, s:b, s:s, s:I, s:o, s:o, s:s?, s:s?,"
	                 " s:o, s:s?, s:o}",
	                 "name", st->name, "id", st->id, "state", st->state,
	                 "leader", st->leader, "token", httpd_json_u64(st->token),
	                 "is_leader", st->is_leader, "ready", st->ready, "since", since,
	                 "since_unix_ms", (json_int_t)st->since_wall_ms,
	                 "deadline_left_ms", st->deadline_left_ns >= 0
	                         ? json_integer(st->deadline_left_ns / NS_PER_MS) : json_null(),
	                 "index", httpd_json_u64(st->index), "reason", st->reason,
	                 "backend", a->backend, "backend_ok", backend_ok_json(st->backend),
	                 "last_error", st->last_error, "health", health_json(a->health));
}

static void reply_status(struct api *a, struct http_request *req)
{
	struct elector_status st;

	elector_status(a->e, &st);
	reply_json(req, 200, status_json(a, &st));
}

/* ---- long-poll waiters */

static void waiter_unlink(struct waiter *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		w->a->waiters = w->next;
	if (w->next)
		w->next->prev = w->prev;
	ev_timer_stop(w->a->loop, &w->timer);
}

static void waiter_answer(struct waiter *w)
{
	waiter_unlink(w);
	reply_status(w->a, w->req);
	free(w);
}

static void waiter_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	waiter_answer(t->data);
}

/* The client went away: forget the request. */
static void waiter_abort(struct http_request *req, void *data)
{
	struct waiter *w = data;

	(void)req;
	waiter_unlink(w);
	free(w);
}

void api_changed(struct api *a)
{
	struct elector_status st;
	struct waiter *w, *next;

	if (!a || !a->waiters)
		return;
	elector_status(a->e, &st);
	/* httpd_respond() never re-enters us, so the saved next stays valid. */
	for (w = a->waiters; w; w = next) {
		next = w->next;
		if (w->index != st.index)
			waiter_answer(w);
	}
}

static int parse_index(const char *s, uint64_t *out)
{
	char *end;

	if (!*s || strspn(s, "0123456789") != strlen(s))
		return -1;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno ? -1 : 0;
}

static void handle_status(struct api *a, struct http_request *req)
{
	char wait_arg[64], index_arg[64], msg[160];
	bool has_wait = httpd_query_param(req, "wait", wait_arg, sizeof wait_arg) == 0;
	bool has_index = httpd_query_param(req, "index", index_arg, sizeof index_arg) == 0;
	int64_t wait_ns = API_MAX_WAIT_NS;
	struct elector_status st;
	uint64_t index;
	struct waiter *w;

	if (has_wait && duration_parse(wait_arg, &wait_ns) < 0) {
		snprintf(msg, sizeof msg, "bad wait \"%s\": want a duration such as 30s or 500ms",
		         wait_arg);
		httpd_respond_error(req, 400, msg);
		return;
	}
	if (has_index && parse_index(index_arg, &index) < 0) {
		snprintf(msg, sizeof msg, "bad index \"%s\": want the index of an earlier status",
		         index_arg);
		httpd_respond_error(req, 400, msg);
		return;
	}
	elector_status(a->e, &st);
	if (!has_index)
		index = st.index;       /* wait alone: wait for the next change */
	if ((!has_wait && !has_index) || wait_ns <= 0 || index != st.index) {
		reply_json(req, 200, status_json(a, &st));
		return;
	}
	w = calloc(1, sizeof *w);
	if (!w) {
		httpd_respond_error(req, 500, "out of memory");
		return;
	}
	w->a = a;
	w->req = req;
	w->index = index;
	if (wait_ns > API_MAX_WAIT_NS)
		wait_ns = API_MAX_WAIT_NS;
	ev_timer_init(&w->timer, waiter_timeout_cb, clock_ns_to_ev(wait_ns), 0.);
	w->timer.data = w;
	ev_timer_start(a->loop, &w->timer);
	w->next = a->waiters;
	if (a->waiters)
		a->waiters->prev = w;
	a->waiters = w;
	httpd_defer(req, waiter_abort, w);
}

/* ---- other endpoints */

/* POST /v1/resign: step down. ?to=ID[&timeout=D]: hand over to candidate
 * ID (the others stand aside for D, default --handover-timeout); the
 * caller follows the leader in the status to see whether ID took over. */
static void handle_resign(struct api *a, struct http_request *req)
{
	char to[256], timeout_arg[64], msg[320];
	bool has_to = httpd_query_param(req, "to", to, sizeof to) == 0;
	int64_t timeout_ns = 0;
	int rc;

	if (!has_to) {
		if (elector_resign(a->e) == 0)
			reply_json(req, 200, json_pack("{s:b}", "resigned", 1));
		else
			httpd_respond_error(req, 409, "not leader");
		return;
	}
	if (httpd_query_param(req, "timeout", timeout_arg, sizeof timeout_arg) == 0 &&
	    (duration_parse(timeout_arg, &timeout_ns) < 0 || timeout_ns <= 0)) {
		snprintf(msg, sizeof msg, "bad timeout \"%s\": want a positive duration such as 10s",
		         timeout_arg);
		httpd_respond_error(req, 400, msg);
		return;
	}
	if (*to == '\0') {
		httpd_respond_error(req, 400, "empty to: name the candidate id to hand over to");
		return;
	}
	rc = elector_resign_to(a->e, to, timeout_ns, msg, sizeof msg);
	if (rc == 0)
		reply_json(req, 200, json_pack("{s:b, s:s}", "resigned", 1, "to", to));
	else
		httpd_respond_error(req, rc == -1 ? 409 : 400, msg);
}

/* Liveness: the agent's loop answers. Deliberately 200 also while the
 * backend is unreachable (backend_ok in the status, elect_backend_up in the
 * metrics): restarting the agent does not bring a backend back, and a probe
 * that restarts every pod during a backend outage only adds failovers. */
static void handle_healthz(struct api *a, struct http_request *req)
{
	(void)a;
	reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

/* Ready = leading with the elected hook done and the command started. */
static void handle_readyz(struct api *a, struct http_request *req)
{
	struct elector_status st;

	elector_status(a->e, &st);
	reply_json(req, st.ready ? 200 : 503,
	           json_pack("{s:b, s:s?}", "ready", st.ready, "state", st.state));
}

/* Like the Kubernetes leader-elector sidecar: who leads. */
static void handle_root(struct api *a, struct http_request *req)
{
	struct elector_status st;

	elector_status(a->e, &st);
	reply_json(req, 200, json_pack("{s:s}", "name", st.leader ? st.leader : ""));
}

/* Prometheus label value: escape backslash, quote and newline. */
static char *label_escape(const char *s)
{
	char *out = malloc(2 * strlen(s ? s : "") + 1), *o = out;

	if (!out)
		return NULL;
	for (; s && *s; s++) {
		if (*s == '\\' || *s == '"' || *s == '\n')
			*o++ = '\\';
		*o++ = *s == '\n' ? 'n' : *s;
	}
	*o = '\0';
	return out;
}

static void metric_head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void write_health_metrics(FILE *f, const struct health_info *h, const char *nm)
{
	if (!h)
		return;
	metric_head(f, "elect_healthy", "gauge",
	            "1 if the health checks pass (0: unhealthy, or no verdict yet).");
	fprintf(f, "elect_healthy{name=\"%s\"} %d\n", nm, h->state == HEALTH_HEALTHY);
	metric_head(f, "elect_health_checks_total", "counter", "Health check rounds run.");
	fprintf(f, "elect_health_checks_total{name=\"%s\"} %" PRIu64 "\n", nm, h->checks);
	metric_head(f, "elect_health_check_failures_total", "counter",
	            "Health check rounds that failed (timeouts included).");
	fprintf(f, "elect_health_check_failures_total{name=\"%s\"} %" PRIu64 "\n", nm, h->failures);
	metric_head(f, "elect_health_check_timeouts_total", "counter",
	            "Health check rounds killed at their timeout.");
	fprintf(f, "elect_health_check_timeouts_total{name=\"%s\"} %" PRIu64 "\n", nm, h->timeouts);
	metric_head(f, "elect_health_check_duration_seconds", "summary", "Duration of health check rounds.");
	fprintf(f, "elect_health_check_duration_seconds_sum{name=\"%s\"} %.6f\n", nm,
	        (double)h->duration_sum_ns / 1e9);
	fprintf(f, "elect_health_check_duration_seconds_count{name=\"%s\"} %" PRIu64 "\n", nm,
	        h->checks);
	metric_head(f, "elect_health_check_last_duration_seconds", "gauge",
	            "Duration of the last health check round.");
	fprintf(f, "elect_health_check_last_duration_seconds{name=\"%s\"} %.6f\n", nm,
	        (double)h->last_duration_ns / 1e9);
}

static void write_metrics(FILE *f, const struct elector_status *st, const char *nm)
{
	static const struct elector_metrics none;
	const struct elector_metrics *m = st->metrics ? st->metrics : &none;
	double left = st->deadline_left_ns > 0 ? (double)st->deadline_left_ns / 1e9 : 0.0;

	metric_head(f, "elect_is_leader", "gauge",
	            "1 if this agent leads and is ready (elected hook done, command started).");
	fprintf(f, "elect_is_leader{name=\"%s\"} %d\n", nm, st->is_leader ? 1 : 0);
	metric_head(f, "elect_backend_up", "gauge",
	            "1 if the backend answered since its last failure (0: failing or not yet heard).");
	fprintf(f, "elect_backend_up{name=\"%s\"} %d\n", nm, st->backend == BACKEND_UP);
	metric_head(f, "elect_state", "gauge", "1 for the agent's current state.");
	for (int i = 0; i < ST_N; i++) {
		const char *s = elector_state_name((enum elector_state)i);
		fprintf(f, "elect_state{name=\"%s\",state=\"%s\"} %d\n", nm, s,
		        st->state && strcmp(s, st->state) == 0);
	}
	metric_head(f, "elect_transitions_total", "counter", "Entries into each state.");
	for (int i = 0; i < ST_N; i++)
		fprintf(f, "elect_transitions_total{name=\"%s\",state=\"%s\"} %" PRIu64 "\n", nm,
		        elector_state_name((enum elector_state)i), m->transitions[i]);
	metric_head(f, "elect_token", "gauge", "Fencing token of the last acquisition (0: none).");
	fprintf(f, "elect_token{name=\"%s\"} %" PRIu64 "\n", nm, st->token);
	metric_head(f, "elect_backend_errors_total", "counter", "Failed backend requests.");
	fprintf(f, "elect_backend_errors_total{name=\"%s\"} %" PRIu64 "\n", nm, m->backend_errors);
	metric_head(f, "elect_renewals_total", "counter", "Successful session renewals.");
	fprintf(f, "elect_renewals_total{name=\"%s\"} %" PRIu64 "\n", nm, m->renewals_ok);
	metric_head(f, "elect_renew_last_latency_seconds", "gauge", "Latency of the last renewal.");
	fprintf(f, "elect_renew_last_latency_seconds{name=\"%s\"} %.6f\n", nm,
	        (double)m->renew_latency_last_ns / 1e9);
	/* A summary without quantiles: _sum and _count under one family. */
	metric_head(f, "elect_renew_latency_seconds", "summary", "Latency of successful renewals.");
	fprintf(f, "elect_renew_latency_seconds_sum{name=\"%s\"} %.6f\n", nm,
	        (double)m->renew_latency_sum_ns / 1e9);
	fprintf(f, "elect_renew_latency_seconds_count{name=\"%s\"} %" PRIu64 "\n", nm,
	        m->renewals_ok);
	metric_head(f, "elect_hook_runs_total", "counter", "Hook runs by event.");
	for (int i = 0; i < HOOK_N; i++)
		fprintf(f, "elect_hook_runs_total{name=\"%s\",event=\"%s\"} %" PRIu64 "\n", nm,
		        hook_names[i], m->hook_runs[i]);
	metric_head(f, "elect_hook_failures_total", "counter", "Failed hook runs by event.");
	for (int i = 0; i < HOOK_N; i++)
		fprintf(f, "elect_hook_failures_total{name=\"%s\",event=\"%s\"} %" PRIu64 "\n", nm,
		        hook_names[i], m->hook_failures[i]);
	metric_head(f, "elect_deadline_left_seconds", "gauge",
	            "Time left before the leader must have stepped down (0 when not leading).");
	fprintf(f, "elect_deadline_left_seconds{name=\"%s\"} %.3f\n", nm, left);
}

static void handle_metrics(struct api *a, struct http_request *req)
{
	struct elector_status st;
	char *text = NULL, *nm;
	size_t len = 0;
	FILE *f;

	elector_status(a->e, &st);
	nm = label_escape(st.name);
	f = nm ? open_memstream(&text, &len) : NULL;
	if (!f) {
		free(nm);
		httpd_respond_error(req, 500, "out of memory");
		return;
	}
	write_metrics(f, &st, nm);
	write_health_metrics(f, a->health, nm);
	fclose(f);
	httpd_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
	free(nm);
}

/* ---- routing */

struct route {
	const char *path, *method;
	bool tcp_only;
	void (*fn)(struct api *a, struct http_request *req);
};

static const struct route routes[] = {
	{ "/v1/status", "GET", false, handle_status },
	{ "/v1/resign", "POST", false, handle_resign },
	{ "/healthz", "GET", false, handle_healthz },
	{ "/readyz", "GET", false, handle_readyz },
	{ "/metrics", "GET", false, handle_metrics },
	{ "/", "GET", true, handle_root },
};

static void api_handle(struct http_request *req, void *data)
{
	struct api *a = data;
	/* HEAD is GET without the body (httpd drops it). */
	const char *method = strcmp(req->method, "HEAD") == 0 ? "GET" : req->method;
	char msg[300];

	/* TCP is unauthenticated: only reads there, unless allowed. */
	if (req->tcp && !a->tcp_write && strcmp(method, "GET") != 0) {
		snprintf(msg, sizeof msg, "%.10s %.60s: the TCP listener is read-only; use the Unix "
		         "socket, or start elect with --http-allow-write (ELECT_HTTP_ALLOW_WRITE=1) "
		         "to allow writes over TCP", req->method, req->path);
		httpd_respond_error(req, 403, msg);
		return;
	}
	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
		const struct route *r = &routes[i];

		if (strcmp(r->path, req->path) != 0 || (r->tcp_only && !req->tcp))
			continue;
		if (strcmp(r->method, method) != 0) {
			snprintf(msg, sizeof msg, "%s %s: method not allowed (use %s)", req->method,
			         r->path, r->method);
			httpd_respond_error(req, 405, msg);
			return;
		}
		r->fn(a, req);
		return;
	}
	snprintf(msg, sizeof msg, "no such endpoint: %.100s", req->path);
	httpd_respond_error(req, 404, msg);
}

/* ---- life cycle */

/* The backend URL as shown on the socket: without user:password@ or a query
 * (where a token could be). */
static char *redact_backend(const char *url)
{
	const char *auth = url ? strstr(url, "://") : NULL;
	size_t authlen, keep;
	const char *at;
	char *out;

	if (!url)
		return NULL;
	if (!auth)
		return strndup(url, strcspn(url, "?"));
	auth += 3;
	authlen = strcspn(auth, "/?");
	at = memrchr(auth, '@', authlen);
	keep = (size_t)(auth - url);
	if (!at)
		return strndup(url, strcspn(url, "?"));
	out = malloc(strlen(url) + 1);
	if (!out)
		return NULL;
	memcpy(out, url, keep);
	snprintf(out + keep, strlen(url) + 1 - keep, "%.*s", (int)strcspn(at + 1, "?"), at + 1);
	return out;
}

struct api *api_new(struct ev_loop *loop, struct elector *e, const char *backend_url)
{
	struct api *a = calloc(1, sizeof *a);

	if (!a)
		return NULL;
	a->loop = loop;
	a->e = e;
	a->backend = redact_backend(backend_url);
	a->socket_group = (gid_t)-1;
	a->http = httpd_new(loop, api_handle, a);
	if (!a->http) {
		free(a->backend);
		free(a);
		return NULL;
	}
	return a;
}

int api_listen(struct api *a, const char *socket_path, unsigned mode, const char *tcp_addr,
               char *err, size_t errlen)
{
	struct httpd_bound b;

	if (socket_path && httpd_listen_unix(a->http, socket_path, (mode_t)mode, a->socket_group,
	                                     err, errlen) < 0)
		return -1;
	if (tcp_addr && httpd_listen_tcp(a->http, tcp_addr, &b, err, errlen) < 0)
		return -1;
	if (tcp_addr && !b.loopback && a->tcp_write)
		log_warnx("http: API on %s with writes allowed: anyone who reaches that address "
		          "can make this agent resign (there is no authentication)", b.addr);
	else if (tcp_addr)
		log_info("http: API on %s (%s)", b.addr, a->tcp_write ? "read-write" : "read-only");
	return 0;
}

void api_set_health(struct api *a, const struct health_info *h)
{
	if (a)
		a->health = h;
}

void api_set_access(struct api *a, long socket_group, bool tcp_write)
{
	if (!a)
		return;
	a->socket_group = socket_group < 0 ? (gid_t)-1 : (gid_t)socket_group;
	a->tcp_write = tcp_write;
}

void api_free(struct api *a)
{
	if (!a)
		return;
	/* Aborts the pending long-polls, which frees their waiters. */
	httpd_free(a->http);
	while (a->waiters) {
		struct waiter *w = a->waiters;

		waiter_unlink(w);
		free(w);
	}
	free(a->backend);
	free(a);
}
