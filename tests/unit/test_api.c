/* Unit tests for elector/api.c and elector/client.c over a real Unix socket.
 * The elector is faked: elector_status, elector_resign and
 * elector_state_name are wrapped (defined here), so elector/core.o is not
 * linked. Client commands run in a forked child while the parent drives the
 * loop. log_msg is captured. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>
#include <jansson.h>

#include "common/clock.h"
#include "common/log.h"
#include "elector/api.h"
#include "elector/core.h"

/* ---- seams ---- */

static char last_warning[512];
static struct elector_status fake;
static struct elector_metrics fake_metrics;
static int fake_resign_rc;
static char fake_to[256];
static int64_t fake_to_timeout;

void __wrap_log_msg(enum log_level lvl, const char *fmt, ...);
void __wrap_elector_status(const struct elector *e, struct elector_status *st);
int __wrap_elector_resign(struct elector *e);
int __wrap_elector_resign_to(struct elector *e, const char *to, int64_t timeout_ns, char *err,
                             size_t errlen);
const char *__wrap_elector_state_name(enum elector_state s);

void __wrap_log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (lvl <= LOG_LVL_WARN)
		vsnprintf(last_warning, sizeof last_warning, fmt, ap);
	va_end(ap);
}

void __wrap_elector_status(const struct elector *e, struct elector_status *st)
{
	(void)e;
	*st = fake;
}

int __wrap_elector_resign(struct elector *e)
{
	(void)e;
	return fake_resign_rc;
}

int __wrap_elector_resign_to(struct elector *e, const char *to, int64_t timeout_ns, char *err,
                             size_t errlen)
{
	(void)e;
	snprintf(fake_to, sizeof fake_to, "%s", to);
	fake_to_timeout = timeout_ns;
	if (fake_resign_rc == -2)
		snprintf(err, errlen, "%s is this agent", to);
	else if (fake_resign_rc == -1)
		snprintf(err, errlen, "not leader");
	return fake_resign_rc;
}

const char *__wrap_elector_state_name(enum elector_state s)
{
	static const char *const names[ST_N] = {
		"follower", "candidate", "leader", "suspended", "stepping-down"
	};
	return s < ST_N ? names[s] : "?";
}

/* ---- fixture ---- */

struct fx {
	struct ev_loop *loop;
	struct api *api;
	char dir[64], path[128];
	int extra_fd;           /* closed after api_free() */
};

static void set_follower(void)
{
	memset(&fake, 0, sizeof fake);
	fake.name = "web";
	fake.id = "node-a";
	fake.state = "follower";
	fake.leader = NULL;
	fake.since_wall_ms = 1700000000123;
	fake.deadline_left_ns = -1;
	fake.index = 5;
	fake.reason = "started";
	fake.metrics = &fake_metrics;
}

static void set_leader(void)
{
	fake.state = "leader";
	fake.leader = "node-a";
	fake.is_leader = fake.ready = true;
	fake.backend = BACKEND_UP;
	fake.token = 42;
	fake.deadline_left_ns = 9500 * NS_PER_MS;
	fake.index++;
	fake.reason = "elected";
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	char err[256];

	assert_non_null(f);
	snprintf(f->dir, sizeof f->dir, "/tmp/test_api.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof f->path, "%s/api.sock", f->dir);
	f->extra_fd = -1;
	f->loop = ev_loop_new(EVFLAG_AUTO);
	set_follower();
	memset(&fake_metrics, 0, sizeof fake_metrics);
	fake_resign_rc = -1;
	f->api = api_new(f->loop, (struct elector *)f,
	                 "etcd://user:secret@127.0.0.1:2379/elect/web?token=x");
	assert_non_null(f->api);
	assert_int_equal(api_listen(f->api, f->path, 0660, NULL, err, sizeof err), 0);
	last_warning[0] = '\0';
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	api_free(f->api);
	if (f->extra_fd >= 0)
		close(f->extra_fd);
	ev_loop_destroy(f->loop);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* ---- a tiny client ---- */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pump(struct fx *f, int ms)
{
	double end = now_s() + ms / 1000.0;

	do {
		ev_run(f->loop, EVRUN_NOWAIT);
		poll(NULL, 0, 1);
	} while (now_s() < end);
}

static int send_request(struct fx *f, const char *req)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);

	assert_true(fd >= 0);
	memcpy(sa.sun_path, f->path, strlen(f->path) + 1);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
	return fd;
}

/* Reads one whole response (the request asked for Connection: close), or
 * returns NULL if none came within ms. */
