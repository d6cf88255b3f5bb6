/* ZooKeeper lock backend, listings (lock_backend_ops.list): zk_lock.c has
 * the rest of the backend.
 *
 * Listings only read: getChildren PATH for the names (when all are wanted),
 * then getChildren PATH/NAME for the nodes of each, then a get of each lock
 * node (its owner's id, and its data version: > 0 = a granted semaphore
 * holder), with at most LIST_WINDOW requests in flight. A listing's requests
 * carry its tag (never reused): an answer that comes after the listing was
 * answered finds nothing. The answer is an event (ZE_LISTED) delivered from
 * the loop; a listing still reading when the handle closes gets an error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/lock.h"
#include "backends/zk.h"
#include "backends/zk_conn.h"
#include "backends/zk_lock.h"

#define LIST_WINDOW 64
#define OWNER_MAX 256

struct list_node {
	size_t name;                 /* index into names */
	char *child;
	uint64_t seq;
	char *owner;                 /* its data as text, NULL until read */
	int32_t version;
	bool gone;                   /* deleted before we read it */
};

struct zk_list {
	struct lock_session *s;
	struct zk_list *prev, *next;
	uint64_t tag;
	lock_list_cb cb;
	void *arg;
	bool all, enumerated, done, truncated;
	char **names;                /* sorted once complete */
	size_t nnames, names_cap, next_name;
	struct list_node *nodes;
	size_t nnodes, nodes_cap, next_node;
	unsigned inflight;
	char err[160];               /* set: the answer is this error */
};

static struct zk_list *list_of(struct lock_session *s, uint64_t tag)
{
	for (struct zk_list *l = s->lists; l; l = l->next)
		if (l->tag == tag)
			return l;
	return NULL;
}

static bool names_list(const struct zk_event *e, void *arg)
{
	return e->kind == ZE_LISTED && e->ptr == arg;
}

static void list_free(struct zk_list *l)
{
	for (size_t i = 0; i < l->nnames; i++)
		free(l->names[i]);
	for (size_t i = 0; i < l->nnodes; i++) {
		free(l->nodes[i].child);
		free(l->nodes[i].owner);
	}
	free(l->names);
	free(l->nodes);
	free(l);
}

/* Read completely or failed: answered from the loop (zkl_deliver_list). */
static void list_finish(struct zk_list *l)
{
	l->done = true;
	zk_queue(&l->s->c, ZE_LISTED, 0, NULL, l);
}

static void list_fail(struct zk_list *l, const char *why)
{
	snprintf(l->err, sizeof(l->err), "zk: listing locks: %s", why);
	list_finish(l);
}

