/* backends/etcd_proto.c: base64, the etcd gateway's answers (well-formed,
 * surprising and broken), watch stream lines split across chunks, bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backends/etcd_proto.h"

static void test_b64_vectors(void **state)
{
	static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
	static const char *const enc[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };

	(void)state;
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		char *e = etcd_b64_encode(plain[i], strlen(plain[i]));
		size_t n;
		char *d = etcd_b64_decode(enc[i], strlen(enc[i]), &n);
		assert_string_equal(e, enc[i]);
		assert_non_null(d);
		assert_int_equal(n, strlen(plain[i]));
		assert_memory_equal(d, plain[i], n);
		free(e);
		free(d);
	}
}

static void test_b64_binary_roundtrip(void **state)
{
	unsigned char bin[256];
	size_t n;

	(void)state;
	for (int i = 0; i < 256; i++)
		bin[i] = (unsigned char)(255 - i);
	for (size_t len = 0; len < sizeof(bin); len += 37) {
		char *e = etcd_b64_encode(bin, len);
		char *d = etcd_b64_decode(e, strlen(e), &n);
		assert_non_null(d);
		assert_int_equal(n, len);
		assert_memory_equal(d, bin, len);
		free(e);
		free(d);
	}
}

static void test_b64_invalid(void **state)
{
	static const char *const bad[] = { "Zg=", "Zg", "Z===", "Zg=a", "Zm9v!A==", "Zg==Zg==", "=AAA", "Zm9\n" };
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_null(etcd_b64_decode(bad[i], strlen(bad[i]), &n));
}

static void test_prefix_end(void **state)
{
	char *e;

	(void)state;
	e = etcd_prefix_end("web/");
	assert_string_equal(e, "web0");
	free(e);
	e = etcd_prefix_end("a\xff");
	assert_string_equal(e, "b");
	free(e);
	e = etcd_prefix_end("\xff\xff");
	assert_string_equal(e, "");
	free(e);
}

/* Parses body, asserting the outcome; returns the answer (or NULL). */
static json_t *answer(const char *body, enum etcd_answer want, int want_code)
{
	json_t *a = NULL;
	int code = -1;
	char err[200];

	assert_int_equal(etcd_parse_answer(body, strlen(body), &a, &code, err, sizeof(err)), want);
	if (want != ETCD_OK) {
		assert_null(a);
		assert_true(strlen(err) > 0);
	}
	assert_int_equal(code, want_code);
	return a;
}

static void test_keepalive_answers(void **state)
{
	char err[200];
	int64_t ttl = -1;
	json_t *a;

	(void)state;
	a = answer("{\"result\":{\"header\":{\"revision\":\"2\"},\"ID\":\"77\",\"TTL\":\"5\"}}", ETCD_OK, 0);
	assert_int_equal(etcd_parse_keepalive(a, &ttl, err, sizeof(err)), 0);
	assert_int_equal(ttl, 5);
	json_decref(a);
	/* The lease is gone: the gateway leaves TTL out. */
	a = answer("{\"result\":{\"header\":{\"revision\":\"2\"},\"ID\":\"77\"}}", ETCD_OK, 0);
	assert_int_equal(etcd_parse_keepalive(a, &ttl, err, sizeof(err)), 0);
	assert_int_equal(ttl, 0);
	json_decref(a);
	a = answer("{\"result\":{\"TTL\":\"-1\"}}", ETCD_OK, 0);
	assert_int_equal(etcd_parse_keepalive(a, &ttl, err, sizeof(err)), 0);
	assert_int_equal(ttl, 0);
	json_decref(a);
	a = answer("{\"result\":{\"TTL\":\"five\"}}", ETCD_OK, 0);
	assert_int_equal(etcd_parse_keepalive(a, &ttl, err, sizeof(err)), -1);
	json_decref(a);
	a = answer("{\"result\":{\"TTL\":[1]}}", ETCD_OK, 0);
	assert_int_equal(etcd_parse_keepalive(a, &ttl, err, sizeof(err)), -1);
	json_decref(a);
}

static void test_errors_and_garbage(void **state)
{
	(void)state;
	answer("{\"error\":\"etcdserver: requested lease not found\",\"code\":5}", ETCD_SERVER_ERROR, 5);
	answer("{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":\"no leader\"}}", ETCD_SERVER_ERROR, 14);
	answer("{\"error\":\"x\",\"code\":\"nope\"}", ETCD_SERVER_ERROR, 0);
	answer("", ETCD_MALFORMED, 0);
	answer("{", ETCD_MALFORMED, 0);
	answer("[1,2]", ETCD_MALFORMED, 0);
	answer("null", ETCD_MALFORMED, 0);
	answer("<html>502 Bad Gateway</html>", ETCD_MALFORMED, 0);
	answer("{\"result\":5}", ETCD_MALFORMED, 0);
}

