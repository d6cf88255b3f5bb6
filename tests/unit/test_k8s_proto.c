/* backends/k8s_proto.c: Leases as client-go writes them, PUT bodies that keep
 * what elect does not own, MicroTime, watch lines and Status objects,
 * including malformed input. */
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "backends/k8s.h"

/* As client-go v0.34 writes it (kubectl get lease -o json). */
#define CLIENT_GO_LEASE \
	"{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\"," \
	"\"metadata\":{\"name\":\"web\",\"namespace\":\"apps\",\"resourceVersion\":\"4711\"," \
	"\"uid\":\"0b1c\",\"labels\":{\"team\":\"a\"},\"managedFields\":[{\"manager\":\"x\"}]}," \
	"\"spec\":{\"holderIdentity\":\"pod-1\",\"leaseDurationSeconds\":15," \
	"\"acquireTime\":\"2026-12-02T10:00:00.123456Z\",\"renewTime\":\"2026-12-02T10:00:05.000001Z\"," \
	"\"leaseTransitions\":3}}"

static void test_parse_client_go_lease(void **state)
{
	json_t *o = json_loads(CLIENT_GO_LEASE, 0, NULL);
	struct k8s_lease l;
	char err[160];

	(void)state;
	assert_int_equal(k8s_lease_parse(o, &l, err, sizeof(err)), 0);
	assert_string_equal(l.rv, "4711");
	assert_string_equal(l.holder, "pod-1");
	assert_int_equal(l.duration_s, 15);
	assert_int_equal(l.transitions, 3);
	assert_string_equal(l.acquire_time, "2026-12-02T10:00:00.123456Z");
	assert_null(l.handover);
	k8s_lease_free(&l);
	json_decref(o);
}

static void test_parse_released_and_empty(void **state)
{
	struct k8s_lease l;
	char err[160];
	json_t *o;

	(void)state;
	/* Released by client-go: holderIdentity "" (or absent), duration 1. */
	o = json_loads("{\"metadata\":{\"resourceVersion\":\"9\",\"annotations\":"
	               "{\"elect.io/handover\":\"{}\"}},\"spec\":{\"leaseDurationSeconds\":1}}", 0, NULL);
	assert_int_equal(k8s_lease_parse(o, &l, err, sizeof(err)), 0);
	assert_string_equal(l.holder, "");
	assert_int_equal(l.transitions, 0);
	assert_string_equal(l.handover, "{}");
	k8s_lease_free(&l);
	json_decref(o);
	/* No spec at all: a new Lease someone made by hand. */
	o = json_loads("{\"metadata\":{\"resourceVersion\":\"1\"}}", 0, NULL);
	assert_int_equal(k8s_lease_parse(o, &l, err, sizeof(err)), 0);
	assert_string_equal(l.holder, "");
	k8s_lease_free(&l);
	json_decref(o);
}

static void test_parse_garbage(void **state)
{
	static const char *const bad[] = {
		"[]", "{}", "{\"metadata\":{}}", "{\"metadata\":{\"resourceVersion\":7}}",
		"{\"metadata\":{\"resourceVersion\":\"1\"},\"spec\":[]}",
		"{\"metadata\":{\"resourceVersion\":\"1\"},\"spec\":{\"leaseTransitions\":-1}}",
	};
	struct k8s_lease l;
	char err[160];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *o = json_loads(bad[i], 0, NULL);
		assert_int_equal(k8s_lease_parse(o, &l, err, sizeof(err)), -1);
		assert_true(err[0] != '\0');
		json_decref(o);
	}
	assert_int_equal(k8s_lease_parse(NULL, &l, err, sizeof(err)), -1);
}

static void assert_micro_time(const char *s)
{
	regex_t re;

	assert_int_equal(regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}Z$",
	                         REG_EXTENDED | REG_NOSUB), 0);
	assert_int_equal(regexec(&re, s, 0, NULL, 0), 0);
	regfree(&re);
}

static void test_body_keeps_what_is_not_ours(void **state)
{
	json_t *o = json_loads(CLIENT_GO_LEASE, 0, NULL), *b, *spec, *meta;
	struct k8s_spec s = { .holder = "elect-2", .duration_s = 10, .transitions = 4 };
	char *body;

	(void)state;
	body = k8s_lease_body(o, "apps", "web", "4711", &s);
	b = json_loads(body, 0, NULL);
	assert_non_null(b);
	spec = json_object_get(b, "spec");
	meta = json_object_get(b, "metadata");
	assert_string_equal(json_string_value(json_object_get(spec, "holderIdentity")), "elect-2");
	assert_int_equal(json_integer_value(json_object_get(spec, "leaseDurationSeconds")), 10);
	assert_int_equal(json_integer_value(json_object_get(spec, "leaseTransitions")), 4);
	assert_micro_time(json_string_value(json_object_get(spec, "acquireTime")));
	assert_micro_time(json_string_value(json_object_get(spec, "renewTime")));
	assert_string_equal(json_string_value(json_object_get(meta, "resourceVersion")), "4711");
	assert_string_equal(json_string_value(json_object_get(meta, "uid")), "0b1c");
	assert_string_equal(json_string_value(json_object_get(json_object_get(meta, "labels"), "team")), "a");
	assert_null(json_object_get(meta, "managedFields"));
	assert_null(json_object_get(meta, "annotations"));
	json_decref(b);
	free(body);
	/* A renewal keeps acquireTime; a release with a handover record. */
	s = (struct k8s_spec){ .holder = "", .duration_s = 1, .transitions = 4,
	                       .acquire_time = "2026-12-02T10:00:00.123456Z", .handover = "{\"to\":\"b\"}" };
	body = k8s_lease_body(o, "apps", "web", "4712", &s);
	b = json_loads(body, 0, NULL);
	spec = json_object_get(b, "spec");
	meta = json_object_get(b, "metadata");
	assert_string_equal(json_string_value(json_object_get(spec, "holderIdentity")), "");
	assert_string_equal(json_string_value(json_object_get(spec, "acquireTime")),
	                    "2026-12-02T10:00:00.123456Z");
	assert_string_equal(json_string_value(json_object_get(json_object_get(meta, "annotations"),
	                                                      K8S_HANDOVER_ANNOTATION)), "{\"to\":\"b\"}");
	json_decref(b);
	free(body);
	json_decref(o);
}

