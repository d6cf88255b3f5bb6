/* backends/consul_proto.c: session bodies and Consul's answers, including
 * malformed ones, and Flags read as unsigned 64-bit numbers from the text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "backends/consul_proto.h"

#define S(x) (x), strlen(x)

static void test_session_body(void **state)
{
	char *b = consul_body_session("elect a1", 15, 0, "release");
	json_t *o = json_loads(b, 0, NULL);

	(void)state;
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "TTL")), "15s");
	assert_string_equal(json_string_value(json_object_get(o, "LockDelay")), "0ms");
	assert_string_equal(json_string_value(json_object_get(o, "Behavior")), "release");
	assert_string_equal(json_string_value(json_object_get(o, "Name")), "elect a1");
	/* No health checks: an empty list each, not a missing field (which
	 * Consul fills with serfHealth). */
	assert_true(json_is_array(json_object_get(o, "NodeChecks")));
	assert_int_equal(json_array_size(json_object_get(o, "NodeChecks")), 0);
	assert_true(json_is_array(json_object_get(o, "Checks")));
	assert_int_equal(json_array_size(json_object_get(o, "Checks")), 0);
	json_decref(o);
	free(b);
	b = consul_body_session("x", 10, 2500, "delete");
	assert_non_null(strstr(b, "\"LockDelay\":\"2500ms\""));
	free(b);
}

static void test_parse_session(void **state)
{
	char err[200], *id;

	(void)state;
	assert_int_equal(consul_parse_session(S("{\"ID\":\"adf4238a-882b-9ddc-4a9d-5b6758e4159e\"}"), &id,
	                                      err, sizeof(err)), 0);
	assert_string_equal(id, "adf4238a-882b-9ddc-4a9d-5b6758e4159e");
	free(id);
	assert_int_equal(consul_parse_session(S("{}"), &id, err, sizeof(err)), -1);
	assert_null(id);
	assert_int_equal(consul_parse_session(S("{\"ID\":42}"), &id, err, sizeof(err)), -1);
	assert_int_equal(consul_parse_session(S("{\"ID\":\"\"}"), &id, err, sizeof(err)), -1);
	assert_int_equal(consul_parse_session(S("not json"), &id, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "malformed"));
	assert_int_equal(consul_parse_session(S(""), &id, err, sizeof(err)), -1);
}

static void test_parse_renew(void **state)
{
	char err[200];

	(void)state;
	assert_int_equal(consul_parse_renew(S("[{\"ID\":\"s1\",\"TTL\":\"15s\"}]"), err, sizeof(err)), 1);
	/* Gone: an empty array, null, an empty body. */
	assert_int_equal(consul_parse_renew(S("[]"), err, sizeof(err)), 0);
	assert_int_equal(consul_parse_renew(S("null"), err, sizeof(err)), 0);
	assert_int_equal(consul_parse_renew(S(""), err, sizeof(err)), 0);
	assert_int_equal(consul_parse_renew(S(" \n"), err, sizeof(err)), 0);
	/* Malformed. */
	assert_int_equal(consul_parse_renew(S("[{\"TTL\":\"15s\"}]"), err, sizeof(err)), -1);
	assert_int_equal(consul_parse_renew(S("{\"ID\":\"s1\"}"), err, sizeof(err)), -1);
	assert_int_equal(consul_parse_renew(S("[1]"), err, sizeof(err)), -1);
	assert_int_equal(consul_parse_renew(S("[{"), err, sizeof(err)), -1);
}

static void test_parse_bool(void **state)
{
	(void)state;
	assert_int_equal(consul_parse_bool(S("true")), 1);
	assert_int_equal(consul_parse_bool(S("true\n")), 1);
	assert_int_equal(consul_parse_bool(S("false")), 0);
	assert_int_equal(consul_parse_bool(S("")), -1);
	assert_int_equal(consul_parse_bool(S("truex")), -1);
	assert_int_equal(consul_parse_bool(S("1")), -1);
}

static const char lock_entry[] =
	"[{\"LockIndex\":3,\"Key\":\"web/.lock\",\"Flags\":3304740253564472344,"
	"\"Value\":\"YTE=\",\"Session\":\"s-1\",\"CreateIndex\":10,\"ModifyIndex\":42}]";