static void test_int64_fields(void **state)
{
	json_t *o = json_loads("{\"s\":\"9007199254740993\",\"n\":12,\"bad\":\"12x\",\"b\":true,\"e\":\"\"}", 0, NULL);
	int64_t v;

	(void)state;
	assert_int_equal(etcd_json_int64(o, "s", 0, &v), 0);
	assert_true(v == INT64_C(9007199254740993));
	assert_int_equal(etcd_json_int64(o, "n", 0, &v), 0);
	assert_int_equal(v, 12);
	assert_int_equal(etcd_json_int64(o, "missing", 7, &v), 0);
	assert_int_equal(v, 7);
	assert_int_equal(etcd_json_int64(o, "bad", 0, &v), -1);
	assert_int_equal(etcd_json_int64(o, "b", 0, &v), -1);
	assert_int_equal(etcd_json_int64(o, "e", 0, &v), -1);
	assert_int_equal(etcd_json_int64(NULL, "s", 3, &v), 0);
	assert_int_equal(v, 3);
	json_decref(o);
}

static void test_grant(void **state)
{
	char err[200];
	int64_t id, ttl;
	json_t *a;

	(void)state;
	a = answer("{\"header\":{},\"ID\":\"2324035528787447563\",\"TTL\":\"2\"}", ETCD_OK, 0);
	assert_int_equal(etcd_parse_grant(a, &id, &ttl, err, sizeof(err)), 0);
	assert_true(id == INT64_C(2324035528787447563));
	assert_int_equal(ttl, 2);
	json_decref(a);
	a = answer("{\"ID\":\"5\",\"TTL\":\"2\",\"error\":\"lease already exists\"}", ETCD_OK, 0);
	assert_int_equal(etcd_parse_grant(a, &id, &ttl, err, sizeof(err)), -1);
	json_decref(a);
	a = answer("{\"TTL\":\"2\"}", ETCD_OK, 0);
	assert_int_equal(etcd_parse_grant(a, &id, &ttl, err, sizeof(err)), -1);
	json_decref(a);
}

static void test_campaign(void **state)
{
	char err[200];
	int64_t rev;
	json_t *a;

	(void)state;
	a = answer("{\"header\":{\"revision\":\"3\"},\"succeeded\":true,\"responses\":[{\"response_put\":"
	           "{\"header\":{\"revision\":\"3\"}}}]}", ETCD_OK, 0);
	assert_int_equal(etcd_parse_campaign(a, &rev, err, sizeof(err)), 0);
	assert_int_equal(rev, 3);
	json_decref(a);
	/* The key was there (a retried txn): its own create revision. */
	a = answer("{\"header\":{\"revision\":\"9\"},\"responses\":[{\"response_range\":{\"kvs\":"
	           "[{\"key\":\"d2ViL3g=\",\"create_revision\":\"4\",\"value\":\"eA==\"}],\"count\":\"1\"}}]}",
	           ETCD_OK, 0);
	assert_int_equal(etcd_parse_campaign(a, &rev, err, sizeof(err)), 0);
	assert_int_equal(rev, 4);
	json_decref(a);
	a = answer("{\"header\":{\"revision\":\"9\"},\"responses\":[{\"response_range\":{}}]}", ETCD_OK, 0);
	assert_int_equal(etcd_parse_campaign(a, &rev, err, sizeof(err)), -1);
	json_decref(a);
	a = answer("{\"succeeded\":true}", ETCD_OK, 0);
	assert_int_equal(etcd_parse_campaign(a, &rev, err, sizeof(err)), -1);
	json_decref(a);
	a = answer("{\"responses\":\"no\"}", ETCD_OK, 0);
	assert_int_equal(etcd_parse_campaign(a, &rev, err, sizeof(err)), -1);
	json_decref(a);
}

#define OWN  "{\"response_range\":{\"kvs\":[{\"key\":\"d2ViL2I=\",\"create_revision\":\"7\",\"value\":\"Yg==\"}]}}"
#define LEAD "{\"response_range\":{\"kvs\":[{\"key\":\"d2ViL2E=\",\"create_revision\":\"2\",\"value\":\"YWxwaGE=\"}]}}"
#define PRED "{\"response_range\":{\"kvs\":[{\"key\":\"d2ViL3A=\",\"create_revision\":\"5\",\"value\":\"cA==\"}]}}"
#define NONE "{\"response_range\":{\"header\":{}}}"

