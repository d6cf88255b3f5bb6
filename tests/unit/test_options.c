/* Durations and the flag > env > file precedence of common/options.c; the
 * checks that need no backend; the command lookup of common/which.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/clock.h"
#include "common/duration.h"
#include "common/options.h"
#include "common/which.h"

struct t_opts {
	char *name;
	int64_t ttl, renew;
	bool once;
	int verbose;
	int fails;
	char *config;
};

static const struct opt_def defs[] = {
	{ "name", 'n', OPT_STRING, offsetof(struct t_opts, name), "NAME", "name" },
	{ "ttl", 0, OPT_DURATION, offsetof(struct t_opts, ttl), "D", "ttl" },
	{ "renew", 0, OPT_DURATION_POSITIVE, offsetof(struct t_opts, renew), "D", "renew" },
	{ "once", 0, OPT_BOOL, offsetof(struct t_opts, once), "", "once" },
	{ "verbose", 'v', OPT_COUNT, offsetof(struct t_opts, verbose), "", "v" },
	{ "config", 'c', OPT_STRING, offsetof(struct t_opts, config), "FILE", "config" },
	{ "fails", 0, OPT_NUMBER, offsetof(struct t_opts, fails), "N", "fails" },
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
	/* A long fraction of a large unit (its product needs more than 64
	 * bits on the way), and a sum just past the largest value. */
	assert_int_equal(duration_parse("0.123456789h", &ns), 0);
	assert_int_equal(ns, INT64_C(444444440400));
	assert_int_equal(duration_parse("2562047h", &ns), 0);
	assert_int_equal(duration_parse("2562047h48m", &ns), -1);
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

/* OPT_NUMBER: a value 1..1000000 from a flag, the environment or the
 * config file (a JSON integer or string); anything else is refused. */
static void test_number(void **state)
{
	char path[] = "/tmp/test_options_XXXXXX", err[256];
	int fd = mkstemp(path);
	const char *json = "{\"fails\": 7}";
	char *flag[] = { "prog", "--fails", "3", NULL };
	char *file[] = { "prog", "-c", path, NULL };
	char *zero[] = { "prog", "--fails", "0", NULL };
	char *word[] = { "prog", "--fails", "x3", NULL };
	char *big[] = { "prog", "--fails=1000001", NULL };
	char *none[] = { "prog", "--fails", NULL };
	struct opt_result res;
	struct t_opts o;

	(void)state;
	assert_int_equal(write(fd, json, strlen(json)), (int)strlen(json));
	close(fd);
	assert_int_equal(load(&o, 3, flag, &res, err), 0);
	assert_int_equal(o.fails, 3);
	options_free(defs, &o);
	assert_int_equal(load(&o, 3, file, &res, err), 0);
	assert_int_equal(o.fails, 7);
	options_free(defs, &o);
	setenv("T_FAILS", "9", 1);
	assert_int_equal(load(&o, 3, file, &res, err), 0);
	assert_int_equal(o.fails, 9);                 /* env over file */
	options_free(defs, &o);
	unsetenv("T_FAILS");
	assert_int_equal(load(&o, 3, zero, &res, err), -1);
	assert_non_null(strstr(err, "--fails: '0' is not a whole number from 1 to 1000000"));
	options_free(defs, &o);
	assert_int_equal(load(&o, 3, word, &res, err), -1);
	options_free(defs, &o);
	assert_int_equal(load(&o, 2, big, &res, err), -1);
	options_free(defs, &o);
	assert_int_equal(load(&o, 2, none, &res, err), -1);
	options_free(defs, &o);
	unlink(path);
}

/* A word after the options is a command only after "--"; a "--" that is
 * an option's value does not count. */
static void test_dashdash(void **state)
{
	char err[256];
	char *typo[] = { "prog", "--name", "x", "statu", NULL };
	char *cmd[] = { "prog", "--name", "x", "--", "statu", NULL };
	char *bare[] = { "prog", "--", "cmd", NULL };
	char *value[] = { "prog", "-n", "--", "cmd", NULL };
	char *value_eq[] = { "prog", "--name=--", "cmd", NULL };
	char *none[] = { "prog", "--once", NULL };
	struct opt_result res;
	struct t_opts o;

	(void)state;
	assert_int_equal(load(&o, 4, typo, &res, err), 0);
	assert_int_equal(res.n_rest, 1);
	assert_false(res.dashdash);
	options_free(defs, &o);
	assert_int_equal(load(&o, 5, cmd, &res, err), 0);
	assert_int_equal(res.n_rest, 1);
	assert_string_equal(res.rest[0], "statu");
	assert_true(res.dashdash);
	options_free(defs, &o);
	assert_int_equal(load(&o, 3, bare, &res, err), 0);
	assert_true(res.dashdash);
	options_free(defs, &o);
	assert_int_equal(load(&o, 4, value, &res, err), 0);
	assert_string_equal(o.name, "--");
	assert_false(res.dashdash);
	options_free(defs, &o);
	assert_int_equal(load(&o, 3, value_eq, &res, err), 0);
	assert_false(res.dashdash);
	options_free(defs, &o);
	assert_int_equal(load(&o, 2, none, &res, err), 0);
	assert_int_equal(res.n_rest, 0);
	assert_false(res.dashdash);
	options_free(defs, &o);
}

