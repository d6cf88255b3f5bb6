/* A small HTTP/1.1 server on libev for the local API (see httpd.h).
 *
 * One request per connection is handled at a time: when http-parser reports
 * a complete message the parser is paused, the handler runs, and parsing of
 * the rest of the input (pipelined requests) resumes only once the answer has
 * been written out. That keeps answers in request order without a queue and
 * gives back-pressure to a client that sends but never reads.
 *
 * httpd_respond() only queues bytes and arms the write watcher; it never
 * closes a connection or calls a handler, so it is safe to call from any
 * callback (a long-poll timer, a change notification walking a list).
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ev.h>
#include <http_parser.h>
#include <jansson.h>

#include "common/httpd.h"
#include "common/httpd_int.h"
#include "common/log.h"

#define HTTPD_MAX_HEADER   (8 * 1024)
#define HTTPD_MAX_BODY     (64 * 1024)
#define HTTPD_LINGER_SECS  2.0      /* drain input after the last answer */
#define HTTPD_READ_CHUNK   16384
#define HTTPD_RBUF_CAP     (128 * 1024) /* unparsed input kept while busy */

static void conn_process(struct conn *c);

/* ---- small helpers */

static int buf_add(struct buf *b, const void *data, size_t n)
{
	if (b->cap - b->len < n + 1) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap - b->len < n + 1)
			cap *= 2;
		char *p = realloc(b->data, cap);
		if (!p)
			return -1;
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

static void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Percent-decodes s[0..n) into out (NUL-terminated). -1 on a bad escape, an
 * embedded NUL or when out is too small. */
static int pct_decode(const char *s, size_t n, bool plus_is_space, char *out, size_t outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (ch == '%') {
			if (i + 2 >= n)
				return -1;
			int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			ch = (char)(hi * 16 + lo);
			i += 2;
		} else if (ch == '+' && plus_is_space) {
			ch = ' ';
		}
		if (ch == '\0' || o + 1 >= outlen)
			return -1;
		out[o++] = ch;
	}
	if (o >= outlen)
		return -1;
	out[o] = '\0';
	return 0;
}

/* ---- answers */

static void conn_queue_answer(struct conn *c, int status, const char *ctype,
                              const char *body, size_t len, bool head)
{
	const char *text = http_status_str((enum http_status)status);
	char hdr[256];
	int n;

	if (strcmp(text, "<unknown>") == 0)
		text = "Unknown";
	n = snprintf(hdr, sizeof hdr,
	             "HTTP/1.1 %d %s\r\n%s%s%sContent-Length: %zu\r\n"
	             "Cache-Control: no-store\r\n%s\r\n",
	             status, text, ctype ? "Content-Type: " : "", ctype ? ctype : "",
	             ctype ? "\r\n" : "", len, c->close_after ? "Connection: close\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof hdr ||
	    buf_add(&c->out, hdr, (size_t)n) < 0 ||
	    (!head && len > 0 && buf_add(&c->out, body, len) < 0))
		c->dead = true;         /* out of memory: drop the connection */
}

/* One line per refused request: "http: 400 bad request from unix socket: why".
 * The reason may quote the client's bytes: control characters become '?'. */
static void log_client_error(const struct conn *c, int status, const char *reason)
{
	char text[64], why[240];
	size_t i;

	snprintf(text, sizeof text, "%s", http_status_str((enum http_status)status));
	for (i = 0; text[i]; i++)
		text[i] = (char)tolower((unsigned char)text[i]);
	snprintf(why, sizeof why, "%s", reason);
	for (i = 0; why[i]; i++)
		if ((unsigned char)why[i] < 0x20 || why[i] == 0x7f)
			why[i] = '?';
	log_warnx("http: %d %s from %s: %s", status, text, c->peer, why);
}

/* An error found while parsing: answer, then close (the input stream is no
 * longer trustworthy). */
static void conn_reject(struct conn *c, int status, const char *reason)
{
	json_t *obj = json_pack("{s:s}", "error", reason);
	char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;

	log_client_error(c, status, reason);
	c->close_after = true;
	if (text) {
		size_t len = strlen(text);
		text[len] = '\n';
		conn_queue_answer(c, status, "application/json", text, len + 1, false);
		text[len] = '\0';
	} else {
		conn_queue_answer(c, status, NULL, NULL, 0, false);
	}
	free(text);
	json_decref(obj);
}

static void request_clear(struct conn *c)
{
	free((char *)c->req.path);
	free((char *)c->req.query);
	memset(&c->req, 0, sizeof c->req);
	buf_free(&c->body);
	c->req_active = c->deferred = false;
	c->abort_cb = NULL;
	c->abort_data = NULL;
}