static int check(const char *body, struct etcd_check *c)
{
	char err[200];
	json_t *a = answer(body, ETCD_OK, 0);
	int rc = etcd_parse_check(a, c, err, sizeof(err));

	json_decref(a);
	return rc;
}

static void test_check(void **state)
{
	struct etcd_check c;

	(void)state;
	assert_int_equal(check("{\"header\":{\"revision\":\"10\"},\"responses\":[" OWN "," LEAD "," PRED "]}", &c), 0);
	assert_true(c.own_exists);
	assert_int_equal(c.own_rev, 7);
	assert_int_equal(c.revision, 10);
	assert_string_equal(c.leader_id, "alpha");
	assert_string_equal(c.pred_key, "web/p");
	assert_int_equal(c.pred_rev, 5);
	etcd_check_free(&c);
	/* We are first: no predecessor, the leader is us. */
	assert_int_equal(check("{\"header\":{\"revision\":\"10\"},\"responses\":[" OWN "," OWN "," NONE "]}", &c), 0);
	assert_null(c.pred_key);
	assert_string_equal(c.leader_id, "b");
	etcd_check_free(&c);
	/* Our key is gone; nobody is left. */
	assert_int_equal(check("{\"header\":{\"revision\":\"10\"},\"responses\":[" NONE "," NONE "]}", &c), 0);
	assert_false(c.own_exists);
	assert_null(c.leader_id);
	etcd_check_free(&c);
}

static void test_check_malformed(void **state)
{
	static const char *const bad[] = {
		"{\"responses\":[" OWN "," LEAD "]}",                                  /* no revision */
		"{\"header\":{\"revision\":\"10\"},\"responses\":[" OWN "]}",          /* too short */
		"{\"header\":{\"revision\":\"10\"},\"responses\":[" OWN ",{\"response_range\":{\"kvs\":{}}}]}",
		"{\"header\":{\"revision\":\"10\"},\"responses\":[" OWN ",{\"response_range\":{\"kvs\":[1]}}]}",
		"{\"header\":{\"revision\":\"10\"},\"responses\":[" OWN ",{\"response_range\":{\"kvs\":"
		"[{\"value\":\"!!!!\"}]}}]}",                                           /* bad base64 */
		"{\"header\":{\"revision\":\"10\"},\"responses\":[" OWN "," LEAD ",{\"response_range\":"
		"{\"kvs\":[{\"value\":\"eA==\"}]}}]}",                                  /* pred without key */
		"{\"header\":{\"revision\":\"10\"},\"responses\":[{\"response_range\":{\"kvs\":"
		"[{\"key\":\"eA==\",\"create_revision\":\"x\"}]}}," LEAD "]}",
	};
	struct etcd_check c;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(check(bad[i], &c), -1);
		assert_null(c.leader_id);
		assert_null(c.pred_key);
	}
}

static void test_watch_lines(void **state)
{
#define W(s) etcd_parse_watch_line(s, strlen(s))
	(void)state;
	assert_int_equal(W("{\"result\":{\"header\":{\"revision\":\"4\"},\"created\":true}}"), ETCD_WATCH_NOTHING);
	assert_int_equal(W("{\"result\":{\"events\":[{\"kv\":{\"key\":\"eQ==\"}}]}}"), ETCD_WATCH_NOTHING);
	assert_int_equal(W("{\"result\":{\"events\":[{\"type\":\"DELETE\",\"kv\":{\"key\":\"eQ==\"}}]}}"),
	                 ETCD_WATCH_DELETED);
	assert_int_equal(W("{\"result\":{\"canceled\":true,\"compact_revision\":\"3\"}}"), ETCD_WATCH_CANCELED);
	assert_int_equal(W("{\"error\":{\"grpc_code\":14,\"message\":\"x\"}}"), ETCD_WATCH_BAD);
	assert_int_equal(W("{\"result\":{\"events\":{}}}"), ETCD_WATCH_BAD);
	assert_int_equal(W("{\"result\":{\"events\":[{\"type\":5}]}}"), ETCD_WATCH_BAD);
	assert_int_equal(W("{\"result\":{\"events\":[7]}}"), ETCD_WATCH_BAD);
	assert_int_equal(W("garbage"), ETCD_WATCH_BAD);
#undef W
}

struct collected {
	char lines[8][64];
	int n, stop_at;
};

