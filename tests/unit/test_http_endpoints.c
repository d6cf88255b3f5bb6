/* common/http_endpoints.c: the host lists of the etcd and Consul URLs
 * (default ports, [IPv6], what is refused and the line that says so),
 * rotation on failures, and collecting answers up to a limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/http_endpoints.h"
#include "common/log.h"

static void test_parse_defaults_and_ipv6(void **state)
{
	struct http_endpoints e = { 0 };
	char err[256] = "";

	(void)state;
	assert_int_equal(http_endpoints_parse(&e, "consul", "agent address",
	                                      "a,b:1,[::1],[::1]:65535,127.0.0.1:8501", "8500",
	                                      err, sizeof(err)), 0);
	assert_int_equal(e.n, 5);
	assert_string_equal(e.list[0], "a:8500");
	assert_string_equal(e.list[1], "b:1");
	assert_string_equal(e.list[2], "[::1]:8500");
	assert_string_equal(e.list[3], "[::1]:65535");
	assert_string_equal(e.list[4], "127.0.0.1:8501");
	assert_string_equal(e.who, "consul");
	http_endpoints_free(&e);
	assert_null(e.list);
}

static void test_parse_refuses(void **state)
{
	static const char *const bad[] = {
		"", "a,,b", "a,", "a:0", "a:65536", "a:", ":1", "a:1x", "a:b:c", "a/b", "u@a",
		"a?x", "a b", "[::1", "[::1]x", "[::1]:", "a:99999999999",
	};
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct http_endpoints e = { 0 };
		err[0] = '\0';
		assert_int_equal(http_endpoints_parse(&e, "etcd", "endpoint", bad[i], "2379", err,
		                                      sizeof(err)), -1);
		assert_non_null(strstr(err, "etcd: bad endpoint '"));
		assert_non_null(strstr(err, "with a port from 1 to 65535"));
		assert_null(strchr(err, '\n'));
		http_endpoints_free(&e);
	}
}

static void test_rotation(void **state)
{
	struct http_endpoints e = { 0 };
	char err[256];

	(void)state;
	assert_int_equal(http_endpoints_parse(&e, "etcd", "endpoint", "a,b,c", "2379", err, sizeof(err)), 0);
	e.owner_logs = true;
	http_endpoints_failed(&e, 0, "read", "refused");
	assert_true(e.failing);
	assert_int_equal(e.cur, 1);
	/* A late failure of an agent no longer in use does not skip the next one. */
	http_endpoints_failed(&e, 0, "read", "refused");
	assert_int_equal(e.cur, 1);
	http_endpoints_failed(&e, 1, "read", "timeout");
	http_endpoints_failed(&e, 2, "read", "timeout");
	assert_int_equal(e.cur, 0);
	http_endpoints_ok(&e, 0, "read");
	assert_false(e.failing);
	http_endpoints_free(&e);

	/* One agent: nowhere to move. */
	assert_int_equal(http_endpoints_parse(&e, "consul", "agent address", "x", "8500", err, sizeof(err)), 0);
	http_endpoints_failed(&e, 0, "watch", "timeout");
	assert_int_equal(e.cur, 0);
	http_endpoints_free(&e);
}

static void test_collect(void **state)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;

	(void)state;
	assert_int_equal(http_collect(&buf, &len, &cap, "abc", 3, 8), 0);
	assert_int_equal(http_collect(&buf, &len, &cap, "defgh", 5, 8), 0);
	assert_string_equal(buf, "abcdefgh");
	assert_int_equal(http_collect(&buf, &len, &cap, "i", 1, 8), -1);
	assert_int_equal(len, 8);
	free(buf);
}

static void test_default_timing(void **state)
{
	int64_t req, retry;
	const int64_t s = 1000000000;

	(void)state;
	http_default_timing(0, 5 * s, &req, &retry);
	assert_int_equal(req, 2 * s);
	assert_int_equal(retry, s);
	http_default_timing(3 * s, s / 2, &req, &retry);
	assert_int_equal(req, 3 * s);
	assert_int_equal(retry, s / 2);
	http_default_timing(0, s / 100, &req, &retry);
	assert_int_equal(req, s / 100);
	assert_int_equal(retry, s / 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_defaults_and_ipv6),
		cmocka_unit_test(test_parse_refuses),
		cmocka_unit_test(test_rotation),
		cmocka_unit_test(test_collect),
		cmocka_unit_test(test_default_timing),
	};
	log_init("test", LOG_FMT_TEXT, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
