/* Options from three sources with one table: command-line flags, environment
 * variables (PREFIX + flag name upper-cased, '-' -> '_') and a JSON config file
 * (flag name with '-' -> '_' as key). Precedence: flag > env > file > default.
 * Errors are one line naming the source and saying what is expected. */
#ifndef ELECT_OPTIONS_H
#define ELECT_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* OPT_DURATION_POSITIVE: a duration where 0 means nothing sensible (a TTL, a
 * timeout): an explicit 0 is refused rather than read as "the default". */
/* OPT_NUMBER: a whole number given as the value (1..1000000, into an int);
 * OPT_COUNT counts repeated flags (-vv). */
enum opt_type { OPT_STRING, OPT_DURATION, OPT_DURATION_POSITIVE, OPT_BOOL, OPT_COUNT, OPT_NUMBER };

struct opt_def {
	const char *flag;         /* long flag without "--", e.g. "kill-grace" */
	char short_flag;          /* 0 for none */
	enum opt_type type;
	size_t offset;            /* into the target struct: char *, int64_t, bool or int */
	const char *arg;          /* argument name for help, e.g. "DURATION" */
	const char *help;
};

struct opt_result {
	char **rest;              /* arguments left after the options (the command), not copied */
	int n_rest;
	bool dashdash;            /* rest came after "--" (a command, not a mistyped word) */
	bool help, version;
};

/* The options of every program that talks to a backend, as rows of the
 * program's own table: OPT(flag, short, type, field, arg, help) is its row
 * macro, and its options struct has these fields (int64_t request_timeout,
 * char *tls_ca, *tls_cert, *tls_key, *auth). */
#define OPTS_BACKEND_ACCESS(OPT) \
	OPT("request-timeout", 0, OPT_DURATION_POSITIVE, request_timeout, "DURATION", "one backend request's timeout"), \
	OPT("tls-ca", 0, OPT_STRING, tls_ca, "FILE", "CA certificate for the backend"), \
	OPT("tls-cert", 0, OPT_STRING, tls_cert, "FILE", "client certificate for the backend"), \
	OPT("tls-key", 0, OPT_STRING, tls_key, "FILE", "client key for the backend"), \
	OPT("auth", 0, OPT_STRING, auth, "USER:PASSWORD", "backend credentials"), \
	OPT("kubeconfig", 0, OPT_STRING, kubeconfig, "FILE", "k8s: kubeconfig (default $KUBECONFIG, else in-cluster)")

/* Parses argv (after the program name and any subcommand) into target.
 * config_flag names the option that holds the config file path (its value from
 * flag or env is read first). Strings stored in target are malloc'd; free them
 * with options_free(). Returns 0, or -1 with a message in err. */
int options_load(const struct opt_def *defs, void *target, const char *env_prefix,
                 const char *config_flag, int argc, char **argv, struct opt_result *res,
                 char *err, size_t errlen);
void options_usage(const struct opt_def *defs, const char *env_prefix);
/* --help: calls usage(); --version: prints "prog version". true if either
 * was asked for (the program then frees its options and exits 0). */
bool options_answered(const struct opt_result *res, void (*usage)(void), const char *prog,
                      const char *version);
void options_free(const struct opt_def *defs, void *target);

/* Checks of the backend access options that need no backend: a client
 * certificate and its key come together; the file backend takes no
 * credentials or TLS. Returns 0, or -1 with a one-line message in err. */
int options_check_backend_access(const char *backend_url, const char *tls_ca, const char *tls_cert,
                                 const char *tls_key, const char *auth, char *err, size_t errlen);

/* Removes the credential variables (ELECT_AUTH, LOCKD_AUTH and the usual
 * backend client ones, see options.c) from this process's environment, so
 * that the leader command, hooks and other children do not inherit them. Call
 * once the options have been read (the values were copied). */
/* A consul:// backend without --auth takes Consul's own CONSUL_HTTP_TOKEN:
 * copied into *auth (malloc'd) here, before options_scrub_secrets() removes it. */
void options_backend_env_auth(const char *backend_url, char **auth);
void options_scrub_secrets(void);

/* Whether JSON logs were asked for on the command line (--log-format json or
 * --log-format=json before any "--") or in the environment variable env_var,
 * so that errors met while the options are read are JSON lines too. */
bool options_wants_json_log(int argc, char **argv, const char *env_var);

/* The directory for sockets and default lock files: $XDG_RUNTIME_DIR/elect,
 * /run/elect for root, else /tmp/elect-UID. Returns buf. */
const char *options_run_dir(char *buf, size_t len);
/* The directory for default lock files and their token counters, which must
 * survive reboots (a tmpfs like /run would reset fencing tokens):
 * $XDG_STATE_HOME/elect, /var/lib/elect for root, else $HOME/.local/state/elect
 * (/tmp/elect-UID without HOME). Returns buf. */
const char *options_state_dir(char *buf, size_t len);
/* s is 1..max characters of letters, digits and the characters in extra. */
bool options_valid_token(const char *s, const char *extra, size_t max);

#endif
