/* Bodies and answers of Consul's HTTP API (see consul_proto.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "backends/consul_proto.h"
#include "backends/etcd_proto.h"   /* etcd_b64_decode */

char *consul_body_session(const char *name, int64_t ttl_s, int64_t lock_delay_ms)
{
	char ttl[32], delay[32];
	json_t *o;
	char *out;

	snprintf(ttl, sizeof(ttl), "%" PRId64 "s", ttl_s);
	snprintf(delay, sizeof(delay), "%" PRId64 "ms", lock_delay_ms);
	o = json_pack("{s:s, s:s, s:s, s:s, s:[], s:[]}", "Name", name, "TTL", ttl, "LockDelay", delay,
	              "Behavior", "release", "NodeChecks", "Checks");
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

int consul_scrub_flags(char *text, size_t len, uint64_t *flags, bool *has, size_t max)
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
			if (depth != 2 || !top_array || j >= len || text[j] != ':' || e - s != 5 ||
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
			if (obj >= 0 && (size_t)obj < max) {
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

int consul_parse_kv(const char *body, size_t len, struct consul_kv *kv, char *err, size_t errlen)
{
	char *text = malloc(len + 1);
	uint64_t flags;
	bool has;
	json_t *a = NULL, *e, *sess, *val;
	int rc = -1;

	memset(kv, 0, sizeof(*kv));
	if (text == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	memcpy(text, body, len);
	text[len] = '\0';
	if (consul_scrub_flags(text, len, &flags, &has, 1) < 0) {
		snprintf(err, errlen, "malformed answer from Consul: Flags is not an unsigned 64-bit integer");
		goto out;
	}
	if ((a = load(text, len, err, errlen)) == NULL)
		goto out;
	if (!json_is_array(a)) {
		snprintf(err, errlen, "malformed answer from Consul: a KV read is not an array");
		goto out;
	}
	if (json_array_size(a) == 0) {
		rc = 0;
		goto out;
	}
	e = json_array_get(a, 0);
	sess = json_object_get(e, "Session");
	val = json_object_get(e, "Value");
	if (!json_is_object(e) || !json_is_string(json_object_get(e, "Key")) ||
	    get_u64(e, "ModifyIndex", &kv->modify_index) < 0 || kv->modify_index == 0 ||
	    get_u64(e, "LockIndex", &kv->lock_index) < 0 ||
	    get_u64(e, "CreateIndex", &kv->create_index) < 0 ||
	    (sess != NULL && !json_is_string(sess) && !json_is_null(sess)) ||
	    (val != NULL && !json_is_string(val) && !json_is_null(val))) {
		snprintf(err, errlen, "malformed answer from Consul: a KV entry lacks Key, ModifyIndex, "
		         "or has a wrong Session or Value");
		goto out;
	}
	if (json_is_string(sess) && json_string_length(sess) > 0 &&
	    (kv->session = strdup(json_string_value(sess))) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (json_is_string(val)) {
		kv->value = etcd_b64_decode(json_string_value(val), json_string_length(val), &kv->value_len);
		if (kv->value == NULL) {
			snprintf(err, errlen, "malformed answer from Consul: Value is not base64");
			goto out;
		}
	} else if ((kv->value = strdup("")) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	kv->flags = has ? flags : 0;
	kv->exists = true;
	rc = 0;
out:
	if (rc < 0)
		consul_kv_free(kv);
	json_decref(a);
	free(text);
	return rc;
}

void consul_kv_free(struct consul_kv *kv)
{
	free(kv->session);
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
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
