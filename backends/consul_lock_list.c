/* list() of the Consul lock backend: who holds and waits for each lock name,
 * in the layouts consul_lock.c, `consul lock` and `consul lock -n` make.
 *
 * With a prefix and every name asked for: one read of PREFIX/ (?recurse).
 * Otherwise (or with an empty prefix, where locks sit among everything else
 * at the top of the keyspace) one read of PREFIX/NAME/ per name, in turn.
 *
 *   lock       the holder is the session holding NAME/.lock (owner: its
 *              value, token: its ModifyIndex); waiters are the contender keys
 *              of other sessions, by CreateIndex. A `consul lock` waiter
 *              leaves no key and is not seen.
 *   semaphore  holders are the contenders whose session is in .lock's
 *              Holders (token: the contender's ModifyIndex, which our grants
 *              write in the same transaction); the other contenders wait.
 * A waiter's token is unknown (0): it is the index of a later write.
 * cb runs from a timer, never inside libcurl's callbacks; destroy() answers
 * every list still pending before it returns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/consul_lock.h"
#include "common/clock.h"

struct consul_list {
	struct lock_session *s;
	struct consul_list *next, **pprev;
	lock_list_cb cb;
	void *arg;
	bool prefix_scan;          /* one read of the whole prefix */
	char **names;              /* else these, sorted, no repeats, one read each */
	size_t n_names, next_name;
	struct consul_req r;
	struct consul_kv *kvs;     /* what the reads returned */
	size_t n_kvs;
	ev_timer timer;            /* a deadline while asking; then 0: deliver */
	bool finished;
	char err[256];
};

static void list_free(struct consul_list *l)
{
	ev_timer_stop(l->s->loop, &l->timer);
	consul_req_free(&l->r);
	if ((*l->pprev = l->next) != NULL)
		l->next->pprev = l->pprev;
	for (size_t i = 0; i < l->n_names; i++)
		free(l->names[i]);
	free(l->names);
	consul_kv_list_free(l->kvs, l->n_kvs);
	free(l);
}

static void list_end(struct consul_list *l, const char *err)
{
	if (err != NULL) {
		snprintf(l->err, sizeof(l->err), "consul: listing locks: %s", err);
		for (char *p = l->err; *p; p++)
			if ((unsigned char)*p < 0x20)
				*p = ' ';
	}
	l->finished = true;
	consul_req_cancel(&l->r);
	ev_timer_stop(l->s->loop, &l->timer);
	ev_timer_set(&l->timer, 0.0, 0.0);
	ev_timer_start(l->s->loop, &l->timer);
}

/* ---- building the entries ---- */

static int by_key(const void *a, const void *b)
{
	return strcmp(((const struct consul_kv *)a)->key, ((const struct consul_kv *)b)->key);
}

static int by_index(const void *a, const void *b)
{
	const struct lock_entry *x = a, *y = b;

	if (x->held != y->held)
		return y->held - x->held;   /* holders first */
	return x->token < y->token ? -1 : x->token > y->token;
}

static struct lock_hold *our_hold(struct lock_session *s, const char *name, const char *session)
{
	for (struct lock_hold *h = s->holds; h != NULL; h = h->next) {
		const char *sid = consul_hold_sid(h);
		if (sid && session && strcmp(sid, session) == 0 && strcmp(h->name, name) == 0 &&
		    h->state != H_DEAD && h->state != H_RELEASING)
			return h;
	}
	return NULL;
}

