/* The session of the Kubernetes lock backend (see k8s_lock.c for the
 * layout) and lock_backend_ops.
 *
 * Kubernetes has no session: each hold's Lease lives by its own renewals.
 * lockd's one deadline is kept by renewing every held Lease in one round
 * (renew()) and reporting as alive the oldest of their last visible writes'
 * send times (client-go sees renewTime to the second: a write in the same
 * second as the one before does not count), and of every acquire whose
 * answer has not come (it may be granted later). With nothing held, a
 * LIST of one Lease proves the API server reachable with our rights (it is
 * also how open() starts). No renewal for the lease duration: session_lost.
 *
 * The view: the namespace's Leases, LISTed once and then WATCHed from the
 * list's resourceVersion (bookmarks on), while any hold waits; not at all
 * otherwise. Every change wakes the waiting holds (k8s_hold_decide). A
 * Lease keeps the time its resourceVersion was first received (the
 * takeover clock), also across a new LIST when it did not change.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/k8s_lock.h"
#include "common/clock.h"
#include "common/log.h"

/* A watch ends (server side) after this; it is started again at once. */
#define WATCH_SECONDS 290

static void start_view(struct lock_session *s);
static void send_ping(struct lock_session *s);

/* ---- events ---- */

void k8s_lock_emit(struct lock_session *s, int kind, int64_t num, const char *str,
                   struct lock_hold *h)
{
	etcd_emit(&s->q, kind, num, str, h);
}

static void deliver(void *owner, const struct etcd_event *e)
{
	struct lock_session *s = owner;

	lock_deliver(&s->q, s->ev, s->ctx, e);
}

void k8s_lock_refused(struct lock_session *s, struct k8s_req *r, long status, char *line,
                      size_t len)
{
	if (status == 401 || status == 403)
		k8s_refusal_line(&s->c, r, status, K8S_LOCK_VERBS, s->ns, K8S_LOCK_RBAC, line, len);
	else {
		char reason[700];
		k8s_status_reason(r, status, reason, sizeof(reason));
		snprintf(line, len, "k8s: %s: %s", r->what, reason);
	}
	if (strcmp(line, s->last_refusal) != 0) {
		if (status == 401 || status == 403)
			log_error("%s", line);
		else
			log_warnx("%s", line);
		snprintf(s->last_refusal, sizeof(s->last_refusal), "%s", line);
	}
}

/* ---- names ---- */

void k8s_lock_lease_name(const struct lock_session *s, const char *name, unsigned limit,
                         unsigned slot, char *buf, size_t len)
{
	if (limit > 1)
		snprintf(buf, len, "%s%s-%u", s->prefix, name, slot);
	else
		snprintf(buf, len, "%s%s", s->prefix, name);
}

/* ---- the view ---- */

struct k8s_seen *k8s_seen_find(struct lock_session *s, const char *lease)
{
	for (size_t i = 0; i < s->n_seen; i++)
		if (strcmp(s->seen[i]->name, lease) == 0)
			return s->seen[i];
	return NULL;
}

static struct k8s_seen *seen_get(struct lock_session *s, const char *lease)
{
	struct k8s_seen *e = k8s_seen_find(s, lease), **n;

	if (e != NULL)
		return e;
	if ((n = realloc(s->seen, (s->n_seen + 1) * sizeof(*n))) == NULL)
		return NULL;
	s->seen = n;
	if ((e = calloc(1, sizeof(*e))) == NULL || (e->name = strdup(lease)) == NULL) {
		free(e);
		return NULL;
	}
	e->absent = true;
	s->seen[s->n_seen++] = e;
	return e;
}

static void seen_free(struct k8s_seen *e)
{
	if (!e->absent)
		k8s_lease_free(&e->l);
	free(e->name);
	free(e);
}

/* resourceVersions are opaque, but etcd's are numbers: an answer older than
 * what the watch already showed must not go back. */