static bool add_name(struct zk_list *l, const char *name)
{
	if (l->nnames == l->names_cap) {
		size_t cap = l->names_cap ? 2 * l->names_cap : 16;
		char **names = realloc(l->names, cap * sizeof(*names));

		if (names == NULL)
			return false;
		l->names = names;
		l->names_cap = cap;
	}
	if ((l->names[l->nnames] = strdup(name)) == NULL)
		return false;
	l->nnames++;
	return true;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted, each name once: lockd's names and the enumerated ones overlap. */
static void sort_names(struct zk_list *l)
{
	size_t k = 0;

	if (l->nnames > 0)
		qsort(l->names, l->nnames, sizeof(*l->names), by_name);
	for (size_t i = 0; i < l->nnames; i++) {
		if (k > 0 && strcmp(l->names[k - 1], l->names[i]) == 0)
			free(l->names[i]);
		else
			l->names[k++] = l->names[i];
	}
	l->nnames = k;
}

/* The lock nodes of names[name], in sequence order, up to LOCK_LIST_MAX in
 * all. false when out of memory. */
static bool add_nodes(struct zk_list *l, size_t name, const struct String_vector *sv)
{
	int *idx = malloc(((size_t)sv->count + 1) * sizeof(*idx));
	int64_t *seq = malloc(((size_t)sv->count + 1) * sizeof(*seq));
	int n = idx && seq ? zk_lock_nodes((const char *const *)sv->data, sv->count, idx, seq) : -1;
	size_t room = LOCK_LIST_MAX - l->nnodes;
	bool ok = n >= 0;

	if (ok && (size_t)n > room) {
		l->truncated = true;
		n = (int)room;
	}
	if (ok && l->nnodes + (size_t)n > l->nodes_cap) {
		size_t cap = l->nodes_cap ? 2 * l->nodes_cap : 16;
		struct list_node *nodes;

		while (cap < l->nnodes + (size_t)n)
			cap *= 2;
		if ((nodes = realloc(l->nodes, cap * sizeof(*nodes))) != NULL) {
			l->nodes = nodes;
			l->nodes_cap = cap;
		}
		ok = nodes != NULL;
	}
	for (int i = 0; ok && i < n; i++) {
		struct list_node *nd = &l->nodes[l->nnodes];

		*nd = (struct list_node){ .name = name, .seq = (uint64_t)seq[i] };
		if ((nd->child = strdup(sv->data[idx[i]])) == NULL)
			ok = false;
		else
			l->nnodes++;
	}
	/* Full: the names not read yet may have nodes too (or none). */
	if (l->nnodes == LOCK_LIST_MAX && l->next_name < l->nnames)
		l->truncated = true;
	free(idx);
	free(seq);
	return ok;
}

static void names_done(int rc, const struct String_vector *sv, const void *data);
static void nodes_done(int rc, const struct String_vector *sv, const void *data);
static void node_done(int rc, const char *value, int value_len, const struct Stat *stat,
                      const void *data);

/* One read (OP_FIND: the names, OP_CHECK: a name's nodes, OP_OWNER: one
 * node), its index in r->arg. NULL, or why it could not be sent. */
static const char *list_send(struct zk_list *l, enum zk_op op, char *path, size_t index)
{
	zhandle_t *zh = l->s->c.zh;
	struct zk_req *r = NULL;
	char arg[24];
	int rc = ZOK;

	snprintf(arg, sizeof(arg), "%zu", index);
	if (path == NULL || (r = zk_req_new(&l->s->c, op, arg)) == NULL) {
		free(path);
		return "out of memory";
	}
	r->tag = l->tag;
	if (op == OP_FIND)
		rc = zoo_aget_children(zh, path, 0, names_done, r);
	else if (op == OP_CHECK)
		rc = zoo_aget_children(zh, path, 0, nodes_done, r);
	else
		rc = zoo_aget(zh, path, 0, node_done, r);
	free(path);
	if (rc != ZOK) {
		zk_req_free(r);
		return zerror(rc);
	}
	l->inflight++;
	return NULL;
}

static char *node_full_path(const struct zk_list *l, const struct list_node *nd)
{
	char *p;

	return asprintf(&p, "%s/%s/%s", l->s->c.path, l->names[nd->name], nd->child) < 0 ? NULL : p;
}

/* Sends what can be sent; answers the listing when nothing is left. */
static void list_pump(struct zk_list *l)
{
	struct lock_session *s = l->s;
	const char *err = NULL;

	while (!l->done && err == NULL && l->inflight < LIST_WINDOW) {
		if (!zkl_can_send(s)) {
			err = "not connected to ZooKeeper";
		} else if (l->all && !l->enumerated) {
			if (l->inflight > 0)
				break;
			err = list_send(l, OP_FIND, strdup(s->c.path), 0);
		} else if (l->next_name < l->nnames && l->nnodes < LOCK_LIST_MAX) {
			err = list_send(l, OP_CHECK, zk_child_path(&s->c, l->names[l->next_name]),
			                l->next_name);
			l->next_name++;
		} else if (l->next_node < l->nnodes) {
			err = list_send(l, OP_OWNER, node_full_path(l, &l->nodes[l->next_node]),
			                l->next_node);
			l->next_node++;
		} else {
			break;
		}
	}
	if (err != NULL)
		list_fail(l, err);
	else if (!l->done && l->inflight == 0)
		list_finish(l);
}

/* The listing a read answers and the read's index; NULL when the handle is
 * closing or the listing was answered already. r is freed either way. */
static struct zk_list *list_answer(struct zk_req *r, int rc, size_t *index)
{
	struct lock_session *s = zk_req_done(r, rc);
	struct zk_list *l;

	if (s == NULL)
		return NULL;
	l = list_of(s, r->tag);
	*index = strtoul(r->arg, NULL, 10);
	zk_req_free(r);
	if (l == NULL || l->done)
		return NULL;
	l->inflight--;
	if (rc != ZOK && rc != ZNONODE) {
		list_fail(l, zerror(rc));
		return NULL;
	}
	return l;
}

static void names_done(int rc, const struct String_vector *sv, const void *data)
{
	size_t index;
	struct zk_list *l = list_answer((struct zk_req *)(uintptr_t)data, rc, &index);

	if (l == NULL)
		return;
	for (int i = 0; rc == ZOK && i < sv->count; i++) {
		if (lock_name_valid(sv->data[i]) && !add_name(l, sv->data[i])) {
			list_fail(l, "out of memory");
			return;
		}
	}
	l->enumerated = true;
	sort_names(l);
	list_pump(l);
}

static void nodes_done(int rc, const struct String_vector *sv, const void *data)
{
	size_t index;
	struct zk_list *l = list_answer((struct zk_req *)(uintptr_t)data, rc, &index);

	if (l == NULL)
		return;
	if (rc == ZOK && !add_nodes(l, index, sv))
		list_fail(l, "out of memory");
	else
		list_pump(l);
}

static void node_done(int rc, const char *value, int value_len, const struct Stat *stat,
                      const void *data)
{
	size_t index;
	struct zk_list *l = list_answer((struct zk_req *)(uintptr_t)data, rc, &index);
	struct list_node *nd;

	if (l == NULL)
		return;
	nd = &l->nodes[index];
	if (rc == ZNONODE) {
		nd->gone = true;  /* released or deleted meanwhile: not there */
	} else if ((nd->owner = malloc(OWNER_MAX + 1)) == NULL) {
		list_fail(l, "out of memory");
		return;
	} else {
		zk_printable(nd->owner, OWNER_MAX + 1, value, value_len);
		nd->version = stat ? stat->version : 0;
	}
	list_pump(l);
}

static int by_name_seq(const void *a, const void *b)
{
	const struct list_node *x = a, *y = b;

	if (x->name != y->name)
		return x->name < y->name ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int by_node(const void *a, const void *b)
{
	return strcmp((*(struct lock_hold *const *)a)->node, (*(struct lock_hold *const *)b)->node);
}

static int node_is(const void *key, const void *elem)
{
	return strcmp(key, (*(struct lock_hold *const *)elem)->node);
}

/* The entries of a completely read listing, with this session's holds as
 * they are now (some may have been released while we read). */
static void answer_list(struct lock_session *s, struct zk_list *l)
{
	struct lock_entry *e = calloc(l->nnodes + 1, sizeof(*e));
	struct lock_hold **mine = NULL, **found;
	size_t n = 0, nmine = 0, name = SIZE_MAX;
	unsigned position = 0;
	bool ok = e != NULL;

	for (struct lock_hold *h = s->holds; ok && h; h = h->next)
		nmine += h->node != NULL && !h->released;
	if (ok && nmine > 0 && (ok = (mine = calloc(nmine, sizeof(*mine))) != NULL)) {
		nmine = 0;
		for (struct lock_hold *h = s->holds; h; h = h->next)
			if (h->node != NULL && !h->released)
				mine[nmine++] = h;
		qsort(mine, nmine, sizeof(*mine), by_node);
	}
	if (l->nnodes > 0)
		qsort(l->nodes, l->nnodes, sizeof(*l->nodes), by_name_seq);
	for (size_t i = 0; ok && i < l->nnodes; i++) {
		const struct list_node *nd = &l->nodes[i];
		struct lock_hold *h = NULL;
		char *key;

		if (nd->name != name) {
			name = nd->name;
			position = 0;
		}
		if (nd->gone || nd->owner == NULL)
			continue;
		if ((key = node_full_path(l, nd)) == NULL) {
			ok = false;
			break;
		}
		found = nmine ? bsearch(nd->child, mine, nmine, sizeof(*mine), node_is) : NULL;
		if (found != NULL && strcmp((*found)->name, l->names[nd->name]) == 0)
			h = *found;
		e[n++] = (struct lock_entry){
			.name = l->names[nd->name], .token = nd->seq + 1, .owner = nd->owner, .key = key,
			/* Others: the first, or a semaphore holder that marked its
			 * node; the rest lockd decides with the limit it knows. */
			.held = h ? (h->granted ? 1 : 0) : (position == 0 || nd->version > 0 ? 1 : -1),
			.position = position++, .mine = h,
		};
	}
	if (ok)
		l->cb(l->arg, e, n, l->truncated, NULL);
	else
		l->cb(l->arg, NULL, 0, false, "zk: listing locks: out of memory");
	for (size_t i = 0; i < n; i++)
		free((char *)e[i].key);
	free(e);
	free(mine);
}

/* Answers l (with an error unless it was read completely) and frees it. */
void zkl_deliver_list(struct lock_session *s, struct zk_list *l)
{
	if (l->prev)
		l->prev->next = l->next;
	else
		s->lists = l->next;
	if (l->next)
		l->next->prev = l->prev;
	zk_purge(&s->c, names_list, l);
	if (!l->done)
		snprintf(l->err, sizeof(l->err), "zk: listing locks: the session was closed");
	if (l->err[0] != '\0')
		l->cb(l->arg, NULL, 0, false, l->err);
	else
		answer_list(s, l);
	list_free(l);
}

/* Answers every listing now, with an error unless it was read completely. */
void zkl_deliver_lists(struct lock_session *s)
{
	while (s->lists)
		zkl_deliver_list(s, s->lists);
}

/* The handle closed with the listings' reads: those still reading fail. */
void zkl_fail_lists(struct lock_session *s, const char *why)
{
	for (struct zk_list *l = s->lists; l; l = l->next)
		if (!l->done)
			list_fail(l, why);
}

int zkl_list(struct lock_session *s, const char *const *names, size_t n, bool all,
             lock_list_cb cb, void *arg)
{
	struct zk_list *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!add_name(l, names[i])) {
			list_free(l);
			return -1;
		}
	}
	l->s = s;
	l->cb = cb;
	l->arg = arg;
	l->all = all;
	l->tag = ++s->next_tag;
	if (!all)
		sort_names(l);
	l->next = s->lists;
	if (s->lists)
		s->lists->prev = l;
	s->lists = l;
	/* Not connected: an error at once (lockd has its own timeout); its
	 * answer, as every other, is an event delivered from the loop. */
	if (s->c.closing)
		list_fail(l, "the session is closing");
	else
		list_pump(l);
	return 0;
}