/* The entries of one name: kvs[0..n) are its keys "PREFIX/NAME/...". */
static size_t name_entries(struct lock_session *s, const char *name, const struct consul_kv *kvs, size_t n,
                           size_t dirlen, struct lock_entry *out)
{
	const struct consul_kv *lk = NULL;
	struct consul_sem sem;
	char perr[160];
	uint64_t flags = 0;
	size_t m = 0, first_waiter;

	for (size_t i = 0; i < n; i++)
		if (strcmp(kvs[i].key + dirlen, ".lock") == 0)
			lk = &kvs[i];
	if (lk != NULL)
		flags = lk->flags;
	for (size_t i = 0; i < n && flags == 0; i++)
		if (kvs[i].session && (kvs[i].flags == CONSUL_LOCK_FLAG || kvs[i].flags == CONSUL_SEM_FLAG))
			flags = kvs[i].flags;
	memset(&sem, 0, sizeof(sem));
	if (flags == CONSUL_SEM_FLAG && lk && consul_sem_decode(lk->value, lk->value_len, &sem, perr,
	                                                        sizeof(perr)) < 0)
		return 0;
	if (flags == CONSUL_LOCK_FLAG && lk && lk->session) {
		out[m++] = (struct lock_entry){ .name = name, .token = lk->modify_index, .owner = lk->value,
		                                .key = lk->key, .held = 1,
		                                .mine = our_hold(s, name, lk->session) };
	}
	first_waiter = m;
	for (size_t i = 0; i < n && (flags == CONSUL_LOCK_FLAG || flags == CONSUL_SEM_FLAG); i++) {
		const struct consul_kv *kv = &kvs[i];
		bool holds;
		if (kv == lk || kv->session == NULL || kv->flags != flags || strchr(kv->key + dirlen, '/'))
			continue;
		if (flags == CONSUL_LOCK_FLAG && lk && lk->session && strcmp(lk->session, kv->session) == 0)
			continue;   /* the holder's own contender */
		holds = flags == CONSUL_SEM_FLAG && consul_sem_has(&sem, kv->session);
		out[m++] = (struct lock_entry){ .name = name, .token = holds ? kv->modify_index : kv->create_index,
		                                .owner = kv->value, .key = kv->key, .held = holds,
		                                .mine = our_hold(s, name, kv->session) };
	}
	consul_sem_free(&sem);
	/* Holders by token, waiters by arrival (CreateIndex, kept in token
	 * until sorted), then the waiters' tokens are unknown. */
	if (m > first_waiter)
		qsort(out + first_waiter, m - first_waiter, sizeof(*out), by_index);
	for (size_t i = 0; i < m; i++) {
		out[i].position = (unsigned)i;
		if (!out[i].held)
			out[i].token = 0;
	}
	return m;
}

static void deliver_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct consul_list *l = w->data;
	struct lock_session *s = l->s;
	struct lock_entry *e = NULL;
	char **names = NULL;
	size_t n = 0, n_names = 0, plen = strlen(s->prefix);
	bool truncated = false, oom = false;

	(void)loop;
	(void)revents;
	if (!l->finished) {
		l->cb(l->arg, NULL, 0, false, "consul: listing locks: no answer in time");
		list_free(l);
		return;
	}
	if (l->err[0] == '\0' && l->n_kvs > 0 && (e = calloc(l->n_kvs, sizeof(*e))) == NULL)
		snprintf(l->err, sizeof(l->err), "consul: listing locks: out of memory");
	if (l->err[0]) {
		l->cb(l->arg, NULL, 0, false, l->err);
		list_free(l);
		return;
	}
	if (l->n_kvs > 0)
		qsort(l->kvs, l->n_kvs, sizeof(*l->kvs), by_key);
	for (size_t i = 0; i < l->n_kvs;) {
		const char *k = l->kvs[i].key + plen, *slash = strchr(k, '/');
		size_t j = i + 1, nl = slash ? (size_t)(slash - k) : 0;
		char **nn;
		if (strncmp(l->kvs[i].key, s->prefix, plen) != 0 || slash == NULL || !lock_name_valid_n(k, nl)) {
			i++;
			continue;
		}
		while (j < l->n_kvs && strncmp(l->kvs[j].key + plen, k, nl + 1) == 0)
			j++;
		if (n >= LOCK_LIST_MAX) {
			truncated = true;
			break;
		}
		if ((nn = realloc(names, (n_names + 1) * sizeof(*nn))) == NULL ||
		    (nn[n_names] = strndup(k, nl)) == NULL) {
			names = nn ? nn : names;
			oom = true;
			break;
		}
		names = nn;
		n += name_entries(s, names[n_names++], &l->kvs[i], j - i, plen + nl + 1, e + n);
		i = j;
	}
	if (n > LOCK_LIST_MAX) {
		n = LOCK_LIST_MAX;
		truncated = true;
	}
	if (oom)
		l->cb(l->arg, NULL, 0, false, "consul: listing locks: out of memory");
	else
		l->cb(l->arg, e, n, truncated, NULL);
	for (size_t x = 0; x < n_names; x++)
		free(names[x]);
	free(names);
	free(e);
	list_free(l);
}

/* ---- the reads ---- */

static void send_next(struct consul_list *l);