static bool rv_older(const char *a, const char *b)
{
	char *ea, *eb;
	unsigned long long x = strtoull(a, &ea, 10), y = strtoull(b, &eb, 10);

	return *a && *b && *ea == '\0' && *eb == '\0' && x < y;
}

struct k8s_seen *k8s_seen_observe(struct lock_session *s, struct k8s_lease *l)
{
	struct k8s_seen *e = seen_get(s, l->name);

	if (e == NULL) {
		k8s_lease_free(l);
		return NULL;
	}
	e->listed = true;
	if (!e->absent && rv_older(l->rv, e->l.rv)) {
		k8s_lease_free(l);
		return e;
	}
	if (e->absent || strcmp(e->l.rv, l->rv) != 0)
		e->observed_ns = clock_now_ns();
	if (!e->absent)
		k8s_lease_free(&e->l);
	e->l = *l;
	memset(l, 0, sizeof(*l));
	e->absent = false;
	e->create_after_ns = 0;
	if (e->l.transitions > e->max_transitions)
		e->max_transitions = e->l.transitions;
	return e;
}

struct k8s_seen *k8s_seen_observe_json(struct lock_session *s, const char *body, size_t len)
{
	json_t *doc = json_loadb(body, len, 0, NULL);
	struct k8s_lease l;
	char err[160];

	if (k8s_lease_parse(doc, &l, err, sizeof(err)) < 0) {
		json_decref(doc);
		log_warnx("k8s: not a Lease in an answer: %s", err);
		return NULL;
	}
	json_decref(doc);
	return k8s_seen_observe(s, &l);
}

/* A Lease deleted while held: its holder may work on until its next renewal
 * fails, so it is made again only after its duration from now. */
void k8s_seen_deleted(struct lock_session *s, const char *lease)
{
	struct k8s_seen *e = seen_get(s, lease);

	if (e == NULL || e->absent)
		return;
	if (e->l.holder[0] != '\0')
		e->create_after_ns = clock_now_ns() +
			(e->l.duration_s > 0 ? e->l.duration_s : s->ttl_s) * NS_PER_SEC;
	k8s_lease_free(&e->l);
	e->absent = true;
}

static bool any_waiting(const struct lock_session *s)
{
	const struct lock_hold *h;

	TAILQ_FOREACH(h, &s->holds, link)
		if (h->state == KH_PENDING)
			return true;
	return false;
}

static void view_failed(struct lock_session *s, struct k8s_req *r, long status, const char *err)
{
	char line[900];

	s->live = false;
	if (err != NULL) {
		k8s_lock_emit(s, LK_FAILED, 0, err, NULL);
	} else {
		k8s_lock_refused(s, r, status, line, sizeof(line));
		k8s_lock_emit(s, LK_FAILED, 0, line, NULL);
	}
	ev_timer_stop(s->loop, &s->view_timer);
	ev_timer_set(&s->view_timer, clock_ns_to_ev(k8s_req_retry_ns(r)), 0.);
	ev_timer_start(s->loop, &s->view_timer);
}

static int watch_line(struct k8s_req *r, const char *line, size_t len)
{
	struct lock_session *s = r->owner;
	enum k8s_watch_type type;
	json_t *doc, *obj, *rv;
	struct k8s_lease l;
	long code;
	char msg[300];

	if (k8s_watch_parse(line, len, &doc, &type, &obj) < 0)
		return 0;
	rv = json_object_get(json_object_get(obj, "metadata"), "resourceVersion");
	switch (type) {
	case KW_ADDED:
	case KW_MODIFIED:
		if (k8s_lease_parse(obj, &l, msg, sizeof(msg)) == 0)
			k8s_seen_observe(s, &l);
		break;
	case KW_DELETED:
		if (json_is_string(json_object_get(json_object_get(obj, "metadata"), "name")))
			k8s_seen_deleted(s, json_string_value(json_object_get(json_object_get(obj, "metadata"),
			                                                      "name")));
		break;
	case KW_ERROR:
		k8s_status_message(obj, &code, msg, sizeof(msg));
		log_debug("k8s: watch of the Leases in %s ended by the server: %ld %s", s->ns, code, msg);
		s->live = false;     /* 410 Gone: list again */
		rv = NULL;
		break;
	default:
		break;
	}
	if (json_is_string(rv)) {
		free(s->watch_rv);
		s->watch_rv = strdup(json_string_value(rv));
	}
	json_decref(doc);
	k8s_lock_kick(s);            /* decide outside libcurl's callback */
	return 0;
}

