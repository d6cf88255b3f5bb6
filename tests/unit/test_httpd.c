/* Unit tests for common/httpd.c on a real libev loop and a temporary Unix
 * socket. The test is its own client: plain non-blocking sockets, with the
 * loop driven by ev_run(EV_RUN_NOWAIT) between reads and writes. log_msg is
 * wrapped so that the one-line 4xx log can be checked. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "common/httpd.h"
#include "common/log.h"

/* ---- seams ---- */

static char last_warning[512];

void __wrap_log_msg(enum log_level lvl, const char *fmt, ...);
void __wrap_log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (lvl <= LOG_LVL_WARN)
		vsnprintf(last_warning, sizeof last_warning, fmt, ap);
	va_end(ap);
}

/* ---- fixture: a server with a test handler ---- */

struct fx {
	struct ev_loop *loop;
	struct httpd *h;
	char dir[64], path[128];
	int handled, aborted, polls_aborted;
	struct http_request *pending;
	char last_query[256];
};

static void on_abort(struct http_request *req, void *data)
{
	struct fx *f = data;

	assert_ptr_equal(req, f->pending);
	f->pending = NULL;
	f->aborted++;
}

static void defer_pending(struct fx *f)
{
	assert_non_null(f->pending);
}

static void on_poll_abort(struct http_request *req, void *data)
{
	struct fx *f = data;

	(void)req;
	f->polls_aborted++;
}

static void handler(struct http_request *req, void *data)
{
	struct fx *f = data;
	char text[256];

	f->handled++;
	snprintf(f->last_query, sizeof f->last_query, "%s", req->query);
	if (strcmp(req->path, "/defer") == 0) {
		f->pending = req;
		httpd_defer(req, on_abort, f);
		return;
	}
	/* Long-polls that are never answered; /keep also pins its connection. */
	if (strcmp(req->path, "/poll") == 0 || strcmp(req->path, "/keep") == 0) {
		if (strcmp(req->path, "/keep") == 0)
			httpd_keep_connection(req);
		httpd_defer(req, on_poll_abort, f);
		return;
	}
	if (strcmp(req->path, "/echo") == 0) {
		httpd_respond(req, 200, "text/plain", req->body, req->body_len);
		return;
	}
	if (strcmp(req->path, "/missing") == 0) {
		httpd_respond_error(req, 404, "no such thing");
		return;
	}
	snprintf(text, sizeof text, "%s %s body=%zu", req->method, req->path, req->body_len);
	httpd_respond(req, 200, "text/plain", text, strlen(text));
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	char err[256];

	assert_non_null(f);
	snprintf(f->dir, sizeof f->dir, "/tmp/test_httpd.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof f->path, "%s/sub/api.sock", f->dir);
	f->loop = ev_loop_new(EVFLAG_AUTO);
	f->h = httpd_new(f->loop, handler, f);
	assert_int_equal(httpd_listen_unix(f->h, f->path, 0600, (gid_t)-1, err, sizeof err), 0);
	last_warning[0] = '\0';
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char sub[160];

	httpd_free(f->h);
	ev_loop_destroy(f->loop);
	snprintf(sub, sizeof sub, "%s/sub", f->dir);
	rmdir(sub);
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

static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);

	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	return fd;
}

/* Sends everything (the server may stop reading: then we give up). */
static void send_all(struct fx *f, int fd, const char *data, size_t len)
{
	double end = now_s() + 3;

	while (len > 0 && now_s() < end) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
		if (n > 0) {
			data += n;
			len -= (size_t)n;
		} else if (n < 0 && errno != EAGAIN) {
			return;
		}
		ev_run(f->loop, EVRUN_NOWAIT);
	}
}

static void send_str(struct fx *f, int fd, const char *s)
{
	send_all(f, fd, s, strlen(s));
}

/* Complete responses in buf[0..len). */
static int count_responses(const char *buf, size_t len)
{
	int n = 0;
	size_t pos = 0;

	while (pos < len) {
		const char *end = memmem(buf + pos, len - pos, "\r\n\r\n", 4);
		const char *cl;
		size_t hdr, body = 0;

		if (!end)
			break;
		hdr = (size_t)(end - (buf + pos)) + 4;
		cl = memmem(buf + pos, hdr, "Content-Length: ", 16);
		if (cl)
			body = strtoul(cl + 16, NULL, 10);
		if (pos + hdr + body > len)
			break;
		pos += hdr + body;
		n++;
	}
	return n;
}

