/* list() of the etcd lock backend (etcd_lock_ops in etcd_lock.c): who
 * holds and waits for each lock name, "PREFIX/NAME/<id>" keys as
 * etcd_lock.c and `etcdctl lock` make them.
 *
 * list() reads every node's holders and waiters: the range over PREFIX/
 * (values: the owners' ids) in pages of LIST_PAGE keys, all at the first
 * page's revision (one view; answers above 1 MB are refused by the client),
 * or with an empty prefix (locks among everything else at the top of the
 * keyspace) only the names asked for, one range per name in txns of 128.
 * Who holds is known for position 0 and for our own holds; the others depend
 * on a limit etcd does not store (lockd knows it).
 *
 * Parsing the answers and grouping the keys by name is etcd_proto_list.c's.
 * cb runs from a timer, never inside libcurl's callbacks; destroy() answers
 * every list still pending before it returns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/etcd_lock.h"
#include "common/clock.h"

#define LIST_BATCH   128       /* names per list txn: etcd's default --max-txn-ops */
#define LIST_PAGE    500       /* keys per range: well under the client's 1 MB answer */

/* One list() call: its request, then its answer going out from a timer. */
struct lock_listing {
	struct lock_session *s;
	struct lock_listing *next, **pprev;
	lock_list_cb cb;
	void *arg;
	bool prefix_scan;          /* the range over the whole prefix, page by page */
	char **names;              /* else these (sorted, no repeats), LIST_BATCH per txn */
	size_t n_names, next_name, batch;
	int attempts;              /* endpoints tried for this request */
	struct etcd_req r;
	struct etcd_list got;
	ev_timer timer;            /* a deadline while asking; then 0: deliver */
	bool finished;
	char err[256];             /* "" or the one-line error for cb */
};

static void list_set_err(struct lock_listing *l, const char *err)
{
	snprintf(l->err, sizeof(l->err), "etcd: listing locks: %s", err);
	for (char *p = l->err; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';   /* one line, whatever the server said */
}

/* The request is over: the answer goes out from the loop (never from inside
 * libcurl's callbacks, which a cb that destroys the backend would break). */
static void list_end(struct lock_listing *l, const char *err)
{
	struct ev_loop *loop = l->s->loop;

	if (err != NULL)
		list_set_err(l, err);
	l->finished = true;
	etcd_req_cancel(&l->r);
	ev_timer_stop(loop, &l->timer);
	ev_timer_set(&l->timer, 0.0, 0.0);
	ev_timer_start(loop, &l->timer);
}

/* After each send: a request that never started fails now, and one that
 * never ends (an auth request that could not start) at a deadline. */
static void list_sent(struct lock_listing *l)
{
	struct lock_session *s = l->s;

	if (!l->r.busy) {
		list_end(l, "the request could not be sent");
		return;
	}
	ev_timer_stop(s->loop, &l->timer);
	ev_timer_set(&l->timer, clock_ns_to_ev(2 * s->c.req_timeout_ns + NS_PER_SEC), 0.0);
	ev_timer_start(s->loop, &l->timer);
}

static void list_done(struct etcd_req *r, const json_t *ans, const char *err);

static void list_send(struct lock_listing *l)
{
	struct lock_session *s = l->s;
	size_t left = LOCK_LIST_MAX + 1 - (l->got.n < LOCK_LIST_MAX ? l->got.n : LOCK_LIST_MAX);

	l->attempts = 0;
	if (l->prefix_scan) {
		etcd_req_call(&l->r, "lock list", list_done, "/v3/kv/range",
		              etcd_body_list_page(s->prefix, l->got.after, l->got.after_len, LIST_PAGE,
		                                  l->got.revision));
	} else if (l->next_name < l->n_names) {
		l->batch = l->n_names - l->next_name < LIST_BATCH ? l->n_names - l->next_name : LIST_BATCH;
		etcd_req_call(&l->r, "lock list", list_done, "/v3/kv/txn",
		              etcd_body_list_names(s->prefix, (const char *const *)l->names + l->next_name,
		                                   l->batch, left < LIST_PAGE ? (unsigned)left : LIST_PAGE));
	} else {
		list_end(l, NULL);    /* nothing to ask */
		return;
	}
	list_sent(l);
}

static void list_done(struct etcd_req *r, const json_t *ans, const char *err)
{
	struct lock_listing *l = r->owner;
	const char *prefix = l->s->prefix;
	char perr[160];
	bool again;

	if (err == NULL && (l->prefix_scan ? etcd_parse_list_page(ans, prefix, &l->got, perr, sizeof(perr))
	                                   : etcd_parse_list_txn(ans, l->batch, prefix, &l->got, perr,
	                                                         sizeof(perr))) < 0) {
		etcd_note_failure(r, perr);
		err = perr;
	}
	if (err != NULL) {
		/* Counted here: a refused login fails without a try of r's own. */
		if (r->transport_error && ++l->attempts < r->c->ep.n) {
			etcd_req_resend(r);
			list_sent(l);
		} else {
			list_end(l, err);
		}
		return;
	}
	if (l->prefix_scan) {
		again = l->got.next_page;
	} else {
		l->next_name += l->batch;
		again = l->next_name < l->n_names;
	}
	if (again && l->got.n <= LOCK_LIST_MAX) {
		list_send(l);
		return;
	}
	/* Past LOCK_LIST_MAX: etcd_list_finish cuts and says so. */
	if (again && !l->prefix_scan)
		l->got.more = true;   /* names left unread */
	list_end(l, NULL);
}

static int cmp_hold_key(const void *a, const void *b)
{
	return strcmp((*(struct lock_hold *const *)a)->key, (*(struct lock_hold *const *)b)->key);
}

static int cmp_key_hold(const void *key, const void *h)
{
	return strcmp(key, (*(struct lock_hold *const *)h)->key);
}

/* The entries for cb, with our holds as they are now (some may have been
 * released while the request ran). NULL: out of memory. */
static struct lock_entry *list_entries(struct lock_session *s, const struct etcd_list *got)
{
	struct lock_entry *e = calloc(got->n ? got->n : 1, sizeof(*e));
	struct lock_hold **ours = NULL;
	size_t n_ours = 0;

	for (struct lock_hold *h = s->holds; h != NULL; h = h->next)
		n_ours++;
	if (e == NULL || (n_ours > 0 && (ours = malloc(n_ours * sizeof(*ours))) == NULL)) {
		free(e);
		return NULL;
	}
	n_ours = 0;
	for (struct lock_hold *h = s->holds; h != NULL; h = h->next)
		if ((h->state == H_WAITING || h->state == H_GRANTED) && h->key != NULL)
			ours[n_ours++] = h;
	if (n_ours > 1)
		qsort(ours, n_ours, sizeof(*ours), cmp_hold_key);
	for (size_t i = 0; i < got->n; i++) {
		const struct etcd_list_kv *kv = &got->kv[i];
		struct lock_hold **hp = n_ours ? bsearch(kv->key, ours, n_ours, sizeof(*ours), cmp_key_hold)
		                               : NULL;
		/* The same key made again by someone else is not ours. */
		struct lock_hold *h = hp && ((*hp)->rev == 0 || (*hp)->rev == kv->create_rev) ? *hp : NULL;

		e[i].name = kv->name;
		e[i].token = (uint64_t)kv->create_rev;
		e[i].owner = kv->value;
		e[i].key = kv->key;
		e[i].position = kv->position;
		e[i].mine = h;
		if (h != NULL)
			e[i].held = h->state == H_GRANTED;
		else
			e[i].held = kv->position == 0 ? 1 : -1;   /* the oldest always holds */
	}
	free(ours);
	return e;
}

/* cb, once; l is gone after it. cb may destroy the backend: s is not used
 * after it. */
static void list_deliver(struct lock_listing *l)
{
	struct lock_session *s = l->s;
	struct lock_entry *e = NULL;
	size_t n = 0;
	bool truncated = false;

	if ((*l->pprev = l->next) != NULL)
		l->next->pprev = l->pprev;
	ev_timer_stop(s->loop, &l->timer);
	etcd_req_free(&l->r);
	if (l->err[0] == '\0') {
		truncated = etcd_list_finish(&l->got, LOCK_LIST_MAX);
		if ((e = list_entries(s, &l->got)) == NULL)
			list_set_err(l, "out of memory");
		else
			n = l->got.n;
	}
	l->cb(l->arg, e, n, truncated, l->err[0] ? l->err : NULL);
	free(e);
	etcd_list_free(&l->got);
	for (size_t i = 0; i < l->n_names; i++)
		free(l->names[i]);
	free(l->names);
	free(l);
}

static void list_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct lock_listing *l = w->data;

	(void)loop;
	(void)revents;
	if (!l->finished) {
		etcd_req_cancel(&l->r);
		list_set_err(l, "no answer in time");
	}
	list_deliver(l);
}