static void test_parse_kv_lock(void **state)
{
	struct consul_kv kv;
	char err[200];

	(void)state;
	assert_int_equal(consul_parse_kv(S(lock_entry), &kv, err, sizeof(err)), 0);
	assert_true(kv.exists);
	/* Above 2^53: a double would make it 3304740253564472320. */
	assert_true(kv.flags == CONSUL_LOCK_FLAG);
	assert_true(kv.flags == UINT64_C(3304740253564472344));
	assert_true(kv.modify_index == 42);
	assert_true(kv.lock_index == 3);
	assert_true(kv.create_index == 10);
	assert_string_equal(kv.session, "s-1");
	assert_string_equal(kv.value, "a1");
	assert_int_equal(kv.value_len, 2);
	consul_kv_free(&kv);
}

static void test_parse_kv_semaphore_flag(void **state)
{
	/* Above 2^63: jansson alone refuses the whole document. */
	static const char sem[] =
		"[ { \"Key\" : \"web/.lock\" , \"Flags\" : 16210313421097356768 ,\n"
		"\"Value\":null,\"ModifyIndex\":7} ]";
	struct consul_kv kv;
	char err[200];

	(void)state;
	assert_int_equal(consul_parse_kv(S(sem), &kv, err, sizeof(err)), 0);
	assert_true(kv.flags == CONSUL_SEM_FLAG);
	assert_true(kv.flags == UINT64_C(16210313421097356768));
	assert_null(kv.session);
	assert_string_equal(kv.value, "");
	consul_kv_free(&kv);
}

static void test_parse_kv_free_and_missing(void **state)
{
	struct consul_kv kv;
	char err[200];

	(void)state;
	/* Released: no Session (or an empty one). */
	assert_int_equal(consul_parse_kv(S("[{\"Key\":\"k\",\"Flags\":0,\"ModifyIndex\":5,\"Session\":\"\"}]"),
	                                 &kv, err, sizeof(err)), 0);
	assert_true(kv.exists);
	assert_null(kv.session);
	assert_true(kv.flags == 0);
	consul_kv_free(&kv);
	assert_int_equal(consul_parse_kv(S("[]"), &kv, err, sizeof(err)), 0);
	assert_false(kv.exists);
	consul_kv_free(&kv);
}

static void test_parse_kv_malformed(void **state)
{
	static const char *const bad[] = {
		"", "{}", "null", "[1]", "[{\"Key\":\"k\"}]",                 /* no ModifyIndex */
		"[{\"Key\":\"k\",\"ModifyIndex\":-1}]",
		"[{\"Key\":\"k\",\"ModifyIndex\":\"5\"}]",
		"[{\"Key\":\"k\",\"ModifyIndex\":5,\"Flags\":-1}]",
		"[{\"Key\":\"k\",\"ModifyIndex\":5,\"Flags\":1.5}]",
		"[{\"Key\":\"k\",\"ModifyIndex\":5,\"Flags\":\"3\"}]",
		"[{\"Key\":\"k\",\"ModifyIndex\":5,\"Flags\":18446744073709551616}]", /* 2^64 */
		"[{\"Key\":\"k\",\"ModifyIndex\":5,\"Value\":\"!!\"}]",          /* not base64 */
		"[{\"Key\":\"k\",\"ModifyIndex\":5,\"Session\":7}]",
		"[{\"Key\":\"k\",\"ModifyIndex\":5",                            /* cut off */
		"[{\"Key\":\"k\\\"}]",
	};
	struct consul_kv kv;
	char err[200];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (consul_parse_kv(S(bad[i]), &kv, err, sizeof(err)) != -1)
			fail_msg("accepted: %s", bad[i]);
		assert_true(err[0] != '\0');
		assert_false(kv.exists);
		assert_null(kv.session);
		assert_null(kv.value);
	}
}

static void test_scrub_flags(void **state)
{
	/* Only the entries' own Flags: not a "Flags" inside a string or a
	 * nested object, nor a value that reads "Flags". */
	char text[] = "[{\"Key\":\"a\\\"Flags\\\":9\",\"Flags\":18446744073709551615,\"X\":{\"Flags\":5}},"
	              "{\"Value\":\"Flags\",\"Flags\":1},{\"Key\":\"c\"}]";
	uint64_t f[4];
	bool has[4];
	json_t *a;

	(void)state;
	assert_int_equal(consul_scrub_flags(text, strlen(text), f, has, 4), 0);
	assert_true(has[0] && f[0] == UINT64_MAX);
	assert_true(has[1] && f[1] == 1);
	assert_false(has[2]);
	assert_false(has[3]);
	a = json_loads(text, 0, NULL);
	assert_non_null(a);     /* jansson can read what is left */
	assert_int_equal(json_integer_value(json_object_get(json_object_get(json_array_get(a, 0), "X"),
	                                                     "Flags")), 5);
	json_decref(a);
}