static int collect(const char *line, size_t len, void *arg)
{
	struct collected *c = arg;

	assert_true(len < 64);
	assert_int_equal(line[len], '\0');
	memcpy(c->lines[c->n], line, len + 1);
	return ++c->n == c->stop_at;
}

static void test_lines_across_chunks(void **state)
{
	struct etcd_lines l = { .max = 32 };
	struct collected c = { .n = 0 };
	static const char *const chunks[] = { "{\"a\"", ":1}\n{\"b", "\":2}\n", "\n", "{\"c\":3", "}\n{\"d" };

	(void)state;
	for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++)
		assert_int_equal(etcd_lines_feed(&l, chunks[i], strlen(chunks[i]), collect, &c), 0);
	assert_int_equal(c.n, 3);
	assert_string_equal(c.lines[0], "{\"a\":1}");
	assert_string_equal(c.lines[1], "{\"b\":2}");
	assert_string_equal(c.lines[2], "{\"c\":3}");
	/* A watch line split over chunks still reads as one DELETE event. */
	etcd_lines_reset(&l);
	const char *del = "{\"result\":{\"events\":[{\"type\":\"DELETE\"}]}}\n";
	struct etcd_lines l2 = { .max = 1024 };
	c.n = 0;
	for (size_t i = 0; del[i]; i++)
		assert_int_equal(etcd_lines_feed(&l2, del + i, 1, collect, &c), 0);
	assert_int_equal(c.n, 1);
	assert_int_equal(etcd_parse_watch_line(c.lines[0], strlen(c.lines[0])), ETCD_WATCH_DELETED);
	etcd_lines_reset(&l2);
}

static void test_lines_limits(void **state)
{
	struct etcd_lines l = { .max = 8 };
	struct collected c = { .n = 0, .stop_at = 1 };

	(void)state;
	assert_int_equal(etcd_lines_feed(&l, "0123456", 7, collect, &c), 0);
	assert_int_equal(etcd_lines_feed(&l, "789", 3, collect, &c), -1);   /* too long */
	etcd_lines_reset(&l);
	l.max = 8;
	assert_int_equal(etcd_lines_feed(&l, "a\nb\n", 4, collect, &c), -1); /* callback stops */
	assert_int_equal(c.n, 1);
	etcd_lines_reset(&l);
}

static void test_bodies(void **state)
{
	char *s;
	json_t *j;

	(void)state;
	s = etcd_body_campaign("web/1f", "me", 31);
	j = json_loads(s, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(j, "compare"), 0), "key")),
	                    "d2ViLzFm");
	assert_string_equal(json_string_value(json_object_get(json_object_get(json_array_get(
		json_object_get(j, "success"), 0), "request_put"), "lease")), "31");
	json_decref(j);
	free(s);
	/* my_rev 1: nothing can be older, so no predecessor range. */
	s = etcd_body_check("web/", "web/1f", 1);
	j = json_loads(s, 0, NULL);
	assert_int_equal(json_array_size(json_object_get(j, "success")), 2);
	json_decref(j);
	free(s);
	s = etcd_body_check("web/", "web/1f", 9);
	assert_non_null(strstr(s, "\"max_create_revision\":\"8\""));
	assert_non_null(strstr(s, "\"range_end\":\"d2ViMA==\""));
	free(s);
	s = etcd_body_watch("web/1f", 12);
	assert_non_null(strstr(s, "\"start_revision\":\"12\""));
	assert_non_null(strstr(s, "NOPUT"));
	free(s);
	s = etcd_body_lease(INT64_C(2324035528787447563));
	assert_string_equal(s, "{\"ID\":\"2324035528787447563\"}");
	free(s);
}

/* The lock backend's txns (backends/etcd_lock.c): keys "bG9ja3MvZGIvYQ==" =
 * "locks/db/a", "bG9ja3MvZGIvYg==" = "locks/db/b". */
