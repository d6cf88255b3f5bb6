/* Bodies and answers of Consul's HTTP API (see consul_proto.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "backends/consul_proto.h"
#include "backends/etcd_proto.h"   /* etcd_b64_decode */
#include "common/clock.h"
#include "common/duration.h"

char *consul_body_session(const char *name, int64_t ttl_s, int64_t lock_delay_ms, const char *behavior)
{
	char ttl[32], delay[32];
	json_t *o;
	char *out;

	snprintf(ttl, sizeof(ttl), "%" PRId64 "s", ttl_s);
	snprintf(delay, sizeof(delay), "%" PRId64 "ms", lock_delay_ms);
	o = json_pack("{s:s, s:s, s:s, s:s, s:[], s:[]}", "Name", name, "TTL", ttl, "LockDelay", delay,
	              "Behavior", behavior, "NodeChecks", "Checks");
	if (o == NULL)
		return NULL;
	out = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return out;
}

static json_t *load(const char *body, size_t len, char *err, size_t errlen)
{
	json_error_t je;
	json_t *a = json_loadb(body, len, JSON_DECODE_ANY, &je);

	if (a == NULL)
		snprintf(err, errlen, "malformed answer from Consul: %s", je.text);
	return a;
}

int consul_parse_session(const char *body, size_t len, char **id, char *err, size_t errlen)
{
	json_t *a = load(body, len, err, errlen), *v;

	*id = NULL;
	if (a == NULL)
		return -1;
	v = json_object_get(a, "ID");
	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 128) {
		snprintf(err, errlen, "malformed answer from Consul: no session ID");
		json_decref(a);
		return -1;
	}
	*id = strdup(json_string_value(v));
	json_decref(a);
	if (*id == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static bool blank(const char *body, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (body[i] != ' ' && body[i] != '\n' && body[i] != '\r' && body[i] != '\t')
			return false;
	return true;
}

int consul_parse_renew(const char *body, size_t len, char *err, size_t errlen)
{
	json_t *a;
	int rc;

	if (blank(body, len))
		return 0;
	if ((a = load(body, len, err, errlen)) == NULL)
		return -1;
	if (json_is_null(a) || (json_is_array(a) && json_array_size(a) == 0)) {
		rc = 0;
	} else if (json_is_array(a) && json_is_object(json_array_get(a, 0)) &&
	           json_is_string(json_object_get(json_array_get(a, 0), "ID"))) {
		rc = 1;
	} else {
		snprintf(err, errlen, "malformed answer from Consul to a session renewal");
		rc = -1;
	}
	json_decref(a);
	return rc;
}

int consul_parse_bool(const char *body, size_t len)
{
	while (len > 0 && (body[len - 1] == '\n' || body[len - 1] == '\r' || body[len - 1] == ' '))
		len--;
	if (len == 4 && memcmp(body, "true", 4) == 0)
		return 1;
	if (len == 5 && memcmp(body, "false", 5) == 0)
		return 0;
	return -1;
}

/* any_depth: every "Flags" key of any object (their values are not kept);
 * otherwise those of the objects directly inside a top-level array. */
static int scrub(char *text, size_t len, uint64_t *flags, bool *has, size_t max, bool any_depth)
{
	int depth = 0;          /* 1 = in the top-level array, 2 = in one of its objects */
	bool top_array = false;
	long obj = -1;

	for (size_t i = 0; i < max; i++) {
		flags[i] = 0;
		has[i] = false;
	}
	for (size_t i = 0; i < len; i++) {
		char c = text[i];
		if (c == '"') {
			size_t s = ++i;
			while (i < len && text[i] != '"')
				i += text[i] == '\\' ? 2 : 1;
			if (i >= len)
				return -1;
			size_t e = i, j = i + 1;
			while (j < len && (text[j] == ' ' || text[j] == '\n' || text[j] == '\t' || text[j] == '\r'))
				j++;
			if ((!any_depth && (depth != 2 || !top_array)) || j >= len || text[j] != ':' || e - s != 5 ||
			    memcmp(text + s, "Flags", 5) != 0)
				continue;
			/* A key "Flags" of an entry: its value must be digits. */
			j++;
			while (j < len && (text[j] == ' ' || text[j] == '\n' || text[j] == '\t' || text[j] == '\r'))
				j++;
			size_t d = j;
			uint64_t v = 0;
			while (j < len && text[j] >= '0' && text[j] <= '9') {
				unsigned digit = (unsigned)(text[j] - '0');
				if (v > (UINT64_MAX - digit) / 10)
					return -1;
				v = v * 10 + digit;
				j++;
			}
			if (j == d || (j < len && text[j] != ',' && text[j] != '}' && text[j] != ' ' &&
			               text[j] != '\n' && text[j] != '\r' && text[j] != '\t'))
				return -1;
			if (!any_depth && obj >= 0 && (size_t)obj < max) {
				flags[obj] = v;
				has[obj] = true;
			}
			text[d] = '0';
			memset(text + d + 1, ' ', j - d - 1);
			i = j - 1;
		} else if (c == '[' || c == '{') {
			if (depth == 0 && c == '[')
				top_array = true;
			if (depth == 1 && c == '{')
				obj++;
			depth++;
		} else if (c == ']' || c == '}') {
			depth--;
		}
	}
	return 0;
}

int consul_scrub_flags(char *text, size_t len, uint64_t *flags, bool *has, size_t max)
{
	return scrub(text, len, flags, has, max, false);
}

static int get_u64(const json_t *o, const char *field, uint64_t *out)
{
	const json_t *v = json_object_get(o, field);

	*out = 0;
	if (v == NULL)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

/* One entry of a KV answer (Flags already scrubbed out of the text). */
static int kv_entry(const json_t *e, uint64_t flags, struct consul_kv *kv, char *err, size_t errlen)
{
	const json_t *sess = json_object_get(e, "Session"), *val = json_object_get(e, "Value");
	const json_t *key = json_object_get(e, "Key");

	memset(kv, 0, sizeof(*kv));
	if (!json_is_object(e) || !json_is_string(key) ||
	    get_u64(e, "ModifyIndex", &kv->modify_index) < 0 || kv->modify_index == 0 ||
	    get_u64(e, "LockIndex", &kv->lock_index) < 0 ||
	    get_u64(e, "CreateIndex", &kv->create_index) < 0 ||
	    (sess != NULL && !json_is_string(sess) && !json_is_null(sess)) ||
	    (val != NULL && !json_is_string(val) && !json_is_null(val))) {
		snprintf(err, errlen, "malformed answer from Consul: a KV entry lacks Key, ModifyIndex, "
		         "or has a wrong Session or Value");
		return -1;
	}
	if ((kv->key = strdup(json_string_value(key))) == NULL)
		goto oom;
	if (json_is_string(sess) && json_string_length(sess) > 0 &&
	    (kv->session = strdup(json_string_value(sess))) == NULL)
		goto oom;
	if (json_is_string(val)) {
		kv->value = etcd_b64_decode(json_string_value(val), json_string_length(val), &kv->value_len);
		if (kv->value == NULL) {
			snprintf(err, errlen, "malformed answer from Consul: Value is not base64");
			consul_kv_free(kv);
			return -1;
		}
	} else if ((kv->value = strdup("")) == NULL) {
		goto oom;
	}
	kv->flags = flags;
	kv->exists = true;
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
	consul_kv_free(kv);
	return -1;
}

/* body parsed after its Flags were read into flags[] (max of them, see
 * scrub()) and blanked out, so that jansson accepts values above 2^63. */
static json_t *load_scrubbed(const char *body, size_t len, uint64_t *flags, bool *has, size_t max,
                             bool any_depth, char *err, size_t errlen)
{
	char *text = malloc(len + 1);
	json_t *a = NULL;

	if (text == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	memcpy(text, body, len);
	text[len] = '\0';
	if (scrub(text, len, flags, has, max, any_depth) < 0)
		snprintf(err, errlen, "malformed answer from Consul: Flags is not an unsigned 64-bit integer");
	else
		a = load(text, len, err, errlen);
	free(text);
	return a;
}

/* The array of a KV read, its Flags read into flags[] (max of them). */
static json_t *load_kv_array(const char *body, size_t len, uint64_t *flags, bool *has, size_t max,
                             char *err, size_t errlen)
{
	json_t *a = load_scrubbed(body, len, flags, has, max, false, err, errlen);

	if (a != NULL && !json_is_array(a)) {
		snprintf(err, errlen, "malformed answer from Consul: a KV read is not an array");
		json_decref(a);
		return NULL;
	}
	return a;
}

int consul_parse_kv(const char *body, size_t len, struct consul_kv *kv, char *err, size_t errlen)
{
	uint64_t flags;
	bool has;
	json_t *a = load_kv_array(body, len, &flags, &has, 1, err, errlen);
	int rc = -1;

	memset(kv, 0, sizeof(*kv));
	if (a != NULL)
		rc = json_array_size(a) == 0 ? 0 : kv_entry(json_array_get(a, 0), has ? flags : 0, kv, err, errlen);
	json_decref(a);
	return rc;
}

int consul_parse_kv_list(const char *body, size_t len, struct consul_kv **kvs, size_t *n, char *err,
                         size_t errlen)
{
	size_t max = len / 8 + 1;   /* an entry takes more than 8 bytes of text */
	uint64_t *flags = calloc(max, sizeof(*flags));
	bool *has = calloc(max, sizeof(*has));
	json_t *a = NULL;
	int rc = -1;

	*kvs = NULL;
	*n = 0;
	if (flags == NULL || has == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if ((a = load_kv_array(body, len, flags, has, max, err, errlen)) == NULL)
		goto out;
	if (json_array_size(a) > 0 && (*kvs = calloc(json_array_size(a), sizeof(**kvs))) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < json_array_size(a); i++) {
		if (kv_entry(json_array_get(a, i), i < max && has[i] ? flags[i] : 0, &(*kvs)[i], err, errlen) < 0)
			goto out;
		(*n)++;
	}
	rc = 0;
out:
	if (rc < 0) {
		consul_kv_list_free(*kvs, *n);
		*kvs = NULL;
		*n = 0;
	}
	json_decref(a);
	free(flags);
	free(has);
	return rc;
}

void consul_kv_free(struct consul_kv *kv)
{
	free(kv->key);
	free(kv->session);
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
}

void consul_kv_list_free(struct consul_kv *kvs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		consul_kv_free(&kvs[i]);
	free(kvs);
}

int consul_parse_txn_index(const char *body, size_t len, uint64_t *index, char *err, size_t errlen)
{
	json_t *a = load_scrubbed(body, len, NULL, NULL, 0, true, err, errlen), *kv;
	int rc = -1;

	*index = 0;
	if (a == NULL)
		return -1;
	kv = json_object_get(json_array_get(json_object_get(a, "Results"), 0), "KV");
	if (!json_is_object(kv) || get_u64(kv, "ModifyIndex", index) < 0 || *index == 0)
		snprintf(err, errlen, "malformed answer from Consul: a transaction's first result has no "
		         "ModifyIndex");
	else
		rc = 0;
	json_decref(a);
	return rc;
}

/* ---- the semaphore's lock value: {"Limit":N,"Holders":{"<session>":true}} ---- */

int consul_sem_decode(const char *value, size_t len, struct consul_sem *sem, char *err, size_t errlen)
{
	json_t *a, *holders, *v;
	const char *k;

	memset(sem, 0, sizeof(*sem));
	if (len == 0)
		return 0;     /* no value: no holders, the limit of whoever writes first */
	if ((a = load(value, len, err, errlen)) == NULL)
		return -1;
	holders = json_object_get(a, "Holders");
	if (!json_is_object(a) || !json_is_integer(json_object_get(a, "Limit")) ||
	    json_integer_value(json_object_get(a, "Limit")) < 1 ||
	    json_integer_value(json_object_get(a, "Limit")) > 1000000 ||
	    (holders != NULL && !json_is_object(holders) && !json_is_null(holders))) {
		snprintf(err, errlen, "the semaphore's lock value is not {\"Limit\":N,\"Holders\":{...}}");
		json_decref(a);
		return -1;
	}
	sem->limit = (unsigned)json_integer_value(json_object_get(a, "Limit"));
	if (json_is_object(holders) && json_object_size(holders) > 0 &&
	    (sem->holders = calloc(json_object_size(holders), sizeof(char *))) == NULL)
		goto oom;
	json_object_foreach(holders, k, v) {
		if (!json_is_true(v))
			continue;
		if ((sem->holders[sem->n] = strdup(k)) == NULL)
			goto oom;
		sem->n++;
	}
	json_decref(a);
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
	consul_sem_free(sem);
	json_decref(a);
	return -1;
}

char *consul_sem_encode(const struct consul_sem *sem)
{
	json_t *o = json_pack("{s:I, s:{}}", "Limit", (json_int_t)sem->limit, "Holders"), *h;
	char *out = NULL;

	if (o == NULL)
		return NULL;
	h = json_object_get(o, "Holders");
	for (size_t i = 0; i < sem->n; i++)
		if (sem->holders[i] != NULL && json_object_set_new(h, sem->holders[i], json_true()) < 0)
			goto out;
	out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
out:
	json_decref(o);
	return out;
}

bool consul_sem_has(const struct consul_sem *sem, const char *session)
{
	for (size_t i = 0; i < sem->n; i++)
		if (sem->holders[i] != NULL && strcmp(sem->holders[i], session) == 0)
			return true;
	return false;
}

void consul_sem_free(struct consul_sem *sem)
{
	for (size_t i = 0; i < sem->n; i++)
		free(sem->holders[i]);
	free(sem->holders);
	memset(sem, 0, sizeof(*sem));
}

char *consul_txn_op(const char *verb, const char *key, const char *value, const uint64_t *flags,
                    const char *session, const uint64_t *index)
{
	json_t *o = json_object();
	char *b64 = NULL, *text = NULL, *out = NULL;
	size_t n;

	if (o == NULL || json_object_set_new(o, "Verb", json_string(verb)) < 0 ||
	    json_object_set_new(o, "Key", json_string(key)) < 0)
		goto out;
	if (value != NULL && ((b64 = etcd_b64_encode(value, strlen(value))) == NULL ||
	                      json_object_set_new(o, "Value", json_string(b64)) < 0))
		goto out;
	if (session != NULL && json_object_set_new(o, "Session", json_string(session)) < 0)
		goto out;
	if (index != NULL && json_object_set_new(o, "Index", json_integer((json_int_t)*index)) < 0)
		goto out;
	if ((text = json_dumps(o, JSON_COMPACT)) == NULL)
		goto out;
	/* Flags may be above 2^63, beyond jansson's integers: added as text. */
	n = strlen(text);
	if (flags != NULL) {
		text[n - 1] = '\0';
		if (asprintf(&out, "{\"KV\":%s,\"Flags\":%" PRIu64 "}}", text, *flags) < 0)
			out = NULL;
	} else if (asprintf(&out, "{\"KV\":%s}", text) < 0) {
		out = NULL;
	}
out:
	free(b64);
	free(text);
	json_decref(o);
	return out;
}

uint64_t consul_parse_index(const char *s)
{
	char *end;
	unsigned long long v;

	if (s == NULL || *s < '0' || *s > '9')
		return 0;
	v = strtoull(s, &end, 10);
	while (*end == ' ' || *end == '\r' || *end == '\n')
		end++;
	return *end == '\0' ? (uint64_t)v : 0;
}

char *consul_escape_key(const char *key)
{
	char *out = malloc(strlen(key) * 3 + 1), *p = out;

	if (out == NULL)
		return NULL;
	for (const unsigned char *k = (const unsigned char *)key; *k; k++) {
		if ((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9') ||
		    strchr("/_.~-", *k) != NULL)
			*p++ = (char)*k;
		else
			p += sprintf(p, "%%%02X", *k);
	}
	*p = '\0';
	return out;
}

int consul_parse_txn_kvs(const char *body, size_t len, struct consul_kv **kvs, size_t *n, char *err,
                         size_t errlen)
{
	json_t *a = load_scrubbed(body, len, NULL, NULL, 0, true, err, errlen), *results;
	int rc = -1;

	*kvs = NULL;
	*n = 0;
	if (a == NULL)
		return -1;
	results = json_object_get(a, "Results");
	if (!json_is_array(results)) {
		snprintf(err, errlen, "malformed answer from Consul: a transaction's answer has no Results");
		goto out;
	}
	if (json_array_size(results) > 0 && (*kvs = calloc(json_array_size(results), sizeof(**kvs))) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < json_array_size(results); i++) {
		if (kv_entry(json_object_get(json_array_get(results, i), "KV"), 0, &(*kvs)[i], err, errlen) < 0)
			goto out;
		(*n)++;
	}
	rc = 0;
out:
	if (rc < 0) {
		consul_kv_list_free(*kvs, *n);
		*kvs = NULL;
		*n = 0;
	}
	json_decref(a);
	return rc;
}

int consul_parse_txn_errors(const char *body, size_t len, size_t *ops, size_t max, size_t *n, char *err,
                            size_t errlen)
{
	json_t *a = load(body, len, err, errlen), *errors, *e;
	size_t i;
	int rc = -1;

	*n = 0;
	if (a == NULL)
		return -1;
	errors = json_object_get(a, "Errors");
	if (!json_is_array(errors) || json_array_size(errors) == 0) {
		snprintf(err, errlen, "malformed answer from Consul: a failed transaction without Errors");
		goto out;
	}
	json_array_foreach(errors, i, e) {
		json_t *op = json_object_get(e, "OpIndex");
		if (!json_is_integer(op) || json_integer_value(op) < 0) {
			snprintf(err, errlen, "malformed answer from Consul: a transaction error without OpIndex");
			goto out;
		}
		if (*n < max)
			ops[(*n)++] = (size_t)json_integer_value(op);
	}
	rc = 0;
out:
	json_decref(a);
	return rc;
}

/* One DURATION option value in [min, max]; -1 (err set) if it is not. */
static int option_duration(const char *name, const char *v, int64_t min, int64_t max, int64_t *out,
                           char *err, size_t errlen)
{
	char lo[32], hi[32];

	if (duration_parse(v, out) == 0 && *out >= min && *out <= max)
		return 0;
	duration_format(min, lo, sizeof(lo));
	duration_format(max, hi, sizeof(hi));
	snprintf(err, errlen, "consul: URL option %s=%s: give a duration from %s to %s", name, v, lo, hi);
	return -1;
}

/* The session's LockDelay is the TTL unless the URL asks for more. Consul
 * ends a session early when its node leaves the catalog (a dead server
 * reaped by autopilot, a client agent that left); the key is then free at
 * once but for the lock-delay, while a holder cut off from Consul leads on
 * until its deadline, at most TTL after its last renewal, which came before
 * the session ended. So a lock-delay shorter than the TTL is refused. */
int consul_parse_options(const char *query, int64_t ttl_ns, struct consul_opts *o, char *err,
                         size_t errlen)
{
	char *copy, *item, *save = NULL;
	int rc = 0;

	o->lock_delay_ns = ttl_ns;
	o->ttl_min_ns = CONSUL_MIN_TTL_S * NS_PER_SEC;
	if (ttl_ns > CONSUL_MAX_LOCK_DELAY_NS) {
		snprintf(err, errlen, "consul: a TTL over 60s is longer than Consul's longest lock-delay "
		         "(60s), which must cover a session Consul ends early: use --ttl 60s or less");
		return -1;
	}
	if (query == NULL || *query == '\0')
		return 0;
	if ((copy = strdup(query)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (item = strtok_r(copy, "&", &save); item && rc == 0; item = strtok_r(NULL, "&", &save)) {
		if (strncmp(item, "lock-delay=", 11) == 0)
			rc = option_duration("lock-delay", item + 11, 0, CONSUL_MAX_LOCK_DELAY_NS, &o->lock_delay_ns,
			                     err, errlen);
		else if (strncmp(item, "session-ttl-min=", 16) == 0)
			rc = option_duration("session-ttl-min", item + 16, NS_PER_SEC, 24 * 3600 * NS_PER_SEC,
			                     &o->ttl_min_ns, err, errlen);
		else {
			snprintf(err, errlen, "consul: unknown URL option '%s': there are lock-delay=DURATION "
			         "(the TTL to 60s) and session-ttl-min=DURATION (the servers' session_ttl_min), "
			         "as in consul://HOST/PREFIX?lock-delay=30s", item);
			rc = -1;
		}
	}
	free(copy);
	if (rc == 0 && o->lock_delay_ns < ttl_ns) {
		char d[32];

		duration_format(o->lock_delay_ns, d, sizeof(d));
		snprintf(err, errlen, "consul: lock-delay=%s is shorter than the TTL (%llds): if Consul "
		         "ended the session early (its node removed from the catalog) the key would be free "
		         "while this holder may still run; leave lock-delay out (it is the TTL then) or make "
		         "it at least the TTL", d, (long long)(ttl_ns / NS_PER_SEC));
		rc = -1;
	}
	return rc;
}
