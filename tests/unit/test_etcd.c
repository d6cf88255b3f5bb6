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

static void test_status_version(void **state)
{
	static const struct { const char *ans; int want; } cases[] = {
		{ "{\"version\":\"3.4.23\",\"dbSize\":\"20480\"}", 1 },
		{ "{\"version\":\"3.4.27\"}", 1 },
		{ "{\"version\":\"3.4.28\"}", 0 },
		{ "{\"version\":\"3.5.10\"}", 1 },
		{ "{\"version\":\"3.5.11\"}", 0 },
		{ "{\"version\":\"3.5.16\"}", 0 },
		{ "{\"version\":\"3.6.0\"}", 0 },
		{ "{\"version\":\"3.3.25\"}", 1 },
		{ "{\"version\":\"4.0.0\"}", 0 },
		{ "{\"version\":\"3.5\"}", -1 },
		{ "{\"version\":35}", -1 },
		{ "{}", -1 },
	};
	char ver[32];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *a = json_loads(cases[i].ans, 0, NULL);

		assert_non_null(a);
		assert_int_equal(etcd_parse_status_revokes_early(a, ver, sizeof(ver)), cases[i].want);
		if (cases[i].want >= 0)
			assert_string_equal(ver, json_string_value(json_object_get(a, "version")));
		json_decref(a);
	}
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
	int rc = etcd_parse_check(a, false, c, err, sizeof(err));

	json_decref(a);
	return rc;
}

#define HO   "{\"response_range\":{\"kvs\":[{\"key\":\"d2ViLmhhbmRvdmVy\",\"create_revision\":\"8\",\"value\":\"e30=\"}]}}"