/* Reads until want responses are complete, or EOF (*eof), or 3 s pass. */
static size_t read_responses(struct fx *f, int fd, char *buf, size_t cap, int want, bool *eof)
{
	size_t len = 0;
	double end = now_s() + 3;

	*eof = false;
	buf[0] = '\0';
	while (now_s() < end && count_responses(buf, len) < want) {
		ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
		if (n > 0) {
			len += (size_t)n;
			buf[len] = '\0';
			continue;
		}
		if (n == 0 || (n < 0 && errno != EAGAIN)) {
			*eof = true;
			break;
		}
		pump(f, 1);
	}
	return len;
}

/* After the last response of a closing connection: the server closes. */
static bool sees_eof(struct fx *f, int fd)
{
	double end = now_s() + 4;
	char tmp[256];

	while (now_s() < end) {
		ssize_t n = recv(fd, tmp, sizeof tmp, 0);
		if (n == 0 || (n < 0 && errno != EAGAIN))
			return true;
		pump(f, 1);
	}
	return false;
}

static char *request(struct fx *f, const char *req, int want)
{
	static char buf[65536];
	bool eof;
	int fd = connect_to(f->path);

	send_all(f, fd, req, strlen(req));
	read_responses(f, fd, buf, sizeof buf, want, &eof);
	close(fd);
	return buf;
}

