/* GET /v1/locks of lockd's API (api.c routes it here). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <jansson.h>

#include "common/clock.h"
#include "common/duration.h"
#include "common/httpd.h"
#include "lockd/api.h"
#include "lockd/lockd.h"

#define LIST_SLACK_NS (500 * NS_PER_MS)

/* GET /v1/locks: per name, who holds it and who waits, on every node as far
 * as the backend can tell (lock_backend_ops.list), merged with this lockd's
 * own holds. Query: name=NAME (that name only, even if not held here),
 * limit=N (the semaphore size to assume for names not held here: etcd and
 * ZooKeeper keep none; default 1), local=1 (this lockd's holds only, no
 * backend request). If the backend cannot be read within the request
 * timeout, the answer has this lockd's holds and "backend_error". Hold ids
 * never appear: they are their clients' secrets. */
struct list_req {
	struct ev_loop *loop;
	struct lockd *d;
	struct http_request *req;     /* NULL once answered or abandoned */
	char name[LOCK_NAME_MAX + 1]; /* "" : every name */
	unsigned limit;               /* 0: none given */
	ev_timer timer;
};

static json_t *lock_obj(json_t *byname, const char *name)
{
	json_t *l = json_object_get(byname, name);

	if (l == NULL && (l = json_pack("{s:s, s:i, s:i, s:[], s:[], s:[]}", "name", name,
	                                "holders_here", 0, "waiting_here", 0, "tokens",
	                                "holders", "waiting")) != NULL)
		json_object_set_new(byname, name, l);
	return l;
}

static void bump(json_t *l, const char *field)
{
	json_object_set_new(l, field, json_integer(json_integer_value(json_object_get(l, field)) + 1));
}

static json_t *entry_json(uint64_t token, const char *owner, const char *key, bool here)
{
	json_t *o = json_pack("{s:s, s:b}", "owner", owner, "here", here);

	if (o && token > 0)
		json_object_set_new(o, "token", httpd_json_u64(token));
	if (o && key && key[0])
		json_object_set_new(o, "key", json_string(key));
	return o;
}

