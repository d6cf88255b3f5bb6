/* ZooKeeper session driver (see zk_conn.h), shared by the election and the
 * lock backend.
 *
 * The single-threaded client (libzookeeper_st) driven by libev:
 * zookeeper_interest() names the socket, the events it wants and a timeout;
 * an ev_io and an ev_timer call zookeeper_process(), and both are re-armed
 * after every call because the socket changes on reconnect. Completions and
 * watches therefore run on the loop.
 *
 * Session timeout: --ttl is what we ask for; the server clamps it into
 * [minSessionTimeout, maxSessionTimeout]. The deadline is counted with --ttl,
 * so a negotiated timeout SHORTER than --ttl would let the server expire us
 * before we step down: such a session is refused (error in the log, closed,
 * retried later). A LONGER one is safe (we step down before the server can
 * expire us) and only makes crash failover slower: a warning.
 *
 * The alive proof comes from answered syncs only (see zk_conn.h): every
 * answered request is kept in answers[] with its send and answer times, and
 * a sync's answer reports the send time of the latest one answered a lag
 * before the sync was sent.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "backends/zk.h"
#include "backends/zk_conn.h"
#include "common/clock.h"
#include "common/duration.h"
#include "common/log.h"

/* ---- events, always delivered from the loop ---------------------------- */

void zk_queue(struct zk_conn *c, enum zk_event_kind kind, int64_t num, const char *str, void *ptr)
{
	struct zk_event *e;

	/* Many alive reports in a row say no more than the last one. */
	if (kind == ZE_ALIVE && c->qlen > c->qhead && c->q[c->qlen - 1].kind == ZE_ALIVE) {
		c->q[c->qlen - 1].num = num;
		return;
	}
	if (c->qlen == c->qcap) {
		int cap = c->qcap ? 2 * c->qcap : 16;
		struct zk_event *q = realloc(c->q, (size_t)cap * sizeof(*q));

		if (q == NULL) {
			log_error("zk: out of memory; dropping an event");
			return;
		}
		c->q = q;
		c->qcap = cap;
	}
	e = &c->q[c->qlen++];
	e->kind = kind;
	e->num = num;
	e->str = str ? strdup(str) : NULL;
	e->ptr = ptr;
	zk_kick(c);
}

void zk_purge(struct zk_conn *c, bool (*drop)(const struct zk_event *e, void *arg), void *arg)
{
	int k = c->qhead;

	for (int i = c->qhead; i < c->qlen; i++) {
		if (drop(&c->q[i], arg)) {
			free(c->q[i].str);
			continue;
		}
		c->q[k++] = c->q[i];
	}
	c->qlen = k;
}

/* Returns true if the owner was destroyed meanwhile. */
static bool flush_events(struct zk_conn *c)
{
	c->in_flush = true;
	while (c->qhead < c->qlen && !c->destroy_pending) {
		struct zk_event e = c->q[c->qhead++];

		c->ops->deliver(c->owner, &e);
		free(e.str);
	}
	if (c->qhead == c->qlen)
		c->qhead = c->qlen = 0;
	c->in_flush = false;
	if (c->destroy_pending) {
		c->ops->free(c->owner);
		return true;
	}
	return false;
}

void zk_conn_destroy(struct zk_conn *c)
{
	if (c->in_flush)
		c->destroy_pending = true; /* freed when the event callback returns */
	else
		c->ops->free(c->owner);
}

/* ---- requests ----------------------------------------------------------- */

struct zk_req *zk_req_new(struct zk_conn *c, enum zk_op op, const char *arg)
{
	struct zk_req *r = calloc(1, sizeof(*r));

	if (r == NULL || (arg && (r->arg = strdup(arg)) == NULL)) {
		free(r);
		return NULL;
	}
	r->c = c;
	r->op = op;
	r->sent_ns = clock_now_ns();
	r->next = c->reqs;
	if (c->reqs)
		c->reqs->prev = r;
	c->reqs = r;
	return r;
}

void zk_req_free(struct zk_req *r)
{
	if (r == NULL)
		return;
	if (r->prev)
		r->prev->next = r->next;
	else
		r->c->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	free(r->arg);
	free(r);
}