static char *read_response(struct fx *f, int fd, int ms)
{
	static char buf[65536];
	size_t len = 0;
	double end = now_s() + ms / 1000.0;

	buf[0] = '\0';
	while (now_s() < end) {
		ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
		if (n > 0) {
			len += (size_t)n;
			buf[len] = '\0';
		} else if (n == 0 || errno != EAGAIN) {
			return len ? buf : NULL;
		} else {
			pump(f, 1);
		}
	}
	return NULL;
}

static char *get(struct fx *f, const char *method, const char *target)
{
	char req[512];
	char *r;
	int fd;

	snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nConnection: close\r\n\r\n", method, target);
	fd = send_request(f, req);
	r = read_response(f, fd, 3000);
	close(fd);
	assert_non_null(r);
	return r;
}

static json_t *body_json(const char *resp)
{
	const char *body = strstr(resp, "\r\n\r\n");
	json_t *doc;

	assert_non_null(body);
	doc = json_loads(body + 4, 0, NULL);
	assert_non_null(doc);
	return doc;
}

static void assert_status_line(const char *resp, const char *line)
{
	assert_memory_equal(resp, line, strlen(line));
}

/* ---- tests ---- */

static void test_status_json(void **state)
{
	struct fx *f = *state;
	char *r = get(f, "GET", "/v1/status");
	json_t *doc = body_json(r);

	assert_status_line(r, "HTTP/1.1 200 OK\r\n");
	assert_string_equal(json_string_value(json_object_get(doc, "name")), "web");
	assert_string_equal(json_string_value(json_object_get(doc, "id")), "node-a");
	assert_string_equal(json_string_value(json_object_get(doc, "state")), "follower");
	assert_true(json_is_null(json_object_get(doc, "leader")));
	assert_int_equal(json_integer_value(json_object_get(doc, "token")), 0);
	assert_true(json_is_false(json_object_get(doc, "is_leader")));
	assert_true(json_is_false(json_object_get(doc, "ready")));
	/* Reachability unknown until the backend answered or failed once. */
	assert_true(json_is_null(json_object_get(doc, "backend_ok")));
	assert_true(json_is_null(json_object_get(doc, "last_error")));
	assert_string_equal(json_string_value(json_object_get(doc, "since")),
	                    "2023-11-14T22:13:20.123Z");
	assert_int_equal(json_integer_value(json_object_get(doc, "since_unix_ms")),
	                 1700000000123);
	assert_true(json_is_null(json_object_get(doc, "deadline_left_ms")));
	assert_int_equal(json_integer_value(json_object_get(doc, "index")), 5);
	assert_string_equal(json_string_value(json_object_get(doc, "reason")), "started");
	/* Credentials and query are not shown. */
	assert_string_equal(json_string_value(json_object_get(doc, "backend")),
	                    "etcd://127.0.0.1:2379/elect/web");
	json_decref(doc);

	set_leader();
	doc = body_json(get(f, "GET", "/v1/status"));
	assert_string_equal(json_string_value(json_object_get(doc, "leader")), "node-a");
	assert_int_equal(json_integer_value(json_object_get(doc, "deadline_left_ms")), 9500);
	assert_int_equal(json_integer_value(json_object_get(doc, "token")), 42);
	assert_true(json_is_true(json_object_get(doc, "is_leader")));
	assert_true(json_is_true(json_object_get(doc, "ready")));
	assert_true(json_is_true(json_object_get(doc, "backend_ok")));
	json_decref(doc);

	fake.backend = BACKEND_DOWN;
	fake.last_error = "cannot connect to ZooKeeper at 127.0.0.1:1: Connection refused";
	doc = body_json(get(f, "GET", "/v1/status"));
	assert_true(json_is_false(json_object_get(doc, "backend_ok")));
	assert_string_equal(json_string_value(json_object_get(doc, "last_error")), fake.last_error);
	json_decref(doc);
}

static void test_long_poll_wakes_on_change(void **state)
{
	struct fx *f = *state;
	int fd = send_request(f, "GET /v1/status?wait=10s&index=5 HTTP/1.1\r\n"
	                         "Connection: close\r\n\r\n");
	json_t *doc;
	char *r;

	assert_null(read_response(f, fd, 100));
	api_changed(f->api);            /* nothing changed: still waiting */
	assert_null(read_response(f, fd, 30));
	set_leader();
	api_changed(f->api);
	r = read_response(f, fd, 2000);
	assert_non_null(r);
	doc = body_json(r);
	assert_int_equal(json_integer_value(json_object_get(doc, "index")), 6);
	assert_string_equal(json_string_value(json_object_get(doc, "state")), "leader");
	json_decref(doc);
	close(fd);
}