static void respond_full(struct http_request *req, int status, const char *ctype,
                         const char *body, size_t len, const char *reason)
{
	struct conn *c = req ? req->priv : NULL;
	char what[160];

	if (!c || !c->req_active)
		return;                 /* answered twice, or aborted */
	if (status >= 400 && status < 500) {
		if (!reason) {
			snprintf(what, sizeof what, "%s %.120s", req->method, req->path);
			reason = what;
		}
		log_client_error(c, status, reason);
	}
	if (!c->keep_alive)
		c->close_after = true;
	conn_queue_answer(c, status, ctype, body ? body : "", body ? len : 0,
	                  strcmp(req->method, "HEAD") == 0);
	request_clear(c);
	c->last_active = ++c->h->activity;
	ev_timer_again(c->h->loop, &c->timer);
	/* Outside the handler, nothing else will flush: let the loop do it. */
	if (!c->in_handler)
		ev_io_start(c->h->loop, &c->wio);
}

void httpd_respond(struct http_request *req, int status, const char *content_type,
                   const char *body, size_t len)
{
	respond_full(req, status, content_type, body, len, NULL);
}

void httpd_respond_json(struct http_request *req, int status, const char *json)
{
	respond_full(req, status, "application/json", json, json ? strlen(json) : 0, NULL);
}

void httpd_respond_error(struct http_request *req, int status, const char *message)
{
	json_t *obj = json_pack("{s:s}", "error", message ? message : "");
	char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
	char *line = NULL;

	if (text && asprintf(&line, "%s\n", text) < 0)
		line = NULL;
	respond_full(req, status, "application/json", line ? line : "", line ? strlen(line) : 0,
	             message);
	free(line);
	free(text);
	json_decref(obj);
}

void httpd_defer(struct http_request *req, httpd_abort_cb abort, void *data)
{
	struct conn *c = req ? req->priv : NULL;

	if (!c || !c->req_active)
		return;
	c->deferred = true;
	c->abort_cb = abort;
	c->abort_data = data;
}

void httpd_keep_connection(struct http_request *req)
{
	struct conn *c = req ? req->priv : NULL;

	if (c)
		c->keep = true;
}

int httpd_query_param(const struct http_request *req, const char *key, char *buf, size_t len)
{
	const char *p = req->query ? req->query : "";
	size_t keylen = strlen(key);

	while (*p) {
		const char *end = p + strcspn(p, "&");
		const char *eq = memchr(p, '=', (size_t)(end - p));
		const char *kend = eq ? eq : end;
		char name[128];

		if (pct_decode(p, (size_t)(kend - p), true, name, sizeof name) == 0 &&
		    strlen(name) == keylen && memcmp(name, key, keylen) == 0) {
			if (!eq)
				return len > 0 ? (buf[0] = '\0', 0) : -1;
			return pct_decode(eq + 1, (size_t)(end - eq - 1), true, buf, len) == 0 ? 0 : -2;
		}
		p = *end ? end + 1 : end;
	}
	return -1;
}

/* ---- parser callbacks */

static int refuse(struct conn *c, int status, const char *reason)
{
	c->reject_status = status;
	snprintf(c->reject_reason, sizeof c->reject_reason, "%s", reason);
	return -1;
}

static int count_header(http_parser *p, size_t len)
{
	struct conn *c = p->data;

	c->header_bytes += len;
	if (c->header_bytes > HTTPD_MAX_HEADER)
		return refuse(c, 431, "request headers over 8 KiB");
	return 0;
}

static int on_message_begin(http_parser *p)
{
	struct conn *c = p->data;

	c->url.len = 0;
	c->body.len = 0;
	c->header_bytes = 0;
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct conn *c = p->data;

	if (count_header(p, len) < 0)
		return -1;
	return buf_add(&c->url, at, len) < 0 ? refuse(c, 500, "out of memory") : 0;
}

static int on_header_data(http_parser *p, const char *at, size_t len)
{
	(void)at;
	return count_header(p, len);
}

static int on_headers_complete(http_parser *p)
{
	struct conn *c = p->data;
	char why[96];

	if (p->content_length != ULLONG_MAX && p->content_length > HTTPD_MAX_BODY) {
		snprintf(why, sizeof why, "body of %llu bytes is over the %d-byte limit",
		         (unsigned long long)p->content_length, HTTPD_MAX_BODY);
		return refuse(c, 413, why);
	}
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct conn *c = p->data;

	if (c->body.len + len > HTTPD_MAX_BODY)
		return refuse(c, 413, "body over 64 KiB");
	return buf_add(&c->body, at, len) < 0 ? refuse(c, 500, "out of memory") : 0;
}