bool zk_req_pending(const struct zk_conn *c, enum zk_op op, const char *arg)
{
	for (const struct zk_req *r = c->reqs; r; r = r->next)
		if (r->op == op && (arg == NULL || (r->arg && strcmp(r->arg, arg) == 0)))
			return true;
	return false;
}

bool zk_connection_error(int rc)
{
	return rc == ZCONNECTIONLOSS || rc == ZOPERATIONTIMEOUT || rc == ZSESSIONEXPIRED ||
	       rc == ZCLOSING || rc == ZINVALIDSTATE || rc == ZSESSIONMOVED || rc == ZSYSTEMERROR;
}

/* The server handled the request (a candidate for a sync's alive proof). */
static bool server_answered(int rc)
{
	return rc == ZOK || rc == ZNONODE || rc == ZNODEEXISTS || rc == ZNOTEMPTY ||
	       rc == ZBADVERSION || rc == ZNOAUTH || rc == ZINVALIDACL || rc == ZNOCHILDRENFOREPHEMERALS;
}

/* Keeps (sent, answered) of an answered request. Answers within lag/8 of
 * the first answer an entry stands for replace it (the later send is the
 * better proof; its answer is at most lag/8 later; counted from the first,
 * so that steady traffic cannot push one entry ahead for ever), so
 * ZK_ANSWERS entries span at least 4 lags; when full, the oldest goes. */
static void note_answer(struct zk_conn *c, int64_t sent_ns, int64_t answered_ns)
{
	struct zk_answer *last = c->n_answers > 0 ? &c->answers[c->n_answers - 1] : NULL;

	if (last != NULL && answered_ns - last->opened_ns < c->lag_ns / 8) {
		if (sent_ns > last->sent_ns) {
			last->sent_ns = sent_ns;
			last->answered_ns = answered_ns;
		}
		return;
	}
	if (c->n_answers == ZK_ANSWERS) {
		memmove(&c->answers[0], &c->answers[1], (ZK_ANSWERS - 1) * sizeof(c->answers[0]));
		c->n_answers--;
	}
	c->answers[c->n_answers].sent_ns = sent_ns;
	c->answers[c->n_answers].answered_ns = answered_ns;
	c->answers[c->n_answers].opened_ns = answered_ns;
	c->n_answers++;
}

/* A sync sent at sync_sent_ns was answered: the send time of the latest
 * request answered at least a lag before it (0: none). Entries older than
 * the one chosen are no longer needed. */
static int64_t lagged_anchor(struct zk_conn *c, int64_t sync_sent_ns)
{
	int64_t anchor = 0;
	int chosen = -1;

	for (int i = 0; i < c->n_answers; i++) {
		if (c->answers[i].answered_ns > sync_sent_ns - c->lag_ns)
			break;
		if (c->answers[i].sent_ns > anchor)
			anchor = c->answers[i].sent_ns;
		chosen = i;
	}
	if (chosen > 0) {
		memmove(&c->answers[0], &c->answers[chosen],
		        (size_t)(c->n_answers - chosen) * sizeof(c->answers[0]));
		c->n_answers -= chosen;
	}
	return anchor;
}

static void zk_renew_answered(struct zk_conn *c, int rc);

static void sync_done(int rc, const char *value, const void *data)
{
	struct zk_req *r = (struct zk_req *)(uintptr_t)data;
	struct zk_conn *c = r->c;
	int64_t anchor;

	(void)value;
	if (c->in_zk_close) {
		zk_req_free(r);
		return;
	}
	if (rc == ZOK) {
		anchor = lagged_anchor(c, r->sent_ns);
		note_answer(c, r->sent_ns, clock_now_ns());
		if (anchor > 0)
			zk_note_alive(c, anchor);
		else
			log_debug("zk: sync answered; no request was answered %lldms before it yet",
			          (long long)(c->lag_ns / NS_PER_MS));
	}
	if (r->op == OP_RENEW)
		zk_renew_answered(c, rc);
	zk_req_free(r);
}

static void zk_renew_sent(struct zk_conn *c);

bool zk_send_renew_sync(struct zk_conn *c)
{
	struct zk_req *r = zk_req_new(c, OP_RENEW, NULL);

	if (r == NULL || zoo_async(c->zh, c->path, sync_done, r) != ZOK) {
		zk_req_free(r);
		zk_queue(c, ZE_FAILED, 0, "could not send the renewal", NULL);
		return false;
	}
	zk_renew_sent(c);
	return true;
}