static void watch_done(struct k8s_req *r, long status, const char *err)
{
	struct lock_session *s = r->owner;

	if (err == NULL && status == 200 && s->live && clock_now_ns() - r->sent_ns >= NS_PER_SEC) {
		k8s_lock_kick(s);        /* the server's timeout: watch again at once */
		return;
	}
	if (err == NULL && (status == 410 || status == 200)) {
		/* Too old (410, or an ERROR event), or ended at once: list again,
		 * at once the first time, after a pause when it keeps ending. */
		s->live = false;
		ev_timer_stop(s->loop, &s->view_timer);
		ev_timer_set(&s->view_timer, clock_ns_to_ev(status == 410 ? 0 : s->c.retry_ns), 0.);
		ev_timer_start(s->loop, &s->view_timer);
		return;
	}
	view_failed(s, r, status, err);
}

static void start_watch(struct lock_session *s)
{
	char rv[200];

	if (s->r_watch.busy || s->watch_rv == NULL)
		return;
	k8s_url_escape(s->watch_rv, rv, sizeof(rv));
	k8s_req_stream(&s->r_watch, "watch", watch_line, watch_done,
	               (int64_t)(WATCH_SECONDS + 30) * NS_PER_SEC,
	               K8S_LEASES "?watch=1&resourceVersion=%s&allowWatchBookmarks=true"
	               "&timeoutSeconds=%d", s->ns_esc, rv, WATCH_SECONDS);
}

static void list_done(struct k8s_req *r, long status, const char *err)
{
	struct lock_session *s = r->owner;
	json_t *doc, *items, *it, *rv;
	struct k8s_lease l;
	char perr[160];
	size_t i;

	if (err != NULL || status != 200) {
		view_failed(s, r, status, err);
		return;
	}
	doc = json_loadb(r->resp, r->resp_len, 0, NULL);
	items = json_object_get(doc, "items");
	rv = json_object_get(json_object_get(doc, "metadata"), "resourceVersion");
	if (!json_is_array(items) || !json_is_string(rv)) {
		json_decref(doc);
		view_failed(s, r, 0, "not a LeaseList");
		return;
	}
	for (i = 0; i < s->n_seen; i++)
		s->seen[i]->listed = false;
	json_array_foreach(items, i, it) {
		if (k8s_lease_parse(it, &l, perr, sizeof(perr)) == 0)
			k8s_seen_observe(s, &l);
	}
	for (i = 0; i < s->n_seen; i++)
		if (!s->seen[i]->listed)
			k8s_seen_deleted(s, s->seen[i]->name);
	free(s->watch_rv);
	s->watch_rv = strdup(json_string_value(rv));
	json_decref(doc);
	s->loaded = s->live = true;
	start_watch(s);
	k8s_lock_kick(s);
}

/* The view is needed (a hold waits): list, or watch on. */
static void start_view(struct lock_session *s)
{
	if (s->closing || !s->up || ev_is_active(&s->view_timer) || s->r_list.busy)
		return;
	if (!s->live) {
		k8s_req_cancel(&s->r_watch);
		k8s_req_send(&s->r_list, "list", list_done, "GET", NULL, 0, K8S_LEASES, s->ns_esc);
		return;
	}
	start_watch(s);
}

static void view_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	k8s_lock_kick(w->data);
}

/* ---- deciding ---- */