static int on_message_complete(http_parser *p)
{
	struct conn *c = p->data;

	/* We do not switch protocols: answer, then close. */
	c->keep_alive = http_should_keep_alive(p) && !p->upgrade;
	c->message_done = true;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings parser_settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_data,
	.on_header_value = on_header_data,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* ---- connections */

/* Fills c->req from the parsed message. -1 with a reason if the target is bad. */
static int request_build(struct conn *c, const char **why)
{
	struct http_parser_url u;
	const char *url = c->url.data ? c->url.data : "";
	char *path;

	http_parser_url_init(&u);
	if (http_parser_parse_url(url, c->url.len, c->parser.method == HTTP_CONNECT, &u) != 0) {
		*why = "bad request target";
		return -1;
	}
	c->req.method = http_method_str((enum http_method)c->parser.method);
	c->req.tcp = c->tcp;
	c->req.conn = c->serial;
	c->req.peer_pid = c->peer_pid;
	c->req.priv = c;
	c->req.body = c->body.data ? c->body.data : "";
	c->req.body_len = c->body.len;
	if (u.field_set & (1 << UF_QUERY))
		c->req.query = strndup(url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
	else
		c->req.query = strdup("");
	path = malloc(c->url.len + 2);
	c->req.path = path;
	if (!path || !c->req.query) {
		*why = "out of memory";
		return -1;
	}
	path[0] = '\0';
	if ((u.field_set & (1 << UF_PATH)) &&
	    pct_decode(url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len, false,
	               path, c->url.len + 2) < 0) {
		*why = "bad percent-encoding in path";
		return -1;
	}
	return 0;
}

static void conn_dispatch(struct conn *c)
{
	const char *why = NULL;

	if (request_build(c, &why) < 0) {
		request_clear(c);
		conn_reject(c, 400, why);
		return;
	}
	c->req_active = true;
	c->in_handler = true;
	c->h->handler(&c->req, c->h->data);
	c->in_handler = false;
	if (c->req_active && !c->deferred)
		httpd_respond_error(&c->req, 500, "request not answered");
	if (c->req_active)
		ev_timer_stop(c->h->loop, &c->timer);   /* long-poll: no idle limit */
}

/* Feeds buffered input to the parser. Returns true if something happened
 * that conn_process() must look at (a request or an error), false if more
 * input is needed. */
static bool conn_parse(struct conn *c)
{
	enum http_errno err;
	size_t n;

	if (HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED)
		http_parser_pause(&c->parser, 0);
	c->message_done = false;
	c->reject_status = 0;
	n = http_parser_execute(&c->parser, &parser_settings, c->in.data, c->in.len);
	if (n > c->in.len)
		n = c->in.len;
	memmove(c->in.data, c->in.data + n, c->in.len - n);
	c->in.len -= n;
	err = HTTP_PARSER_ERRNO(&c->parser);
	if (c->message_done && err == HPE_PAUSED) {
		if (!c->keep_alive)
			c->in.len = 0;  /* nothing after a closing request is read */
		conn_dispatch(c);
		return true;
	}
	if (err == HPE_OK)
		return false;
	if (c->reject_status)
		conn_reject(c, c->reject_status, c->reject_reason);
	else if (err == HPE_HEADER_OVERFLOW)
		conn_reject(c, 431, "request headers too large");
	else
		conn_reject(c, 400, http_errno_description(err));
	c->in.len = 0;
	return true;
}

void httpd_conn_close(struct conn *c)
{
	struct httpd *h = c->h;

	if (c->req_active && c->deferred) {
		httpd_abort_cb cb = c->abort_cb;
		void *data = c->abort_data;

		c->req_active = false;  /* a respond from the callback is ignored */
		if (cb)
			cb(&c->req, data);
	}
	request_clear(c);
	if (h->on_close)
		h->on_close(c->serial, h->data);
	ev_io_stop(h->loop, &c->rio);
	ev_io_stop(h->loop, &c->wio);
	ev_timer_stop(h->loop, &c->timer);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		h->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (--c->l->nconns <= c->l->max_conns / 2)   /* warn again after a calm */
		c->l->full_logged = false;
	buf_free(&c->in);
	buf_free(&c->out);
	buf_free(&c->url);
	free(c);
}

/* All answered: stop sending, then read and drop what the client still sends
 * until it closes, so that it sees our last answer instead of a reset. */
static void conn_linger(struct conn *c)
{
	c->lingering = true;
	shutdown(c->fd, SHUT_WR);
	ev_io_stop(c->h->loop, &c->wio);
	ev_timer_stop(c->h->loop, &c->timer);
	ev_timer_set(&c->timer, HTTPD_LINGER_SECS, 0.);
	ev_timer_start(c->h->loop, &c->timer);
	ev_io_start(c->h->loop, &c->rio);
}

/* -1 on a write error, else 0 (possibly with output left for later). */
static int conn_flush(struct conn *c)
{
	while (c->out_pos < c->out.len) {
		ssize_t n = send(c->fd, c->out.data + c->out_pos, c->out.len - c->out_pos,
		                 MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
		}
		c->out_pos += (size_t)n;
	}
	c->out.len = c->out_pos = 0;
	return 0;
}

/* The one place that moves a connection forward. c may be freed on return. */
static void conn_process(struct conn *c)
{
	struct ev_loop *loop = c->h->loop;

	for (;;) {
		if (!c->dead && c->out.len > 0 && conn_flush(c) < 0)
			c->dead = true;
		if (c->dead) {
			httpd_conn_close(c);
			return;
		}
		if (c->out.len > 0) {
			ev_io_start(loop, &c->wio);
			break;
		}
		ev_io_stop(loop, &c->wio);
		if (c->close_after) {
			conn_linger(c);
			return;
		}
		if (c->req_active || c->in.len == 0 || !conn_parse(c))
			break;
	}
	/* Stop reading once enough is buffered; reading resumes as it drains. */
	if (c->in.len >= HTTPD_RBUF_CAP)
		ev_io_stop(loop, &c->rio);
	else
		ev_io_start(loop, &c->rio);
}

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = w->data;
	char drop[4096];
	ssize_t n;

	(void)revents;
	if (c->lingering) {
		n = recv(c->fd, drop, sizeof drop, 0);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			httpd_conn_close(c);
		return;
	}
	if (c->in.cap - c->in.len < HTTPD_READ_CHUNK + 1) {
		char *p = realloc(c->in.data, c->in.len + HTTPD_READ_CHUNK + 1);
		if (!p) {
			httpd_conn_close(c);
			return;
		}
		c->in.data = p;
		c->in.cap = c->in.len + HTTPD_READ_CHUNK + 1;
	}
	n = recv(c->fd, c->in.data + c->in.len, HTTPD_READ_CHUNK, 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		/* Closed (or reset): a pending long-poll is aborted. */
		httpd_conn_close(c);
		return;
	}
	c->in.len += (size_t)n;
	c->last_active = ++c->h->activity;
	if (!c->req_active)
		ev_timer_again(loop, &c->timer);
	conn_process(c);
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	conn_process(w->data);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *c = w->data;

	(void)loop;
	(void)revents;
	if (!c->lingering)
		log_debug("http: closing idle connection from %s", c->peer);
	httpd_conn_close(c);
}

void httpd_conn_new(struct listener *l, int fd, const struct sockaddr_storage *sa,
                    socklen_t salen)
{
	struct httpd *h = l->h;
	struct conn *c = calloc(1, sizeof *c);
	bool tcp = l->tcp;
	char host[64], serv[16];

	if (!c) {
		close(fd);
		return;
	}
	c->h = h;
	c->l = l;
	c->last_active = ++h->activity;
	c->serial = ++h->conn_serial;
	c->fd = fd;
	c->tcp = tcp;
	snprintf(c->peer, sizeof c->peer, "unix socket");
	if (!tcp) {
		struct ucred cred;
		socklen_t credlen = sizeof cred;

		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &credlen) == 0)
			c->peer_pid = cred.pid;
	}
	if (tcp && getnameinfo((const struct sockaddr *)sa, salen, host, sizeof host,
	                       serv, sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		snprintf(c->peer, sizeof c->peer, sa->ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
		         host, serv);
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	ev_io_init(&c->rio, conn_read_cb, fd, EV_READ);
	ev_io_init(&c->wio, conn_write_cb, fd, EV_WRITE);
	ev_timer_init(&c->timer, conn_timer_cb, 0., HTTPD_IDLE_SECS);
	c->rio.data = c->wio.data = c->timer.data = c;
	c->next = h->conns;
	if (h->conns)
		h->conns->prev = c;
	h->conns = c;
	l->nconns++;
	ev_io_start(h->loop, &c->rio);
	ev_timer_again(h->loop, &c->timer);
}

/* ---- life cycle */

struct httpd *httpd_new(struct ev_loop *loop, httpd_handler handler, void *data)
{
	struct httpd *h = calloc(1, sizeof *h);

	if (!h)
		return NULL;
	h->loop = loop;
	h->handler = handler;
	h->data = data;
	httpd_listeners_init(h);
	return h;
}

void httpd_on_close(struct httpd *h, httpd_close_cb cb)
{
	h->on_close = cb;
}

void httpd_free(struct httpd *h)
{
	if (!h)
		return;
	/* Connections first: each one counts against its listener. */
	while (h->conns)
		httpd_conn_close(h->conns);
	httpd_listeners_free(h);
	free(h);
}
