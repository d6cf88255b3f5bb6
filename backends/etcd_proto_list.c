/* The lock listings' wire format (etcd_lock_list.c's list()): the answers
 * to etcd_body_list_page and etcd_body_list_names, read into an etcd_list,
 * then cut, grouped and numbered for lockd. Pure, as etcd_proto.c.
 *
 * A listing reads the range over PREFIX/ page by page (500 keys a page in
 * etcd_lock_list.c), every page at the first one's revision so that they
 * make one view; with an empty prefix (locks among everything else at the
 * top of the keyspace) it reads only the names asked for, one range per
 * name in txns. Keys that are not "PREFIX/NAME/<id>" with a valid lock name
 * are skipped: other data may live under the prefix.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/etcd_proto.h"
#include "backends/lock.h"

/* The NAME of a lock key "PREFIX/NAME/<id>" (len bytes), or 0 when it is no
 * such key (other data under the prefix, deeper keys, invalid names). */
static size_t lock_key_name(const char *key, size_t len, const char *prefix)
{
	size_t plen = strlen(prefix);
	const char *rest = key + plen, *slash;

	if (len <= plen || memchr(key, '\0', len) != NULL || strncmp(key, prefix, plen) != 0 ||
	    (slash = memchr(rest, '/', len - plen)) == NULL)
		return 0;
	if (slash + 1 == key + len || memchr(slash + 1, '/', (size_t)(key + len - slash - 1)) != NULL ||
	    !lock_name_valid_n(rest, (size_t)(slash - rest)))
		return 0;
	return (size_t)(slash - rest);
}

static void list_kv_free(struct etcd_list_kv *e)
{
	free(e->name);
	free(e->key);
	free(e->value);
}

/* Drops the keys from n on. */
static void list_cut(struct etcd_list *l, size_t n)
{
	while (l->n > n)
		list_kv_free(&l->kv[--l->n]);
}

/* One kv of a range: appended, or skipped when it is not a lock key. */
static int list_kv(const json_t *kv, const char *prefix, struct etcd_list *l)
{
	struct etcd_list_kv e = { 0 };
	size_t klen, vlen, nlen;

	if (!json_is_object(kv) || (e.key = etcd_json_b64(kv, "key", &klen)) == NULL || klen == 0 ||
	    etcd_json_int64(kv, "create_revision", 0, &e.create_rev) < 0 || e.create_rev <= 0 ||
	    (e.value = etcd_json_b64(kv, "value", &vlen)) == NULL)
		goto bad;
	if ((nlen = lock_key_name(e.key, klen, prefix)) == 0) {
		list_kv_free(&e);
		return 0;
	}
	if ((e.name = strndup(e.key + strlen(prefix), nlen)) == NULL)
		goto bad;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct etcd_list_kv *nkv = realloc(l->kv, cap * sizeof(*nkv));
		if (nkv == NULL)
			goto bad;
		l->kv = nkv;
		l->cap = cap;
	}
	l->kv[l->n++] = e;
	return 0;
bad:
	list_kv_free(&e);
	return -1;
}

static int list_range(const json_t *range, const char *prefix, struct etcd_list *l)
{
	const json_t *kvs = json_object_get(range, "kvs"), *more = json_object_get(range, "more"), *kv;
	size_t i;

	if (!json_is_object(range) || (kvs != NULL && !json_is_array(kvs)) ||
	    (more != NULL && !json_is_boolean(more)))
		return -1;
	json_array_foreach(kvs, i, kv) {
		if (list_kv(kv, prefix, l) < 0)
			return -1;
	}
	return 0;
}

/* A malformed answer leaves l as it was: n0 keys, more0. */
static int list_malformed(struct etcd_list *l, size_t n0, bool more0, char *err, size_t errlen)
{
	list_cut(l, n0);
	l->more = more0;
	snprintf(err, errlen, "malformed lock list answer");
	return -1;
}

int etcd_parse_list_page(const json_t *range, const char *prefix, struct etcd_list *l, char *err,
                         size_t errlen)
{
	const json_t *kvs = json_object_get(range, "kvs");
	size_t n0 = l->n, nkv = json_array_size(kvs), after_len = 0;
	int64_t revision = l->revision;
	char *after = NULL;

	if (revision == 0 &&
	    (etcd_json_int64(json_object_get(range, "header"), "revision", 0, &revision) < 0 || revision <= 0))
		goto malformed;
	if (list_range(range, prefix, l) < 0)
		goto malformed;
	/* Where the next page starts; pages that do not move on are no pages. */
	if (nkv > 0 && (after = etcd_json_b64(json_array_get(kvs, nkv - 1), "key", &after_len)) == NULL)
		goto malformed;
	if (json_is_true(json_object_get(range, "more")) && nkv == 0)
		goto malformed;
	l->revision = revision;
	l->next_page = json_is_true(json_object_get(range, "more"));
	if (after != NULL) {
		free(l->after);
		l->after = after;
		l->after_len = after_len;
	}
	return 0;
malformed:
	free(after);
	return list_malformed(l, n0, l->more, err, errlen);
}

int etcd_parse_list_txn(const json_t *a, size_t n, const char *prefix, struct etcd_list *l, char *err,
                        size_t errlen)
{
	size_t n0 = l->n;
	bool more0 = l->more;

	for (size_t i = 0; i < n; i++) {
		const json_t *r = etcd_txn_response(a, i, "response_range");
		if (r == NULL || list_range(r, prefix, l) < 0)
			return list_malformed(l, n0, more0, err, errlen);
		if (json_is_true(json_object_get(r, "more")))
			l->more = true;
	}
	return 0;
}

static int cmp_list_kv(const void *pa, const void *pb)
{
	const struct etcd_list_kv *a = pa, *b = pb;
	int c = strcmp(a->name, b->name);

	if (c != 0)
		return c;
	if (a->create_rev != b->create_rev)
		return a->create_rev < b->create_rev ? -1 : 1;
	return strcmp(a->key, b->key);   /* created by one txn */
}

bool etcd_list_finish(struct etcd_list *l, size_t max)
{
	bool cut_after = l->n > max || l->next_page;

	list_cut(l, l->n < max ? l->n : max);
	if (cut_after) {
		size_t keep = l->n;
		while (keep > 0 && strcmp(l->kv[keep - 1].name, l->kv[l->n - 1].name) == 0)
			keep--;
		list_cut(l, keep);
	}
	if (l->n > 1)
		qsort(l->kv, l->n, sizeof(*l->kv), cmp_list_kv);
	for (size_t i = 0; i < l->n; i++)
		l->kv[i].position = i > 0 && strcmp(l->kv[i].name, l->kv[i - 1].name) == 0
		                  ? l->kv[i - 1].position + 1 : 0;
	return l->more || cut_after;
}

void etcd_list_free(struct etcd_list *l)
{
	list_cut(l, 0);
	free(l->kv);
	free(l->after);
	memset(l, 0, sizeof(*l));
}