int64_t zk_alive_lag(const struct backend_params *p)
{
	char err[256];
	int64_t tick_ns;

	if (zk_url_tick(p->url, ZK_DEFAULT_TICK_NS, &tick_ns, err, sizeof(err)) < 0)
		return 0;
	return tick_ns * 3 / 2 + p->renew_ns;
}

void *zk_req_done(struct zk_req *r, int rc)
{
	struct zk_conn *c = r->c;

	if (c->in_zk_close) {
		zk_req_free(r);
		return NULL;
	}
	/* Proves nothing about the ZooKeeper leader by itself (a follower cut
	 * off from it answers too): only kept for a later sync's proof. */
	if (server_answered(rc))
		note_answer(c, r->sent_ns, clock_now_ns());
	return c->owner;
}

void zk_note_alive(struct zk_conn *c, int64_t sent_ns)
{
	if (c->hold_alive) {
		if (sent_ns > c->held_alive_ns)
			c->held_alive_ns = sent_ns;
	} else if (sent_ns > c->alive_reported_ns) {
		c->alive_reported_ns = sent_ns;
		zk_queue(c, ZE_ALIVE, sent_ns, NULL, NULL);
	}
}

void zk_release_alive(struct zk_conn *c)
{
	if (!c->hold_alive)
		return;
	c->hold_alive = false;
	if (c->held_alive_ns > 0)
		zk_note_alive(c, c->held_alive_ns);
	c->held_alive_ns = 0;
}