/* The server still answers a normal request. */
static void assert_still_works(struct fx *f)
{
	char *r = request(f, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n", 1);

	assert_non_null(strstr(r, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(r, "GET /ok body=0"));
}

/* ---- tests ---- */

static void test_get(void **state)
{
	struct fx *f = *state;
	char *r = request(f, "GET /hello%20there?a=1&b=x%2By HTTP/1.1\r\nHost: x\r\n\r\n", 1);
	struct stat st;

	assert_non_null(strstr(r, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(r, "Content-Type: text/plain\r\n"));
	assert_non_null(strstr(r, "Content-Length: 23\r\n"));
	assert_non_null(strstr(r, "\r\n\r\nGET /hello there body=0"));
	assert_string_equal(f->last_query, "a=1&b=x%2By");
	/* The socket got the requested mode, in a directory we created. */
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_post_body_and_head(void **state)
{
	struct fx *f = *state;
	char *r = request(f, "POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde", 1);

	assert_non_null(strstr(r, "Content-Length: 5\r\n"));
	assert_non_null(strstr(r, "\r\n\r\nabcde"));
	/* Chunked body. */
	r = request(f, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
	            "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", 1);
	assert_non_null(strstr(r, "Content-Length: 5\r\n"));
	assert_non_null(strstr(r, "\r\n\r\nabcde"));
	/* HEAD: the length, no body. */
	r = request(f, "HEAD /x HTTP/1.1\r\n\r\n", 1);
	assert_non_null(strstr(r, "Content-Length: 14\r\n"));
	assert_null(strstr(r, "HEAD /x"));
}

static void test_pipelined_in_order(void **state)
{
	struct fx *f = *state;
	char *r = request(f, "GET /first HTTP/1.1\r\n\r\nGET /second HTTP/1.1\r\n\r\n", 2);
	char *a = strstr(r, "GET /first"), *b = strstr(r, "GET /second");

	assert_non_null(a);
	assert_non_null(b);
	assert_true(a < b);
	assert_int_equal(f->handled, 2);
}

static void test_keep_alive_and_close(void **state)
{
	struct fx *f = *state;
	static char buf[8192];
	bool eof;
	int fd = connect_to(f->path);

	/* HTTP/1.1 stays open for a second request on the same connection. */
	send_str(f, fd, "GET /a HTTP/1.1\r\n\r\n");
	read_responses(f, fd, buf, sizeof buf, 1, &eof);
	assert_false(eof);
	assert_null(strstr(buf, "Connection: close"));
	send_str(f, fd, "GET /b HTTP/1.1\r\nConnection: close\r\n\r\n");
	read_responses(f, fd, buf, sizeof buf, 1, &eof);
	assert_non_null(strstr(buf, "Connection: close\r\n"));
	assert_non_null(strstr(buf, "GET /b"));
	assert_true(sees_eof(f, fd));
	close(fd);
	/* HTTP/1.0 closes by default. */
	fd = connect_to(f->path);
	send_str(f, fd, "GET /c HTTP/1.0\r\n\r\n");
	read_responses(f, fd, buf, sizeof buf, 1, &eof);
	assert_non_null(strstr(buf, "GET /c"));
	assert_true(sees_eof(f, fd));
	close(fd);
}

static void test_malformed_400(void **state)
{
	struct fx *f = *state;
	static const char *const bad[] = {
		"GARBAGE\r\n\r\n",
		"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
		"GET /%zz HTTP/1.1\r\n\r\n",
		"GET /a%00b HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
		"\x01\x02\x03\xff\r\n\r\n",
	};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char *r = request(f, bad[i], 1);

		assert_non_null(strstr(r, "HTTP/1.1 400 Bad Request\r\n"));
		assert_non_null(strstr(r, "Connection: close\r\n"));
		assert_non_null(strstr(r, "{\"error\":"));
		assert_non_null(strstr(last_warning, "http: 400 bad request from unix socket: "));
		last_warning[0] = '\0';
		assert_still_works(f);
	}
	assert_int_equal(f->handled, (int)(sizeof bad / sizeof bad[0]));
}

static void test_body_too_large_413(void **state)
{
	struct fx *f = *state;
	size_t body = 100 * 1024;
	char *req = malloc(body + 128);
	static char buf[8192];
	bool eof;
	int fd;
	int n = snprintf(req, 128, "POST /echo HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", body);

	memset(req + n, 'x', body);
	fd = connect_to(f->path);
	send_all(f, fd, req, (size_t)n + body);
	read_responses(f, fd, buf, sizeof buf, 1, &eof);
	assert_non_null(strstr(buf, "HTTP/1.1 413 Payload Too Large\r\n"));
	assert_non_null(strstr(last_warning, "http: 413 payload too large from unix socket"));
	assert_true(sees_eof(f, fd));
	close(fd);
	/* The same without Content-Length: a chunked body that grows too big. */
	fd = connect_to(f->path);
	send_str(f, fd, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
	for (int i = 0; i < 10; i++) {
		char chunk[32];
		snprintf(chunk, sizeof chunk, "%x\r\n", 10000);
		send_all(f, fd, chunk, strlen(chunk));
		send_all(f, fd, req + n, 10000);
		send_str(f, fd, "\r\n");
	}
	read_responses(f, fd, buf, sizeof buf, 1, &eof);
	assert_non_null(strstr(buf, "HTTP/1.1 413 "));
	close(fd);
	free(req);
	assert_int_equal(f->handled, 0);
	assert_still_works(f);
}

static void test_headers_too_large_431(void **state)
{
	struct fx *f = *state;
	char *req = malloc(32 * 1024);
	size_t len = 0;
	static char buf[8192];
	bool eof;
	int fd;

	len += (size_t)sprintf(req, "GET / HTTP/1.1\r\n");
	for (int i = 0; i < 20; i++) {
		len += (size_t)sprintf(req + len, "X-Filler-%d: ", i);
		memset(req + len, 'a', 1000);
		len += 1000;
		len += (size_t)sprintf(req + len, "\r\n");
	}
	len += (size_t)sprintf(req + len, "\r\n");
	fd = connect_to(f->path);
	send_all(f, fd, req, len);
	read_responses(f, fd, buf, sizeof buf, 1, &eof);
	assert_non_null(strstr(buf, "HTTP/1.1 431 Request Header Fields Too Large\r\n"));
	assert_non_null(strstr(last_warning, "http: 431 "));
	close(fd);
	free(req);
	/* A long URL counts too. */
	req = calloc(1, 12 * 1024);
	memcpy(req, "GET /", 5);
	memset(req + 5, 'u', 10 * 1024);
	strcat(req, " HTTP/1.1\r\n\r\n");
	assert_non_null(strstr(request(f, req, 1), "HTTP/1.1 431 "));
	free(req);
	assert_still_works(f);
}

static void test_deferred_abort(void **state)
{
	struct fx *f = *state;
	int fd = connect_to(f->path);

	send_str(f, fd, "GET /defer HTTP/1.1\r\n\r\n");
	pump(f, 20);
	defer_pending(f);
	assert_int_equal(f->aborted, 0);
	close(fd);
	pump(f, 20);
	assert_int_equal(f->aborted, 1);
	assert_null(f->pending);
	assert_still_works(f);
}

/* A deferred request holds back the pipelined one behind it; answering it
 * later (outside the handler) releases both, in order. */
static void test_deferred_answer_keeps_order(void **state)
{
	struct fx *f = *state;
	static char buf[8192];
	bool eof;
	int fd = connect_to(f->path);

	send_str(f, fd, "GET /defer HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n");
	pump(f, 30);
	defer_pending(f);
	assert_int_equal(f->handled, 1);
	assert_int_equal(recv(fd, buf, sizeof buf, 0), -1);
	httpd_respond(f->pending, 200, "text/plain", "late", 4);
	f->pending = NULL;
	read_responses(f, fd, buf, sizeof buf, 2, &eof);
	assert_non_null(strstr(buf, "\r\n\r\nlate"));
	assert_non_null(strstr(buf, "GET /after"));
	assert_true(strstr(buf, "late") < strstr(buf, "GET /after"));
	close(fd);
	pump(f, 10);
	assert_int_equal(f->aborted, 0);
}

/* httpd_free() aborts what is still deferred. */
static void test_free_aborts_deferred(void **state)
{
	struct fx *f = *state;
	int fd = connect_to(f->path);

	send_str(f, fd, "GET /defer HTTP/1.1\r\n\r\n");
	pump(f, 20);
	defer_pending(f);
	httpd_free(f->h);
	f->h = NULL;
	assert_int_equal(f->aborted, 1);
	close(fd);
	f->h = httpd_new(f->loop, handler, f);
}

static void test_error_answer_logged(void **state)
{
	struct fx *f = *state;
	char *r = request(f, "GET /missing HTTP/1.1\r\n\r\n", 1);

	assert_non_null(strstr(r, "HTTP/1.1 404 Not Found\r\n"));
	assert_non_null(strstr(r, "{\"error\":\"no such thing\"}\n"));
	assert_string_equal(last_warning, "http: 404 not found from unix socket: no such thing");
}

/* Whether the server still has fd open (no EOF, no error). */
static bool is_open(int fd)
{
	char tmp[16];

	return recv(fd, tmp, sizeof tmp, 0) < 0 && errno == EAGAIN;
}

/* 130 idle connections on one listener: the two longest idle are closed to
 * make room (the old code kept the first 128 and refused the newcomers). */
static void test_connection_limit(void **state)
{
	struct fx *f = *state;
	int fds[130];

	for (int i = 0; i < 130; i++) {
		fds[i] = connect_to(f->path);
		pump(f, 1);
	}
	pump(f, 20);
	assert_false(is_open(fds[0]));
	assert_false(is_open(fds[1]));
	assert_true(is_open(fds[2]));
	assert_true(is_open(fds[128]));
	assert_true(is_open(fds[129]));
	assert_non_null(strstr(last_warning, "128 connections open"));
	for (int i = 0; i < 130; i++)
		close(fds[i]);
	pump(f, 20);
	assert_still_works(f);
}

/* A full listener closes its longest-idle connection, not one that was just
 * used, not a long-poll while an idle one is left, never a kept one. */
static void test_idle_evicted_first(void **state)
{
	struct fx *f = *state;
	int fds[128], extra;
	char buf[4096];
	bool eof;

	for (int i = 0; i < 128; i++) {
		fds[i] = connect_to(f->path);
		pump(f, 1);
	}
	send_str(f, fds[0], "GET /keep HTTP/1.1\r\n\r\n");
	send_str(f, fds[1], "GET /poll HTTP/1.1\r\n\r\n");
	send_str(f, fds[2], "GET /ok HTTP/1.1\r\n\r\n");
	read_responses(f, fds[2], buf, sizeof buf, 1, &eof);
	assert_false(eof);
	pump(f, 10);
	extra = connect_to(f->path);
	pump(f, 20);
	/* fds[3] was the longest idle; fds[2] was idle longer but just used. */
	assert_false(is_open(fds[3]));
	assert_true(is_open(fds[0]));
	assert_true(is_open(fds[1]));
	assert_true(is_open(fds[2]));
	assert_true(is_open(fds[4]));
	assert_true(is_open(extra));
	assert_int_equal(f->polls_aborted, 0);
	close(extra);
	for (int i = 0; i < 128; i++)
		close(fds[i]);
	pump(f, 20);
	assert_still_works(f);
}

/* All slots busy with long-polls: the oldest unkept one goes; all kept:
 * the newcomer is refused and the kept ones stay. */
static void test_longpolls_and_kept(void **state)
{
	struct fx *f = *state;
	int fds[128], extra;

	for (int i = 0; i < 128; i++) {
		fds[i] = connect_to(f->path);
		send_str(f, fds[i], i < 64 ? "GET /keep HTTP/1.1\r\n\r\n" : "GET /poll HTTP/1.1\r\n\r\n");
		pump(f, 1);
	}
	pump(f, 20);
	extra = connect_to(f->path);
	pump(f, 20);
	assert_int_equal(f->polls_aborted, 1);
	assert_false(is_open(fds[64]));
	assert_true(is_open(fds[65]));
	assert_true(is_open(fds[0]));
	assert_true(is_open(extra));
	close(extra);
	for (int i = 64; i < 128; i++)
		close(fds[i]);
	pump(f, 20);
	for (int i = 64; i < 128; i++) {
		fds[i] = connect_to(f->path);
		send_str(f, fds[i], "GET /keep HTTP/1.1\r\n\r\n");
		pump(f, 1);
	}
	pump(f, 20);
	f->polls_aborted = 0;
	extra = connect_to(f->path);
	pump(f, 20);
	assert_false(is_open(extra));
	for (int i = 0; i < 128; i++)
		assert_true(is_open(fds[i]));
	assert_int_equal(f->polls_aborted, 0);
	close(extra);
	for (int i = 0; i < 128; i++)
		close(fds[i]);
	pump(f, 20);
	assert_still_works(f);
}

static int connect_tcp(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	assert_true(fd >= 0);
	assert_true(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 || errno == EINPROGRESS);
	return fd;
}

/* 200 idle TCP connections take only the TCP listener's slots: the Unix
 * socket still answers (the old code shared 128 slots among listeners), and
 * so does a new TCP request (it closes an idle one). */
static void test_listeners_have_own_limits(void **state)
{
	struct fx *f = *state;
	struct httpd_bound b;
	char err[256], buf[4096];
	int fds[200], port, fd;
	bool eof;

	assert_int_equal(httpd_listen_tcp(f->h, "127.0.0.1:0", &b, err, sizeof err), 0);
	assert_true(b.loopback);
	port = atoi(strrchr(b.addr, ':') + 1);
	assert_true(port > 0);
	for (int i = 0; i < 200; i++) {
		fds[i] = connect_tcp(port);
		pump(f, 1);
	}
	pump(f, 50);
	assert_still_works(f);
	fd = connect_tcp(port);
	pump(f, 20);
	send_str(f, fd, "GET /ok HTTP/1.1\r\n\r\n");
	read_responses(f, fd, buf, sizeof buf, 1, &eof);
	assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(last_warning, "TCP 127.0.0.1:"));
	close(fd);
	for (int i = 0; i < 200; i++)
		close(fds[i]);
}

static void test_socket_in_use_and_stale(void **state)
{
	struct fx *f = *state;
	struct httpd *other = httpd_new(f->loop, handler, f);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char err[256], path[160];
	int fd;

	/* Live: refused, and the file is left alone. */
	assert_int_equal(httpd_listen_unix(other, f->path, 0600, (gid_t)-1, err, sizeof err), -1);
	assert_non_null(strstr(err, "is in use by another agent"));
	assert_still_works(f);
	/* Stale: a socket file nobody listens on is replaced. */
	snprintf(path, sizeof path, "%s/stale.sock", f->dir);
	assert_true(strlen(path) < sizeof sa.sun_path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	close(fd);
	assert_int_equal(httpd_listen_unix(other, path, 0660, (gid_t)-1, err, sizeof err), 0);
	/* Not a socket: refused. */
	snprintf(path, sizeof path, "%s/plain", f->dir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	assert_int_equal(httpd_listen_unix(other, path, 0660, (gid_t)-1, err, sizeof err), -1);
	assert_non_null(strstr(err, "not a socket"));
	unlink(path);
	/* Bad TCP addresses. */
	assert_int_equal(httpd_listen_tcp(other, "nocolon", NULL, err, sizeof err), -1);
	assert_int_equal(httpd_listen_tcp(other, "127.0.0.1:99999", NULL, err, sizeof err), -1);
	assert_int_equal(httpd_listen_tcp(other, "127.0.0.1:", NULL, err, sizeof err), -1);
	httpd_free(other);      /* unlinks stale.sock, which it now owns */
	snprintf(path, sizeof path, "%s/stale.sock", f->dir);
	assert_int_equal(access(path, F_OK), -1);
}

static void test_tcp_listener(void **state)
{
	struct fx *f = *state;
	char err[256];

	/* Port 0: any free port; only checks that TCP set-up works. */
	assert_int_equal(httpd_listen_tcp(f->h, "127.0.0.1:0", NULL, err, sizeof err), 0);
}

/* ":PORT" is loopback only; checks at option time refuse what listen would. */
static void test_tcp_loopback_default_and_checks(void **state)
{
	struct fx *f = *state;
	struct httpd_bound b;
	char err[512];
	mode_t mode;
	gid_t gid;

	assert_int_equal(httpd_listen_tcp(f->h, ":0", &b, err, sizeof err), 0);
	assert_true(b.loopback);
	assert_true(strncmp(b.addr, "127.0.0.1:", 10) == 0);
	assert_int_equal(httpd_tcp_addr_check("127.0.0.1:4040", err, sizeof err), 0);
	assert_int_equal(httpd_tcp_addr_check(":4040", err, sizeof err), 0);
	assert_int_equal(httpd_tcp_addr_check("[::1]:4040", err, sizeof err), 0);
	const char *bad[] = { "nonsense", "1.2.3.4:99999", "1.2.3.4:", ":123456", "::1:80",
	                      "[::1:80", "1.2.3.4:8o", "" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		assert_int_equal(httpd_tcp_addr_check(bad[i], err, sizeof err), -1);
		assert_non_null(strstr(err, "bad TCP address"));
	}
	assert_int_equal(httpd_unix_path_check("/run/elect/x.sock", err, sizeof err), 0);
	assert_int_equal(httpd_unix_path_check("", err, sizeof err), -1);
	char longp[200];
	memset(longp, 'x', sizeof longp - 1);
	longp[0] = '/';
	longp[sizeof longp - 1] = '\0';
	assert_int_equal(httpd_unix_path_check(longp, err, sizeof err), -1);
	assert_non_null(strstr(err, "too long"));
	assert_int_equal(httpd_parse_socket_mode("0640", &mode, err, sizeof err), 0);
	assert_int_equal(mode, 0640);
	assert_int_equal(httpd_parse_socket_mode("0460", &mode, err, sizeof err), -1);
	assert_int_equal(httpd_parse_socket_mode("0x1ff", &mode, err, sizeof err), -1);
	assert_int_equal(httpd_parse_socket_mode("1777", &mode, err, sizeof err), -1);
	assert_int_equal(httpd_parse_socket_group("0", &gid, err, sizeof err), 0);
	assert_int_equal(gid, 0);
	assert_int_equal(httpd_parse_socket_group("no-such-group-here", &gid, err, sizeof err), -1);
	assert_int_equal(httpd_parse_socket_group("", &gid, err, sizeof err), -1);
}

static void test_query_param(void **state)
{
	struct http_request req = { .query = "a=1&wait=30s&x=%2Fy+z&empty&bad=%zz&nul=%00&a=2" };
	char buf[16];

	(void)state;
	assert_int_equal(httpd_query_param(&req, "a", buf, sizeof buf), 0);
	assert_string_equal(buf, "1");
	assert_int_equal(httpd_query_param(&req, "wait", buf, sizeof buf), 0);
	assert_string_equal(buf, "30s");
	assert_int_equal(httpd_query_param(&req, "x", buf, sizeof buf), 0);
	assert_string_equal(buf, "/y z");
	assert_int_equal(httpd_query_param(&req, "empty", buf, sizeof buf), 0);
	assert_string_equal(buf, "");
	assert_int_equal(httpd_query_param(&req, "bad", buf, sizeof buf), -2);
	assert_int_equal(httpd_query_param(&req, "nul", buf, sizeof buf), -2);
	assert_int_equal(httpd_query_param(&req, "nope", buf, sizeof buf), -1);
	assert_int_equal(httpd_query_param(&req, "wait", buf, 3), -2);
	req.query = "";
	assert_int_equal(httpd_query_param(&req, "a", buf, sizeof buf), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_get, setup, teardown),
		cmocka_unit_test_setup_teardown(test_post_body_and_head, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pipelined_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keep_alive_and_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_400, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_too_large_413, setup, teardown),
		cmocka_unit_test_setup_teardown(test_headers_too_large_431, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deferred_abort, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deferred_answer_keeps_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_aborts_deferred, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_answer_logged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_evicted_first, setup, teardown),
		cmocka_unit_test_setup_teardown(test_longpolls_and_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listeners_have_own_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_in_use_and_stale, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tcp_listener, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tcp_loopback_default_and_checks, setup, teardown),
		cmocka_unit_test(test_query_param),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