/* 0 where 0 means nothing is refused, not replaced by the default; negative
 * durations say so. */
static void test_positive_durations(void **state)
{
	char err[256];
	char *zero_s[] = { "prog", "--renew", "0s", NULL };
	char *zero[] = { "prog", "--renew=0", NULL };
	char *zero_ok[] = { "prog", "--ttl", "0", NULL };
	char *negative[] = { "prog", "--ttl", "-5s", NULL };
	char *fine[] = { "prog", "--renew", "1ms", NULL };
	struct opt_result res;
	struct t_opts o;

	(void)state;
	assert_int_equal(load(&o, 3, zero_s, &res, err), -1);
	assert_non_null(strstr(err, "--renew: '0s' must be more than zero"));
	options_free(defs, &o);
	assert_int_equal(load(&o, 2, zero, &res, err), -1);
	assert_non_null(strstr(err, "must be more than zero"));
	options_free(defs, &o);
	setenv("T_RENEW", "0ms", 1);
	assert_int_equal(load(&o, 1, fine, &res, err), -1);
	assert_non_null(strstr(err, "T_RENEW: '0ms' must be more than zero"));
	unsetenv("T_RENEW");
	options_free(defs, &o);
	assert_int_equal(load(&o, 3, zero_ok, &res, err), 0);   /* a plain duration may be 0 */
	assert_int_equal(o.ttl, 0);
	options_free(defs, &o);
	assert_int_equal(load(&o, 3, negative, &res, err), -1);
	assert_non_null(strstr(err, "--ttl: '-5s' is negative"));
	options_free(defs, &o);
	assert_int_equal(load(&o, 3, fine, &res, err), 0);
	assert_int_equal(o.renew, NS_PER_MS);
	options_free(defs, &o);
}

/* A config file that cannot be read has no line number to report. */
static void test_config_unreadable(void **state)
{
	char err[256], dir[] = "/tmp/test_options_dir_XXXXXX";
	char *missing[] = { "prog", "-c", "/nonexistent/elect.json", NULL };
	char *directory[] = { "prog", "-c", dir, NULL };
	struct opt_result res;
	struct t_opts o;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(load(&o, 3, missing, &res, err), -1);
	assert_null(strstr(err, "line -1"));
	assert_null(strstr(err, "line"));
	assert_non_null(strstr(err, "config /nonexistent/elect.json: unable to open"));
	options_free(defs, &o);
	assert_int_equal(load(&o, 3, directory, &res, err), -1);
	assert_non_null(strstr(err, "is a directory"));
	options_free(defs, &o);
	rmdir(dir);
}

static void test_backend_access(void **state)
{
	char err[256];

	(void)state;
	assert_int_equal(options_check_backend_access("etcd://h:2379/x", "ca", "c", "k", "u:p", err,
	                                              sizeof(err)), 0);
	assert_int_equal(options_check_backend_access("etcd://h:2379/x", NULL, "c", NULL, NULL, err,
	                                              sizeof(err)), -1);
	assert_non_null(strstr(err, "--tls-cert given without --tls-key"));
	assert_int_equal(options_check_backend_access("etcd://h:2379/x", NULL, NULL, "k", NULL, err,
	                                              sizeof(err)), -1);
	assert_non_null(strstr(err, "--tls-key given without --tls-cert"));
	assert_int_equal(options_check_backend_access("file:///run/x.lock", NULL, NULL, NULL, "u:p", err,
	                                              sizeof(err)), -1);
	assert_non_null(strstr(err, "--auth"));
	assert_int_equal(options_check_backend_access("file:///run/x.lock", "ca", NULL, NULL, NULL, err,
	                                              sizeof(err)), -1);
	assert_non_null(strstr(err, "--tls-ca"));
	assert_int_equal(options_check_backend_access("file:///run/x.lock", NULL, NULL, NULL, NULL, err,
	                                              sizeof(err)), 0);
}