static void test_lock_answers(void **state)
{
	struct etcd_lock_check c;
	char err[200], *s;
	int64_t rev, revs[2];
	bool first;
	json_t *a;

	(void)state;
	a = answer("{\"header\":{\"revision\":\"20\"},\"succeeded\":true,\"responses\":[{\"response_put\":{}},"
	           "{\"response_range\":{\"kvs\":[{\"key\":\"bG9ja3MvZGIvYQ==\",\"create_revision\":\"20\"}]}}]}",
	           ETCD_OK, 0);
	assert_int_equal(etcd_parse_lock_create(a, &rev, &first, err, sizeof(err)), 0);
	assert_int_equal(rev, 20);
	assert_true(first);
	json_decref(a);
	a = answer("{\"header\":{\"revision\":\"21\"},\"succeeded\":true,\"responses\":[{\"response_put\":{}},"
	           "{\"response_range\":{\"kvs\":[{\"key\":\"bG9ja3MvZGIvYQ==\",\"create_revision\":\"20\"}]}}]}",
	           ETCD_OK, 0);
	assert_int_equal(etcd_parse_lock_create(a, &rev, &first, err, sizeof(err)), 0);
	assert_false(first);
	json_decref(a);
	a = answer("{\"header\":{\"revision\":\"21\"},\"succeeded\":true,\"responses\":[{\"response_put\":{}}]}",
	           ETCD_OK, 0);
	assert_int_equal(etcd_parse_lock_create(a, &rev, &first, err, sizeof(err)), -1);
	json_decref(a);

	a = answer("{\"header\":{\"revision\":\"30\"},\"responses\":[{\"response_range\":{\"kvs\":"
	           "[{\"key\":\"bG9ja3MvZGIvYg==\",\"create_revision\":\"25\"}]}},{\"response_range\":{\"kvs\":"
	           "[{\"key\":\"bG9ja3MvZGIvYQ==\",\"create_revision\":\"20\"}],\"more\":true}}]}", ETCD_OK, 0);
	assert_int_equal(etcd_parse_lock_check(a, &c, err, sizeof(err)), 0);
	assert_int_equal(c.revision, 30);
	assert_int_equal(c.own_rev, 25);
	assert_int_equal(c.n_before, 1);
	assert_string_equal(c.before[0], "locks/db/a");
	etcd_lock_check_free(&c);
	assert_int_equal(etcd_parse_keys(a, 2, revs, err, sizeof(err)), 0);
	assert_int_equal(revs[0], 25);
	assert_int_equal(revs[1], 20);
	json_decref(a);
	/* Our key gone, nobody before us; then garbage in the key list. */
	a = answer("{\"header\":{\"revision\":\"31\"},\"responses\":[{\"response_range\":{}}]}", ETCD_OK, 0);
	assert_int_equal(etcd_parse_lock_check(a, &c, err, sizeof(err)), 0);
	assert_int_equal(c.own_rev, 0);
	assert_int_equal(c.n_before, 0);
	etcd_lock_check_free(&c);
	json_decref(a);
	a = answer("{\"header\":{\"revision\":\"31\"},\"responses\":[{\"response_range\":{}},"
	           "{\"response_range\":{\"kvs\":[{\"key\":\"!!\"}]}}]}", ETCD_OK, 0);
	assert_int_equal(etcd_parse_lock_check(a, &c, err, sizeof(err)), -1);
	assert_null(c.before);
	json_decref(a);

	const char *keys[] = { "locks/db/a", "locks/db/b" };
	s = etcd_body_watch_keys(keys, 2, 31);
	assert_non_null(strstr(s, "\"key\":\"bG9ja3MvZGIvYQ==\""));
	assert_non_null(strchr(s, '\n'));
	assert_non_null(strstr(strchr(s, '\n'), "\"key\":\"bG9ja3MvZGIvYg==\""));
	free(s);
	s = etcd_body_lock_check("locks/db/", "locks/db/b", 25, 3);
	assert_non_null(strstr(s, "\"max_create_revision\":\"24\""));
	assert_non_null(strstr(s, "\"limit\":\"3\""));
	free(s);
	s = etcd_body_lock_create("locks/db/", "locks/db/b", "me", 7, 2);
	a = json_loads(s, 0, NULL);
	assert_int_equal(json_array_size(json_object_get(a, "success")), 2);
	assert_int_equal(json_array_size(json_object_get(a, "failure")), 2);
	json_decref(a);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_b64_vectors),
		cmocka_unit_test(test_b64_binary_roundtrip),
		cmocka_unit_test(test_b64_invalid),
		cmocka_unit_test(test_prefix_end),
		cmocka_unit_test(test_keepalive_answers),
		cmocka_unit_test(test_errors_and_garbage),
		cmocka_unit_test(test_int64_fields),
		cmocka_unit_test(test_grant),
		cmocka_unit_test(test_campaign),
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_check_malformed),
		cmocka_unit_test(test_watch_lines),
		cmocka_unit_test(test_lines_across_chunks),
		cmocka_unit_test(test_lines_limits),
		cmocka_unit_test(test_bodies),
		cmocka_unit_test(test_lock_answers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
