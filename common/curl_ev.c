/* libcurl multi on libev, after libcurl's evhiperfifo example, with its known
 * traps avoided: the timeout is ms / 1000.0 (the example divides integers),
 * -1 stops the timer, and the timer function only arms a libev timer (it runs
 * inside curl_multi_* calls, so calling libcurl from it would recurse). */
#include <stdlib.h>

#include <ev.h>

#include "common/curl_ev.h"

/* One socket libcurl wants watched. */
struct curl_ev_sock {
	ev_io io;
	curl_socket_t fd;
	struct curl_ev *c;
	struct curl_ev_sock *prev, *next;
};

/* One running transfer, found through CURLOPT_PRIVATE. */
struct curl_ev_xfer {
	curl_ev_done_fn done;
	void *arg;
};

struct curl_ev {
	struct ev_loop *loop;
	CURLM *multi;
	ev_timer timeout;
	struct curl_ev_sock *socks;
	int running;
};

static void check_done(struct curl_ev *c)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
		struct curl_ev_xfer *x = NULL;
		CURL *easy = msg->easy_handle;
		CURLcode rc = msg->data.result;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
		curl_multi_remove_handle(c->multi, easy);
		curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
		if (x == NULL)
			continue;
		curl_ev_done_fn done = x->done;
		void *arg = x->arg;
		free(x);
		done(easy, rc, arg);
	}
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct curl_ev_sock *s = w->data;
	struct curl_ev *c = s->c;
	int action = (revents & EV_READ ? CURL_CSELECT_IN : 0) |
	             (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);

	(void)loop;
	curl_multi_socket_action(c->multi, s->fd, action, &c->running);
	check_done(c);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct curl_ev *c = w->data;

	(void)loop;
	(void)revents;
	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &c->running);
	check_done(c);
}

/* CURLMOPT_TIMERFUNCTION: runs inside libcurl, so only (re)arm the timer. */
static int timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
	struct curl_ev *c = userp;

	(void)multi;
	ev_timer_stop(c->loop, &c->timeout);
	if (timeout_ms >= 0) {
		ev_timer_set(&c->timeout, (double)timeout_ms / 1000.0, 0.0);
		ev_timer_start(c->loop, &c->timeout);
	}
	return 0;
}

static void sock_unlink_free(struct curl_ev *c, struct curl_ev_sock *s)
{
	ev_io_stop(c->loop, &s->io);
	if (s->prev)
		s->prev->next = s->next;
	else
		c->socks = s->next;
	if (s->next)
		s->next->prev = s->prev;
	free(s);
}

/* CURLMOPT_SOCKETFUNCTION: watch fd for what libcurl wants (stop, set, start). */
static int socket_fn(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct curl_ev *c = userp;
	struct curl_ev_sock *s = socketp;
	int events = (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (s != NULL) {
			curl_multi_assign(c->multi, fd, NULL);
			sock_unlink_free(c, s);
		}
		return 0;
	}
	if (s == NULL) {
		s = calloc(1, sizeof(*s));
		if (s == NULL)
			return -1;
		s->fd = fd;
		s->c = c;
		s->io.data = s;
		s->next = c->socks;
		if (c->socks)
			c->socks->prev = s;
		c->socks = s;
		curl_multi_assign(c->multi, fd, s);
		ev_init(&s->io, io_cb);
	}
	ev_io_stop(c->loop, &s->io);
	ev_io_set(&s->io, fd, events);
	if (events)
		ev_io_start(c->loop, &s->io);
	return 0;
}

struct curl_ev *curl_ev_new(struct ev_loop *loop)
{
	struct curl_ev *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	/* Idempotent after the first call; not thread safe, but we are one thread. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (c->multi = curl_multi_init()) == NULL) {
		free(c);
		return NULL;
	}
	c->loop = loop;
	ev_init(&c->timeout, timeout_cb);
	c->timeout.data = c;
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_fn);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_fn);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	return c;
}

int curl_ev_add(struct curl_ev *c, CURL *easy, curl_ev_done_fn done, void *arg)
{
	struct curl_ev_xfer *x = calloc(1, sizeof(*x));

	if (x == NULL)
		return -1;
	x->done = done;
	x->arg = arg;
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *)x);
	/* Only arms the timer through timer_fn; the transfer starts from the loop. */
	if (curl_multi_add_handle(c->multi, easy) != CURLM_OK) {
		curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
		free(x);
		return -1;
	}
	return 0;
}

void curl_ev_remove(struct curl_ev *c, CURL *easy)
{
	struct curl_ev_xfer *x = NULL;

	if (easy == NULL)
		return;
	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
	if (x == NULL)
		return;         /* not running (already done or never added) */
	curl_multi_remove_handle(c->multi, easy);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
	free(x);
}

void curl_ev_free(struct curl_ev *c)
{
	if (c == NULL)
		return;
	/* Closing cached connections calls socket_fn with CURL_POLL_REMOVE. */
	curl_multi_cleanup(c->multi);
	while (c->socks)
		sock_unlink_free(c, c->socks);
	ev_timer_stop(c->loop, &c->timeout);
	free(c);
}
