/* The etcd v3 JSON gateway's wire format: bodies we send, answers we parse.
 * Everything the server says is untrusted: any unexpected shape is an error
 * return, never a crash. The lock listings' answers are read in
 * etcd_proto_list.c. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/etcd_proto.h"

static const char b64chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *etcd_b64_encode(const void *data, size_t len)
{
	const unsigned char *in = data;
	char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		*o++ = b64chars[(v >> 18) & 63];
		*o++ = b64chars[(v >> 12) & 63];
		*o++ = i + 1 < len ? b64chars[(v >> 6) & 63] : '=';
		*o++ = i + 2 < len ? b64chars[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

static int b64val(char ch)
{
	const char *p = ch ? strchr(b64chars, ch) : NULL;

	return p ? (int)(p - b64chars) : -1;
}

char *etcd_b64_decode(const char *in, size_t inlen, size_t *outlen)
{
	char *out;
	size_t o = 0;

	*outlen = 0;
	if (inlen % 4 != 0)
		return NULL;
	if ((out = malloc(inlen / 4 * 3 + 1)) == NULL)
		return NULL;
	for (size_t i = 0; i < inlen; i += 4) {
		int v[4];
		int pad = 0;
		for (int k = 0; k < 4; k++) {
			if (in[i + k] == '=' && i + 4 == inlen && k >= 2) {
				v[k] = 0;
				pad++;
			} else if (pad || (v[k] = b64val(in[i + k])) < 0) {
				free(out);  /* a char after '=' or outside the alphabet */
				return NULL;
			}
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
		out[o++] = (char)(w >> 16);
		if (pad < 2)
			out[o++] = (char)(w >> 8 & 0xff);
		if (pad < 1)
			out[o++] = (char)(w & 0xff);
	}
	out[o] = '\0';
	*outlen = o;
	return out;
}

char *etcd_prefix_end(const char *prefix)
{
	size_t n = strlen(prefix);
	char *end = strdup(prefix);

	if (end == NULL)
		return NULL;
	while (n > 0) {
		if ((unsigned char)end[n - 1] < 0xff) {
			end[n - 1]++;
			end[n] = '\0';
			return end;
		}
		n--;
	}
	end[0] = '\0';      /* all 0xff: no end, etcd reads "\0" as "everything" */
	return end;
}

int etcd_json_int64(const json_t *obj, const char *field, int64_t def, int64_t *out)
{
	const json_t *v = json_is_object(obj) ? json_object_get(obj, field) : NULL;

	*out = def;
	if (v == NULL || json_is_null(v))
		return 0;
	if (json_is_integer(v)) {
		*out = (int64_t)json_integer_value(v);
		return 0;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		char *end;
		errno = 0;
		long long n = strtoll(s, &end, 10);
		if (errno || end == s || *end != '\0')
			return -1;
		*out = (int64_t)n;
		return 0;
	}
	return -1;
}

char *etcd_json_b64(const json_t *obj, const char *field, size_t *n)
{
	const json_t *v = json_object_get(obj, field);

	*n = 0;
	if (v == NULL)          /* proto3 leaves out empty values */
		return strdup("");
	if (!json_is_string(v))
		return NULL;
	return etcd_b64_decode(json_string_value(v), json_string_length(v), n);
}

static char *b64_field(const json_t *obj, const char *field)
{
	size_t n;

	return etcd_json_b64(obj, field, &n);
}

