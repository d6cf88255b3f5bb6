/* ZooKeeper backend: URL parsing and candidate-node arithmetic (no I/O
 * except the guid's /dev/urandom read). */
#include <ctype.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/backend.h"
#include "backends/zk.h"
#include "common/clock.h"
#include "common/duration.h"

/* Each of "host:port,host:port" must name a host and a port in 1..65535. */
static int check_hosts(const char *hosts, char *err, size_t errlen)
{
	const char *p = hosts;

	if (*p == '\0') {
		snprintf(err, errlen, "zk URL has no servers: write zk://HOST:PORT[,HOST:PORT...]/PATH");
		return -1;
	}
	while (*p) {
		const char *end = strchr(p, ','), *colon;
		size_t len = end ? (size_t)(end - p) : strlen(p);
		long port = 0;
		size_t i;

		colon = memrchr(p, ':', len);
		if (colon == NULL || colon == p || (size_t)(colon - p) + 1 >= len)
			goto bad;
		for (i = (size_t)(colon - p) + 1; i < len; i++) {
			if (!isdigit((unsigned char)p[i]) || port > 65535)
				goto bad;
			port = port * 10 + (p[i] - '0');
		}
		if (port < 1 || port > 65535)
			goto bad;
		p += len + (end ? 1 : 0);
		if (end && *p == '\0')
			goto bad;
		continue;
bad:
		snprintf(err, errlen, "zk URL server '%.*s' is not HOST:PORT (port 1-65535)", (int)len, p);
		return -1;
	}
	return 0;
}

/* ZooKeeper paths: '/'-separated non-empty components, no "." or "..". */
static int check_path(const char *path, char *err, size_t errlen)
{
	const char *p = path;

	if (strcmp(path, "/zookeeper") == 0 || strncmp(path, "/zookeeper/", 11) == 0) {
		snprintf(err, errlen, "zk path '%s' is inside ZooKeeper's reserved /zookeeper tree", path);
		return -1;
	}
	while (*p == '/') {
		const char *next = strchr(p + 1, '/');
		size_t len = next ? (size_t)(next - p - 1) : strlen(p + 1);

		if (len == 0 || (len == 1 && p[1] == '.') || (len == 2 && p[1] == '.' && p[2] == '.')) {
			snprintf(err, errlen, "zk path '%s' has an empty, '.' or '..' component", path);
			return -1;
		}
		for (size_t i = 1; i <= len; i++) {
			if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f) {
				snprintf(err, errlen, "zk path '%s' contains a control character", path);
				return -1;
			}
		}
		if (next == NULL)
			return 0;
		p = next;
	}
	snprintf(err, errlen, "zk path '%s' is not absolute", path);
	return -1;
}

