#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "common/duration.h"
#include "common/options.h"

#define MAX_OPTS 64

/* A value as text and where it came from, for messages. */
struct raw {
	const char *value;
	char source[96];
};

static size_t count_defs(const struct opt_def *defs)
{
	size_t n = 0;

	while (defs[n].flag)
		n++;
	return n;
}

static void env_name(const char *prefix, const char *flag, char *buf, size_t len)
{
	size_t i = 0;

	snprintf(buf, len, "%s", prefix);
	i = strlen(buf);
	for (; *flag && i + 1 < len; flag++)
		buf[i++] = *flag == '-' ? '_' : (char)toupper((unsigned char)*flag);
	buf[i] = '\0';
}

static void key_name(const char *flag, char *buf, size_t len)
{
	size_t i = 0;

	for (; *flag && i + 1 < len; flag++)
		buf[i++] = *flag == '-' ? '_' : *flag;
	buf[i] = '\0';
}

static int convert(const struct opt_def *d, const struct raw *r, void *target, char *err, size_t errlen)
{
	char *field = (char *)target + d->offset;

	switch (d->type) {
	case OPT_STRING: {
		char *copy = strdup(r->value);
		if (copy == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		free(*(char **)field);
		*(char **)field = copy;
		return 0;
	}
	case OPT_DURATION:
	case OPT_DURATION_POSITIVE:
		if (r->value[0] == '-') {
			snprintf(err, errlen, "%s: '%s' is negative: a duration is 0 or more (e.g. 500ms, 10s)",
			         r->source, r->value);
			return -1;
		}
		if (duration_parse(r->value, (int64_t *)field) < 0) {
			snprintf(err, errlen, "%s: '%s' is not a duration (write e.g. 500ms, 10s, 1m)",
			         r->source, r->value);
			return -1;
		}
		if (d->type == OPT_DURATION_POSITIVE && *(int64_t *)field == 0) {
			snprintf(err, errlen, "%s: '%s' must be more than zero (leave it out for the default)",
			         r->source, r->value);
			return -1;
		}
		return 0;
	case OPT_BOOL:
		if (!strcmp(r->value, "1") || !strcmp(r->value, "true") || !strcmp(r->value, "yes")) {
			*(bool *)field = true;
		} else if (!strcmp(r->value, "0") || !strcmp(r->value, "false") || !strcmp(r->value, "no")) {
			*(bool *)field = false;
		} else {
			snprintf(err, errlen, "%s: '%s' is not a boolean (write true or false)", r->source, r->value);
			return -1;
		}
		return 0;
	case OPT_COUNT: {
		char *end;
		long v = strtol(r->value, &end, 10);
		if (*r->value == '\0' || *end != '\0' || v < 0 || v > 100) {
			snprintf(err, errlen, "%s: '%s' is not a small whole number", r->source, r->value);
			return -1;
		}
		*(int *)field = (int)v;
		return 0;
	}
	case OPT_NUMBER: {
		char *end;
		long v = strtol(r->value, &end, 10);
		if (*r->value == '\0' || *end != '\0' || v < 1 || v > 1000000) {
			snprintf(err, errlen, "%s: '%s' is not a whole number from 1 to 1000000",
			         r->source, r->value);
			return -1;
		}
		*(int *)field = (int)v;
		return 0;
	}
	}
	return 0;
}

/* Reads the JSON config file into raw values; json keeps the strings alive. */
static int load_file(const struct opt_def *defs, const char *path, struct raw *raws,
                     json_t **json, char *err, size_t errlen)
{
	json_error_t jerr;
	const char *key;
	json_t *val;

	struct stat st;

	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "config %s: is a directory (give the path of a JSON file)", path);
		return -1;
	}
	*json = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (*json == NULL) {
		/* jansson has no line for errors outside the text (cannot open,
		 * cannot read): its line is then -1 and its text says it all. */
		if (jerr.line > 0)
			snprintf(err, errlen, "config %s: line %d: %s", path, jerr.line, jerr.text);
		else
			snprintf(err, errlen, "config %s: %s", path, jerr.text);
		return -1;
	}
	if (!json_is_object(*json)) {
		snprintf(err, errlen, "config %s: must be a JSON object of option names to values", path);
		return -1;
	}
	json_object_foreach(*json, key, val) {
		size_t i;
		char k[64];
		for (i = 0; defs[i].flag; i++) {
			key_name(defs[i].flag, k, sizeof(k));
			if (strcmp(k, key) == 0)
				break;
		}
		if (defs[i].flag == NULL) {
			snprintf(err, errlen, "config %s: unknown option '%s' (see --help for the names)", path, key);
			return -1;
		}
		if (json_is_true(val) || json_is_false(val)) {
			raws[i].value = json_is_true(val) ? "true" : "false";
		} else if (json_is_integer(val) && (defs[i].type == OPT_COUNT || defs[i].type == OPT_NUMBER)) {
			json_object_set_new(*json, key, json_sprintf("%lld", (long long)json_integer_value(val)));
			raws[i].value = json_string_value(json_object_get(*json, key));
		} else if (json_is_string(val)) {
			raws[i].value = json_string_value(val);
		} else {
			snprintf(err, errlen, "config %s: '%s' must be a string%s", path, key,
			         defs[i].type == OPT_DURATION || defs[i].type == OPT_DURATION_POSITIVE ?
			         " such as \"10s\"" : "");
			return -1;
		}
		snprintf(raws[i].source, sizeof(raws[i].source), "config %s: %s", path, key);
	}
	return 0;
}