static void read_done(struct consul_req *r, long status, const char *err)
{
	struct consul_list *l = r->owner;
	struct consul_kv *kvs = NULL, *all;
	size_t n = 0;
	char perr[200];

	if (err != NULL) {
		list_end(l, err);
		return;
	}
	if (status != 200 && status != 404) {
		snprintf(perr, sizeof(perr), "HTTP status %ld: %.100s%s", status, r->resp,
		         status == 403 ? " (check the ACL token)" : "");
		list_end(l, perr);
		return;
	}
	if (status == 200 && consul_parse_kv_list(r->resp, r->resp_len, &kvs, &n, perr, sizeof(perr)) < 0) {
		list_end(l, perr);
		return;
	}
	if (n > 0) {
		if ((all = realloc(l->kvs, (l->n_kvs + n) * sizeof(*all))) == NULL) {
			consul_kv_list_free(kvs, n);
			list_end(l, "out of memory");
			return;
		}
		memcpy(all + l->n_kvs, kvs, n * sizeof(*kvs));
		free(kvs);
		l->kvs = all;
		l->n_kvs += n;
	}
	if (l->prefix_scan || l->next_name >= l->n_names || l->n_kvs > 4 * LOCK_LIST_MAX)
		list_end(l, NULL);
	else
		send_next(l);
}

static void send_next(struct consul_list *l)
{
	struct lock_session *s = l->s;
	char *dir = NULL, *esc = NULL;

	if (l->prefix_scan) {
		dir = strdup(s->prefix);
	} else if (asprintf(&dir, "%s%s/", s->prefix, l->names[l->next_name++]) < 0) {
		dir = NULL;
	}
	if (dir == NULL || (esc = consul_escape_key(dir)) == NULL) {
		free(dir);
		list_end(l, "out of memory");
		return;
	}
	consul_req_send(&l->r, "list", read_done, "GET", NULL, 0, "/v1/kv/%s?recurse&consistent", esc);
	free(dir);
	free(esc);
	if (!l->r.busy)
		list_end(l, "the request could not be sent");
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int consul_lock_list(struct lock_session *s, const char *const *names, size_t n, bool all,
                     lock_list_cb cb, void *arg)
{
	struct consul_list *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return -1;
	l->s = s;
	l->cb = cb;
	l->arg = arg;
	consul_req_init(&s->c, &l->r, l);
	ev_init(&l->timer, deliver_cb);
	l->timer.data = l;
	if ((l->next = s->lists) != NULL)
		s->lists->pprev = &l->next;
	s->lists = l;
	l->pprev = &s->lists;
	l->prefix_scan = all && s->prefix[0] != '\0';
	/* Names asked for and held or awaited here, sorted, once each. */
	if (!l->prefix_scan) {
		size_t cap = n;
		for (const struct lock_hold *h = s->holds; h != NULL; h = h->next)
			cap++;
		if (cap > 0 && (l->names = calloc(cap, sizeof(char *))) == NULL)
			goto oom;
		for (size_t i = 0; i < n; i++)
			if ((l->names[l->n_names++] = strdup(names[i])) == NULL)
				goto oom;
		for (const struct lock_hold *h = s->holds; all && h != NULL; h = h->next)
			if ((l->names[l->n_names++] = strdup(h->name)) == NULL)
				goto oom;
		if (l->n_names > 0)
			qsort(l->names, l->n_names, sizeof(char *), cmp_str);
		size_t k = 0;
		for (size_t i = 0; i < l->n_names; i++) {
			if (k > 0 && strcmp(l->names[i], l->names[k - 1]) == 0)
				free(l->names[i]);
			else
				l->names[k++] = l->names[i];
		}
		l->n_names = k;
	}
	if (s->closing) {
		list_end(l, "the backend is closing");
		return 0;
	}
	ev_timer_set(&l->timer, clock_ns_to_ev(2 * s->c.req_timeout_ns + NS_PER_SEC), 0.0);
	ev_timer_start(s->loop, &l->timer);
	if (l->prefix_scan || l->n_names > 0)
		send_next(l);
	else
		list_end(l, NULL);
	return 0;
oom:
	list_free(l);
	return -1;
}

void consul_lock_list_abort_all(struct lock_session *s)
{
	while (s->lists) {
		struct consul_list *l = s->lists;
		l->cb(l->arg, NULL, 0, false, "consul: listing locks: the backend was closed");
		list_free(l);
	}
}