enum etcd_answer etcd_parse_answer(const char *body, size_t len, json_t **out, int *grpc_code,
                                   char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root = json_loadb(body, len, 0, &jerr), *e, *res;
	int64_t code = 0;

	*out = NULL;
	*grpc_code = 0;
	if (root == NULL || !json_is_object(root)) {
		snprintf(err, errlen, "malformed answer: %s", root ? "not a JSON object" : jerr.text);
		json_decref(root);
		return ETCD_MALFORMED;
	}
	/* LeaseGrantResponse has an "error" string of its own: a server error
	 * also has a "code" (or is the stream form, an object). */
	e = json_object_get(root, "error");
	if (e != NULL && (json_is_object(e) || json_object_get(root, "code") != NULL)) {
		/* Unary calls: {"error":"msg","code":N}; streams: {"error":{"grpc_code":N,"message":...}}. */
		const json_t *holder = json_is_object(e) ? e : root;
		const json_t *msg = json_object_get(holder, json_is_object(e) ? "message" : "error");
		if (etcd_json_int64(holder, json_is_object(e) ? "grpc_code" : "code", 0, &code) < 0)
			code = 0;
		*grpc_code = (int)code;
		snprintf(err, errlen, "server error: %s (code %d)",
		         json_is_string(msg) ? json_string_value(msg) : "no message", (int)code);
		json_decref(root);
		return ETCD_SERVER_ERROR;
	}
	res = json_object_get(root, "result");
	if (res != NULL) {
		if (!json_is_object(res)) {
			snprintf(err, errlen, "malformed answer: result is not an object");
			json_decref(root);
			return ETCD_MALFORMED;
		}
		json_incref(res);
		json_decref(root);
		root = res;
	}
	*out = root;
	return ETCD_OK;
}

int etcd_parse_status_revokes_early(const json_t *a, char *ver, size_t verlen)
{
	const char *v = json_string_value(json_object_get(a, "version"));
	unsigned major, minor, patch;

	if (v == NULL || sscanf(v, "%u.%u.%u", &major, &minor, &patch) != 3)
		return -1;
	snprintf(ver, verlen, "%s", v);
	if (major != 3)
		return major < 3;
	if (minor == 4)
		return patch < 28;
	if (minor == 5)
		return patch < 11;
	return minor < 4;
}

int etcd_parse_grant(const json_t *a, int64_t *id, int64_t *ttl, char *err, size_t errlen)
{
	const json_t *e = json_object_get(a, "error");

	if (json_is_string(e) && json_string_length(e) > 0) {
		snprintf(err, errlen, "lease grant refused: %s", json_string_value(e));
		return -1;
	}
	if (etcd_json_int64(a, "ID", 0, id) < 0 || etcd_json_int64(a, "TTL", 0, ttl) < 0 ||
	    *id <= 0 || *ttl <= 0) {
		snprintf(err, errlen, "malformed lease grant answer (no ID or TTL)");
		return -1;
	}
	return 0;
}

int etcd_parse_keepalive(const json_t *a, int64_t *ttl, char *err, size_t errlen)
{
	if (etcd_json_int64(a, "TTL", 0, ttl) < 0) {
		snprintf(err, errlen, "malformed keepalive answer (TTL not an integer)");
		return -1;
	}
	if (*ttl < 0)
		*ttl = 0;
	return 0;
}

const json_t *etcd_txn_response(const json_t *a, size_t i, const char *kind)
{
	const json_t *rs = json_object_get(a, "responses");

	if (!json_is_array(rs) || i >= json_array_size(rs))
		return NULL;
	const json_t *r = json_object_get(json_array_get(rs, i), kind);
	return json_is_object(r) ? r : NULL;
}

/* kvs[0] of a range answer: NULL if there is none; -1 in *bad if malformed. */
static const json_t *first_kv(const json_t *range, int *bad)
{
	const json_t *kvs = json_object_get(range, "kvs");

	if (kvs == NULL || (json_is_array(kvs) && json_array_size(kvs) == 0))
		return NULL;
	if (!json_is_array(kvs) || !json_is_object(json_array_get(kvs, 0))) {
		*bad = -1;
		return NULL;
	}
	return json_array_get(kvs, 0);
}

int etcd_parse_campaign(const json_t *a, int64_t *create_rev, char *err, size_t errlen)
{
	const json_t *succeeded = json_object_get(a, "succeeded");
	int bad = 0;

	*create_rev = 0;
	if (json_is_true(succeeded)) {
		/* We created the key: its create revision is the txn's revision. */
		if (etcd_json_int64(json_object_get(a, "header"), "revision", 0, create_rev) < 0)
			*create_rev = 0;
	} else {
		const json_t *kv = first_kv(etcd_txn_response(a, 0, "response_range"), &bad);
		if (kv && etcd_json_int64(kv, "create_revision", 0, create_rev) < 0)
			*create_rev = 0;
	}
	if (*create_rev <= 0) {
		snprintf(err, errlen, "malformed campaign answer (no create revision)");
		return -1;
	}
	return 0;
}

