/* list() of the Kubernetes lock backend: one LIST of the namespace's Leases.
 *
 *   lockd's   Leases with the annotation elect.io/lock: NAME (and
 *             elect.io/limit: N) named as k8s_lock.c lays them out: a held
 *             one (holderIdentity set) is a holder of NAME, token
 *             leaseTransitions * N + K, owner its holderIdentity
 *   plain     a Lease PREFIX-NAME without annotations (a client-go
 *             candidate's): a holder of lock NAME, token leaseTransitions;
 *             without a prefix only for the names asked for (the namespace
 *             holds other Leases too)
 * Waiters leave nothing in Kubernetes: only this lockd's own are shown (by
 * lockd). A Lease whose holder stopped renewing still shows as held until
 * someone takes it. cb runs from a timer, never inside libcurl's callbacks;
 * destroy() answers every list still pending before it returns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/k8s_lock.h"
#include "common/clock.h"

struct k8s_lock_list {
	struct lock_session *s;
	struct k8s_lock_list *next, **pprev;
	lock_list_cb cb;
	void *arg;
	char **names;              /* asked for */
	size_t n_names;
	bool all;
	struct k8s_req r;
	ev_timer timer;            /* deliver (0) */
	bool finished;
	char err[700];
	struct lock_entry *e;      /* the answer, its strings in strs */
	size_t n;
	char **strs;
	size_t n_strs;
	bool truncated;
};

static void list_free(struct k8s_lock_list *l)
{
	ev_timer_stop(l->s->loop, &l->timer);
	k8s_req_free(&l->r);
	if ((*l->pprev = l->next) != NULL)
		l->next->pprev = l->pprev;
	for (size_t i = 0; i < l->n_names; i++)
		free(l->names[i]);
	free(l->names);
	for (size_t i = 0; i < l->n_strs; i++)
		free(l->strs[i]);
	free(l->strs);
	free(l->e);
	free(l);
}

static void deliver_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct k8s_lock_list *l = w->data;

	(void)loop;
	(void)revents;
	if (l->err[0])
		l->cb(l->arg, NULL, 0, false, l->err);
	else
		l->cb(l->arg, l->e, l->n, l->truncated, NULL);
	list_free(l);
}

static void finish(struct k8s_lock_list *l, const char *err)
{
	if (err != NULL) {
		snprintf(l->err, sizeof(l->err), "k8s: listing locks: %s", err);
		for (char *p = l->err; *p; p++)
			if ((unsigned char)*p < 0x20)
				*p = ' ';
	}
	l->finished = true;
	k8s_req_cancel(&l->r);
	ev_timer_stop(l->s->loop, &l->timer);
	ev_timer_set(&l->timer, 0., 0.);
	ev_timer_start(l->s->loop, &l->timer);
}

static const char *keep(struct k8s_lock_list *l, char *s)
{
	char **n;

	if (s == NULL || (n = realloc(l->strs, (l->n_strs + 1) * sizeof(*n))) == NULL) {
		free(s);
		return NULL;
	}
	l->strs = n;
	l->strs[l->n_strs++] = s;
	return s;
}

static bool asked(const struct k8s_lock_list *l, const char *name)
{
	for (size_t i = 0; i < l->n_names; i++)
		if (strcmp(l->names[i], name) == 0)
			return true;
	return false;
}

/* The lock name, limit and slot of Lease lease (parsed), or false. */
static bool lock_of(const struct k8s_lock_list *l, const struct k8s_lease *le, char *name,
                    size_t len, unsigned *limit, unsigned *slot)
{
	const struct lock_session *s = l->s;
	size_t pl = strlen(s->prefix), nl;
	const char *rest;

	*slot = 0;
	if (le->lock_name != NULL) {
		if (!lock_name_valid(le->lock_name) || le->lock_limit == 0 || le->lock_limit > 100000)
			return false;
		*limit = le->lock_limit;
		/* PREFIX-NAME, or PREFIX-NAME-K with K < N written as "%u" does
		 * (parsed: the limit is anyone's annotation, no loop over it). */
		nl = strlen(le->lock_name);
		if (strncmp(le->name, s->prefix, pl) != 0 ||
		    strncmp(le->name + pl, le->lock_name, nl) != 0)
			return false;
		rest = le->name + pl + nl;
		if (*limit == 1) {
			if (*rest != '\0')
				return false;
		} else {
			unsigned long k = 0;
			size_t digits = strspn(rest + 1, "0123456789");
			if (rest[0] != '-' || digits == 0 || digits > 6 || rest[1 + digits] != '\0' ||
			    (rest[1] == '0' && digits > 1))
				return false;
			k = strtoul(rest + 1, NULL, 10);
			if (k >= *limit)
				return false;
			*slot = (unsigned)k;
		}
		snprintf(name, len, "%s", le->lock_name);
		return true;
	}
	/* A plain Lease: a lock named by what follows the prefix. */
	if (strncmp(le->name, s->prefix, pl) != 0 || !lock_name_valid(le->name + pl))
		return false;
	if (pl == 0 && !asked(l, le->name))
		return false;
	snprintf(name, len, "%s", le->name + pl);
	*limit = 1;
	return true;
}

