/* common/log.c: every JSON line parses, with the data it was given; text
 * lines carry no control character and no byte that is not UTF-8. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/log.h"

/* Hostile data as a backend or a child might hand it over: a newline and a
 * forged line, an escape sequence, a C1 control (CSI), a stray byte 0xff, a
 * cut-short UTF-8 sequence, an overlong '/' and a surrogate. */
static const char hostile[] = "n1\n2026-01-01T00:00:00.000Z elect[1] info forged \x1b[31mred"
                              "\xc2\x9b" "2J \xff tail\xe2\x82 \xc0\xaf \xed\xa0\x80 ok";

struct capture {
	int saved_fd;
	FILE *file;
};

static int setup(void **state)
{
	struct capture *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	c->file = tmpfile();
	assert_non_null(c->file);
	fflush(stderr);
	c->saved_fd = dup(STDERR_FILENO);
	assert_true(c->saved_fd >= 0);
	assert_int_equal(dup2(fileno(c->file), STDERR_FILENO), STDERR_FILENO);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct capture *c = *state;

	dup2(c->saved_fd, STDERR_FILENO);
	close(c->saved_fd);
	fclose(c->file);
	free(c);
	log_set_context(NULL, NULL);
	log_init("test", LOG_FMT_TEXT, 0);
	return 0;
}

/* What was logged since the last call, NUL-terminated (malloc'd). */
static char *captured(struct capture *c)
{
	long len;
	char *buf;

	fflush(c->file);
	len = ftell(c->file);
	assert_true(len >= 0);
	buf = calloc(1, (size_t)len + 1);
	assert_non_null(buf);
	rewind(c->file);
	assert_int_equal(fread(buf, 1, (size_t)len, c->file), (size_t)len);
	rewind(c->file);
	assert_int_equal(ftruncate(fileno(c->file), 0), 0);
	return buf;
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* No byte below 0x20 but the final newline, no DEL, and valid UTF-8. */
static void assert_clean_line(const char *s)
{
	json_t *str;

	for (const char *p = s; *p; p++)
		if (*p != '\n')
			assert_true((unsigned char)*p >= 0x20 && *p != 0x7f);
	/* jansson refuses a string that is not UTF-8. */
	str = json_string(s);
	assert_non_null(str);
	json_decref(str);
}

static void test_escape_text(void **state)
{
	char *e;

	(void)state;
	e = log_escape("a\nb\tc\r\x1b[0m\x7f", LOG_FMT_TEXT);
	assert_string_equal(e, "a\\nb\\tc\\r\\x1b[0m\\x7f");
	free(e);
	e = log_escape("caf\xc3\xa9 \xff \xc2\x85 \xe2\x80\xa8 \"q\" \\", LOG_FMT_TEXT);
	assert_string_equal(e, "caf\xc3\xa9 \\xff \\u0085 \\u2028 \"q\" \\");
	free(e);
	/* Overlong, surrogate and cut-short sequences are bytes, not characters. */
	e = log_escape("\xc0\xaf|\xed\xa0\x80|\xe2\x82", LOG_FMT_TEXT);
	assert_string_equal(e, "\\xc0\\xaf|\\xed\\xa0\\x80|\\xe2\\x82");
	free(e);
	e = log_escape("\xf0\x9f\x98\x80 \xf4\x90\x80\x80", LOG_FMT_TEXT);
	assert_string_equal(e, "\xf0\x9f\x98\x80 \\xf4\\x90\\x80\\x80");
	free(e);
}

static void test_escape_json(void **state)
{
	char *e, *doc;
	json_t *j;
	json_error_t jerr;

	(void)state;
	e = log_escape("q\"b\\n\n\x01\xff", LOG_FMT_JSON);
	assert_string_equal(e, "q\\\"b\\\\n\\n\\u0001\\\\xff");
	free(e);
	e = log_escape(hostile, LOG_FMT_JSON);
	assert_non_null(e);
	assert_true(asprintf(&doc, "[\"%s\"]", e) > 0);
	j = json_loads(doc, 0, &jerr);
	assert_non_null(j);
	assert_non_null(strstr(json_string_value(json_array_get(j, 0)), "\n2026-01-01"));
	assert_non_null(strstr(json_string_value(json_array_get(j, 0)), "\\xff tail"));
	json_decref(j);
	free(doc);
	free(e);
}

static void test_json_lines(void **state)
{
	struct capture *c = *state;
	const char *const st = "leader";
	json_t *j;
	json_error_t jerr;
	char *out, *line, *save = NULL;
	int n = 0;

	log_init("elect", LOG_FMT_JSON, 1);
	log_set_context("web", &st);
	log_info("leader is now %s", hostile);
	log_child_line("hook:elected", hostile);
	log_transition_token("candidate", "leader", "elected \"now\"", 42);
	log_transition("leader", "follower", NULL);
	out = captured(c);
	assert_int_equal(count_lines(out), 4);
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
		j = json_loads(line, 0, &jerr);
		if (j == NULL)
			fail_msg("line %d is not JSON (%s): %s", n, jerr.text, line);
		assert_string_equal(json_string_value(json_object_get(j, "name")), "web");
		if (n == 1)
			assert_string_equal(json_string_value(json_object_get(j, "tag")), "hook:elected");
		if (n == 2) {
			assert_string_equal(json_string_value(json_object_get(j, "msg")), "transition");
			assert_string_equal(json_string_value(json_object_get(j, "from")), "candidate");
			assert_string_equal(json_string_value(json_object_get(j, "to")), "leader");
			assert_string_equal(json_string_value(json_object_get(j, "reason")), "elected \"now\"");
			assert_int_equal(json_integer_value(json_object_get(j, "token")), 42);
		}
		if (n == 3) {
			assert_string_equal(json_string_value(json_object_get(j, "to")), "follower");
			assert_string_equal(json_string_value(json_object_get(j, "reason")), "");
			assert_null(json_object_get(j, "token"));
		}
		json_decref(j);
	}
	free(out);
}

static void test_text_lines(void **state)
{
	struct capture *c = *state;
	char *out, *line, *save = NULL;

	log_init("elect", LOG_FMT_TEXT, 0);
	log_set_context("we\nb", NULL);
	log_info("leader is now %s", hostile);
	log_child_line("hook:\x1b", hostile);
	log_transition_token("candidate", "leader", "a \"b\"\nc", 7);
	log_debug("not shown at verbosity 0");
	out = captured(c);
	assert_int_equal(count_lines(out), 3);
	assert_non_null(strstr(out, "name=we\\nb "));
	assert_non_null(strstr(out, "n1\\n2026-01-01T00:00:00.000Z elect[1] info forged \\x1b[31mred\\u009b2J"
	                            " \\xff tail\\xe2\\x82"));
	assert_non_null(strstr(out, "[hook:\\x1b]"));
	assert_non_null(strstr(out, " transition from=candidate to=leader reason=\"a \\\"b\\\"\\nc\" token=7\n"));
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		assert_clean_line(line);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape_text),
		cmocka_unit_test(test_escape_json),
		cmocka_unit_test_setup_teardown(test_json_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_text_lines, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
