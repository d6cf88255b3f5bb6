/* One line per event, as text or JSON lines, on stderr.
 * Two phases, as in OpenBSD daemons: before the loop runs, errors are reported
 * with log_fatalx() (message, exit); afterwards with log_warnx() and friends. */
#ifndef ELECT_LOG_H
#define ELECT_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };
enum log_format { LOG_FMT_TEXT, LOG_FMT_JSON };

void log_init(const char *prog, enum log_format fmt, int verbosity);
/* Election name and a pointer to the current state's name, added to every line. */
void log_set_context(const char *name, const char *const *state);

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level lvl, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* A field of a structured line: str, or the number num when str is NULL. */
struct log_field {
	const char *key;          /* a plain JSON key (letters, '_') */
	const char *str;
	uint64_t num;
};

/* msg with fields: in JSON lines members of their own, in text key=value
 * after msg. */
void log_fields(enum log_level lvl, const char *msg, const struct log_field *fields, size_t n);
/* A state transition: "transition from=<from> to=<to> reason=<reason>
 * [token=<token>]" (token left out when 0); fields in JSON. */
void log_transition(const char *from, const char *to, const char *reason);
void log_transition_token(const char *from, const char *to, const char *reason, uint64_t token);
/* A line of output from a child (hook), tagged. */
void log_child_line(const char *tag, const char *line);

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warnx(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

/* s escaped as a log line carries it: control characters and bytes that
 * are not UTF-8 written as escapes (\n, \x1b, \u0085); for LOG_FMT_JSON also
 * '"' and '\\' (the inside of a JSON string). malloc'd; NULL when out of memory. */
char *log_escape(const char *s, enum log_format fmt);

/* Print "prog: message" (a JSON line when JSON logs were chosen) and
 * exit(code). For errors before the loop runs. */
void log_fatalx(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

#endif