static struct lock_hold *our_hold(struct lock_session *s, const char *lease, const char *holder)
{
	struct lock_hold *h;

	TAILQ_FOREACH(h, &s->holds, link)
		if (h->state == KH_GRANTED && h->lease && strcmp(h->lease, lease) == 0 &&
		    strcmp(holder, s->id) == 0)
			return h;
	return NULL;
}

static int by_name_token(const void *a, const void *b)
{
	const struct lock_entry *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c != 0)
		return c;
	return x->token < y->token ? -1 : x->token > y->token;
}

static void list_done(struct k8s_req *r, long status, const char *err)
{
	struct k8s_lock_list *l = r->owner;
	json_t *doc, *items, *it;
	struct k8s_lease le;
	char perr[160], name[LOCK_NAME_MAX + 1], why[900];
	unsigned limit, slot;
	size_t i;

	if (err != NULL) {
		finish(l, err);
		return;
	}
	if (status != 200) {
		k8s_lock_refused(l->s, r, status, why, sizeof(why));
		finish(l, why);
		return;
	}
	doc = json_loadb(r->resp, r->resp_len, 0, NULL);
	items = json_object_get(doc, "items");
	if (!json_is_array(items)) {
		json_decref(doc);
		finish(l, "not a LeaseList");
		return;
	}
	if (json_array_size(items) > 0 &&
	    (l->e = calloc(json_array_size(items), sizeof(*l->e))) == NULL) {
		json_decref(doc);
		finish(l, "out of memory");
		return;
	}
	json_array_foreach(items, i, it) {
		if (k8s_lease_parse(it, &le, perr, sizeof(perr)) < 0)
			continue;
		if (le.holder[0] != '\0' && lock_of(l, &le, name, sizeof(name), &limit, &slot) &&
		    (l->all || asked(l, name))) {
			struct lock_entry *e = &l->e[l->n];
			char *key = NULL;
			if (l->n >= LOCK_LIST_MAX) {
				l->truncated = true;
				k8s_lease_free(&le);
				break;
			}
			if (asprintf(&key, "%s/%s", l->s->ns, le.name) < 0)
				key = NULL;
			e->name = keep(l, strdup(name));
			e->owner = keep(l, strdup(le.holder));
			e->key = keep(l, key);
			e->token = (uint64_t)le.transitions * limit + slot;
			e->held = 1;
			e->mine = our_hold(l->s, le.name, le.holder);
			if (e->name && e->owner && e->key)
				l->n++;
		}
		k8s_lease_free(&le);
	}
	json_decref(doc);
	if (l->n > 0)
		qsort(l->e, l->n, sizeof(*l->e), by_name_token);
	for (i = 0; i < l->n; i++)
		l->e[i].position = i > 0 && strcmp(l->e[i].name, l->e[i - 1].name) == 0
		                   ? l->e[i - 1].position + 1 : 0;
	finish(l, NULL);
}

int k8s_lock_list(struct lock_session *s, const char *const *names, size_t n, bool all,
                  lock_list_cb cb, void *arg)
{
	struct k8s_lock_list *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return -1;
	l->s = s;
	l->cb = cb;
	l->arg = arg;
	l->all = all;
	k8s_req_init(&s->c, &l->r, l);
	ev_init(&l->timer, deliver_cb);
	l->timer.data = l;
	if ((l->next = s->lists) != NULL)
		s->lists->pprev = &l->next;
	s->lists = l;
	l->pprev = &s->lists;
	if (n > 0 && (l->names = calloc(n, sizeof(char *))) == NULL) {
		list_free(l);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if ((l->names[l->n_names] = strdup(names[i])) == NULL) {
			list_free(l);
			return -1;
		}
		l->n_names++;
	}
	if (s->closing) {
		finish(l, "the backend is closing");
		return 0;
	}
	k8s_req_send(&l->r, "list", list_done, "GET", NULL, 0, K8S_LEASES, s->ns_esc);
	if (!l->r.busy)
		finish(l, "the request could not be sent");
	return 0;
}

void k8s_lock_list_abort_all(struct lock_session *s)
{
	while (s->lists) {
		struct k8s_lock_list *l = s->lists;
		l->cb(l->arg, NULL, 0, false, "k8s: listing locks: the backend was closed");
		list_free(l);
	}
}