int etcd_parse_check(const json_t *a, bool with_handover, struct etcd_check *c, char *err,
                     size_t errlen)
{
	const json_t *own = etcd_txn_response(a, 0, "response_range");
	const json_t *lead = etcd_txn_response(a, 1, "response_range");
	const json_t *kv, *ho = NULL;
	size_t n = json_array_size(json_object_get(a, "responses"));
	int bad = 0;

	memset(c, 0, sizeof(*c));
	if (own == NULL || lead == NULL ||
	    etcd_json_int64(json_object_get(a, "header"), "revision", 0, &c->revision) < 0 ||
	    c->revision <= 0)
		goto malformed;
	if ((kv = first_kv(own, &bad)) != NULL) {
		c->own_exists = true;
		if (etcd_json_int64(kv, "create_revision", 0, &c->own_rev) < 0 || c->own_rev <= 0)
			goto malformed;
	}
	if ((kv = first_kv(lead, &bad)) != NULL && (c->leader_id = b64_field(kv, "value")) == NULL)
		goto malformed;
	if (with_handover) {
		/* The handover range comes last, after the optional predecessor. */
		if (n < 3 || (ho = etcd_txn_response(a, n - 1, "response_range")) == NULL)
			goto malformed;
		if ((kv = first_kv(ho, &bad)) != NULL && (c->handover = b64_field(kv, "value")) == NULL)
			goto malformed;
		n--;
	}
	const json_t *pred = n > 2 ? etcd_txn_response(a, 2, "response_range") : NULL;
	if (pred && (kv = first_kv(pred, &bad)) != NULL) {
		if ((c->pred_key = b64_field(kv, "key")) == NULL || c->pred_key[0] == '\0' ||
		    etcd_json_int64(kv, "create_revision", 0, &c->pred_rev) < 0 || c->pred_rev <= 0)
			goto malformed;
	}
	if (bad)
		goto malformed;
	return 0;
malformed:
	etcd_check_free(c);
	snprintf(err, errlen, "malformed election check answer");
	return -1;
}

void etcd_check_free(struct etcd_check *c)
{
	free(c->leader_id);
	free(c->pred_key);
	free(c->handover);
	c->leader_id = c->pred_key = c->handover = NULL;
}

/* The create revision of the single key a range answer holds; 0 if none. */
static int range_rev(const json_t *range, int64_t *rev)
{
	int bad = 0;
	const json_t *kv = first_kv(range, &bad);

	*rev = 0;
	if (range == NULL || bad || (kv && (etcd_json_int64(kv, "create_revision", 0, rev) < 0 || *rev <= 0)))
		return -1;
	return 0;
}

int etcd_parse_keys(const json_t *a, size_t n, int64_t *create_revs, char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		if (range_rev(etcd_txn_response(a, i, "response_range"), &create_revs[i]) < 0) {
			snprintf(err, errlen, "malformed key check answer");
			return -1;
		}
	}
	return 0;
}

int etcd_parse_lock_create(const json_t *a, int64_t *create_rev, bool *among_first, char *err,
                           size_t errlen)
{
	const json_t *first = etcd_txn_response(a, 1, "response_range"), *kvs, *kv;
	size_t i;

	*among_first = false;
	if (etcd_parse_campaign(a, create_rev, err, errlen) < 0)
		return -1;
	kvs = first ? json_object_get(first, "kvs") : NULL;
	if (first == NULL || (kvs != NULL && !json_is_array(kvs))) {
		snprintf(err, errlen, "malformed lock create answer");
		return -1;
	}
	json_array_foreach(kvs, i, kv) {
		int64_t rev;
		if (etcd_json_int64(kv, "create_revision", 0, &rev) == 0 && rev == *create_rev)
			*among_first = true;
	}
	return 0;
}

