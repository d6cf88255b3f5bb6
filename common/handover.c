/* The handover record (handover.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/clock.h"
#include "common/handover.h"

int handover_encode(const struct handover *h, char *buf, size_t len)
{
	json_t *o = json_pack("{s:s, s:s, s:I, s:I}", "to", h->to, "from", h->from,
	                      "token", (json_int_t)h->token,
	                      "timeout_ms", (json_int_t)(h->timeout_ns / NS_PER_MS));
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	int rc = -1;

	if (s && strlen(s) < len && strlen(s) < HANDOVER_MAX) {
		memcpy(buf, s, strlen(s) + 1);
		rc = 0;
	}
	free(s);
	json_decref(o);
	return rc;
}

static int copy_str(json_t *v, char *dst, size_t len)
{
	const char *s = json_string_value(v);

	if (s == NULL || *s == '\0' || strlen(s) >= len)
		return -1;
	memcpy(dst, s, strlen(s) + 1);
	return 0;
}

int handover_decode(const char *s, struct handover *h)
{
	json_t *o, *token, *timeout;
	int rc = -1;

	memset(h, 0, sizeof(*h));
	if (s == NULL || *s != '{' || (o = json_loads(s, 0, NULL)) == NULL)
		return -1;
	token = json_object_get(o, "token");
	timeout = json_object_get(o, "timeout_ms");
	if (copy_str(json_object_get(o, "to"), h->to, sizeof(h->to)) == 0 &&
	    copy_str(json_object_get(o, "from"), h->from, sizeof(h->from)) == 0 &&
	    json_is_integer(token) && json_integer_value(token) >= 0 &&
	    json_is_integer(timeout) && json_integer_value(timeout) > 0 &&
	    json_integer_value(timeout) <= INT64_MAX / NS_PER_MS) {
		h->token = (uint64_t)json_integer_value(token);
		h->timeout_ns = json_integer_value(timeout) * NS_PER_MS;
		rc = 0;
	}
	json_decref(o);
	return rc;
}

int handover_same(const struct handover *a, const struct handover *b)
{
	return a->token == b->token && strcmp(a->from, b->from) == 0 && strcmp(a->to, b->to) == 0;
}