const char *zk_basename(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

bool zk_created_ours(const struct zk_conn *c, int rc, const char *value, const struct Stat *stat)
{
	return rc == ZOK && value != NULL && stat != NULL && stat->ephemeralOwner == c->session_id;
}

char *zk_child_path(const struct zk_conn *c, const char *name)
{
	char *s;

	return asprintf(&s, "%s/%s", c->path, name) < 0 ? NULL : s;
}

void zk_retry_later(struct zk_conn *c, int64_t after_ns)
{
	ev_timer_stop(c->loop, &c->retry);
	ev_timer_set(&c->retry, clock_ns_to_ev(after_ns), 0.);
	ev_timer_start(c->loop, &c->retry);
}

/* One create per path component, pipelined: a session's requests are
 * handled in order, so the last answer (r->arg == path) decides. */
bool zk_send_parents(struct zk_conn *c, const char *path, uint64_t tag, string_completion_t done)
{
	char *prefix = strdup(path), *slash;
	struct zk_req *r;
	bool ok = prefix != NULL;

	/* "/a/b/c": "/a", "/a/b", then the whole path (slash == NULL). */
	slash = ok ? strchr(prefix + 1, '/') : NULL;
	while (ok) {
		if (slash != NULL)
			*slash = '\0';
		r = zk_req_new(c, OP_PARENT, prefix);
		if (r != NULL)
			r->tag = tag;
		if (r == NULL || zoo_acreate(c->zh, r->arg, NULL, -1, c->acl, 0, done, r) != ZOK) {
			zk_req_free(r);
			ok = false;
		}
		if (slash == NULL)
			break;
		*slash = '/';
		slash = strchr(slash + 1, '/');
	}
	free(prefix);
	return ok;
}

/* ---- renewals ------------------------------------------------------------ */

bool zk_renew_wanted(struct zk_conn *c)
{
	bool send = false;

	if (c->zh != NULL && !c->connected && c->client_err[0] != '\0') {
		char why[300];

		snprintf(why, sizeof(why), "not connected to ZooKeeper at %s: %s", c->hosts, c->client_err);
		zk_queue(c, ZE_FAILED, 0, why, NULL);
	} else if (c->zh == NULL || !c->connected || c->refused)
		zk_queue(c, ZE_FAILED, 0, c->zh == NULL ? "no session" : "not connected to ZooKeeper", NULL);
	else if (!c->renew_inflight)
		send = true;
	else if (c->renew_late)
		zk_queue(c, ZE_FAILED, 0, "previous renewal still unanswered", NULL);
	zk_kick(c);
	return send;
}

void zk_renew_sent(struct zk_conn *c)
{
	c->renew_inflight = true;
	c->renew_late = false;
	ev_timer_stop(c->loop, &c->renew_timeout);
	ev_timer_set(&c->renew_timeout, clock_ns_to_ev(c->renew_timeout_ns), 0.);
	ev_timer_start(c->loop, &c->renew_timeout);
}

void zk_renew_answered(struct zk_conn *c, int rc)
{
	c->renew_inflight = c->renew_late = false;
	ev_timer_stop(c->loop, &c->renew_timeout);
	if (rc != ZOK && rc != ZNONODE)
		zk_queue(c, ZE_FAILED, 0, zerror(rc), NULL);
}

/* ---- the client handle on the loop ------------------------------------ */

static void rearm(struct zk_conn *c)
{
	int fd = -1, interest = 0, state;
	struct timeval tv = { 0, 0 };
	double after;

	ev_io_stop(c->loop, &c->io);
	ev_timer_stop(c->loop, &c->zk_timer);
	if (c->zh == NULL)
		return;
	state = zoo_state(c->zh);
	if (state == ZOO_EXPIRED_SESSION_STATE || state == ZOO_AUTH_FAILED_STATE)
		return; /* unrecoverable: the handle is about to be closed */
	zookeeper_interest(c->zh, &fd, &interest, &tv);
	if (fd >= 0 && interest) {
		ev_io_set(&c->io, fd, ((interest & ZOOKEEPER_READ) ? EV_READ : 0) |
		                      ((interest & ZOOKEEPER_WRITE) ? EV_WRITE : 0));
		ev_io_start(c->loop, &c->io);
	}
	after = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
	/* The client may have noticed a dead connection inside interest(); its
	 * session event is delivered by the next zookeeper_process(): soon. */
	if (c->connected && zoo_state(c->zh) != ZOO_CONNECTED_STATE)
		after = 0.;
	ev_timer_set(&c->zk_timer, after < 0.001 ? 0.001 : after, 0.);
	ev_timer_start(c->loop, &c->zk_timer);
}

static void zh_close(struct zk_conn *c)
{
	if (c->zh == NULL)
		return;
	ev_io_stop(c->loop, &c->io);
	ev_timer_stop(c->loop, &c->zk_timer);
	ev_timer_stop(c->loop, &c->renew_timeout);
	/* With a live connection this sends closeSession (the server deletes our
	 * ephemeral nodes at once) and waits briefly for the answer. */
	c->in_zk_close = true;
	zookeeper_close(c->zh);
	c->in_zk_close = false;
	c->zh = NULL;
	c->connected = c->refused = false;
	while (c->reqs)
		zk_req_free(c->reqs);
	c->renew_inflight = c->renew_late = false;
	c->ops->handle_closed(c->owner);
}

static void session_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx);

/* The client's last ERROR line (e.g. "Socket 127.0.0.1:2181 zk retcode=-4,
 * errno=111(Connection refused): ..."): the log callback has no context, so
 * it is kept here and each connection reads it in do_work (one thread). */
static char client_error[200];
static unsigned client_error_seq;

static void zk_log_line(const char *msg)
{
	size_t n = strlen(msg);
	const char *err = strstr(msg, "ZOO_ERROR@");

	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		n--;
	log_debug("zk client: %.*s", (int)n, msg);
	if (err != NULL && (err = strstr(err, ": ")) != NULL && err + 2 < msg + n) {
		err += 2;
		snprintf(client_error, sizeof(client_error), "%.*s", (int)(msg + n - err), err);
		client_error_seq++;
	}
}

/* While a handle has no connection: the first client error of the outage
 * becomes a ZE_FAILED at once (one per outage; renew() repeats it). */
static void note_client_error(struct zk_conn *c)
{
	if (c->zh == NULL || c->connected || c->closing || c->client_err_seq == client_error_seq)
		return;
	c->client_err_seq = client_error_seq;
	snprintf(c->client_err, sizeof(c->client_err), "%s", client_error);
	if (!c->unreachable_reported) {
		char why[300];

		c->unreachable_reported = true;
		snprintf(why, sizeof(why), "cannot connect to ZooKeeper at %s: %s", c->hosts, c->client_err);
		zk_queue(c, ZE_FAILED, 0, why, NULL);
	}
}