int etcd_parse_lock_check(const json_t *a, struct etcd_lock_check *c, char *err, size_t errlen)
{
	const json_t *before = etcd_txn_response(a, 1, "response_range"), *kvs, *kv;
	size_t i;

	memset(c, 0, sizeof(*c));
	if (etcd_json_int64(json_object_get(a, "header"), "revision", 0, &c->revision) < 0 ||
	    c->revision <= 0 || range_rev(etcd_txn_response(a, 0, "response_range"), &c->own_rev) < 0)
		goto malformed;
	kvs = before ? json_object_get(before, "kvs") : NULL;
	if (kvs == NULL)
		return 0;
	if (!json_is_array(kvs) || (c->before = calloc(json_array_size(kvs) + 1, sizeof(char *))) == NULL)
		goto malformed;
	json_array_foreach(kvs, i, kv) {
		if (!json_is_object(kv) || (c->before[i] = b64_field(kv, "key")) == NULL ||
		    c->before[i][0] == '\0')
			goto malformed;
		c->n_before++;
	}
	return 0;
malformed:
	etcd_lock_check_free(c);
	snprintf(err, errlen, "malformed lock check answer");
	return -1;
}

void etcd_lock_check_free(struct etcd_lock_check *c)
{
	for (size_t i = 0; c->before && c->before[i]; i++)
		free(c->before[i]);
	free(c->before);
	c->before = NULL;
	c->n_before = 0;
}

enum etcd_watch_msg etcd_parse_watch_line(const char *line, size_t len)
{
	json_t *m;
	int code;
	char err[160];
	enum etcd_watch_msg r = ETCD_WATCH_NOTHING;

	if (etcd_parse_answer(line, len, &m, &code, err, sizeof(err)) != ETCD_OK)
		return ETCD_WATCH_BAD;
	if (json_is_true(json_object_get(m, "canceled"))) {
		r = ETCD_WATCH_CANCELED;
	} else {
		const json_t *evs = json_object_get(m, "events"), *e;
		size_t i;
		if (evs != NULL && !json_is_array(evs))
			r = ETCD_WATCH_BAD;
		json_array_foreach(evs, i, e) {
			const json_t *t = json_object_get(e, "type");
			if (!json_is_object(e) || (t != NULL && !json_is_string(t))) {
				r = ETCD_WATCH_BAD;
				break;
			}
			if (t != NULL && strcmp(json_string_value(t), "DELETE") == 0)
				r = ETCD_WATCH_DELETED;
		}
	}
	json_decref(m);
	return r;
}

int etcd_lines_feed(struct etcd_lines *l, const char *data, size_t n, etcd_line_fn fn, void *arg)
{
	while (n > 0) {
		const char *nl = memchr(data, '\n', n);
		size_t take = nl ? (size_t)(nl - data) : n;

		if (l->len + take > l->max)
			return -1;
		if (l->len + take + 1 > l->cap) {
			size_t cap = (l->len + take + 1) * 2;
			char *nb = realloc(l->buf, cap);
			if (nb == NULL)
				return -1;
			l->buf = nb;
			l->cap = cap;
		}
		memcpy(l->buf + l->len, data, take);
		l->len += take;
		if (nl == NULL)
			return 0;
		l->buf[l->len] = '\0';
		size_t linelen = l->len;
		l->len = 0;
		if (linelen > 0 && fn(l->buf, linelen, arg) != 0)
			return -1;
		data = nl + 1;
		n -= take + 1;
	}
	return 0;
}

void etcd_lines_reset(struct etcd_lines *l)
{
	free(l->buf);
	l->buf = NULL;
	l->len = l->cap = 0;
}

/* json_t -> text, consuming the reference. */
static char *dump(json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	return s;
}

/* A base64 JSON string of s, or NULL. */
static json_t *b64_json(const char *s)
{
	char *e = etcd_b64_encode(s, strlen(s));
	json_t *j = e ? json_string(e) : NULL;

	free(e);
	return j;
}