static void test_long_poll_times_out_and_index_differs(void **state)
{
	struct fx *f = *state;
	double start = now_s();
	json_t *doc = body_json(get(f, "GET", "/v1/status?wait=150ms&index=5"));

	assert_true(now_s() - start >= 0.14);
	assert_int_equal(json_integer_value(json_object_get(doc, "index")), 5);
	json_decref(doc);
	/* An old index answers at once. */
	start = now_s();
	doc = body_json(get(f, "GET", "/v1/status?wait=10s&index=3"));
	assert_true(now_s() - start < 1.0);
	json_decref(doc);
	/* wait=0 answers at once. */
	doc = body_json(get(f, "GET", "/v1/status?wait=0&index=5"));
	json_decref(doc);
}

static void test_long_poll_client_gone(void **state)
{
	struct fx *f = *state;
	int a = send_request(f, "GET /v1/status?wait=10s HTTP/1.1\r\n\r\n");
	int b = send_request(f, "GET /v1/status?wait=10s&index=5 HTTP/1.1\r\n"
	                        "Connection: close\r\n\r\n");

	pump(f, 30);
	close(a);
	pump(f, 30);
	set_leader();
	api_changed(f->api);
	assert_non_null(read_response(f, b, 2000));
	close(b);
	/* One more left pending: api_free() in teardown must free it. */
	f->extra_fd = send_request(f, "GET /v1/status?wait=10s&index=6 HTTP/1.1\r\n\r\n");
	pump(f, 30);
}

static void test_bad_query_400(void **state)
{
	struct fx *f = *state;
	char *r = get(f, "GET", "/v1/status?wait=soon");

	assert_status_line(r, "HTTP/1.1 400 Bad Request\r\n");
	assert_non_null(strstr(r, "bad wait \\\"soon\\\""));
	assert_non_null(strstr(last_warning, "http: 400 bad request from unix socket: bad wait"));
	r = get(f, "GET", "/v1/status?wait=1s&index=-1");
	assert_status_line(r, "HTTP/1.1 400 Bad Request\r\n");
	assert_non_null(strstr(r, "bad index"));
}

static void test_routes(void **state)
{
	struct fx *f = *state;
	char *r;

	r = get(f, "GET", "/nope");
	assert_status_line(r, "HTTP/1.1 404 Not Found\r\n");
	assert_non_null(strstr(r, "{\"error\":"));
	assert_non_null(strstr(last_warning, "http: 404 not found from unix socket"));
	assert_status_line(get(f, "GET", "/"), "HTTP/1.1 404 ");        /* TCP only */
	assert_status_line(get(f, "DELETE", "/v1/status"), "HTTP/1.1 405 ");
	assert_status_line(get(f, "GET", "/v1/resign"), "HTTP/1.1 405 ");
	r = get(f, "GET", "/healthz");
	assert_status_line(r, "HTTP/1.1 200 ");
	assert_non_null(strstr(r, "{\"status\":\"ok\"}"));
	assert_status_line(get(f, "GET", "/readyz"), "HTTP/1.1 503 ");
	set_leader();
	assert_status_line(get(f, "GET", "/readyz"), "HTTP/1.1 200 ");
	/* Elected, but the elected hook still runs (or failed): not ready. */
	fake.is_leader = fake.ready = false;
	r = get(f, "GET", "/readyz");
	assert_status_line(r, "HTTP/1.1 503 ");
	assert_non_null(strstr(r, "{\"ready\":false,\"state\":\"leader\"}"));
	/* The backend unreachable: still alive (a restart would not help). */
	fake.backend = BACKEND_DOWN;
	assert_status_line(get(f, "GET", "/healthz"), "HTTP/1.1 200 ");
	r = get(f, "HEAD", "/v1/status");
	assert_status_line(r, "HTTP/1.1 200 ");
	assert_null(strstr(r, "{"));
}

static void test_resign(void **state)
{
	struct fx *f = *state;
	char *r = get(f, "POST", "/v1/resign");

	assert_status_line(r, "HTTP/1.1 409 Conflict\r\n");
	assert_non_null(strstr(r, "{\"error\":\"not leader\"}"));
	fake_resign_rc = 0;
	r = get(f, "POST", "/v1/resign");
	assert_status_line(r, "HTTP/1.1 200 OK\r\n");
	assert_non_null(strstr(r, "{\"resigned\":true}"));
}

/* ?to=ID hands over; the timeout is optional (0: the agent's default) and
 * checked; a refusal is a 400 with the core's reason. */