static void auth_done(int rc, const void *data)
{
	const struct zk_conn *c = data;

	if (!c->in_zk_close && rc != ZOK)
		log_error("zk: digest authentication failed: %s", zerror(rc));
}

static void connect_session(struct zk_conn *c)
{
	c->handle_created_ns = clock_now_ns();
	c->zh = zookeeper_init2(c->hosts, session_watcher, c->ttl_ms, NULL, c, 0, zk_log_line);
	if (c->zh == NULL) {
		log_error("zk: cannot start a session with %s: %s", c->hosts, strerror(errno));
		zk_retry_later(c, c->retry_ns);
		return;
	}
	/* By default the client resolves the host names again in every
	 * zookeeper_interest(), i.e. on every pass of our loop: a getaddrinfo()
	 * (a netlink query even for an address) between an answer and its
	 * delivery, on the handover's critical path. -1: only when a connection
	 * is lost, which is when a moved server matters. */
	zoo_set_servers_resolution_delay(c->zh, -1);
	c->session_id = 0;
	c->alive_reported_ns = 0;
	c->n_answers = 0;
	c->client_err_seq = client_error_seq;   /* only errors of this handle count */
	if (c->auth != NULL)
		zoo_add_auth(c->zh, "digest", c->auth, (int)strlen(c->auth), auth_done, c);
	log_debug("zk: connecting to %s (session timeout asked: %dms)", c->hosts, c->ttl_ms);
}

/* Everything that must not run inside the operation or the callback that
 * caused it: closing the handle, (re)connecting, delivering events. */
static void do_work(struct zk_conn *c)
{
	if (c->drop_handle) {
		c->drop_handle = false;
		zh_close(c);
	}
	if (c->closing && !c->close_done && (c->close_expired || !zk_req_pending(c, OP_DELETE, NULL))) {
		/* The server did not answer in time: zookeeper_close() would block
		 * the loop waiting for the answer to closeSession. Shut the socket
		 * so the close request fails at once; the server expires the
		 * session (it cannot be reached to close it anyway). */
		if (c->close_expired && c->zh != NULL && ev_is_active(&c->io))
			shutdown(c->io.fd, SHUT_RDWR);
		zh_close(c);
		c->close_done = true;
		ev_timer_stop(c->loop, &c->close_timer);
		zk_queue(c, ZE_CLOSED, 0, NULL, NULL);
	}
	if (!c->closing && c->zh == NULL && !ev_is_active(&c->retry) && c->ops->wants_session(c->owner))
		connect_session(c);
	note_client_error(c);
	rearm(c);
	ev_timer_stop(c->loop, &c->kick);
	flush_events(c); /* last: the owner may be gone afterwards */
}

void zk_kick(struct zk_conn *c)
{
	if (!ev_is_active(&c->kick)) {
		ev_timer_set(&c->kick, 0., 0.);
		ev_timer_start(c->loop, &c->kick);
	}
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct zk_conn *c = w->data;
	int events = ((revents & EV_READ) ? ZOOKEEPER_READ : 0) |
	             ((revents & EV_WRITE) ? ZOOKEEPER_WRITE : 0);

	(void)loop;
	if (c->zh != NULL)
		zookeeper_process(c->zh, events);
	do_work(c);
}

static void zk_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct zk_conn *c = w->data;

	(void)loop;
	(void)revents;
	if (c->zh != NULL)
		zookeeper_process(c->zh, 0);
	do_work(c);
}

static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	do_work(w->data);
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct zk_conn *c = w->data;

	(void)loop;
	(void)revents;
	c->ops->retry(c->owner);
	do_work(c);
}

static void renew_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct zk_conn *c = w->data;

	(void)loop;
	(void)revents;
	c->renew_late = true;
	zk_queue(c, ZE_FAILED, 0, "renewal timed out", NULL);
}

static void close_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct zk_conn *c = w->data;

	(void)loop;
	(void)revents;
	c->close_expired = true;
	zk_kick(c);
}

/* ---- session states --------------------------------------------------- */