static json_t *i64_json(int64_t v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%" PRId64, v);
	return json_string(buf);
}

char *etcd_body_grant(int64_t ttl_s)
{
	return dump(json_pack("{s:I}", "TTL", (json_int_t)ttl_s));
}

char *etcd_body_lease(int64_t lease_id)
{
	return dump(json_pack("{s:o}", "ID", i64_json(lease_id)));
}

char *etcd_body_campaign(const char *key, const char *value, int64_t lease_id)
{
	return dump(json_pack("{s:[{s:s,s:s,s:o,s:s}],s:[{s:{s:o,s:o,s:o}}],s:[{s:{s:o}}]}",
		"compare", "target", "CREATE", "result", "EQUAL", "key", b64_json(key),
		           "create_revision", "0",
		"success", "request_put", "key", b64_json(key), "value", b64_json(value),
		           "lease", i64_json(lease_id),
		"failure", "request_range", "key", b64_json(key)));
}

/* A range over prefix sorted by create revision, at most limit keys (only
 * their names and revisions when keys_only). */
static json_t *range_sorted(const char *prefix, const char *end, const char *order, int64_t max_create,
                            unsigned limit, bool keys_only)
{
	json_t *r = json_pack("{s:o,s:o,s:o,s:s,s:s}", "key", b64_json(prefix), "range_end", b64_json(end),
	                      "limit", i64_json(limit), "sort_order", order, "sort_target", "CREATE");

	if (r && max_create > 0)
		json_object_set_new(r, "max_create_revision", i64_json(max_create));
	if (r && keys_only)
		json_object_set_new(r, "keys_only", json_true());
	return json_pack("{s:o}", "request_range", r);
}

char *etcd_body_check(const char *prefix, const char *key, int64_t my_rev, const char *handover_key)
{
	char *end = etcd_prefix_end(prefix);
	json_t *ops;

	if (end == NULL)
		return NULL;
	ops = json_pack("[{s:{s:o}},o]", "request_range", "key", b64_json(key),
	                range_sorted(prefix, end, "ASCEND", 0, 1, false));
	if (ops && my_rev > 1)
		json_array_append_new(ops, range_sorted(prefix, end, "DESCEND", my_rev - 1, 1, false));
	if (ops && handover_key)
		json_array_append_new(ops, json_pack("{s:{s:o}}", "request_range", "key", b64_json(handover_key)));
	free(end);
	return dump(json_pack("{s:o}", "success", ops));
}

char *etcd_body_lock_check(const char *prefix, const char *key, int64_t my_rev, unsigned limit)
{
	char *end = etcd_prefix_end(prefix);
	json_t *ops;

	if (end == NULL)
		return NULL;
	ops = json_pack("[{s:{s:o,s:b}}]", "request_range", "key", b64_json(key), "keys_only", 1);
	if (ops && my_rev > 1)
		json_array_append_new(ops, range_sorted(prefix, end, "DESCEND", my_rev - 1, limit, true));
	free(end);
	return dump(json_pack("{s:o}", "success", ops));
}

char *etcd_body_lock_create(const char *prefix, const char *key, const char *value, int64_t lease_id,
                            unsigned limit)
{
	char *end = etcd_prefix_end(prefix);
	json_t *txn = NULL, *ops;
	char *body = etcd_body_campaign(key, value, lease_id);

	if (end != NULL && body != NULL && (txn = json_loads(body, 0, NULL)) != NULL) {
		for (int i = 0; i < 2; i++) {
			ops = json_object_get(txn, i ? "failure" : "success");
			if (json_array_append_new(ops, range_sorted(prefix, end, "ASCEND", 0, limit, true)) < 0) {
				json_decref(txn);
				txn = NULL;
				break;
			}
		}
	}
	free(end);
	free(body);
	return dump(txn);
}

