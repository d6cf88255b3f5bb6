/* elector/health_conf.c: --health-url forms (http://, unix:SOCKET:/PATH,
 * malformed ones) and the settings' checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/clock.h"
#include "elector/health.h"

static void test_http_url(void **state)
{
	struct health_url u;
	char err[256];

	(void)state;
	assert_int_equal(health_parse_url("http://127.0.0.1:8080/healthz", &u, err, sizeof(err)), 0);
	assert_string_equal(u.url, "http://127.0.0.1:8080/healthz");
	assert_null(u.socket_path);
	health_url_free(&u);
	assert_int_equal(health_parse_url("http://host", &u, err, sizeof(err)), 0);
	assert_string_equal(u.url, "http://host");
	health_url_free(&u);
}

static void test_unix_url(void **state)
{
	struct health_url u;
	char err[256];

	(void)state;
	assert_int_equal(health_parse_url("unix:/run/app.sock:/healthz?x=1", &u, err, sizeof(err)), 0);
	assert_string_equal(u.socket_path, "/run/app.sock");
	assert_string_equal(u.url, "http://localhost/healthz?x=1");
	health_url_free(&u);
	/* A ':' in the socket path: the last ":/" separates. */
	assert_int_equal(health_parse_url("unix:/run/a:b.sock:/", &u, err, sizeof(err)), 0);
	assert_string_equal(u.socket_path, "/run/a:b.sock");
	assert_string_equal(u.url, "http://localhost/");
	health_url_free(&u);
}

static void test_bad_urls(void **state)
{
	static const struct { const char *url, *msg; } bad[] = {
		{ "https://x/", "use http://" },
		{ "ftp://x/", "use http://" },
		{ "", "use http://" },
		{ "http:///path", "no host" },
		{ "http://a b/", "spaces" },
		{ "unix:/run/app.sock", "unix:SOCKET:/PATH" },
		{ "unix::/x", "unix:SOCKET:/PATH" },
		{ "unix:rel.sock:/x", "absolute" },
	};
	struct health_url u;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(health_parse_url(bad[i].url, &u, err, sizeof(err)), -1);
		assert_non_null(strstr(err, bad[i].msg));
		assert_null(strchr(err, '\n'));
		assert_null(u.url);
		assert_null(u.socket_path);
	}
}

static void test_config_checks(void **state)
{
	struct health_config c = { .cmd = "true", .interval_ns = NS_PER_SEC,
	                           .timeout_ns = NS_PER_SEC, .fails = 1, .passes = 1 };
	struct health_config bad;
	char err[256];

	(void)state;
	assert_int_equal(health_check_config(&c, err, sizeof(err)), 0);
	bad = c;
	bad.cmd = NULL;
	assert_int_equal(health_check_config(&bad, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "--health-cmd or --health-url"));
	bad = c;
	bad.cmd = "";
	assert_int_equal(health_check_config(&bad, err, sizeof(err)), -1);
	bad = c;
	bad.fails = 0;
	assert_int_equal(health_check_config(&bad, err, sizeof(err)), -1);
	bad = c;
	bad.timeout_ns = 0;
	assert_int_equal(health_check_config(&bad, err, sizeof(err)), -1);
	bad = c;
	bad.grace_ns = -1;
	assert_int_equal(health_check_config(&bad, err, sizeof(err)), -1);
	assert_string_equal(health_state_name(HEALTH_UNHEALTHY), "unhealthy");
	assert_string_equal(health_state_name((enum health_state)7), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_http_url),
		cmocka_unit_test(test_unix_url),
		cmocka_unit_test(test_bad_urls),
		cmocka_unit_test(test_config_checks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