/* The handover record is the last range, after the optional predecessor. */
static void test_check_handover(void **state)
{
	struct etcd_check c;
	char err[200];
	json_t *a;

	(void)state;
	a = answer("{\"header\":{\"revision\":\"10\"},\"responses\":[" OWN "," LEAD "," PRED "," HO "]}", ETCD_OK, 0);
	assert_int_equal(etcd_parse_check(a, true, &c, err, sizeof(err)), 0);
	json_decref(a);
	assert_string_equal(c.pred_key, "web/p");
	assert_string_equal(c.handover, "{}");
	etcd_check_free(&c);
	a = answer("{\"header\":{\"revision\":\"10\"},\"responses\":[" OWN "," OWN "," NONE "]}", ETCD_OK, 0);
	assert_int_equal(etcd_parse_check(a, true, &c, err, sizeof(err)), 0);
	json_decref(a);
	assert_null(c.pred_key);
	assert_null(c.handover);
	etcd_check_free(&c);
	/* Asked for, not there: malformed. */
	a = answer("{\"header\":{\"revision\":\"10\"},\"responses\":[" OWN "," LEAD "]}", ETCD_OK, 0);
	assert_int_equal(etcd_parse_check(a, true, &c, err, sizeof(err)), -1);
	json_decref(a);
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
	s = etcd_body_check("web/", "web/1f", 1, NULL);
	j = json_loads(s, 0, NULL);
	assert_int_equal(json_array_size(json_object_get(j, "success")), 2);
	json_decref(j);
	free(s);
	s = etcd_body_check("web/", "web/1f", 9, NULL);
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

/* Listings (etcd_lock.c's list): a kv of a range answer, the key and value
 * base64-encoded here; value NULL leaves it out, as the gateway does for "". */
static json_t *list_kv(const char *key, size_t keylen, const char *rev, const char *value)
{
	char *k = etcd_b64_encode(key, keylen);
	json_t *o = json_pack("{s:s,s:s,s:s}", "key", k, "create_revision", rev, "mod_revision", rev);

	free(k);
	if (value != NULL) {
		char *v = etcd_b64_encode(value, strlen(value));
		json_object_set_new(o, "value", json_string(v));
		free(v);
	}
	return o;
}

#define KV(key, rev, value) list_kv(key, strlen(key), rev, value)

static void test_list_page(void **state)
{
	char long_name[140], long_key[160], err[200];
	struct etcd_list l = { 0 };
	json_t *a;

	(void)state;
	memset(long_name, 'x', 129);
	long_name[129] = '\0';
	snprintf(long_key, sizeof(long_key), "locks/%s/1", long_name);
	/* Key order, as etcd sends it; every kind of key that is no lock key
	 * in between, the last one too. */
	a = json_pack("{s:{s:s},s:[o,o,o,o,o,o,o,o,o,o,o,o],s:s}", "header", "revision", "40", "kvs",
	              KV("locks/.hidden/1", "6", "x"),
	              KV("locks/b@d/1", "11", "x"),
	              KV("locks/db/", "8", "x"),
	              KV("locks/db/694d", "5", "node-a"),
	              KV("locks/db/694d-1", "20", "node-a"),
	              KV("locks/db/77ab", "14", NULL),     /* etcdctl lock: no value */
	              list_kv("locks/db/\0z", 11, "12", "x"),
	              KV("locks/db/x/y", "7", "x"),
	              KV("locks/plain", "9", "x"),
	              KV("locks/web/694d", "3", "node-b"),
	              KV(long_key, "10", "x"),
	              list_kv("locks/zz\0", 9, "13", "x"),
	              "count", "12");
	assert_non_null(a);
	assert_int_equal(etcd_parse_list_page(a, "locks/", &l, err, sizeof(err)), 0);
	json_decref(a);
	assert_int_equal(l.n, 4);
	assert_int_equal(l.revision, 40);
	assert_false(l.next_page);
	assert_int_equal(l.after_len, 9);           /* the last key, zero byte and all */
	assert_memory_equal(l.after, "locks/zz\0", 9);
	assert_false(etcd_list_finish(&l, 10000));
	/* Grouped by name in key order, each name's oldest first. */
	assert_string_equal(l.kv[0].name, "db");
	assert_string_equal(l.kv[0].key, "locks/db/694d");
	assert_string_equal(l.kv[0].value, "node-a");
	assert_int_equal(l.kv[0].create_rev, 5);
	assert_int_equal(l.kv[0].position, 0);
	assert_string_equal(l.kv[1].key, "locks/db/77ab");
	assert_string_equal(l.kv[1].value, "");
	assert_int_equal(l.kv[1].position, 1);
	assert_string_equal(l.kv[2].key, "locks/db/694d-1");
	assert_int_equal(l.kv[2].position, 2);
	assert_string_equal(l.kv[3].name, "web");
	assert_string_equal(l.kv[3].value, "node-b");
	assert_int_equal(l.kv[3].position, 0);
	etcd_list_free(&l);

	/* Nothing there: no kvs at all, or an empty array. */
	a = answer("{\"header\":{\"revision\":\"4\"}}", ETCD_OK, 0);
	assert_int_equal(etcd_parse_list_page(a, "locks/", &l, err, sizeof(err)), 0);
	json_decref(a);
	assert_int_equal(l.revision, 4);
	assert_null(l.after);
	a = answer("{\"header\":{\"revision\":\"5\"},\"kvs\":[],\"more\":false}", ETCD_OK, 0);
	assert_int_equal(etcd_parse_list_page(a, "locks/", &l, err, sizeof(err)), 0);
	json_decref(a);
	assert_int_equal(l.revision, 4);            /* the first page's view */
	assert_int_equal(l.n, 0);
	assert_false(etcd_list_finish(&l, 10000));
	etcd_list_free(&l);
}

static void test_list_pages_and_truncation(void **state)
{
	char err[200];
	struct etcd_list l = { 0 };
	json_t *a;

	(void)state;
	/* Two pages: the second continues after the first's last key. */
	a = json_pack("{s:{s:s},s:[o,o],s:b}", "header", "revision", "50", "kvs",
	              KV("locks/a/1", "9", "n"), KV("locks/b/1", "4", "n"), "more", 1);
	assert_int_equal(etcd_parse_list_page(a, "locks/", &l, err, sizeof(err)), 0);
	json_decref(a);
	assert_true(l.next_page);
	assert_string_equal(l.after, "locks/b/1");
	a = json_pack("{s:{s:s},s:[o,o]}", "header", "revision", "77", "kvs",
	              KV("locks/b/2", "3", "n"), KV("locks/c/1", "5", "n"));
	assert_int_equal(etcd_parse_list_page(a, "locks/", &l, err, sizeof(err)), 0);
	json_decref(a);
	assert_false(l.next_page);
	assert_int_equal(l.revision, 50);
	assert_string_equal(l.after, "locks/c/1");
	assert_false(etcd_list_finish(&l, 10000));
	assert_int_equal(l.n, 4);
	assert_string_equal(l.kv[1].key, "locks/b/2");   /* b's oldest first */
	assert_int_equal(l.kv[2].position, 1);
	etcd_list_free(&l);

	/* More than max: the last name kept may be incomplete, so it goes too. */
	a = json_pack("{s:{s:s},s:[o,o,o,o]}", "header", "revision", "50", "kvs",
	              KV("locks/a/1", "9", "n"), KV("locks/b/1", "4", "n"), KV("locks/b/2", "3", "n"),
	              KV("locks/c/1", "5", "n"));
	assert_int_equal(etcd_parse_list_page(a, "locks/", &l, err, sizeof(err)), 0);
	assert_true(etcd_list_finish(&l, 2));
	assert_int_equal(l.n, 1);
	assert_string_equal(l.kv[0].key, "locks/a/1");
	etcd_list_free(&l);
	assert_int_equal(etcd_parse_list_page(a, "locks/", &l, err, sizeof(err)), 0);
	assert_true(etcd_list_finish(&l, 3));
	assert_int_equal(l.n, 1);                   /* b was whole, but no telling: it goes */
	etcd_list_free(&l);
	assert_int_equal(etcd_parse_list_page(a, "locks/", &l, err, sizeof(err)), 0);
	assert_false(etcd_list_finish(&l, 4));
	assert_int_equal(l.n, 4);
	etcd_list_free(&l);
	/* Pages left unread. */
	json_object_set_new(a, "more", json_true());
	assert_int_equal(etcd_parse_list_page(a, "locks/", &l, err, sizeof(err)), 0);
	assert_true(etcd_list_finish(&l, 10000));
	assert_int_equal(l.n, 3);
	etcd_list_free(&l);
	json_decref(a);
}

static void test_list_txn(void **state)
{
	char err[200];
	struct etcd_list l = { 0 };
	json_t *a;

	(void)state;
	/* An empty prefix (locks at the top, as `etcdctl lock db`): one range
	 * per name, the second name with nobody. */
	a = json_pack("{s:{s:s},s:b,s:[{s:{s:[o,o]}},{s:{s:s}}]}", "header", "revision", "9",
	              "succeeded", 1, "responses",
	              "response_range", "kvs", KV("db/2", "7", "n"), KV("db/1", "8", NULL),
	              "response_range", "count", "0");
	assert_int_equal(etcd_parse_list_txn(a, 2, "", &l, err, sizeof(err)), 0);
	assert_false(l.more);
	/* More ranges asked for than the answer has: nothing is kept. */
	assert_int_equal(etcd_parse_list_txn(a, 3, "", &l, err, sizeof(err)), -1);
	assert_string_equal(err, "malformed lock list answer");
	json_decref(a);
	assert_int_equal(l.n, 2);
	assert_false(etcd_list_finish(&l, 10000));
	assert_string_equal(l.kv[0].name, "db");
	assert_string_equal(l.kv[0].key, "db/2");
	assert_int_equal(l.kv[1].position, 1);
	assert_string_equal(l.kv[1].value, "");
	etcd_list_free(&l);
	/* A name with more keys than the range's limit: its oldest, truncated. */
	a = json_pack("{s:[{s:{s:[o],s:b}}]}", "responses", "response_range", "kvs",
	              KV("locks/db/2", "7", "n"), "more", 1);
	assert_int_equal(etcd_parse_list_txn(a, 1, "locks/", &l, err, sizeof(err)), 0);
	json_decref(a);
	assert_true(l.more);
	assert_true(etcd_list_finish(&l, 10000));
	assert_int_equal(l.n, 1);
	etcd_list_free(&l);
}

static void test_list_malformed(void **state)
{
#define R "\"header\":{\"revision\":\"8\"},"
	static const char *const bad[] = {
		"{\"kvs\":[]}",                                                    /* no revision */
		"{\"header\":{\"revision\":\"x\"},\"kvs\":[]}",
		"{" R "\"kvs\":{}}",                                               /* kvs not an array */
		"{" R "\"kvs\":\"x\"}",
		"{" R "\"kvs\":[7]}",                                              /* kv not an object */
		"{" R "\"kvs\":[{\"key\":\"!!!!\",\"create_revision\":\"3\"}]}",   /* key not base64 */
		"{" R "\"kvs\":[{\"key\":\"bG9ja3MvZGIvYQ=\",\"create_revision\":\"3\"}]}",
		"{" R "\"kvs\":[{\"key\":5,\"create_revision\":\"3\"}]}",
		"{" R "\"kvs\":[{\"create_revision\":\"3\"}]}",                     /* no key */
		"{" R "\"kvs\":[{\"key\":\"bG9ja3MvZGIvYQ==\"}]}",                  /* no create revision */
		"{" R "\"kvs\":[{\"key\":\"bG9ja3MvZGIvYQ==\",\"create_revision\":\"x\"}]}",
		"{" R "\"kvs\":[{\"key\":\"bG9ja3MvZGIvYQ==\",\"create_revision\":\"-2\"}]}",
		"{" R "\"kvs\":[{\"key\":\"bG9ja3MvZGIvYQ==\",\"create_revision\":\"3\",\"value\":\"?\"}]}",
		"{" R "\"kvs\":[{\"key\":\"bG9ja3MvZGIvYQ==\",\"create_revision\":\"3\",\"value\":[]}]}",
		"{" R "\"kvs\":[],\"more\":\"yes\"}",
		"{" R "\"kvs\":[],\"more\":true}",                                 /* a page that goes nowhere */
		"{" R "\"more\":true}",
		/* a good key, then a bad one: the good one is not kept either */
		"{" R "\"kvs\":[{\"key\":\"bG9ja3MvZGIvYQ==\",\"create_revision\":\"3\"},{\"key\":\"bG9ja3MvZGIvYg==\"}]}",
		/* a bad key that is no lock key anyway */
		"{" R "\"kvs\":[{\"key\":\"b3RoZXI=\",\"create_revision\":\"3\",\"value\":\"!\"}]}",
	};
	static const char *const bad_txn[] = {
		"{}",
		"{\"responses\":{}}",
		"{\"responses\":[{\"response_range\":{}}]}",                      /* one of two */
		"{\"responses\":[{\"response_range\":{}},{\"response_put\":{}}]}",
		"{\"responses\":[{\"response_range\":{}},{\"response_range\":[]}]}",
		"{\"responses\":[{\"response_range\":{}},{\"response_range\":{\"kvs\":[null]}}]}",
		"{\"responses\":[{\"response_range\":{\"more\":true}},{\"response_range\":{\"kvs\":7}}]}",
	};
	char err[200];
	struct etcd_list l = { 0 };
	json_t *a;

	(void)state;
	/* One page in already: a bad answer leaves everything as it was. */
	a = answer("{\"header\":{\"revision\":\"6\"},\"kvs\":[{\"key\":\"bG9ja3MvZGIvYQ==\","
	           "\"create_revision\":\"3\"}],\"more\":true}", ETCD_OK, 0);
	assert_int_equal(etcd_parse_list_page(a, "locks/", &l, err, sizeof(err)), 0);
	json_decref(a);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct etcd_list fresh = { 0 };
		a = answer(bad[i], ETCD_OK, 0);
		if (i >= 2) {           /* those two are fine after a first page */
			assert_int_equal(etcd_parse_list_page(a, "locks/", &l, err, sizeof(err)), -1);
			assert_string_equal(err, "malformed lock list answer");
			assert_int_equal(l.n, 1);
			assert_int_equal(l.revision, 6);
			assert_true(l.next_page);
			assert_string_equal(l.after, "locks/db/a");
		}
		assert_int_equal(etcd_parse_list_page(a, "locks/", &fresh, err, sizeof(err)), -1);
		assert_int_equal(fresh.n, 0);
		assert_int_equal(fresh.revision, 0);
		assert_null(fresh.after);
		etcd_list_free(&fresh);
		json_decref(a);
	}
	for (size_t i = 0; i < sizeof(bad_txn) / sizeof(bad_txn[0]); i++) {
		a = answer(bad_txn[i], ETCD_OK, 0);
		assert_int_equal(etcd_parse_list_txn(a, 2, "locks/", &l, err, sizeof(err)), -1);
		assert_int_equal(l.n, 1);
		assert_false(l.more);
		json_decref(a);
	}
	assert_int_equal(etcd_parse_list_page(NULL, "locks/", &l, err, sizeof(err)), -1);
	assert_int_equal(etcd_parse_list_txn(NULL, 1, "locks/", &l, err, sizeof(err)), -1);
	assert_string_equal(l.kv[0].key, "locks/db/a");
	assert_string_equal(l.kv[0].name, "db");
	etcd_list_free(&l);
#undef R
}