static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct lock_session *s = w->data;
	struct lock_hold *h, *next;

	(void)loop;
	(void)revents;
	if (s->closing || !s->up)
		return;
	if (!any_waiting(s)) {
		/* Nobody waits: no watch (the view goes stale, a LIST renews it). */
		k8s_req_cancel(&s->r_watch);
		k8s_req_cancel(&s->r_list);
		s->live = false;
		return;
	}
	start_view(s);
	for (h = TAILQ_FIRST(&s->holds); h != NULL; h = next) {
		next = TAILQ_NEXT(h, link);
		k8s_hold_decide(h);          /* may free nothing, may lose h */
	}
}

void k8s_lock_kick(struct lock_session *s)
{
	if (!ev_is_active(&s->kick) && !s->closing) {
		ev_timer_set(&s->kick, 0., 0.);
		ev_timer_start(s->loop, &s->kick);
	}
}

/* ---- the session ---- */

void k8s_lock_update_alive(struct lock_session *s)
{
	const struct lock_hold *h;
	int64_t oldest = INT64_MAX;

	if (!s->up)
		return;
	TAILQ_FOREACH(h, &s->holds, link) {
		if (h->unsure_sent_ns > 0 && h->unsure_sent_ns < oldest)
			oldest = h->unsure_sent_ns;
		if (h->state == KH_GRANTED && h->visible_ns < oldest)
			oldest = h->visible_ns;
	}
	if (oldest == INT64_MAX)
		oldest = s->ping_ok_ns;
	if (oldest > s->alive_reported) {
		s->alive_reported = oldest;
		k8s_lock_emit(s, LK_ALIVE, oldest, NULL, NULL);
	}
}

static void ping_later(struct lock_session *s)
{
	if (!ev_is_active(&s->ping_timer)) {
		ev_timer_set(&s->ping_timer, clock_ns_to_ev(k8s_req_retry_ns(&s->r_ping)), 0.);
		ev_timer_start(s->loop, &s->ping_timer);
	}
}

static void ping_done(struct k8s_req *r, long status, const char *err)
{
	struct lock_session *s = r->owner;
	char line[900];

	if (err == NULL && status == 200) {
		s->ping_ok_ns = r->sent_ns;
		if (!s->up) {
			s->up = true;
			s->last_refusal[0] = '\0';
			log_info("k8s: reaching the Leases in namespace %s on %s", s->ns, s->c.conn.server);
			k8s_lock_kick(s);
		}
		k8s_lock_update_alive(s);
		return;
	}
	if (err != NULL) {
		k8s_lock_emit(s, LK_FAILED, 0, err, NULL);
	} else {
		k8s_lock_refused(s, r, status, line, sizeof(line));
		k8s_lock_emit(s, LK_FAILED, 0, line, NULL);
	}
	if (!s->up && s->want_session)
		ping_later(s);
}

static void send_ping(struct lock_session *s)
{
	if (s->r_ping.busy || s->closing)
		return;
	ev_timer_stop(s->loop, &s->ping_timer);
	k8s_req_send(&s->r_ping, "list", ping_done, "GET", NULL, 0, K8S_LEASES "?limit=1", s->ns_esc);
	if (!s->r_ping.busy)
		ping_later(s);
}

static void ping_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	send_ping(w->data);
}

/* No renewal for the lease duration: every Lease of ours may be someone
 * else's now. lockd drops every hold (no event per hold) and opens again. */