/* Refuse a session whose timeout is shorter than --ttl. */
static bool session_timeout_ok(struct zk_conn *c, int negotiated_ms)
{
	char want[32], got[32];

	duration_format((int64_t)c->ttl_ms * NS_PER_MS, want, sizeof(want));
	duration_format((int64_t)negotiated_ms * NS_PER_MS, got, sizeof(got));
	if (negotiated_ms < c->ttl_ms) {
		log_error("zk: server granted a session timeout of %s, shorter than --ttl %s "
		          "(its maxSessionTimeout is lower): it could expire us before we step down; "
		          "lower --ttl to at most %s or raise maxSessionTimeout. Retrying later.", got, want, got);
		return false;
	}
	if (negotiated_ms < 2 * c->tick_ns / NS_PER_MS && !c->warned_tick) {
		char tick[32];

		c->warned_tick = true;
		duration_format(c->tick_ns, tick, sizeof(tick));
		log_warnx("zk: server granted a session timeout of %s, less than 2 x the tick %s "
		          "(servers grant at least 2 x their tickTime by default): set ?tick= in the URL "
		          "to the servers' tickTime (a longer one only slows renewals down; a shorter one "
		          "would be unsafe)", got, tick);
	}
	if (negotiated_ms > c->ttl_ms && !c->warned_longer) {
		c->warned_longer = true;
		log_warnx("zk: server granted a session timeout of %s, longer than --ttl %s "
		          "(its minSessionTimeout is higher): safe, but failover after a crash takes up to %s",
		          got, want, got);
	}
	return true;
}

static void on_connected(struct zk_conn *c)
{
	const clientid_t *cid = zoo_client_id(c->zh);
	int negotiated = zoo_recv_timeout(c->zh);
	bool new_session = cid->client_id != c->session_id;

	c->connected = true;
	c->unreachable_reported = false;
	c->client_err[0] = '\0';
	if (!session_timeout_ok(c, negotiated)) {
		c->refused = true;
		zk_queue(c, ZE_FAILED, 0, "session timeout shorter than --ttl", NULL);
		if (c->ops->refused(c->owner))
			c->drop_handle = true;
		zk_retry_later(c, c->ttl_ms * NS_PER_MS > 5 * NS_PER_SEC ? c->ttl_ms * NS_PER_MS : 5 * NS_PER_SEC);
		return;
	}
	if (new_session) {
		c->session_id = cid->client_id;
		c->n_answers = 0;
		log_info("zk: session 0x%llx with %s, timeout %dms", (unsigned long long)c->session_id,
		         zoo_get_current_server(c->zh), negotiated);
		/* The leader created the session after the handle was made, with
		 * an expiry a timeout after its creation, and the connect was
		 * answered only once a quorum had it: the handle's creation time
		 * proves a new session. */
		zk_note_alive(c, c->handle_created_ns);
	} else {
		log_info("zk: reconnected to %s, session 0x%llx still alive", zoo_get_current_server(c->zh),
		         (unsigned long long)c->session_id);
	}
	c->ops->connected(c->owner, new_session);
}

static void session_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
	struct zk_conn *c = ctx;

	(void)zh;
	(void)path;
	if (c->in_zk_close || type != ZOO_SESSION_EVENT)
		return;
	if (state == ZOO_CONNECTED_STATE) {
		on_connected(c);
	} else if (state == ZOO_CONNECTING_STATE) {
		/* Curator's SUSPENDED: report at once; the deadline runs from the
		 * last answered request unless one succeeds after the reconnect. */
		if (c->connected)
			log_warnx("zk: disconnected from ZooKeeper; reconnecting");
		c->connected = false;
		zk_queue(c, ZE_FAILED, 0, "disconnected from ZooKeeper", NULL);
	} else if (state == ZOO_EXPIRED_SESSION_STATE || state == ZOO_AUTH_FAILED_STATE) {
		const char *why = state == ZOO_EXPIRED_SESSION_STATE ? "ZooKeeper session expired"
		                                                     : "ZooKeeper authentication failed";
		log_warnx("zk: %s (session 0x%llx)", why, (unsigned long long)c->session_id);
		c->connected = false;
		c->drop_handle = true;
		c->ops->ended(c->owner, why);
		if (state == ZOO_AUTH_FAILED_STATE)
			zk_retry_later(c, 5 * NS_PER_SEC);
	}
}

/* ---- setup and teardown ------------------------------------------------ */