static void test_list_bodies(void **state)
{
	const char *names[] = { "db", "web" };
	char *s;
	json_t *j, *r;

	(void)state;
	s = etcd_body_list_page("locks/", NULL, 0, 500, 0);
	j = json_loads(s, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "key")), "bG9ja3Mv");        /* locks/ */
	assert_string_equal(json_string_value(json_object_get(j, "range_end")), "bG9ja3Mw");  /* locks0 */
	assert_string_equal(json_string_value(json_object_get(j, "limit")), "500");
	assert_null(json_object_get(j, "revision"));
	assert_null(json_object_get(j, "sort_target"));   /* key order: pages follow keys */
	assert_null(json_object_get(j, "keys_only"));     /* the values are the owners */
	json_decref(j);
	free(s);
	/* The next page: just after "locks/a\0" (any bytes), at the first's revision. */
	s = etcd_body_list_page("locks/", "locks/a\0", 8, 500, 41);
	j = json_loads(s, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "key")), "bG9ja3MvYQAA");    /* locks/a\0\0 */
	assert_string_equal(json_string_value(json_object_get(j, "range_end")), "bG9ja3Mw");
	assert_string_equal(json_string_value(json_object_get(j, "revision")), "41");
	json_decref(j);
	free(s);
	s = etcd_body_list_names("", names, 2, 7);
	j = json_loads(s, 0, NULL);
	assert_int_equal(json_array_size(json_object_get(j, "success")), 2);
	r = json_object_get(json_array_get(json_object_get(j, "success"), 0), "request_range");
	assert_string_equal(json_string_value(json_object_get(r, "key")), "ZGIv");           /* db/ */
	assert_string_equal(json_string_value(json_object_get(r, "range_end")), "ZGIw");     /* db0 */
	assert_string_equal(json_string_value(json_object_get(r, "limit")), "7");
	assert_string_equal(json_string_value(json_object_get(r, "sort_target")), "CREATE");
	r = json_object_get(json_array_get(json_object_get(j, "success"), 1), "request_range");
	assert_string_equal(json_string_value(json_object_get(r, "key")), "d2ViLw==");       /* web/ */
	json_decref(j);
	free(s);
	s = etcd_body_list_names("locks/", names, 1, 1);
	assert_non_null(strstr(s, "\"key\":\"bG9ja3MvZGIv\""));                               /* locks/db/ */
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
		cmocka_unit_test(test_status_version),
		cmocka_unit_test(test_campaign),
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_check_handover),
		cmocka_unit_test(test_check_malformed),
		cmocka_unit_test(test_watch_lines),
		cmocka_unit_test(test_lines_across_chunks),
		cmocka_unit_test(test_lines_limits),
		cmocka_unit_test(test_bodies),
		cmocka_unit_test(test_lock_answers),
		cmocka_unit_test(test_list_page),
		cmocka_unit_test(test_list_pages_and_truncation),
		cmocka_unit_test(test_list_txn),
		cmocka_unit_test(test_list_malformed),
		cmocka_unit_test(test_list_bodies),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
