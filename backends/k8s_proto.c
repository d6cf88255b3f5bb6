/* The Lease object as client-go's LeaseLock writes it
 * (k8s.io/client-go/tools/leaderelection/resourcelock/leaselock.go):
 *
 *   {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
 *    "metadata": {"name", "namespace", "resourceVersion", "annotations"},
 *    "spec": {"holderIdentity", "leaseDurationSeconds", "acquireTime",
 *             "renewTime", "leaseTransitions"}}
 *
 * with acquireTime and renewTime as MicroTime (RFC 3339 with exactly six
 * fractional digits, UTC). A PUT carries the object last read with its
 * resourceVersion: the API server refuses it (409) if anyone wrote since. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/k8s.h"

static char *dup_or_empty(const char *s)
{
	return strdup(s ? s : "");
}

int k8s_lease_parse(const json_t *obj, struct k8s_lease *l, char *err, size_t errlen)
{
	json_t *meta = json_object_get(obj, "metadata");
	json_t *spec = json_object_get(obj, "spec");
	json_t *rv = json_object_get(meta, "resourceVersion");
	json_t *ann = json_object_get(meta, "annotations");
	json_t *v;

	memset(l, 0, sizeof(*l));
	if (!json_is_object(obj) || !json_is_object(meta) || !json_is_string(rv)) {
		snprintf(err, errlen, "not a Lease (no metadata.resourceVersion)");
		return -1;
	}
	if (spec != NULL && !json_is_object(spec)) {
		snprintf(err, errlen, "malformed Lease (spec is not an object)");
		return -1;
	}
	l->rv = strdup(json_string_value(rv));
	l->name = dup_or_empty(json_string_value(json_object_get(meta, "name")));
	l->holder = dup_or_empty(json_string_value(json_object_get(spec, "holderIdentity")));
	if ((v = json_object_get(spec, "leaseDurationSeconds")) != NULL && json_is_integer(v))
		l->duration_s = json_integer_value(v);
	if ((v = json_object_get(spec, "leaseTransitions")) != NULL && json_is_integer(v))
		l->transitions = json_integer_value(v);
	if ((v = json_object_get(spec, "acquireTime")) != NULL && json_is_string(v))
		l->acquire_time = strdup(json_string_value(v));
	if ((v = json_object_get(ann, K8S_HANDOVER_ANNOTATION)) != NULL && json_is_string(v))
		l->handover = strdup(json_string_value(v));
	if ((v = json_object_get(ann, K8S_LOCK_ANNOTATION)) != NULL && json_is_string(v))
		l->lock_name = strdup(json_string_value(v));
	if ((v = json_object_get(ann, K8S_LIMIT_ANNOTATION)) != NULL && json_is_string(v)) {
		const char *t = json_string_value(v);
		char *end;
		unsigned long n = strtoul(t, &end, 10);
		if (*t >= '0' && *t <= '9' && *end == '\0' && n <= 1000000)
			l->lock_limit = (unsigned)n;
	}
	l->obj = json_deep_copy(obj);
	if (l->rv == NULL || l->name == NULL || l->holder == NULL || l->obj == NULL) {
		k8s_lease_free(l);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (l->duration_s < 0 || l->transitions < 0) {
		k8s_lease_free(l);
		snprintf(err, errlen, "malformed Lease (negative leaseDurationSeconds or leaseTransitions)");
		return -1;
	}
	return 0;
}

void k8s_lease_free(struct k8s_lease *l)
{
	free(l->name);
	free(l->lock_name);
	free(l->rv);
	free(l->holder);
	free(l->acquire_time);
	free(l->handover);
	json_decref(l->obj);
	memset(l, 0, sizeof(*l));
}

void k8s_micro_time(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	char date[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%06ldZ", date, ts.tv_nsec / 1000);
}

char *k8s_lease_body(const json_t *base, const char *namespace, const char *name, const char *rv,
                     const struct k8s_spec *s)
{
	json_t *obj = base ? json_deep_copy(base) : json_object();
	json_t *meta, *spec, *ann;
	char now[48], *out = NULL;

	if (obj == NULL)
		return NULL;
	k8s_micro_time(now, sizeof(now));
	json_object_set_new(obj, "apiVersion", json_string("coordination.k8s.io/v1"));
	json_object_set_new(obj, "kind", json_string("Lease"));
	meta = json_object_get(obj, "metadata");
	if (!json_is_object(meta)) {
		meta = json_object();
		json_object_set_new(obj, "metadata", meta);
	}
	json_object_set_new(meta, "name", json_string(name));
	json_object_set_new(meta, "namespace", json_string(namespace));
	if (rv)
		json_object_set_new(meta, "resourceVersion", json_string(rv));
	else
		json_object_del(meta, "resourceVersion");
	/* Server-set fields that a create must not carry are harmless on a
	 * PUT; managedFields is dropped so that the server keeps its own. */
	json_object_del(meta, "managedFields");
	ann = json_object_get(meta, "annotations");
	if (s->handover) {
		if (!json_is_object(ann)) {
			ann = json_object();
			json_object_set_new(meta, "annotations", ann);
		}
		json_object_set_new(ann, K8S_HANDOVER_ANNOTATION, json_string(s->handover));
	} else if (json_is_object(ann)) {
		json_object_del(ann, K8S_HANDOVER_ANNOTATION);
		if (json_object_size(ann) == 0)
			json_object_del(meta, "annotations");
	}
	if (s->lock_name) {
		char limit[24];
		ann = json_object_get(meta, "annotations");
		if (!json_is_object(ann)) {
			ann = json_object();
			json_object_set_new(meta, "annotations", ann);
		}
		snprintf(limit, sizeof(limit), "%u", s->lock_limit);
		json_object_set_new(ann, K8S_LOCK_ANNOTATION, json_string(s->lock_name));
		json_object_set_new(ann, K8S_LIMIT_ANNOTATION, json_string(limit));
	}
	spec = json_object_get(obj, "spec");
	if (!json_is_object(spec)) {
		spec = json_object();
		json_object_set_new(obj, "spec", spec);
	}
	json_object_set_new(spec, "holderIdentity", json_string(s->holder));
	json_object_set_new(spec, "leaseDurationSeconds", json_integer(s->duration_s));
	json_object_set_new(spec, "acquireTime", json_string(s->acquire_time ? s->acquire_time : now));
	json_object_set_new(spec, "renewTime", json_string(s->renew_time ? s->renew_time : now));
	json_object_set_new(spec, "leaseTransitions", json_integer(s->transitions));
	json_object_del(obj, "status");
	out = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	return out;
}