int zk_conn_init(struct zk_conn *c, const struct backend_params *p, const char *path_name,
                 const struct zk_conn_owner *ops, void *owner, char *err, size_t errlen)
{
	static bool log_level_set;
	int64_t ttl_ms = p->ttl_ns / NS_PER_MS;

	if (p->tls_ca || p->tls_cert || p->tls_key) {
		snprintf(err, errlen, "the zk backend does not support TLS options (the Debian C client has no TLS)");
		return -1;
	}
	if (p->auth != NULL && (strchr(p->auth, ':') == NULL || p->auth[0] == ':')) {
		snprintf(err, errlen, "zk digest auth must be USER:PASSWORD");
		return -1;
	}
	if (ttl_ms < 1 || ttl_ms > 24 * 3600 * 1000) {
		snprintf(err, errlen, "zk session timeout (--ttl) must be between 1ms and 24h");
		return -1;
	}
	if (zk_url_tick(p->url, ZK_DEFAULT_TICK_NS, &c->tick_ns, err, errlen) < 0 ||
	    zk_parse_url(p->url, path_name, &c->hosts, &c->path, err, errlen) < 0)
		return -1;
	c->lag_ns = c->tick_ns * 3 / 2;
	c->ops = ops;
	c->owner = owner;
	c->loop = p->loop;
	c->auth = p->auth;
	c->ttl_ms = (int)ttl_ms;
	c->retry_ns = p->renew_ns < 200 * NS_PER_MS ? 200 * NS_PER_MS : p->renew_ns;
	if (c->retry_ns > 5 * NS_PER_SEC)
		c->retry_ns = 5 * NS_PER_SEC;
	/* A renewal slower than the renew interval already means trouble: report
	 * it then, so that a holder goes suspended early. */
	c->renew_timeout_ns = p->request_timeout_ns > 0 ? p->request_timeout_ns : p->renew_ns;
	if (c->renew_timeout_ns < 100 * NS_PER_MS)
		c->renew_timeout_ns = 100 * NS_PER_MS;
	if (c->renew_timeout_ns > p->ttl_ns / 2)
		c->renew_timeout_ns = p->ttl_ns / 2;
	c->close_timeout_ns = p->request_timeout_ns > 0 ? p->request_timeout_ns : 2 * NS_PER_SEC;
	c->acl = p->auth ? &ZOO_CREATOR_ALL_ACL : &ZOO_OPEN_ACL_UNSAFE;
	ev_init(&c->io, io_cb);
	ev_init(&c->zk_timer, zk_timer_cb);
	ev_init(&c->kick, kick_cb);
	ev_init(&c->retry, retry_cb);
	ev_init(&c->renew_timeout, renew_timeout_cb);
	ev_init(&c->close_timer, close_timer_cb);
	c->io.data = c->zk_timer.data = c->kick.data = c->retry.data = c;
	c->renew_timeout.data = c->close_timer.data = c;
	if (!log_level_set) {
		log_level_set = true;
		zoo_set_debug_level(ZOO_LOG_LEVEL_WARN);
	}
	return 0;
}

void zk_conn_close(struct zk_conn *c)
{
	c->closing = true;
	ev_timer_stop(c->loop, &c->retry);
	ev_timer_set(&c->close_timer, clock_ns_to_ev(c->close_timeout_ns), 0.);
	ev_timer_start(c->loop, &c->close_timer);
	zk_kick(c);
}

void zk_conn_cleanup(struct zk_conn *c)
{
	/* Freed while a close still waits for the server: do not let
	 * zookeeper_close() block on it (see do_work). */
	if (c->closing && !c->close_done && c->zh != NULL && ev_is_active(&c->io))
		shutdown(c->io.fd, SHUT_RDWR);
	ev_timer_stop(c->loop, &c->kick);
	ev_timer_stop(c->loop, &c->retry);
	ev_timer_stop(c->loop, &c->close_timer);
	zh_close(c);
	for (int i = c->qhead; i < c->qlen; i++)
		free(c->q[i].str);
	free(c->q);
	c->q = NULL;
	c->qhead = c->qlen = c->qcap = 0;
	while (c->reqs)
		zk_req_free(c->reqs);
	free(c->hosts);
	free(c->path);
	c->hosts = c->path = NULL;
}