/* destroy(): every list still pending is answered before it returns. */
void etcd_lock_list_abort_all(struct lock_session *s)
{
	while (s->lists != NULL) {
		struct lock_listing *l = s->lists;
		if (!l->finished)
			list_set_err(l, "the backend was closed");
		list_deliver(l);
	}
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Our own copy of names, sorted, each once. */
static int list_copy_names(struct lock_listing *l, const char *const *names, size_t n)
{
	size_t kept = 0;

	if (n == 0)
		return 0;
	if ((l->names = calloc(n, sizeof(*l->names))) == NULL)
		return -1;
	for (l->n_names = 0; l->n_names < n; l->n_names++)
		if ((l->names[l->n_names] = strdup(names[l->n_names])) == NULL)
			return -1;
	qsort(l->names, n, sizeof(*l->names), cmp_str);
	for (size_t i = 0; i < n; i++) {
		if (kept > 0 && strcmp(l->names[i], l->names[kept - 1]) == 0)
			free(l->names[i]);
		else
			l->names[kept++] = l->names[i];
	}
	l->n_names = kept;
	return 0;
}

int etcd_lock_list(struct lock_session *s, const char *const *names, size_t n, bool all,
                   lock_list_cb cb, void *arg)
{
	struct lock_listing *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return -1;
	l->s = s;
	l->cb = cb;
	l->arg = arg;
	/* An empty prefix would scan the whole keyspace: only the names asked for. */
	l->prefix_scan = all && s->prefix[0] != '\0';
	if (!l->prefix_scan && list_copy_names(l, names, n) < 0) {
		for (size_t i = 0; i < l->n_names; i++)
			free(l->names[i]);
		free(l->names);
		free(l);
		return -1;
	}
	etcd_req_init(&s->c, &l->r, l, "lock list", list_done);
	ev_init(&l->timer, list_timer_cb);
	l->timer.data = l;
	if ((l->next = s->lists) != NULL)
		s->lists->pprev = &l->next;
	s->lists = l;
	l->pprev = &s->lists;
	list_send(l);
	return 0;
}