static int parse_flags(const struct opt_def *defs, size_t n, int argc, char **argv,
                       struct raw *raws, struct opt_result *res, char *err, size_t errlen)
{
	struct option longopts[MAX_OPTS + 3];
	char shortopts[MAX_OPTS * 2 + 4] = "+";
	int counts[MAX_OPTS] = { 0 }, c, idx;
	const char *last_optarg = NULL;

	for (size_t i = 0; i < n; i++) {
		longopts[i] = (struct option){ defs[i].flag,
			defs[i].type == OPT_BOOL || defs[i].type == OPT_COUNT ? no_argument : required_argument,
			NULL, (int)(1000 + i) };
		if (defs[i].short_flag) {
			size_t l = strlen(shortopts);
			shortopts[l] = defs[i].short_flag;
			shortopts[l + 1] = longopts[i].has_arg ? ':' : '\0';
			shortopts[l + 2] = '\0';
		}
	}
	longopts[n] = (struct option){ "help", no_argument, NULL, 'h' };
	longopts[n + 1] = (struct option){ "version", no_argument, NULL, 2000 };
	longopts[n + 2] = (struct option){ NULL, 0, NULL, 0 };
	strcat(shortopts, "h");
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, shortopts, longopts, &idx)) != -1) {
		size_t i;
		if (c == 'h') {
			res->help = true;
			continue;
		}
		if (c == 2000) {
			res->version = true;
			continue;
		}
		if (c == '?' || c == ':') {
			const char *bad = argv[optind - 1];
			if (optopt && optopt < 1000)
				snprintf(err, errlen, "unknown or incomplete option '-%c' (see --help)", optopt);
			else
				snprintf(err, errlen, "unknown option or missing value: '%s' (see --help)", bad);
			return -1;
		}
		for (i = 0; i < n; i++)
			if (c == (int)(1000 + i) || (defs[i].short_flag && c == defs[i].short_flag))
				break;
		if (i == n)
			continue;
		if (defs[i].type == OPT_BOOL) {
			raws[i].value = "true";
		} else if (defs[i].type == OPT_COUNT) {
			static char numbers[MAX_OPTS][16];
			snprintf(numbers[i], sizeof(numbers[i]), "%d", ++counts[i]);
			raws[i].value = numbers[i];
		} else {
			raws[i].value = last_optarg = optarg;
		}
		snprintf(raws[i].source, sizeof(raws[i].source), "--%s", defs[i].flag);
	}
	res->rest = argv + optind;
	res->n_rest = argc - optind;
	/* getopt steps over a "--" that ends the options; one that is an
	 * option's value ("--id --") does not count. */
	if (optind > 1 && strcmp(argv[optind - 1], "--") == 0 && argv[optind - 1] != last_optarg)
		res->dashdash = true;
	if (res->n_rest > 0 && strcmp(res->rest[0], "--") == 0) {
		res->rest++;
		res->n_rest--;
		res->dashdash = true;
	}
	return 0;
}

int options_load(const struct opt_def *defs, void *target, const char *env_prefix,
                 const char *config_flag, int argc, char **argv, struct opt_result *res,
                 char *err, size_t errlen)
{
	struct raw flags[MAX_OPTS] = { 0 }, env[MAX_OPTS] = { 0 }, file[MAX_OPTS] = { 0 };
	size_t n = count_defs(defs);
	json_t *json = NULL;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	if (n > MAX_OPTS) {
		snprintf(err, errlen, "too many options");
		return -1;
	}
	if (parse_flags(defs, n, argc, argv, flags, res, err, errlen) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		env_name(env_prefix, defs[i].flag, env[i].source, sizeof(env[i].source));
		env[i].value = getenv(env[i].source);
		if (env[i].value && *env[i].value == '\0' && defs[i].type != OPT_STRING)
			env[i].value = NULL;
	}
	for (size_t i = 0; i < n; i++) {
		const char *path;
		if (strcmp(defs[i].flag, config_flag) != 0)
			continue;
		path = flags[i].value ? flags[i].value : env[i].value;
		if (path && *path && load_file(defs, path, file, &json, err, errlen) < 0)
			goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const struct raw *r = flags[i].value ? &flags[i] : env[i].value ? &env[i] :
		                      file[i].value ? &file[i] : NULL;
		if (r && convert(&defs[i], r, target, err, errlen) < 0)
			goto out;
	}
	rc = 0;
out:
	json_decref(json);
	return rc;
}