static void test_resign_to(void **state)
{
	struct fx *f = *state;
	char *r;

	r = get(f, "POST", "/v1/resign?to=b%2D2");
	assert_status_line(r, "HTTP/1.1 409 Conflict\r\n");
	fake_resign_rc = 0;
	r = get(f, "POST", "/v1/resign?to=b%2D2");
	assert_status_line(r, "HTTP/1.1 200 OK\r\n");
	assert_non_null(strstr(r, "\"to\":\"b-2\""));
	assert_string_equal(fake_to, "b-2");
	assert_int_equal(fake_to_timeout, 0);
	r = get(f, "POST", "/v1/resign?to=c&timeout=1500ms");
	assert_status_line(r, "HTTP/1.1 200 OK\r\n");
	assert_int_equal(fake_to_timeout, 1500 * NS_PER_MS);
	fake_to[0] = '\0';
	r = get(f, "POST", "/v1/resign?to=c&timeout=soon");
	assert_status_line(r, "HTTP/1.1 400 ");
	assert_non_null(strstr(r, "bad timeout"));
	r = get(f, "POST", "/v1/resign?to=c&timeout=0s");
	assert_status_line(r, "HTTP/1.1 400 ");
	r = get(f, "POST", "/v1/resign?to=");
	assert_status_line(r, "HTTP/1.1 400 ");
	assert_string_equal(fake_to, "");
	fake_resign_rc = -2;
	r = get(f, "POST", "/v1/resign?to=me");
	assert_status_line(r, "HTTP/1.1 400 ");
	assert_non_null(strstr(r, "me is this agent"));
}

static void test_metrics(void **state)
{
	struct fx *f = *state;
	char *r;

	set_leader();
	fake.name = "we\"b";
	fake_metrics.transitions[ST_LEADER] = 3;
	fake_metrics.renewals_ok = 4;
	fake_metrics.renew_latency_last_ns = 2 * NS_PER_MS;
	fake_metrics.renew_latency_sum_ns = 10 * NS_PER_MS;
	fake_metrics.hook_failures[HOOK_ELECTED] = 1;
	r = get(f, "GET", "/metrics");
	assert_status_line(r, "HTTP/1.1 200 OK\r\n");
	assert_non_null(strstr(r, "Content-Type: text/plain; version=0.0.4"));
	assert_non_null(strstr(r, "# TYPE elect_is_leader gauge\n"));
	assert_non_null(strstr(r, "\nelect_is_leader{name=\"we\\\"b\"} 1\n"));
	assert_non_null(strstr(r, "\nelect_state{name=\"we\\\"b\",state=\"leader\"} 1\n"));
	assert_non_null(strstr(r, "\nelect_state{name=\"we\\\"b\",state=\"follower\"} 0\n"));
	assert_non_null(strstr(r, "elect_transitions_total{name=\"we\\\"b\",state=\"leader\"} 3\n"));
	assert_non_null(strstr(r, "elect_token{name=\"we\\\"b\"} 42\n"));
	assert_non_null(strstr(r, "elect_renewals_total{name=\"we\\\"b\"} 4\n"));
	assert_non_null(strstr(r, "elect_renew_last_latency_seconds{name=\"we\\\"b\"} 0.002000\n"));
	/* _sum and _count belong to one summary family, no stray families. */
	assert_non_null(strstr(r, "# TYPE elect_renew_latency_seconds summary\n"
	                          "elect_renew_latency_seconds_sum{"));
	assert_null(strstr(r, "# TYPE elect_renew_latency_seconds_sum"));
	assert_null(strstr(r, "# TYPE elect_renew_latency_seconds_count"));
	assert_null(strstr(r, "# TYPE elect_renew_latency_seconds gauge"));
	assert_non_null(strstr(r, "# TYPE elect_backend_up gauge\n"));
	assert_non_null(strstr(r, "\nelect_backend_up{name=\"we\\\"b\"} 1\n"));
	assert_non_null(strstr(r, "elect_renew_latency_seconds_sum{name=\"we\\\"b\"} 0.010000\n"));
	assert_non_null(strstr(r, "elect_renew_latency_seconds_count{name=\"we\\\"b\"} 4\n"));
	assert_non_null(strstr(r, "elect_hook_failures_total{name=\"we\\\"b\",event=\"elected\"} 1\n"));
	assert_non_null(strstr(r, "elect_hook_runs_total{name=\"we\\\"b\",event=\"leader\"} 0\n"));
	assert_non_null(strstr(r, "elect_deadline_left_seconds{name=\"we\\\"b\"} 9.500\n"));
	assert_non_null(strstr(r, "elect_backend_errors_total{name=\"we\\\"b\"} 0\n"));
	/* Elected but not ready: elect_is_leader follows readiness. */
	fake.is_leader = fake.ready = false;
	fake.backend = BACKEND_DOWN;
	r = get(f, "GET", "/metrics");
	assert_non_null(strstr(r, "\nelect_is_leader{name=\"we\\\"b\"} 0\n"));
	assert_non_null(strstr(r, "\nelect_backend_up{name=\"we\\\"b\"} 0\n"));
}