char *etcd_body_keys(const char *const *keys, size_t n)
{
	json_t *ops = json_array();

	for (size_t i = 0; ops && i < n; i++) {
		if (json_array_append_new(ops, json_pack("{s:{s:o,s:b}}", "request_range", "key",
		                                         b64_json(keys[i]), "keys_only", 1)) < 0) {
			json_decref(ops);
			ops = NULL;
		}
	}
	return dump(json_pack("{s:o}", "success", ops));
}

char *etcd_body_list_page(const char *prefix, const char *after, size_t after_len, unsigned limit,
                          int64_t revision)
{
	char *end = etcd_prefix_end(prefix), *from = NULL, *from64 = NULL;
	json_t *r = NULL;

	/* The first key after `after` is `after` followed by a zero byte. */
	if (after != NULL && (from = malloc(after_len + 1)) != NULL) {
		memcpy(from, after, after_len);
		from[after_len] = '\0';
		from64 = etcd_b64_encode(from, after_len + 1);
	}
	if (end != NULL && (after == NULL || from64 != NULL))
		r = json_pack("{s:o,s:o,s:o}", "key", after ? json_string(from64) : b64_json(prefix),
		              "range_end", b64_json(end), "limit", i64_json(limit));
	if (r != NULL && revision > 0)
		json_object_set_new(r, "revision", i64_json(revision));
	free(end);
	free(from);
	free(from64);
	return dump(r);
}

char *etcd_body_list_names(const char *prefix, const char *const *names, size_t n, unsigned limit)
{
	json_t *ops = json_array();

	for (size_t i = 0; ops && i < n; i++) {
		char *pfx = NULL, *end = NULL;
		if (asprintf(&pfx, "%s%s/", prefix, names[i]) < 0)
			pfx = NULL;
		if (pfx == NULL || (end = etcd_prefix_end(pfx)) == NULL ||
		    json_array_append_new(ops, range_sorted(pfx, end, "ASCEND", 0, limit, false)) < 0) {
			json_decref(ops);
			ops = NULL;
		}
		free(pfx);
		free(end);
	}
	return dump(json_pack("{s:o}", "success", ops));
}

static json_t *watch_request(const char *key, int64_t start_rev)
{
	return json_pack("{s:{s:o,s:o,s:[s]}}", "create_request", "key", b64_json(key),
	                 "start_revision", i64_json(start_rev), "filters", "NOPUT");
}

char *etcd_body_watch(const char *key, int64_t start_rev)
{
	return dump(watch_request(key, start_rev));
}

char *etcd_body_watch_keys(const char *const *keys, size_t n, int64_t start_rev)
{
	char *out = NULL;
	size_t len = 0;

	for (size_t i = 0; i < n; i++) {
		char *one = dump(watch_request(keys[i], start_rev));
		size_t l = one ? strlen(one) : 0;
		char *nb = one ? realloc(out, len + l + 2) : NULL;
		if (nb == NULL) {
			free(one);
			free(out);
			return NULL;
		}
		out = nb;
		memcpy(out + len, one, l);
		len += l;
		out[len++] = '\n';
		out[len] = '\0';
		free(one);
	}
	return out;
}

char *etcd_body_handover(const char *record_key, const char *record, int64_t lease_id,
                         const char *my_key)
{
	return dump(json_pack("{s:[{s:{s:o,s:o,s:o}},{s:{s:o}}]}", "success",
		"request_put", "key", b64_json(record_key), "value", b64_json(record),
		               "lease", i64_json(lease_id),
		"request_delete_range", "key", b64_json(my_key)));
}

char *etcd_body_handover_clear(const char *record_key, const char *record)
{
	return dump(json_pack("{s:[{s:o,s:s,s:s,s:o}],s:[{s:{s:o}}]}",
		"compare", "key", b64_json(record_key), "target", "VALUE", "result", "EQUAL",
		           "value", b64_json(record),
		"success", "request_delete_range", "key", b64_json(record_key)));
}

char *etcd_body_delete(const char *key)
{
	return dump(json_pack("{s:o}", "key", b64_json(key)));
}

char *etcd_body_auth(const char *user, const char *password)
{
	return dump(json_pack("{s:s,s:s}", "name", user, "password", password));
}