static void test_index_and_escape(void **state)
{
	char *k;

	(void)state;
	assert_true(consul_parse_index("12345") == 12345);
	assert_true(consul_parse_index("12345\r\n") == 12345);
	assert_true(consul_parse_index("") == 0);
	assert_true(consul_parse_index(NULL) == 0);
	assert_true(consul_parse_index("-3") == 0);
	assert_true(consul_parse_index("12x") == 0);
	k = consul_escape_key("elect/web app/.lock?x&y");
	assert_string_equal(k, "elect/web%20app/.lock%3Fx%26y");
	free(k);
}

/* GET ?recurse of a semaphore: .lock and two contenders, Flags above 2^63. */
static void test_parse_kv_list(void **state)
{
	const char *body =
		"[{\"Key\":\"l/pool/.lock\",\"Flags\":16210313421097356768,\"Value\":\"eyJMaW1pdCI6Mn0=\","
		"\"CreateIndex\":5,\"ModifyIndex\":9,\"LockIndex\":0},"
		"{\"Key\":\"l/pool/s1\",\"Flags\":16210313421097356768,\"Session\":\"s1\",\"Value\":\"YQ==\","
		"\"CreateIndex\":6,\"ModifyIndex\":9,\"LockIndex\":1},"
		"{\"Key\":\"l/pool/s2\",\"Flags\":0,\"Session\":null,\"Value\":null,"
		"\"CreateIndex\":7,\"ModifyIndex\":7,\"LockIndex\":0}]";
	const char *bad[] = {
		"{}", "[{\"Key\":\"k\"}]", "[{\"Key\":\"k\",\"ModifyIndex\":1},{\"ModifyIndex\":2}]",
		"[{\"Key\":\"k\",\"ModifyIndex\":1,\"Flags\":-1}]", "[{\"Key\":\"k\",\"ModifyIndex\":1,\"Value\":\"@@\"}]",
		"[{\"Key\":\"k\",\"ModifyIndex\":1,\"Flags\":18446744073709551616}]", "[", "",
	};
	struct consul_kv *kvs;
	size_t n;
	char err[200];

	(void)state;
	assert_int_equal(consul_parse_kv_list(body, strlen(body), &kvs, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 3);
	assert_string_equal(kvs[0].key, "l/pool/.lock");
	assert_true(kvs[0].flags == CONSUL_SEM_FLAG);
	assert_string_equal(kvs[0].value, "{\"Limit\":2}");
	assert_null(kvs[0].session);
	assert_true(kvs[1].flags == CONSUL_SEM_FLAG && kvs[1].create_index == 6);
	assert_string_equal(kvs[1].session, "s1");
	assert_true(kvs[2].flags == 0 && kvs[2].session == NULL && kvs[2].value_len == 0);
	consul_kv_list_free(kvs, n);
	assert_int_equal(consul_parse_kv_list(S("[]"), &kvs, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (consul_parse_kv_list(bad[i], strlen(bad[i]), &kvs, &n, err, sizeof(err)) != -1)
			fail_msg("accepted: %s", bad[i]);
		assert_null(kvs);
		assert_int_equal(n, 0);
		assert_non_null(strstr(err, "Consul"));
	}
}

static void test_txn(void **state)
{
	uint64_t flags = CONSUL_SEM_FLAG, index = 42, got;
	char err[200], *op;
	const char *ok = "{\"Results\":[{\"KV\":{\"Key\":\"l/p/.lock\",\"Flags\":16210313421097356768,"
	                 "\"Value\":null,\"CreateIndex\":5,\"ModifyIndex\":77}},{\"KV\":{\"Key\":\"l/p/s\","
	                 "\"Flags\":16210313421097356768,\"ModifyIndex\":77}}],\"Errors\":null}";
	const char *bad[] = { "{\"Results\":[]}", "{\"Results\":null,\"Errors\":[{\"What\":\"x\"}]}", "[]",
	                      "{\"Results\":[{\"KV\":{\"ModifyIndex\":-1}}]}", "nope",
	                      "{\"Results\":[{\"KV\":{\"Flags\":1.5,\"ModifyIndex\":3}}]}" };

	(void)state;
	op = consul_txn_op("cas", "l/p/.lock", "{\"Limit\":3}", &flags, NULL, &index);
	/* Flags written as text: jansson has no integer above 2^63. */
	assert_string_equal(op, "{\"KV\":{\"Verb\":\"cas\",\"Key\":\"l/p/.lock\",\"Value\":\"eyJMaW1pdCI6M30=\","
	                        "\"Index\":42,\"Flags\":16210313421097356768}}");
	free(op);
	op = consul_txn_op("delete", "a\"b", NULL, NULL, NULL, NULL);
	assert_string_equal(op, "{\"KV\":{\"Verb\":\"delete\",\"Key\":\"a\\\"b\"}}");
	free(op);
	op = consul_txn_op("check-session", "k", NULL, NULL, "s1", NULL);
	assert_string_equal(op, "{\"KV\":{\"Verb\":\"check-session\",\"Key\":\"k\",\"Session\":\"s1\"}}");
	free(op);
	assert_int_equal(consul_parse_txn_index(ok, strlen(ok), &got, err, sizeof(err)), 0);
	assert_true(got == 77);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (consul_parse_txn_index(bad[i], strlen(bad[i]), &got, err, sizeof(err)) != -1)
			fail_msg("accepted: %s", bad[i]);
}

static void test_semaphore_value(void **state)
{
	struct consul_sem sem;
	char err[200], *out;
	const char *bad[] = { "[]", "{\"Holders\":{}}", "{\"Limit\":0}", "{\"Limit\":-2}", "{\"Limit\":\"3\"}",
	                      "{\"Limit\":3,\"Holders\":[\"a\"]}", "{\"Limit\":2000000}", "not json" };

	(void)state;
	assert_int_equal(consul_sem_decode(S("{\"Limit\":3,\"Holders\":{\"s1\":true,\"s2\":false,\"s3\":true}}"),
	                                   &sem, err, sizeof(err)), 0);
	assert_int_equal(sem.limit, 3);
	assert_int_equal(sem.n, 2);    /* false: not a holder */
	assert_true(consul_sem_has(&sem, "s1") && consul_sem_has(&sem, "s3") && !consul_sem_has(&sem, "s2"));
	free(sem.holders[0]);
	sem.holders[0] = NULL;         /* pruned */
	out = consul_sem_encode(&sem);
	assert_string_equal(out, "{\"Holders\":{\"s3\":true},\"Limit\":3}");
	free(out);
	consul_sem_free(&sem);
	/* consul lock -n writes "Holders":null for none; an empty value is none. */
	assert_int_equal(consul_sem_decode(S("{\"Limit\":2,\"Holders\":null}"), &sem, err, sizeof(err)), 0);
	assert_true(sem.limit == 2 && sem.n == 0);
	consul_sem_free(&sem);
	assert_int_equal(consul_sem_decode("", 0, &sem, err, sizeof(err)), 0);
	assert_true(sem.limit == 0 && sem.n == 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (consul_sem_decode(bad[i], strlen(bad[i]), &sem, err, sizeof(err)) != -1)
			fail_msg("accepted: %s", bad[i]);
		assert_int_equal(sem.n, 0);
	}
}

/* A lock check: gets' values in Results (200), failed ops in Errors (409). */
static void test_txn_results_and_errors(void **state)
{
	const char *ok = "{\"Results\":[{\"KV\":{\"Key\":\"l/p/.lock\",\"Flags\":16210313421097356768,"
	                 "\"Value\":\"eyJMaW1pdCI6MX0=\",\"CreateIndex\":5,\"ModifyIndex\":8}},"
	                 "{\"KV\":{\"Key\":\"l/p/s\",\"Flags\":1,\"Value\":null,\"Session\":\"s\",\"ModifyIndex\":9}}],"
	                 "\"Errors\":null}";
	const char *failed = "{\"Results\":null,\"Errors\":[{\"OpIndex\":2,\"What\":\"x\"},{\"OpIndex\":5,\"What\":\"y\"}]}";
	const char *bad_ok[] = { "{\"Results\":null}", "{}", "[]", "{\"Results\":[{\"KV\":{\"Key\":\"k\"}}]}",
	                         "{\"Results\":[{}]}" };
	const char *bad_err[] = { "{\"Errors\":[]}", "{\"Errors\":null}", "{\"Errors\":[{\"What\":\"x\"}]}",
	                          "{\"Errors\":[{\"OpIndex\":-1}]}", "<html>" };
	struct consul_kv *kvs;
	size_t n, ops[4];
	char err[200];

	(void)state;
	assert_int_equal(consul_parse_txn_kvs(ok, strlen(ok), &kvs, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	assert_string_equal(kvs[0].key, "l/p/.lock");
	assert_string_equal(kvs[0].value, "{\"Limit\":1}");
	assert_string_equal(kvs[1].session, "s");
	consul_kv_list_free(kvs, n);
	for (size_t i = 0; i < sizeof(bad_ok) / sizeof(bad_ok[0]); i++)
		if (consul_parse_txn_kvs(bad_ok[i], strlen(bad_ok[i]), &kvs, &n, err, sizeof(err)) != -1)
			fail_msg("accepted: %s", bad_ok[i]);
	assert_int_equal(consul_parse_txn_errors(failed, strlen(failed), ops, 4, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 2);
	assert_true(ops[0] == 2 && ops[1] == 5);
	assert_int_equal(consul_parse_txn_errors(failed, strlen(failed), ops, 1, &n, err, sizeof(err)), 0);
	assert_int_equal(n, 1);
	for (size_t i = 0; i < sizeof(bad_err) / sizeof(bad_err[0]); i++)
		if (consul_parse_txn_errors(bad_err[i], strlen(bad_err[i]), ops, 4, &n, err, sizeof(err)) != -1)
			fail_msg("accepted: %s", bad_err[i]);
}

static void test_url_options(void **state)
{
	const int64_t s = INT64_C(1000000000);
	struct consul_opts o;
	char err[400];

	(void)state;
	/* None: lock-delay = TTL, session-ttl-min = Consul's 10 s. */
	assert_int_equal(consul_parse_options(NULL, 15 * s, &o, err, sizeof(err)), 0);
	assert_true(o.lock_delay_ns == 15 * s && o.ttl_min_ns == 10 * s);
	assert_int_equal(consul_parse_options("", 15 * s, &o, err, sizeof(err)), 0);
	assert_true(o.lock_delay_ns == 15 * s && o.ttl_min_ns == 10 * s);
	assert_int_equal(consul_parse_options("lock-delay=30s", 15 * s, &o, err, sizeof(err)), 0);
	assert_true(o.lock_delay_ns == 30 * s && o.ttl_min_ns == 10 * s);
	assert_int_equal(consul_parse_options("session-ttl-min=1s&lock-delay=4s", 3 * s, &o, err,
	                                      sizeof(err)), 0);
	assert_true(o.lock_delay_ns == 4 * s && o.ttl_min_ns == 1 * s);
	assert_int_equal(consul_parse_options("session-ttl-min=2s", 3 * s, &o, err, sizeof(err)), 0);
	assert_true(o.lock_delay_ns == 3 * s && o.ttl_min_ns == 2 * s);
	/* Refused, each with its reason. */
	assert_int_equal(consul_parse_options("lock-delay=2s", 3 * s, &o, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "shorter than the TTL"));
	assert_int_equal(consul_parse_options("lock-delay=61s", 15 * s, &o, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "lock-delay=61s"));
	assert_int_equal(consul_parse_options(NULL, 61 * s, &o, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "over 60s"));
	assert_int_equal(consul_parse_options("session-ttl-min=500ms", 3 * s, &o, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "session-ttl-min=500ms"));
	assert_int_equal(consul_parse_options("session-ttl-min=x", 3 * s, &o, err, sizeof(err)), -1);
	assert_int_equal(consul_parse_options("lock-delay=30s&x=1", 15 * s, &o, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "unknown URL option 'x=1'"));
	assert_int_equal(consul_parse_options("lock-delay", 15 * s, &o, err, sizeof(err)), -1);
	assert_int_equal(consul_parse_options("&&", 15 * s, &o, err, sizeof(err)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_session_body),
		cmocka_unit_test(test_parse_session),
		cmocka_unit_test(test_parse_renew),
		cmocka_unit_test(test_parse_bool),
		cmocka_unit_test(test_parse_kv_lock),
		cmocka_unit_test(test_parse_kv_semaphore_flag),
		cmocka_unit_test(test_parse_kv_free_and_missing),
		cmocka_unit_test(test_parse_kv_malformed),
		cmocka_unit_test(test_scrub_flags),
		cmocka_unit_test(test_index_and_escape),
		cmocka_unit_test(test_parse_kv_list),
		cmocka_unit_test(test_txn),
		cmocka_unit_test(test_semaphore_value),
		cmocka_unit_test(test_txn_results_and_errors),
		cmocka_unit_test(test_url_options),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
