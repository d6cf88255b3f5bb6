/* Logging: one line per event on stderr, text or JSON lines. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

static const char *log_prog = "elect";
static enum log_format log_fmt = LOG_FMT_TEXT;
static int log_verbosity;
static const char *log_name;
static const char *const *log_state;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void log_init(const char *prog, enum log_format fmt, int verbosity)
{
	log_prog = prog;
	log_fmt = fmt;
	log_verbosity = verbosity;
}

void log_set_context(const char *name, const char *const *state)
{
	log_name = name;
	log_state = state;
}

static void timestamp(char *buf, size_t len)
{
	int64_t ms = clock_wall_ms();
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&secs, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* JSON string escaping for the JSON-lines format. */
static void put_json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* Writes one complete line with a single write so lines of concurrent
 * writers (agents sharing a log) do not interleave. */
static void emit(enum log_level lvl, const char *tag, const char *msg)
{
	char ts[64], *line = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&line, &len);
	const char *state = log_state ? *log_state : NULL;

	if (f == NULL)
		return;
	timestamp(ts, sizeof(ts));
	if (log_fmt == LOG_FMT_JSON) {
		fprintf(f, "{\"ts\":\"%s\",\"level\":\"%s\",\"prog\":", ts, level_names[lvl]);
		put_json_string(f, log_prog);
		if (log_name) {
			fputs(",\"name\":", f);
			put_json_string(f, log_name);
		}
		if (state) {
			fputs(",\"state\":", f);
			put_json_string(f, state);
		}
		if (tag) {
			fputs(",\"tag\":", f);
			put_json_string(f, tag);
		}
		fputs(",\"msg\":", f);
		put_json_string(f, msg);
		fputs("}\n", f);
	} else {
		fprintf(f, "%s %s[%d] %s", ts, log_prog, (int)getpid(), level_names[lvl]);
		if (log_name)
			fprintf(f, " name=%s", log_name);
		if (state)
			fprintf(f, " state=%s", state);
		if (tag)
			fprintf(f, " [%s]", tag);
		fprintf(f, " %s\n", msg);
	}
	fclose(f);
	if (line) {
		ssize_t off = 0, n;
		while (off < (ssize_t)len && ((n = write(STDERR_FILENO, line + off, len - (size_t)off)) > 0 || errno == EINTR))
			if (n > 0)
				off += n;
		free(line);
	}
}

void log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
{
	char msg[2048];
	int saved = errno;

	if (lvl == LOG_LVL_DEBUG && log_verbosity < 1)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	emit(lvl, NULL, msg);
	errno = saved;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(lvl, fmt, ap);
	va_end(ap);
}

void log_transition(const char *from, const char *to, const char *reason)
{
	log_msg(LOG_LVL_INFO, "transition from=%s to=%s reason=\"%s\"", from, to, reason ? reason : "");
}

void log_child_line(const char *tag, const char *line)
{
	emit(LOG_LVL_INFO, tag, line);
}

void log_fatalx(int code, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", log_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}
