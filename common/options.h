/* Options from three sources with one table: command-line flags, environment
 * variables (PREFIX + flag name upper-cased, '-' -> '_') and a JSON config file
 * (flag name with '-' -> '_' as key). Precedence: flag > env > file > default.
 * Errors are one line naming the source and saying what is expected. */
#ifndef ELECT_OPTIONS_H
#define ELECT_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum opt_type { OPT_STRING, OPT_DURATION, OPT_BOOL, OPT_COUNT };

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
	bool help, version;
};

/* Parses argv (after the program name and any subcommand) into target.
 * config_flag names the option that holds the config file path (its value from
 * flag or env is read first). Strings stored in target are malloc'd; free them
 * with options_free(). Returns 0, or -1 with a message in err. */
int options_load(const struct opt_def *defs, void *target, const char *env_prefix,
                 const char *config_flag, int argc, char **argv, struct opt_result *res,
                 char *err, size_t errlen);
void options_usage(const struct opt_def *defs, const char *env_prefix);
void options_free(const struct opt_def *defs, void *target);

#endif