static void test_create_body(void **state)
{
	struct k8s_spec s = { .holder = "a", .duration_s = 15, .transitions = 1 };
	char *body = k8s_lease_body(NULL, "default", "web", NULL, &s);
	json_t *b = json_loads(body, 0, NULL);

	(void)state;
	assert_string_equal(json_string_value(json_object_get(b, "apiVersion")), "coordination.k8s.io/v1");
	assert_string_equal(json_string_value(json_object_get(b, "kind")), "Lease");
	assert_string_equal(json_string_value(json_object_get(json_object_get(b, "metadata"), "name")), "web");
	assert_null(json_object_get(json_object_get(b, "metadata"), "resourceVersion"));
	json_decref(b);
	free(body);
}

/* lockd's annotations: read back (a limit that is not a number is none),
 * written with a lock name, kept by a write without one. */
static void test_lock_annotations(void **state)
{
	struct k8s_spec s = { .holder = "d1", .duration_s = 3, .transitions = 4, .lock_name = "pool",
	                      .lock_limit = 3 };
	struct k8s_lease l;
	char err[160], *body, *body2;
	json_t *o, *ann;

	(void)state;
	body = k8s_lease_body(NULL, "apps", "locks-pool-2", NULL, &s);
	o = json_loads(body, 0, NULL);
	ann = json_object_get(json_object_get(o, "metadata"), "annotations");
	assert_string_equal(json_string_value(json_object_get(ann, "elect.io/lock")), "pool");
	assert_string_equal(json_string_value(json_object_get(ann, "elect.io/limit")), "3");
	json_object_set_new(json_object_get(o, "metadata"), "resourceVersion", json_string("7"));
	assert_int_equal(k8s_lease_parse(o, &l, err, sizeof(err)), 0);
	assert_string_equal(l.name, "locks-pool-2");
	assert_string_equal(l.lock_name, "pool");
	assert_int_equal(l.lock_limit, 3);
	/* A release (client-go's, without our fields) keeps them. */
	s = (struct k8s_spec){ .holder = "", .duration_s = 1, .transitions = 4 };
	body2 = k8s_lease_body(l.obj, "apps", "locks-pool-2", l.rv, &s);
	k8s_lease_free(&l);
	json_decref(o);
	o = json_loads(body2, 0, NULL);
	ann = json_object_get(json_object_get(o, "metadata"), "annotations");
	assert_string_equal(json_string_value(json_object_get(ann, "elect.io/lock")), "pool");
	json_object_set_new(ann, "elect.io/limit", json_string("3x"));
	assert_int_equal(k8s_lease_parse(o, &l, err, sizeof(err)), 0);
	assert_int_equal(l.lock_limit, 0);
	k8s_lease_free(&l);
	json_decref(o);
	free(body);
	free(body2);
}

static void test_watch_lines(void **state)
{
	static const char added[] = "{\"type\":\"MODIFIED\",\"object\":" CLIENT_GO_LEASE "}";
	static const char err410[] = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410,"
	                             "\"message\":\"too old resource version: 1 (5)\\nmore\"}}";
	enum k8s_watch_type t;
	json_t *doc, *obj;
	char msg[100];
	long code;

	(void)state;
	assert_int_equal(k8s_watch_parse(added, strlen(added), &doc, &t, &obj), 0);
	assert_int_equal(t, KW_MODIFIED);
	assert_string_equal(json_string_value(json_object_get(json_object_get(obj, "spec"),
	                                                      "holderIdentity")), "pod-1");
	json_decref(doc);
	assert_int_equal(k8s_watch_parse(err410, strlen(err410), &doc, &t, &obj), 0);
	assert_int_equal(t, KW_ERROR);
	k8s_status_message(obj, &code, msg, sizeof(msg));
	assert_int_equal(code, 410);
	assert_string_equal(msg, "too old resource version: 1 (5)");
	json_decref(doc);
	assert_int_equal(k8s_watch_parse("{\"type\":\"ADDED\"}", 16, &doc, &t, &obj), -1);
	assert_int_equal(k8s_watch_parse("garbage", 7, &doc, &t, &obj), -1);
	assert_int_equal(k8s_watch_parse("{\"type\":\"NEW\",\"object\":{}}", 26, &doc, &t, &obj), 0);
	assert_int_equal(t, KW_OTHER);
	json_decref(doc);
	k8s_status_message(NULL, &code, msg, sizeof(msg));
	assert_int_equal(code, 0);
	assert_string_equal(msg, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_client_go_lease),
		cmocka_unit_test(test_parse_released_and_empty),
		cmocka_unit_test(test_parse_garbage),
		cmocka_unit_test(test_body_keeps_what_is_not_ours),
		cmocka_unit_test(test_create_body),
		cmocka_unit_test(test_lock_annotations),
		cmocka_unit_test(test_watch_lines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