static void session_lost(struct lock_session *s, const char *reason)
{
	struct lock_hold *h, *next;

	log_warnx("k8s: lock session lost: %s", reason);
	s->q.gen++;
	s->up = false;
	s->want_session = false;
	s->alive_reported = 0;
	s->live = false;
	k8s_req_cancel(&s->r_watch);
	k8s_req_cancel(&s->r_list);
	for (h = TAILQ_FIRST(&s->holds); h != NULL; h = next) {
		next = TAILQ_NEXT(h, link);
		if (h->state == KH_RELEASING)
			continue;            /* on our resourceVersion: safe to go on */
		if (h->release_wanted) {
			/* Released by lockd while its acquire was unanswered:
			 * lockd calls release() no more. */
			k8s_hold_free(h);
			continue;
		}
		k8s_req_cancel(&h->r);
		ev_timer_stop(s->loop, &h->retry);
		h->unsure_sent_ns = 0;
		if (h->state != KH_GRANTED) {
			json_decref(h->obj);     /* a write's outcome unknown: nothing to release */
			h->obj = NULL;
		}
		h->state = KH_DEAD;
	}
	k8s_lock_emit(s, LK_LOST, 0, reason, NULL);
}

static void lk_open(struct lock_session *s)
{
	if (s->closing)
		return;
	s->want_session = true;
	send_ping(s);
}

static void lk_renew(struct lock_session *s)
{
	struct lock_hold *h;
	bool held = false;

	if (s->closing)
		return;
	if (!s->up) {
		k8s_lock_emit(s, LK_FAILED, 0, s->last_refusal[0] ? s->last_refusal : "no session", NULL);
		if (s->want_session)
			send_ping(s);
		return;
	}
	if (clock_now_ns() >= s->alive_reported + s->ttl_ns) {
		session_lost(s, "no renewal succeeded for the lease duration");
		return;
	}
	TAILQ_FOREACH(h, &s->holds, link) {
		if (h->state == KH_GRANTED) {
			held = true;
			k8s_hold_renew(h);
		}
	}
	if (!held)
		send_ping(s);
	k8s_lock_kick(s);                /* a watch that broke: on again */
}

static bool releases_left(const struct lock_session *s)
{
	const struct lock_hold *h;

	TAILQ_FOREACH(h, &s->holds, link)
		if (h->state == KH_RELEASING)
			return true;         /* in flight, or its retry is due (lk_close) */
	return false;
}

static void closed(struct lock_session *s)
{
	if (!s->closed_sent) {
		s->closed_sent = true;
		ev_timer_stop(s->loop, &s->close_timer);
		k8s_lock_emit(s, LK_CLOSED, 0, NULL, NULL);
	}
}

static void close_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct lock_session *s = w->data;

	(void)loop;
	(void)revents;
	if (!releases_left(s) || clock_now_ns() >= s->close_by_ns) {
		closed(s);
		return;
	}
	ev_timer_set(w, 0.02, 0.);   /* each release ends within the request timeout */
	ev_timer_start(s->loop, w);
}

static void lk_close(struct lock_session *s)
{
	struct lock_hold *h, *next;

	if (s->closing)
		return;
	s->closing = true;
	s->q.gen++;
	ev_timer_stop(s->loop, &s->kick);
	ev_timer_stop(s->loop, &s->view_timer);
	ev_timer_stop(s->loop, &s->ping_timer);
	k8s_req_cancel(&s->r_watch);
	k8s_req_cancel(&s->r_list);
	k8s_req_cancel(&s->r_ping);
	/* lockd released every hold before: only releases may be in flight
	 * (each gives up within the request timeout). */
	for (h = TAILQ_FIRST(&s->holds); h != NULL; h = next) {
		next = TAILQ_NEXT(h, link);
		if (h->state != KH_RELEASING) {
			k8s_req_cancel(&h->r);
			ev_timer_stop(s->loop, &h->retry);
			h->state = KH_DEAD;
		} else if (!h->r.busy) {
			/* A release pausing after a failure: its one retry now
			 * (release_done gives up on a failure while closing). */
			ev_timer_stop(s->loop, &h->retry);
			ev_timer_set(&h->retry, 0., 0.);
			ev_timer_start(s->loop, &h->retry);
		}
	}
	s->close_by_ns = clock_now_ns() + s->c.req_timeout_ns + NS_PER_SEC / 2;
	ev_timer_set(&s->close_timer, 0., 0.);
	ev_timer_start(s->loop, &s->close_timer);
}