static void test_scrub_secrets(void **state)
{
	static const char *const secrets[] = { "ELECT_AUTH", "LOCKD_AUTH", "ETCDCTL_PASSWORD",
	                                       "ETCDCTL_USER", "CONSUL_HTTP_TOKEN" };

	(void)state;
	for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
		setenv(secrets[i], "user:s3cret", 1);
	setenv("ELECT_NAME", "kept", 1);
	options_scrub_secrets();
	for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
		assert_null(getenv(secrets[i]));
	assert_string_equal(getenv("ELECT_NAME"), "kept");
	unsetenv("ELECT_NAME");
}

/* Consul's token variable is kept for a consul:// backend (as its auth)
 * before the scrub removes it from the environment. */
static void test_consul_token_from_env(void **state)
{
	char *auth = NULL, *given = strdup("explicit");

	(void)state;
	setenv("CONSUL_HTTP_TOKEN", "tok-123", 1);
	options_backend_env_auth("etcd://h/x", &auth);
	assert_null(auth);
	options_backend_env_auth("consul://h/x", &given);
	assert_string_equal(given, "explicit");
	options_backend_env_auth("consul://h/x", &auth);
	options_scrub_secrets();
	assert_null(getenv("CONSUL_HTTP_TOKEN"));
	assert_string_equal(auth, "tok-123");
	free(auth);
	free(given);
}

static void test_wants_json_log(void **state)
{
	char *flag[] = { "prog", "--ttl", "x", "--log-format", "json", NULL };
	char *flag_eq[] = { "prog", "--log-format=json", "--bogus", NULL };
	char *text_over_env[] = { "prog", "--log-format=text", NULL };
	char *after_dashdash[] = { "prog", "--", "cmd", "--log-format", "json", NULL };
	char *nothing[] = { "prog", NULL };

	(void)state;
	unsetenv("T_LOG_FORMAT");
	assert_true(options_wants_json_log(5, flag, "T_LOG_FORMAT"));
	assert_true(options_wants_json_log(3, flag_eq, "T_LOG_FORMAT"));
	assert_false(options_wants_json_log(5, after_dashdash, "T_LOG_FORMAT"));
	assert_false(options_wants_json_log(1, nothing, "T_LOG_FORMAT"));
	setenv("T_LOG_FORMAT", "json", 1);
	assert_true(options_wants_json_log(1, nothing, "T_LOG_FORMAT"));
	assert_false(options_wants_json_log(2, text_over_env, "T_LOG_FORMAT"));
	unsetenv("T_LOG_FORMAT");
}

static void write_file(const char *path, mode_t mode)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs("#!/bin/sh\nexit 0\n", f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

/* As execvp: a '/' means a path; else each PATH entry; a directory or a file
 * without x permission is EACCES, nothing at all ENOENT. */
static void test_which(void **state)
{
	char dir[] = "/tmp/test_which_XXXXXX", p[256], found[256], *old_path;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(p, sizeof(p), "%s/runme", dir);
	write_file(p, 0755);
	snprintf(p, sizeof(p), "%s/readme", dir);
	write_file(p, 0644);
	snprintf(p, sizeof(p), "%s/subdir", dir);
	assert_int_equal(mkdir(p, 0755), 0);
	old_path = strdup(getenv("PATH") ? getenv("PATH") : "/bin:/usr/bin");
	snprintf(p, sizeof(p), "/nonexistent:%s", dir);
	setenv("PATH", p, 1);
	assert_int_equal(which_command("runme", found, sizeof(found)), 0);
	snprintf(p, sizeof(p), "%s/runme", dir);
	assert_string_equal(found, p);
	assert_int_equal(which_command(p, NULL, 0), 0);
	assert_int_equal(which_command("readme", NULL, 0), EACCES);
	assert_int_equal(which_command("subdir", NULL, 0), EACCES);
	assert_int_equal(which_command("statu", NULL, 0), ENOENT);
	assert_int_equal(which_command("", NULL, 0), ENOENT);
	snprintf(p, sizeof(p), "%s/subdir", dir);
	assert_int_equal(which_command(p, NULL, 0), EACCES);
	snprintf(p, sizeof(p), "%s/nothing", dir);
	assert_int_equal(which_command(p, NULL, 0), ENOENT);
	setenv("PATH", old_path, 1);
	assert_int_equal(which_command("sh", NULL, 0), 0);
	free(old_path);
	snprintf(p, sizeof(p), "rm -rf '%s'", dir);
	assert_int_equal(system(p), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_precedence),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_number),
		cmocka_unit_test(test_dashdash),
		cmocka_unit_test(test_positive_durations),
		cmocka_unit_test(test_config_unreadable),
		cmocka_unit_test(test_backend_access),
		cmocka_unit_test(test_scrub_secrets),
		cmocka_unit_test(test_consul_token_from_env),
		cmocka_unit_test(test_wants_json_log),
		cmocka_unit_test(test_which),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