/* ---- client commands, run in a child while the parent serves ---- */

/* Runs fn in a child with stdout/stderr in files; the parent drives the loop
 * (calling tick every 10 ms) until the child exits. Returns its exit code. */
static int run_client(struct fx *f, int (*fn)(struct fx *), void (*tick)(struct fx *, int),
                      char *out, char *err, size_t len)
{
	char out_path[160], err_path[160];
	int status = -1, ticks = 0;
	pid_t pid;

	snprintf(out_path, sizeof out_path, "%s/out", f->dir);
	snprintf(err_path, sizeof err_path, "%s/err", f->dir);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		dup2(o, 1);
		dup2(e, 2);
		close(o);
		close(e);
		status = fn(f);
		fflush(NULL);
		_exit(status);
	}
	for (double end = now_s() + 20; now_s() < end; ticks++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		pump(f, 10);
		if (tick)
			tick(f, ticks);
	}
	assert_true(WIFEXITED(status));
	for (int i = 0; i < 2; i++) {
		FILE *in = fopen(i ? err_path : out_path, "r");
		char *dst = i ? err : out;
		size_t n = in ? fread(dst, 1, len - 1, in) : 0;

		dst[n] = '\0';
		if (in)
			fclose(in);
		unlink(i ? err_path : out_path);
	}
	return WEXITSTATUS(status);
}

static int do_status(struct fx *f) { return client_status(f->path); }
static int do_resign(struct fx *f) { return client_resign(f->path); }
static int do_wait(struct fx *f) { return client_wait_leader(f->path, 10 * NS_PER_SEC); }
static int do_wait_short(struct fx *f) { return client_wait_leader(f->path, 300 * NS_PER_MS); }

static void become_leader_later(struct fx *f, int ticks)
{
	if (ticks == 20) {
		set_leader();
		api_changed(f->api);
	}
}

static void test_client_status_and_resign(void **state)
{
	struct fx *f = *state;
	char out[4096], err[1024];

	assert_int_equal(run_client(f, do_status, NULL, out, err, sizeof out), 0);
	assert_non_null(strstr(out, "\"name\": \"web\""));
	assert_non_null(strstr(out, "\"is_leader\": false"));
	assert_int_equal(out[strlen(out) - 1], '\n');
	assert_int_equal(run_client(f, do_resign, NULL, out, err, sizeof out), 1);
	assert_string_equal(err, "elect: not leader\n");
	fake_resign_rc = 0;
	assert_int_equal(run_client(f, do_resign, NULL, out, err, sizeof out), 0);
	assert_non_null(strstr(out, "\"resigned\": true"));
}

static void test_client_wait_leader(void **state)
{
	struct fx *f = *state;
	char out[4096], err[1024];
	double start = now_s();

	assert_int_equal(run_client(f, do_wait_short, NULL, out, err, sizeof out), 1);
	assert_true(now_s() - start >= 0.29);
	assert_int_equal(run_client(f, do_wait, become_leader_later, out, err, sizeof out), 0);
	/* Already leader: at once. */
	assert_int_equal(run_client(f, do_wait_short, NULL, out, err, sizeof out), 0);
}

static void test_client_unreachable(void **state)
{
	struct fx *f = *state;
	char out[4096], err[1024];

	snprintf(f->path, sizeof f->path, "%s/missing.sock", f->dir);
	assert_int_equal(run_client(f, do_status, NULL, out, err, sizeof out), 2);
	assert_non_null(strstr(err, "elect: cannot reach the agent at "));
	assert_non_null(strstr(err, "missing.sock: No such file or directory (is it running? "
	                            "use --socket PATH)\n"));
	assert_int_equal(run_client(f, do_resign, NULL, out, err, sizeof out), 2);
	assert_int_equal(run_client(f, do_wait, NULL, out, err, sizeof out), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_status_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_poll_wakes_on_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_poll_times_out_and_index_differs, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_long_poll_client_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_query_400, setup, teardown),
		cmocka_unit_test_setup_teardown(test_routes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resign, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resign_to, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_status_and_resign, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_wait_leader, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_unreachable, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
