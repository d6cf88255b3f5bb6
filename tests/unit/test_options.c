/* Durations and the flag > env > file precedence of common/options.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/clock.h"
#include "common/duration.h"
#include "common/options.h"

struct t_opts {
	char *name;
	int64_t ttl;
	bool once;
	int verbose;
	char *config;
};

static const struct opt_def defs[] = {
	{ "name", 'n', OPT_STRING, offsetof(struct t_opts, name), "NAME", "name" },
	{ "ttl", 0, OPT_DURATION, offsetof(struct t_opts, ttl), "D", "ttl" },
	{ "once", 0, OPT_BOOL, offsetof(struct t_opts, once), "", "once" },
	{ "verbose", 'v', OPT_COUNT, offsetof(struct t_opts, verbose), "", "v" },
	{ "config", 'c', OPT_STRING, offsetof(struct t_opts, config), "FILE", "config" },
	{ NULL, 0, 0, 0, NULL, NULL },
};

static void test_durations(void **state)
{
	int64_t ns;

	(void)state;
	assert_int_equal(duration_parse("500ms", &ns), 0);
	assert_int_equal(ns, 500 * NS_PER_MS);
	assert_int_equal(duration_parse("10s", &ns), 0);
	assert_int_equal(ns, 10 * NS_PER_SEC);
	assert_int_equal(duration_parse("1m30s", &ns), 0);
	assert_int_equal(ns, 90 * NS_PER_SEC);
	assert_int_equal(duration_parse("1.5s", &ns), 0);
	assert_int_equal(ns, 1500 * NS_PER_MS);
	assert_int_equal(duration_parse("250us", &ns), 0);
	assert_int_equal(ns, 250000);
	assert_int_equal(duration_parse("0", &ns), 0);
	assert_int_equal(ns, 0);
	assert_int_equal(duration_parse("10", &ns), -1);      /* no unit */
	assert_int_equal(duration_parse("-1s", &ns), -1);
	assert_int_equal(duration_parse("10x", &ns), -1);
	assert_int_equal(duration_parse("", &ns), -1);
	assert_int_equal(duration_parse("s", &ns), -1);
	assert_int_equal(duration_parse("99999999999999999999h", &ns), -1);
}

static int load(struct t_opts *o, int argc, char **argv, struct opt_result *res, char *err)
{
	memset(o, 0, sizeof(*o));
	return options_load(defs, o, "T_", "config", argc, argv, res, err, 256);
}

static void test_precedence(void **state)
{
	char path[] = "/tmp/test_options_XXXXXX", err[256];
	int fd = mkstemp(path);
	const char *json = "{\"name\": \"from-file\", \"ttl\": \"7s\", \"once\": true}";
	char *argv[] = { "prog", "--config", path, "--ttl", "3s", "--", "cmd", "arg", NULL };
	struct opt_result res;
	struct t_opts o;

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, json, strlen(json)), (int)strlen(json));
	close(fd);
	setenv("T_NAME", "from-env", 1);
	setenv("T_TTL", "5s", 1);
	assert_int_equal(load(&o, 8, argv, &res, err), 0);
	assert_string_equal(o.name, "from-env");             /* env over file */
	assert_int_equal(o.ttl, 3 * NS_PER_SEC);             /* flag over env */
	assert_true(o.once);                                 /* file */
	assert_int_equal(res.n_rest, 2);
	assert_string_equal(res.rest[0], "cmd");
	options_free(defs, &o);
	unsetenv("T_NAME");
	unsetenv("T_TTL");
	unlink(path);
}

static void test_errors(void **state)
{
	char path[] = "/tmp/test_options_XXXXXX", err[256];
	int fd = mkstemp(path);
	const char *json = "{\"nmae\": \"typo\"}";
	char *bad_dur[] = { "prog", "--ttl", "10x", NULL };
	char *bad_flag[] = { "prog", "--nope", NULL };
	char *bad_file[] = { "prog", "-c", path, NULL };
	char *missing[] = { "prog", "-c", "/nonexistent/elect.json", NULL };
	char *counts[] = { "prog", "-vv", "-v", NULL };
	struct opt_result res;
	struct t_opts o;

	(void)state;
	assert_int_equal(write(fd, json, strlen(json)), (int)strlen(json));
	close(fd);
	assert_int_equal(load(&o, 3, bad_dur, &res, err), -1);
	assert_non_null(strstr(err, "--ttl: '10x' is not a duration"));
	options_free(defs, &o);
	assert_int_equal(load(&o, 2, bad_flag, &res, err), -1);
	assert_non_null(strstr(err, "--nope"));
	options_free(defs, &o);
	assert_int_equal(load(&o, 3, bad_file, &res, err), -1);
	assert_non_null(strstr(err, "unknown option 'nmae'"));
	options_free(defs, &o);
	assert_int_equal(load(&o, 3, missing, &res, err), -1);
	assert_non_null(strstr(err, "/nonexistent/elect.json"));
	options_free(defs, &o);
	assert_int_equal(load(&o, 3, counts, &res, err), 0);
	assert_int_equal(o.verbose, 3);
	options_free(defs, &o);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_precedence),
		cmocka_unit_test(test_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
