/* Logging: one line per event on stderr, text or JSON lines. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
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

/* Length of the well-formed UTF-8 sequence at s (2-4 bytes), with its code
 * point; 0 when s does not start one (stray continuation byte, overlong
 * form, surrogate, beyond U+10FFFF, cut short). */
static size_t utf8_sequence(const unsigned char *s, unsigned *cp)
{
	unsigned c = s[0], min;
	size_t n;

	if (c >= 0xc2 && c <= 0xdf) {
		n = 2, *cp = c & 0x1f, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3, *cp = c & 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4, *cp = c & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		*cp = (*cp << 6) | (s[i] & 0x3f);
	}
	if (*cp < min || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff))
		return 0;
	return n;
}

/* Writes s escaped for fmt (JSON: the inside of a string literal). Control
 * characters become \n, \r, \t or \u00XX (C1 controls and the Unicode line
 * separators too, which terminals and log viewers may act on), so that data
 * from a backend or a child can never start a line or drive a terminal.
 * Bytes that are not UTF-8 become the four characters \xNN (in JSON: a
 * literal backslash, so the line stays valid JSON). quotes: '"' and '\\' are
 * escaped too (always in JSON; in text inside a quoted value). */
static void put_escaped(FILE *f, const char *str, bool json, bool quotes)
{
	const unsigned char *s = (const unsigned char *)str;

	while (*s) {
		unsigned c = *s, cp;
		size_t n;

		if (c < 0x80) {
			if (c == '\n' || c == '\r' || c == '\t')
				fprintf(f, "\\%c", c == '\n' ? 'n' : c == '\r' ? 'r' : 't');
			else if (c < 0x20 || c == 0x7f)
				fprintf(f, json ? "\\u%04x" : "\\x%02x", c);
			else if ((json || quotes) && (c == '"' || c == '\\'))
				fprintf(f, "\\%c", c);
			else
				fputc((int)c, f);
			s++;
		} else if ((n = utf8_sequence(s, &cp)) == 0) {
			fprintf(f, json ? "\\\\x%02x" : "\\x%02x", c);
			s++;
		} else if ((cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029) {
			fprintf(f, "\\u%04x", cp);
			s += n;
		} else {
			fwrite(s, 1, n, f);
			s += n;
		}
	}
}

char *log_escape(const char *s, enum log_format fmt)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	if (f == NULL)
		return NULL;
	put_escaped(f, s ? s : "", fmt == LOG_FMT_JSON, fmt == LOG_FMT_JSON);
	if (fclose(f) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

static void put_json_string(FILE *f, const char *s)
{
	fputc('"', f);
	put_escaped(f, s, true, true);
	fputc('"', f);
}

static void write_all(const char *buf, size_t len)
{
	size_t off = 0;
	ssize_t n;

	while (off < len && ((n = write(STDERR_FILENO, buf + off, len - off)) > 0 || errno == EINTR))
		if (n > 0)
			off += (size_t)n;
}

/* Writes one complete line with a single write so lines of concurrent
 * writers (agents sharing a log) do not interleave. Fields follow msg: in
 * JSON as members of their own (numbers unquoted), in text as key=value
 * (strings with spaces or quotes in double quotes). */
static void emit(enum log_level lvl, const char *tag, const char *msg,
                 const struct log_field *fields, size_t n_fields)
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
		for (size_t i = 0; i < n_fields; i++) {
			fprintf(f, ",\"%s\":", fields[i].key);
			if (fields[i].str)
				put_json_string(f, fields[i].str);
			else
				fprintf(f, "%" PRIu64, fields[i].num);
		}
		fputs("}\n", f);
	} else {
		fprintf(f, "%s ", ts);
		put_escaped(f, log_prog, false, false);
		fprintf(f, "[%d] %s", (int)getpid(), level_names[lvl]);
		if (log_name) {
			fputs(" name=", f);
			put_escaped(f, log_name, false, false);
		}
		if (state)
			fprintf(f, " state=%s", state);
		if (tag) {
			fputs(" [", f);
			put_escaped(f, tag, false, false);
			fputc(']', f);
		}
		fputc(' ', f);
		put_escaped(f, msg, false, false);
		for (size_t i = 0; i < n_fields; i++) {
			fprintf(f, " %s=", fields[i].key);
			if (fields[i].str == NULL) {
				fprintf(f, "%" PRIu64, fields[i].num);
			} else if (*fields[i].str == '\0' || strpbrk(fields[i].str, " \"=")) {
				fputc('"', f);
				put_escaped(f, fields[i].str, false, true);
				fputc('"', f);
			} else {
				put_escaped(f, fields[i].str, false, false);
			}
		}
		fputc('\n', f);
	}
	if (fclose(f) == 0 && line)
		write_all(line, len);
	free(line);
}

void log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
{
	char msg[2048];
	int saved = errno;

	if (lvl == LOG_LVL_DEBUG && log_verbosity < 1)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	emit(lvl, NULL, msg, NULL, 0);
	errno = saved;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(lvl, fmt, ap);
	va_end(ap);
}

void log_fields(enum log_level lvl, const char *msg, const struct log_field *fields, size_t n)
{
	int saved = errno;

	if (lvl == LOG_LVL_DEBUG && log_verbosity < 1)
		return;
	emit(lvl, NULL, msg, fields, n);
	errno = saved;
}

void log_transition_token(const char *from, const char *to, const char *reason, uint64_t token)
{
	const struct log_field fields[] = {
		{ "from", from, 0 }, { "to", to, 0 }, { "reason", reason ? reason : "", 0 },
		{ "token", NULL, token },
	};

	log_fields(LOG_LVL_INFO, "transition", fields, token ? 4 : 3);
}

void log_transition(const char *from, const char *to, const char *reason)
{
	log_transition_token(from, to, reason, 0);
}

void log_child_line(const char *tag, const char *line)
{
	emit(LOG_LVL_INFO, tag, line, NULL, 0);
}

void log_fatalx(int code, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log_fmt == LOG_FMT_JSON) {
		emit(LOG_LVL_ERROR, NULL, msg, NULL, 0);
	} else {
		/* Before the loop runs: "prog: message", as err(3) writes it. */
		char *line = NULL, *escaped = log_escape(msg, LOG_FMT_TEXT);

		if (escaped && asprintf(&line, "%s: %s\n", log_prog, escaped) >= 0)
			write_all(line, strlen(line));
		free(line);
		free(escaped);
	}
	exit(code);
}