int zk_parse_url(const char *url, const char *name, char **hosts, char **path,
                 char *err, size_t errlen)
{
	char *h = NULL, *rel = NULL, *abs = NULL, *base;
	size_t len;
	int rc;

	*hosts = *path = NULL;
	base = strndup(url, strcspn(url, "?"));
	if (base == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	rc = backend_split_url(base, &h, &rel, err, errlen);
	free(base);
	if (rc < 0)
		return -1;
	if (check_hosts(h, err, errlen) < 0)
		goto fail;
	len = strlen(rel);
	while (len > 0 && rel[len - 1] == '/')
		rel[--len] = '\0';
	if (len == 0) {
		if (name == NULL || *name == '\0' || strchr(name, '/') != NULL) {
			snprintf(err, errlen, "zk URL '%s' has no path and the election name cannot be one: "
			         "write zk://HOST:PORT/PATH", url);
			goto fail;
		}
		if (asprintf(&abs, "/%s", name) < 0)
			abs = NULL;
	} else if (asprintf(&abs, "/%s", rel) < 0) {
		abs = NULL;
	}
	if (abs == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (check_path(abs, err, errlen) < 0)
		goto fail;
	free(rel);
	*hosts = h;
	*path = abs;
	return 0;
fail:
	free(h);
	free(rel);
	free(abs);
	return -1;
}

int zk_url_tick(const char *url, int64_t default_ns, int64_t *tick_ns, char *err, size_t errlen)
{
	const char *q = strchr(url, '?');

	*tick_ns = default_ns;
	if (q == NULL || q[1] == '\0')
		return 0;
	q++;
	if (strncmp(q, "tick=", 5) != 0 || strchr(q, '&') != NULL || duration_parse(q + 5, tick_ns) < 0 ||
	    *tick_ns < NS_PER_MS || *tick_ns > 60 * NS_PER_SEC) {
		snprintf(err, errlen, "zk: unknown URL option '%s': the only one is tick=DURATION, the "
		         "servers' tickTime (1ms to 60s), as in zk://HOST:2181/PATH?tick=2s", q);
		return -1;
	}
	return 0;
}

int64_t zk_node_seq(const char *name)
{
	size_t len = strlen(name), start = len;
	int64_t seq = 0;

	while (start > 0 && isdigit((unsigned char)name[start - 1]))
		start--;
	/* The server appends exactly ten digits; fewer is not a sequential node. */
	if (len - start < 10 || len - start > 18)
		return -1;
	for (size_t i = start; i < len; i++)
		seq = seq * 10 + (name[i] - '0');
	return seq;
}

void zk_view_of(const char *const *children, int n, const char *own_name, struct zk_view *v)
{
	int64_t low = -1, own = -1, pred = -1;

	v->lowest = v->own = v->pred = -1;
	for (int i = 0; i < n; i++) {
		if (own_name != NULL && strcmp(children[i], own_name) == 0) {
			v->own = i;
			own = zk_node_seq(children[i]);
		}
	}
	for (int i = 0; i < n; i++) {
		int64_t s = zk_node_seq(children[i]);

		if (s < 0)
			continue;
		if (low < 0 || s < low) {
			low = s;
			v->lowest = i;
		}
		if (own >= 0 && s < own && s > pred) {
			pred = s;
			v->pred = i;
		}
	}
}

int zk_find_guid(const char *const *children, int n, const char *guid)
{
	for (int i = 0; i < n; i++)
		if (strstr(children[i], guid) != NULL)
			return i;
	return -1;
}

int zk_make_guid(char out[ZK_GUID_LEN + 1])
{
	unsigned char r[16];
	ssize_t got;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	got = read(fd, r, sizeof(r));
	close(fd);
	if (got != (ssize_t)sizeof(r))
		return -1;
	r[6] = (unsigned char)((r[6] & 0x0f) | 0x40); /* version 4 */
	r[8] = (unsigned char)((r[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	snprintf(out, ZK_GUID_LEN + 1,
	         "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
	         r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7],
	         r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]);
	return 0;
}

int zk_lock_view(const char *const *children, int n, const char *own_name, unsigned limit,
                 int *rank, int *watch)
{
	int64_t own = -1, below_max = -1;
	int own_i = -1, nw = 0, pred = -1;

	*rank = 0;
	for (int i = 0; i < n && own_i < 0; i++)
		if (strcmp(children[i], own_name) == 0)
			own_i = i;
	if (own_i < 0 || (own = zk_node_seq(own_name)) < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		int64_t s = zk_node_seq(children[i]);

		if (s < 0 || s >= own)
			continue;
		watch[(*rank)++] = i;
		if (s > below_max) {
			below_max = s;
			pred = i;
		}
	}
	if ((unsigned)*rank < limit)
		nw = 0;                    /* granted: nothing to wait for */
	else if ((unsigned)*rank == limit)
		nw = *rank;                /* first in line: every holder below us */
	else
		watch[nw++] = pred;        /* behind another waiter: just that one */
	return nw;
}

int64_t zk_lock_node_seq(const char *name)
{
	static const char tail[] = "lock-";
	size_t len = strlen(name), start = len, tl = sizeof(tail) - 1;
	int64_t seq = zk_node_seq(name);

	if (seq < 0)
		return -1;
	while (start > 0 && isdigit((unsigned char)name[start - 1]))
		start--;
	if (start < tl || memcmp(name + start - tl, tail, tl) != 0 ||
	    (start > tl && name[start - tl - 1] != '-'))
		return -1;
	return seq;
}

struct seq_index {
	int64_t seq;
	int i;
};

static int by_seq(const void *a, const void *b)
{
	const struct seq_index *x = a, *y = b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int zk_lock_nodes(const char *const *children, int n, int *idx, int64_t *seq)
{
	struct seq_index *v = malloc(((size_t)n + 1) * sizeof(*v));
	int k = 0;

	if (v == NULL)
		return -1;
	for (int i = 0; i < n; i++) {
		v[k].seq = zk_lock_node_seq(children[i]);
		v[k].i = i;
		k += v[k].seq >= 0;
	}
	qsort(v, (size_t)k, sizeof(*v), by_seq);
	for (int j = 0; j < k; j++) {
		idx[j] = v[j].i;
		seq[j] = v[j].seq;
	}
	free(v);
	return k;
}

/* Length of the valid UTF-8 sequence at p (avail bytes), 0 if invalid:
 * no overlong forms, surrogates or code points above U+10FFFF. */
static int utf8_seq(const unsigned char *p, int avail)
{
	unsigned char b = p[0], lo = 0x80, hi = 0xbf;
	int n;

	if (b >= 0xc2 && b <= 0xdf)
		n = 2;
	else if (b >= 0xe0 && b <= 0xef)
		n = 3;
	else if (b >= 0xf0 && b <= 0xf4)
		n = 4;
	else
		return 0;
	if (b == 0xe0)
		lo = 0xa0;
	else if (b == 0xed)
		hi = 0x9f;
	else if (b == 0xf0)
		lo = 0x90;
	else if (b == 0xf4)
		hi = 0x8f;
	if (avail < n || p[1] < lo || p[1] > hi)
		return 0;
	for (int i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

void zk_printable(char *out, size_t outlen, const char *data, int len)
{
	const unsigned char *p = (const unsigned char *)data;
	size_t o = 0;
	int i = 0;

	if (outlen == 0)
		return;
	while (data != NULL && i < len) {
		int n = p[i] < 0x80 ? 1 : utf8_seq(p + i, len - i);
		/* C0 and C1 controls, DEL; an invalid byte is replaced alone. */
		bool ok = n > 1 ? !(p[i] == 0xc2 && p[i + 1] < 0xa0) : n == 1 && p[i] >= 0x20 && p[i] != 0x7f;
		size_t k = ok ? (size_t)n : 1;

		if (o + k > outlen - 1)
			break;
		if (ok)
			memcpy(out + o, p + i, k);
		else
			out[o] = '?';
		o += k;
		i += n > 0 ? n : 1;
	}
	out[o] = '\0';
}
