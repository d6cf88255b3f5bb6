/* Unit tests for the file backends' token counter (backends/file_common.c):
 * NAME.token next to NAME.lock, the token never below counter or floor, and
 * the record of which file each lock's last holder locked. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "backends/file_common.h"

static char dir[] = "/tmp/elect-test-fc-XXXXXX";

/* file_url_path()'s URL splitting (backends/registry.c) is not under test. */
int backend_split_url(const char *url, char **hosts, char **path, char *err, size_t errlen);
int backend_split_url(const char *url, char **hosts, char **path, char *err, size_t errlen)
{
	(void)url;
	(void)hosts;
	(void)path;
	snprintf(err, errlen, "not in this test");
	return -1;
}

static void path_in(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

static int make_file(const char *name)
{
	char p[256];
	int fd;

	path_in(p, sizeof(p), name);
	fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	return fd;
}

static void read_file(const char *name, char *buf, size_t len)
{
	char p[256];
	FILE *f;
	size_t n;

	path_in(p, sizeof(p), name);
	f = fopen(p, "r");
	assert_non_null(f);
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
}

static void test_token_path(void **state)
{
	char *p;

	(void)state;
	p = file_token_path("/run/elect/web.lock");
	assert_string_equal(p, "/run/elect/web.token");
	free(p);
	p = file_token_path("/x/election");
	assert_string_equal(p, "/x/election.token");
	free(p);
	p = file_token_path("/x/web.lock.d");
	assert_string_equal(p, "/x/web.lock.d.token");
	free(p);
}

static void test_bump_records_and_detects_replacement(void **state)
{
	char tp[256], content[512], want[512];
	uint64_t token, dev = 0, ino = 0;
	bool replaced;
	struct stat a, b;
	int fa = make_file("e.lock"), fb = make_file("e.other");

	(void)state;
	path_in(tp, sizeof(tp), "e.token");
	assert_int_equal(file_token_bump(tp, "lock", fa, 0, &token, &replaced, &dev, &ino), 0);
	assert_int_equal(token, 1);
	assert_false(replaced);
	/* Same file again: not replaced; the floor wins when it is higher. */
	assert_int_equal(file_token_bump(tp, "lock", fa, 41, &token, &replaced, &dev, &ino), 0);
	assert_int_equal(token, 42);
	assert_false(replaced);
	/* Another slot's record stays apart. */
	assert_int_equal(file_token_bump(tp, "slot1", fb, 0, &token, &replaced, &dev, &ino), 0);
	assert_int_equal(token, 43);
	assert_false(replaced);
	/* Another file under the same key: replaced, and which file it was. */
	assert_int_equal(file_token_bump(tp, "lock", fb, 0, &token, &replaced, &dev, &ino), 0);
	assert_int_equal(token, 44);
	assert_true(replaced);
	fstat(fa, &a);
	fstat(fb, &b);
	assert_int_equal(dev, (uint64_t)a.st_dev);
	assert_int_equal(ino, (uint64_t)a.st_ino);
	/* The record stays on the old file until the new holder may lead: a
	 * taker after us (should we never lead) must wait for that file too. */
	read_file("e.token", content, sizeof(content));
	snprintf(want, sizeof(want), "token=44\nlock=%llu:%llu\nslot1=%llu:%llu\n",
	         (unsigned long long)a.st_dev, (unsigned long long)a.st_ino,
	         (unsigned long long)b.st_dev, (unsigned long long)b.st_ino);
	assert_string_equal(content, want);
	assert_int_equal(file_token_bump(tp, "lock", fb, 0, &token, &replaced, &dev, &ino), 0);
	assert_int_equal(token, 45);
	assert_true(replaced);
	/* Recorded: the counter stays, the record names the new file. */
	assert_int_equal(file_token_record(tp, "lock", fb), 0);
	read_file("e.token", content, sizeof(content));
	snprintf(want, sizeof(want), "token=45\nlock=%llu:%llu\nslot1=%llu:%llu\n",
	         (unsigned long long)b.st_dev, (unsigned long long)b.st_ino,
	         (unsigned long long)b.st_dev, (unsigned long long)b.st_ino);
	assert_string_equal(content, want);
	assert_int_equal(file_token_bump(tp, "lock", fb, 0, &token, &replaced, &dev, &ino), 0);
	assert_int_equal(token, 46);
	assert_false(replaced);
	close(fa);
	close(fb);
}

static void test_counter_never_resets(void **state)
{
	char tp[256];
	uint64_t token, dev, ino;
	bool replaced;
	int fd = make_file("c.lock"), t;

	(void)state;
	path_in(tp, sizeof(tp), "c.token");
	/* An old-format file: only the counter. */
	t = make_file("c.token");
	assert_int_equal(write(t, "token=7\n", 8), 8);
	close(t);
	assert_int_equal(file_token_bump(tp, "lock", fd, 3, &token, &replaced, &dev, &ino), 0);
	assert_int_equal(token, 8);
	assert_false(replaced);
	/* Garbage: refused, never restarted from 1. */
	t = open(tp, O_WRONLY | O_TRUNC);
	assert_int_equal(write(t, "garbage\n", 8), 8);
	close(t);
	errno = 0;
	assert_int_equal(file_token_bump(tp, "lock", fd, 0, &token, &replaced, &dev, &ino), -1);
	assert_int_equal(errno, EINVAL);
	close(fd);
}

static int setup_dir(void **state)
{
	(void)state;
	return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_token_path),
		cmocka_unit_test(test_bump_records_and_detects_replacement),
		cmocka_unit_test(test_counter_never_resets),
	};

	return cmocka_run_group_tests_name("file_common", tests, setup_dir, remove_dir);
}