void options_usage(const struct opt_def *defs, const char *env_prefix)
{
	char env[64], left[64];

	for (size_t i = 0; defs[i].flag; i++) {
		env_name(env_prefix, defs[i].flag, env, sizeof(env));
		if (defs[i].short_flag)
			snprintf(left, sizeof(left), "-%c, --%s %s", defs[i].short_flag, defs[i].flag,
			         defs[i].arg ? defs[i].arg : "");
		else
			snprintf(left, sizeof(left), "    --%s %s", defs[i].flag, defs[i].arg ? defs[i].arg : "");
		printf("  %-32s %s [%s]\n", left, defs[i].help, env);
	}
}

bool options_answered(const struct opt_result *res, void (*usage)(void), const char *prog,
                      const char *version)
{
	if (res->help)
		usage();
	else if (res->version)
		printf("%s %s\n", prog, version);
	return res->help || res->version;
}

void options_free(const struct opt_def *defs, void *target)
{
	for (size_t i = 0; defs[i].flag; i++) {
		if (defs[i].type == OPT_STRING) {
			char **field = (char **)((char *)target + defs[i].offset);
			free(*field);
			*field = NULL;
		}
	}
}

const char *options_run_dir(char *buf, size_t len)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");

	if (xdg && *xdg)
		snprintf(buf, len, "%s/elect", xdg);
	else if (geteuid() == 0)
		snprintf(buf, len, "/run/elect");
	else
		snprintf(buf, len, "/tmp/elect-%u", (unsigned)geteuid());
	return buf;
}

const char *options_state_dir(char *buf, size_t len)
{
	const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");

	if (xdg && *xdg == '/')
		snprintf(buf, len, "%s/elect", xdg);
	else if (geteuid() == 0)
		snprintf(buf, len, "/var/lib/elect");
	else if (home && *home == '/')
		snprintf(buf, len, "%s/.local/state/elect", home);
	else
		snprintf(buf, len, "/tmp/elect-%u", (unsigned)geteuid());
	return buf;
}

bool options_valid_token(const char *s, const char *extra, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr(extra, *s))
			return false;
	return true;
}

int options_check_backend_access(const char *backend_url, const char *tls_ca, const char *tls_cert,
                                 const char *tls_key, const char *auth, char *err, size_t errlen)
{
	if (backend_url && strncmp(backend_url, "file://", 7) == 0) {
		if (auth) {
			snprintf(err, errlen, "--auth: the file backend has no credentials (the lock file's "
			         "permissions decide who may take it): drop the auth option, or use etcd:// or zk://");
			return -1;
		}
		if (tls_ca || tls_cert || tls_key) {
			snprintf(err, errlen, "--%s: the file backend has no TLS: drop the --tls-* options "
			         "or use etcd://", tls_ca ? "tls-ca" : tls_cert ? "tls-cert" : "tls-key");
			return -1;
		}
	}
	if ((tls_cert == NULL) != (tls_key == NULL)) {
		snprintf(err, errlen, "--%s given without --%s: a client certificate needs its key "
		         "(give both, or neither)", tls_cert ? "tls-cert" : "tls-key",
		         tls_cert ? "tls-key" : "tls-cert");
		return -1;
	}
	return 0;
}

/* Credentials that a child must not inherit: ours (the *_AUTH options read
 * from the environment), and those of the backends' own clients that an
 * operator exports next to ours (etcdctl, consul). */
static const char *const secret_vars[] = {
	"ELECT_AUTH", "LOCKD_AUTH", "ETCDCTL_PASSWORD", "ETCDCTL_USER", "CONSUL_HTTP_TOKEN",
	"CONSUL_HTTP_AUTH",
};

void options_backend_env_auth(const char *backend_url, char **auth)
{
	const char *tok = getenv("CONSUL_HTTP_TOKEN");

	if (*auth == NULL && backend_url && strncmp(backend_url, "consul://", 9) == 0 && tok && *tok)
		*auth = strdup(tok);    /* NULL on out of memory: no token, Consul says so */
}

void options_scrub_secrets(void)
{
	for (size_t i = 0; i < sizeof(secret_vars) / sizeof(secret_vars[0]); i++)
		unsetenv(secret_vars[i]);
}

bool options_wants_json_log(int argc, char **argv, const char *env_var)
{
	const char *env = env_var ? getenv(env_var) : NULL, *flag = NULL;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strncmp(argv[i], "--log-format=", 13) == 0)
			flag = argv[i] + 13;
		else if (strcmp(argv[i], "--log-format") == 0 && i + 1 < argc)
			flag = argv[++i];
	}
	if (flag)
		return strcmp(flag, "json") == 0;
	return env && strcmp(env, "json") == 0;
}