int k8s_watch_parse(const char *line, size_t len, json_t **doc, enum k8s_watch_type *type,
                    json_t **obj)
{
	static const struct { const char *name; enum k8s_watch_type t; } types[] = {
		{ "ADDED", KW_ADDED }, { "MODIFIED", KW_MODIFIED }, { "DELETED", KW_DELETED },
		{ "BOOKMARK", KW_BOOKMARK }, { "ERROR", KW_ERROR },
	};
	const char *t;

	*doc = json_loadb(line, len, 0, NULL);
	t = json_string_value(json_object_get(*doc, "type"));
	*obj = json_object_get(*doc, "object");
	if (t == NULL || !json_is_object(*obj)) {
		json_decref(*doc);
		*doc = NULL;
		return -1;
	}
	*type = KW_OTHER;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(t, types[i].name) == 0)
			*type = types[i].t;
	return 0;
}

void k8s_status_message(const json_t *status, long *code, char *msg, size_t len)
{
	json_t *c = json_object_get(status, "code");
	const char *m = json_string_value(json_object_get(status, "message"));

	*code = json_is_integer(c) ? (long)json_integer_value(c) : 0;
	snprintf(msg, len, "%s", m ? m : "");
	msg[strcspn(msg, "\r\n")] = '\0';
}