static int name_order(const void *x, const void *y)
{
	return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* byname -> [lock, ...] sorted by name. Consumes byname. */
static json_t *sorted_locks(json_t *byname)
{
	size_t n = json_object_size(byname), i = 0;
	const char **keys = calloc(n + 1, sizeof(*keys)), *k;
	json_t *locks = json_array(), *v;

	json_object_foreach(byname, k, v)
		if (keys)
			keys[i++] = k;
	if (keys)
		qsort(keys, n, sizeof(*keys), name_order);
	for (i = 0; keys && locks && i < n; i++)
		json_array_append(locks, json_object_get(byname, keys[i]));
	free(keys);
	json_decref(byname);
	if (keys == NULL) {
		json_decref(locks);
		return NULL;
	}
	return locks;
}

static json_t *listing(const struct list_req *lr, const struct lock_entry *e,
                       size_t n, bool truncated, const char *err)
{
	json_t *byname = json_object(), *seen = json_object(), *l, *o;
	const char *id = lockd_id(lr->d);

	if (byname == NULL || seen == NULL)
		goto fail;
	/* Own holds first: they give each name's limit. */
	for (struct hold *h = lockd_holds(lr->d); h; h = h->next) {
		if (h->state == HOLD_REVOKED || (lr->name[0] && strcmp(h->name, lr->name) != 0))
			continue;
		if ((l = lock_obj(byname, h->name)) == NULL)
			goto fail;
		json_object_set_new(l, "limit", json_integer(h->limit));
		if (h->state == HOLD_HELD) {
			bump(l, "holders_here");
			json_array_append_new(json_object_get(l, "tokens"), httpd_json_u64(h->token));
		} else {
			bump(l, "waiting_here");
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct hold *mine = lockd_hold_of(lr->d, e[i].mine);
		json_int_t limit;
		bool held;

		if ((l = lock_obj(byname, e[i].name)) == NULL)
			goto fail;
		if (json_object_get(l, "limit") == NULL && lr->limit > 0)
			json_object_set_new(l, "limit", json_integer(lr->limit));
		limit = json_integer_value(json_object_get(l, "limit"));
		held = e[i].held >= 0 ? e[i].held == 1 : e[i].position < (limit > 0 ? limit : 1);
		if (mine)
			json_object_set_new(seen, mine->id, json_true());
		json_array_append_new(json_object_get(l, held ? "holders" : "waiting"),
		                      entry_json(e[i].token, e[i].owner, e[i].key, mine != NULL));
	}
	/* Own holds the backend did not show: all of them when it could not be
	 * read, and waiters the file backend cannot see. */
	for (struct hold *h = lockd_holds(lr->d); h; h = h->next) {
		if (h->state == HOLD_REVOKED || (lr->name[0] && strcmp(h->name, lr->name) != 0) ||
		    json_object_get(seen, h->id))
			continue;
		l = json_object_get(byname, h->name);
		json_array_append_new(json_object_get(l, h->state == HOLD_HELD ? "holders" : "waiting"),
		                      entry_json(h->state == HOLD_HELD ? h->token : 0, id, NULL, true));
	}
	json_decref(seen);
	o = json_pack("{s:o*}", "locks", sorted_locks(byname));
	if (o && truncated)
		json_object_set_new(o, "truncated", json_true());
	if (o && err)
		json_object_set_new(o, "backend_error", json_string(err));
	return o;
fail:
	json_decref(byname);
	json_decref(seen);
	return NULL;
}

static void list_answer(struct list_req *lr, const struct lock_entry *e, size_t n, bool truncated,
                        const char *err)
{
	struct http_request *req = lr->req;

	if (req == NULL)
		return;
	lr->req = NULL;
	ev_timer_stop(lr->loop, &lr->timer);
	httpd_respond_json_obj(req, 200, listing(lr, e, n, truncated, err));
}

/* The backend's answer: always comes, at the latest when it is destroyed. */
static void on_listed(void *arg, const struct lock_entry *e, size_t n, bool truncated,
                      const char *err)
{
	struct list_req *lr = arg;

	list_answer(lr, e, n, truncated, err);
	free(lr);
}

static void on_list_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct list_req *lr = w->data;
	char why[96], d[32];

	(void)loop;
	(void)revents;
	snprintf(why, sizeof(why), "the backend did not answer within %s",
	         duration_format(lockd_request_timeout_ns(lr->d) + LIST_SLACK_NS, d, sizeof(d)));
	list_answer(lr, NULL, 0, false, why);   /* lr waits for on_listed */
}

static void on_list_abort(struct http_request *req, void *data)
{
	struct list_req *lr = data;

	(void)req;
	lr->req = NULL;
	ev_timer_stop(lr->loop, &lr->timer);
}

/* name, limit and local of the query into lr and *local; -1 after a 400
 * answer to bad input. */
static int parse_query(struct http_request *req, struct list_req *lr, bool *local)
{
	char buf[32], *end, msg[768];
	long v;
	int rc = httpd_query_param(req, "name", lr->name, sizeof(lr->name));

	if (rc == -2 || (rc == 0 && !lock_name_valid(lr->name))) {
		httpd_respond_error(req, 400, "name: use 1-128 letters, digits, '.', '_' or '-', "
		                    "not starting with '.'");
		return -1;
	}
	if (rc == 0 && lockd_name_check(lr->d, lr->name, msg, sizeof(msg)) < 0) {
		httpd_respond_error(req, 400, msg);
		return -1;
	}
	if (rc < 0)
		lr->name[0] = '\0';
	if ((rc = httpd_query_param(req, "limit", buf, sizeof(buf))) != -1) {
		v = rc == 0 ? strtol(buf, &end, 10) : 0;
		if (rc < 0 || buf[0] == '\0' || *end != '\0' || v < 1 || v > LOCKD_MAX_LIMIT) {
			httpd_respond_error(req, 400, "limit: want a whole number from 1 to 1000");
			return -1;
		}
		lr->limit = (unsigned)v;
	}
	rc = httpd_query_param(req, "local", buf, sizeof(buf));
	*local = rc == 0 && strcmp(buf, "0") != 0 && strcmp(buf, "false") != 0;
	return 0;
}

void lockd_api_locks(struct ev_loop *loop, struct lockd *d, struct http_request *req)
{
	struct list_req *lr = calloc(1, sizeof(*lr));
	const char **names = NULL;
	size_t n = 0;
	bool local = false;

	if (lr == NULL) {
		httpd_respond_error(req, 500, "out of memory");
		return;
	}
	lr->loop = loop;
	lr->d = d;
	lr->req = req;
	if (parse_query(req, lr, &local) < 0) {
		free(lr);
		return;
	}
	/* The names held here, so that the backend reports them even where it
	 * cannot enumerate every name (etcd without a prefix). Repeats are the
	 * backend's to fold. */
	if (lr->name[0]) {
		if ((names = malloc(sizeof(*names))) != NULL)
			names[n++] = lr->name;
	} else {
		size_t cap = 1;
		for (struct hold *h = lockd_holds(d); h; h = h->next)
			cap++;
		names = malloc(cap * sizeof(*names));
		for (struct hold *h = lockd_holds(d); h && names; h = h->next)
			names[n++] = h->name;
	}
	if (local || names == NULL || lockd_list(d, names, n, lr->name[0] == '\0', on_listed, lr) < 0) {
		free(names);
		list_answer(lr, NULL, 0, false, NULL);
		free(lr);
		return;
	}
	free(names);
	httpd_defer(req, on_list_abort, lr);
	/* A little over one request: the backend's own error, if any, says more. */
	ev_timer_init(&lr->timer, on_list_timeout,
	              clock_ns_to_ev(lockd_request_timeout_ns(d) + LIST_SLACK_NS), 0.);
	lr->timer.data = lr;
	ev_timer_start(loop, &lr->timer);
}