/* ---- names ---- */

/* The rule for Lease names (RFC 1123 subdomain): lowercase letters and
 * digits in labels of letters, digits and '-', joined by '.'; a label
 * starts and ends with a letter or digit. */
static bool subdomain_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > K8S_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (c == '.') {
			if (i == 0 || i + 1 == n || s[i - 1] == '-' || s[i + 1] == '-' || s[i + 1] == '.')
				return false;
		} else if (c == '-') {
			if (i == 0 || i + 1 == n)
				return false;
		} else if (!alnum) {
			return false;
		}
	}
	return true;
}

static int lk_name_check(const struct lock_session *s, const char *name, char *err, size_t errlen)
{
	char lease[K8S_NAME_MAX + 64], fix[LOCK_NAME_MAX + 1];
	size_t n = 0, room = K8S_NAME_MAX - strlen(s->prefix) - 1 - K8S_SLOT_DIGITS;

	snprintf(lease, sizeof(lease), "%s%s", s->prefix, name);
	if (subdomain_ok(name) && subdomain_ok(lease) && strlen(name) <= room)
		return 0;
	if (strlen(name) > room) {
		snprintf(err, errlen, "bad name \"%s\": the k8s backend keeps it in Lease \"%s\" (with "
		         "\"-K\" for a semaphore slot), longer than Kubernetes allows (%d): use at most "
		         "%zu characters", name, lease, K8S_NAME_MAX, room);
		return -1;
	}
	/* A suggestion: lowercase, '_' as '-', trimmed to a letter or digit. */
	for (const char *p = name; *p && n < sizeof(fix) - 1; p++)
		fix[n++] = *p == '_' ? '-' : (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : *p;
	fix[n] = '\0';
	while (n > 0 && (fix[n - 1] == '-' || fix[n - 1] == '.'))
		fix[--n] = '\0';
	size_t start = strspn(fix, "-.");
	memmove(fix, fix + start, n - start + 1);
	if (subdomain_ok(fix) && strcmp(fix, name) != 0)
		snprintf(err, errlen, "bad name \"%s\": the k8s backend keeps lock NAME in Lease \"%s\", "
		         "and Kubernetes names are lowercase letters, digits, '-' and '.', starting and "
		         "ending with a letter or digit: use e.g. \"%s\"", name, lease, fix);
	else
		snprintf(err, errlen, "bad name \"%s\": the k8s backend keeps lock NAME in Lease \"%s\", "
		         "and Kubernetes names are lowercase letters, digits, '-' and '.', starting and "
		         "ending with a letter or digit", name, lease);
	return -1;
}

/* ---- lock_backend_ops ---- */

static void lk_free(void *owner)
{
	struct lock_session *s = owner;

	k8s_lock_list_abort_all(s);
	s->closing = true;               /* no more kicks */
	while (!TAILQ_EMPTY(&s->holds))
		k8s_hold_free(TAILQ_FIRST(&s->holds));
	ev_timer_stop(s->loop, &s->kick);
	ev_timer_stop(s->loop, &s->view_timer);
	ev_timer_stop(s->loop, &s->ping_timer);
	ev_timer_stop(s->loop, &s->close_timer);
	etcd_events_free(&s->q);
	k8s_req_free(&s->r_list);
	k8s_req_free(&s->r_watch);
	k8s_req_free(&s->r_ping);
	k8s_client_free(&s->c);          /* after the requests */
	for (size_t i = 0; i < s->n_seen; i++)
		seen_free(s->seen[i]);
	free(s->seen);
	free(s->ns);
	free(s->ns_esc);
	free(s->prefix);
	free(s->id);
	free(s->watch_rv);
	free(s);
}

static void lk_destroy(struct lock_session *s)
{
	if (s == NULL)
		return;
	k8s_lock_list_abort_all(s);
	etcd_events_destroy(&s->q);
}

/* NAMESPACE[/PREFIX], or "" for the context's namespace. */
static int parse_path(struct lock_session *s, const char *path, char *err, size_t errlen)
{
	const char *slash = strchr(path, '/');
	char esc[K8S_NAME_MAX * 3 + 1];
	char *ns, *prefix;

	if (*path == '\0')
		ns = strdup(s->c.conn.namespace ? s->c.conn.namespace : "default");
	else
		ns = slash ? strndup(path, (size_t)(slash - path)) : strdup(path);
	prefix = strdup(slash ? slash + 1 : "");
	if (ns == NULL || prefix == NULL) {
		free(ns);
		free(prefix);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	s->ns = ns;
	if (!k8s_valid_name(ns, 63, false)) {
		free(prefix);
		snprintf(err, errlen, "k8s: namespace '%s' is not a valid name (lowercase letters, "
		         "digits and '-', at most 63): write k8s:///NAMESPACE[/PREFIX]", ns);
		return -1;
	}
	if (*prefix && (!subdomain_ok(prefix) || strlen(prefix) > 100)) {
		snprintf(err, errlen, "k8s: prefix '%s' does not fit in a Lease name (lowercase letters, "
		         "digits, '-' and '.', starting and ending with a letter or digit, at most 100): "
		         "write k8s:///NAMESPACE/PREFIX, e.g. k8s:///%s/locks", prefix, ns);
		free(prefix);
		return -1;
	}
	if (*prefix) {
		s->prefix = malloc(strlen(prefix) + 2);
		if (s->prefix)
			sprintf(s->prefix, "%s-", prefix);
		free(prefix);
	} else {
		s->prefix = prefix;
	}
	k8s_url_escape(ns, esc, sizeof(esc));
	if (s->prefix == NULL || (s->ns_esc = strdup(esc)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static int lk_create(struct lock_session **out, const struct backend_params *p,
                     const struct lock_events *ev, void *ctx, char *err, size_t errlen)
{
	struct lock_session *s;
	char *path = NULL;

	*out = NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	s->ev = ev;
	s->ctx = ctx;
	s->loop = p->loop;
	s->ttl_s = p->ttl_ns / NS_PER_SEC;
	s->ttl_ns = s->ttl_s * NS_PER_SEC;
	TAILQ_INIT(&s->holds);
	ev_init(&s->kick, kick_cb);
	ev_init(&s->view_timer, view_timer_cb);
	ev_init(&s->ping_timer, ping_timer_cb);
	ev_init(&s->close_timer, close_timer_cb);
	s->kick.data = s->view_timer.data = s->ping_timer.data = s->close_timer.data = s;
	etcd_events_init(&s->q, s->loop, deliver, lk_free, s);
	if (k8s_check_timing(p, err, errlen) < 0 || k8s_client_init(&s->c, p, &path, err, errlen) < 0)
		goto fail;
	k8s_req_init(&s->c, &s->r_list, s);
	k8s_req_init(&s->c, &s->r_watch, s);
	k8s_req_init(&s->c, &s->r_ping, s);
	if (parse_path(s, path, err, errlen) < 0)
		goto fail;
	if ((s->id = strdup(p->id ? p->id : "")) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	free(path);
	log_debug("k8s: locks as Leases %s/%sNAME on %s (%s)", s->ns, s->prefix, s->c.conn.server,
	          s->c.conn.source ? s->c.conn.source : "");
	*out = s;
	return 0;
fail:
	free(path);
	lk_free(s);
	return -1;
}

const struct lock_backend_ops k8s_lock_ops = {
	.scheme = "k8s",
	.create = lk_create,
	.open = lk_open,
	.renew = lk_renew,
	.acquire = k8s_lock_acquire,
	.release = k8s_lock_release,
	.hold_ctx = k8s_lock_hold_ctx,
	.hold_fd = NULL,
	.list = k8s_lock_list,
	.close = lk_close,
	.destroy = lk_destroy,
	.name_check = lk_name_check,
	.check_timing = k8s_check_timing,
};
