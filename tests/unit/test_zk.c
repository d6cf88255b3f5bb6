/* The pure parts of the ZooKeeper backend (backends/zk_names.c): the URL,
 * sequence numbers, who leads and whom we watch, guids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backends/zk.h"
#include "backends/zk_conn.h"
#include "common/clock.h"

static void url_ok(const char *url, const char *name, const char *hosts, const char *path)
{
	char *h, *p, err[256];

	assert_int_equal(zk_parse_url(url, name, &h, &p, err, sizeof(err)), 0);
	assert_string_equal(h, hosts);
	assert_string_equal(p, path);
	free(h);
	free(p);
}

static void url_bad(const char *url, const char *name, const char *needle)
{
	char *h = (char *)1, *p = (char *)1, err[256] = "";

	assert_int_equal(zk_parse_url(url, name, &h, &p, err, sizeof(err)), -1);
	assert_null(h);
	assert_null(p);
	assert_non_null(strstr(err, needle));
	assert_null(strchr(err, '\n'));
}

static void test_url(void **state)
{
	(void)state;
	url_ok("zk://127.0.0.1:2181/elect/web", "x", "127.0.0.1:2181", "/elect/web");
	url_ok("zk://h1:2181,h2:2182/elect/web/", "x", "h1:2181,h2:2182", "/elect/web");
	url_ok("zk://h1:2181", "web", "h1:2181", "/web");
	url_ok("zk://h1:2181/", "web", "h1:2181", "/web");
	url_bad("zk:///x", "web", "no servers");
	url_bad("zk://h1/x", "web", "HOST:PORT");
	url_bad("zk://h1:0/x", "web", "HOST:PORT");
	url_bad("zk://h1:65536/x", "web", "HOST:PORT");
	url_bad("zk://h1:2181,/x", "web", "HOST:PORT");
	url_bad("zk://:2181/x", "web", "HOST:PORT");
	url_bad("zk://h1:21x1/x", "web", "HOST:PORT");
	url_bad("zk://h1:2181/a//b", "web", "empty");
	url_bad("zk://h1:2181/a/../b", "web", "'..'");
	url_bad("zk://h1:2181/zookeeper/x", "web", "reserved");
	url_bad("zk://h1:2181", "a/b", "no path");
	url_bad("h1:2181/x", "web", "no scheme");
	/* Options after '?' are not part of the path (zk_url_tick's). */
	url_ok("zk://h1:2181/elect/web?tick=200ms", "x", "h1:2181", "/elect/web");
	url_ok("zk://h1:2181?tick=1s", "web", "h1:2181", "/web");
}

static void test_url_tick(void **state)
{
	int64_t tick;
	char err[256] = "";
	struct backend_params p = { .url = "zk://h1:2181/x?tick=200ms", .renew_ns = 500 * NS_PER_MS };

	(void)state;
	assert_int_equal(zk_url_tick("zk://h1:2181/x", 7, &tick, err, sizeof(err)), 0);
	assert_int_equal(tick, 7);
	assert_int_equal(zk_url_tick("zk://h1:2181/x?", 7, &tick, err, sizeof(err)), 0);
	assert_int_equal(tick, 7);
	assert_int_equal(zk_url_tick("zk://h1:2181/x?tick=200ms", 7, &tick, err, sizeof(err)), 0);
	assert_int_equal(tick, 200 * NS_PER_MS);
	assert_int_equal(zk_url_tick("zk://h1:2181?tick=2s", 7, &tick, err, sizeof(err)), 0);
	assert_int_equal(tick, 2 * NS_PER_SEC);
	assert_int_equal(zk_url_tick("zk://h1:2181/x?tick=0s", 7, &tick, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "tick=DURATION"));
	assert_null(strchr(err, '\n'));
	assert_int_equal(zk_url_tick("zk://h1:2181/x?tick=61s", 7, &tick, err, sizeof(err)), -1);
	assert_int_equal(zk_url_tick("zk://h1:2181/x?tick=2", 7, &tick, err, sizeof(err)), -1);
	assert_int_equal(zk_url_tick("zk://h1:2181/x?tick=2s&x=1", 7, &tick, err, sizeof(err)), -1);
	assert_int_equal(zk_url_tick("zk://h1:2181/x?lock-delay=2s", 7, &tick, err, sizeof(err)), -1);
	/* The timing checks' lag: 1.5 ticks and one renew interval. */
	assert_int_equal(zk_alive_lag(&p), 800 * NS_PER_MS);
	p.url = "zk://h1:2181/x";
	assert_int_equal(zk_alive_lag(&p), 3500 * NS_PER_MS);
	p.url = "zk://h1:2181/x?tick=no";
	assert_int_equal(zk_alive_lag(&p), 0);
}

static void test_seq(void **state)
{
	(void)state;
	assert_int_equal(zk_node_seq("_c_abc-n_0000000000"), 0);
	assert_int_equal(zk_node_seq("_c_abc-n_0000000042"), 42);
	assert_int_equal(zk_node_seq("_c_abc-latch-2147483647"), 2147483647);
	assert_int_equal(zk_node_seq("_c_abc-n_42"), -1);
	assert_int_equal(zk_node_seq("leader"), -1);
	assert_int_equal(zk_node_seq(""), -1);
}

static void test_view(void **state)
{
	const char *ch[] = { "_c_b-n_0000000007", "junk", "_c_a-n_0000000003", "_c_c-n_0000000012",
	                     "_c_d-n_0000000009" };
	struct zk_view v;

	(void)state;
	zk_view_of(ch, 5, "_c_c-n_0000000012", &v);
	assert_int_equal(v.lowest, 2);
	assert_int_equal(v.own, 3);
	assert_int_equal(v.pred, 4);   /* 9, the next lower, not the leader */
	zk_view_of(ch, 5, "_c_b-n_0000000007", &v);
	assert_int_equal(v.pred, 2);
	zk_view_of(ch, 5, "_c_a-n_0000000003", &v);
	assert_int_equal(v.own, 2);
	assert_int_equal(v.lowest, 2);
	assert_int_equal(v.pred, -1);
	zk_view_of(ch, 5, "_c_gone-n_0000000001", &v);
	assert_int_equal(v.own, -1);
	assert_int_equal(v.pred, -1);
	assert_int_equal(v.lowest, 2);
	zk_view_of(ch, 0, NULL, &v);
	assert_int_equal(v.lowest, -1);
}

static void test_lock_view(void **state)
{
	/* sequences 3 7 9 12 15 (and a non-sequential child) */
	const char *ch[] = { "_c_b-lock-0000000007", "junk", "_c_a-lock-0000000003",
	                     "_c_c-lock-0000000012", "_c_d-lock-0000000009", "_c_e-lock-0000000015" };
	int rank, w[6];

	(void)state;
	/* A lock: the lowest holds, everyone else watches the node just below. */
	assert_int_equal(zk_lock_view(ch, 6, "_c_a-lock-0000000003", 1, &rank, w), 0);
	assert_int_equal(rank, 0);
	assert_int_equal(zk_lock_view(ch, 6, "_c_b-lock-0000000007", 1, &rank, w), 1);
	assert_int_equal(w[0], 2);
	assert_int_equal(zk_lock_view(ch, 6, "_c_c-lock-0000000012", 1, &rank, w), 1);
	assert_int_equal(rank, 3);
	assert_int_equal(w[0], 4);
	/* A semaphore of 2: 3 and 7 hold; 9 is first in line and watches both;
	 * 12 watches 9 only. */
	assert_int_equal(zk_lock_view(ch, 6, "_c_b-lock-0000000007", 2, &rank, w), 0);
	assert_int_equal(zk_lock_view(ch, 6, "_c_d-lock-0000000009", 2, &rank, w), 2);
	assert_true((w[0] == 0 && w[1] == 2) || (w[0] == 2 && w[1] == 0));
	assert_int_equal(zk_lock_view(ch, 6, "_c_c-lock-0000000012", 2, &rank, w), 1);
	assert_int_equal(w[0], 4);
	assert_int_equal(zk_lock_view(ch, 6, "_c_e-lock-0000000015", 5, &rank, w), 0);
	assert_int_equal(rank, 4);
	/* Our node is gone. */
	assert_int_equal(zk_lock_view(ch, 6, "_c_f-lock-0000000001", 1, &rank, w), -1);
	assert_int_equal(zk_lock_view(ch, 0, "_c_a-lock-0000000003", 1, &rank, w), -1);
}

static void test_lock_nodes(void **state)
{
	const char *ch[] = { "_c_b-lock-0000000007", "junk", "_c_a-lock-0000000003", "lock-0000000005",
	                     "_c_c-n_0000000001", "xlock-0000000002", "_c_d-lock-42", "_c_e-lock-0000000004" };
	int idx[8];
	int64_t seq[8];

	(void)state;
	assert_int_equal(zk_lock_node_seq("_c_a-lock-0000000003"), 3);
	assert_int_equal(zk_lock_node_seq("lock-0000000005"), 5);
	assert_int_equal(zk_lock_node_seq("_c_c-n_0000000001"), -1);
	assert_int_equal(zk_lock_node_seq("xlock-0000000002"), -1);
	assert_int_equal(zk_lock_node_seq("_c_d-lock-42"), -1);
	assert_int_equal(zk_lock_node_seq("0000000009"), -1);
	assert_int_equal(zk_lock_nodes(ch, 8, idx, seq), 4);
	assert_int_equal(idx[0], 2);
	assert_int_equal(idx[1], 7);
	assert_int_equal(idx[2], 3);
	assert_int_equal(idx[3], 0);
	assert_int_equal(seq[0], 3);
	assert_int_equal(seq[3], 7);
	assert_int_equal(zk_lock_nodes(ch, 0, idx, seq), 0);
}

static void printable_is(const char *data, int len, size_t outlen, const char *want)
{
	char out[64];

	memset(out, 'X', sizeof(out));
	zk_printable(out, outlen, data, len);
	assert_string_equal(out, want);
}

static void test_printable(void **state)
{
	(void)state;
	printable_is("lockd-a", 7, 64, "lockd-a");
	printable_is(NULL, -1, 64, "");
	printable_is("abc", -1, 64, "");
	printable_is("a\0b\nc\x7f", 6, 64, "a?b?c?");
	printable_is("caf\xc3\xa9", 5, 64, "caf\xc3\xa9");        /* é */
	printable_is("\xe2\x82\xac!", 4, 64, "\xe2\x82\xac!");      /* € */
	printable_is("\xf0\x9f\x94\x92", 4, 64, "\xf0\x9f\x94\x92");/* U+1F512 */
	printable_is("\xc3", 1, 64, "?");                          /* cut short */
	printable_is("\xc3(", 2, 64, "?(");
	printable_is("\xc0\xaf", 2, 64, "??");                     /* overlong '/' */
	printable_is("\xed\xa0\x80", 3, 64, "???");                /* surrogate */
	printable_is("\xf4\x90\x80\x80", 4, 64, "????");           /* above U+10FFFF */
	printable_is("\xc2\x85x", 3, 64, "?x");                    /* C1 control, one '?' */
	printable_is("\xff\xfe", 2, 64, "??");
	/* Cut at a character boundary. */
	printable_is("abcdef", 6, 4, "abc");
	printable_is("ab\xc3\xa9", 4, 4, "ab");
	printable_is("ab\xc3\xa9", 4, 5, "ab\xc3\xa9");
	printable_is("abc", 3, 1, "");
}

static void test_guid(void **state)
{
	const char *ch[] = { "_c_11111111-2222-4333-8444-555555555555-n_0000000001", "x" };
	char g1[ZK_GUID_LEN + 1], g2[ZK_GUID_LEN + 1];

	(void)state;
	assert_int_equal(zk_find_guid(ch, 2, "11111111-2222-4333-8444-555555555555"), 0);
	assert_int_equal(zk_find_guid(ch, 2, "11111111-2222-4333-8444-555555555556"), -1);
	assert_int_equal(zk_make_guid(g1), 0);
	assert_int_equal(zk_make_guid(g2), 0);
	assert_int_equal(strlen(g1), ZK_GUID_LEN);
	assert_int_equal(g1[14], '4');
	assert_int_equal(g1[8], '-');
	assert_string_not_equal(g1, g2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url),
		cmocka_unit_test(test_url_tick),
		cmocka_unit_test(test_seq),
		cmocka_unit_test(test_view),
		cmocka_unit_test(test_lock_view),
		cmocka_unit_test(test_lock_nodes),
		cmocka_unit_test(test_printable),
		cmocka_unit_test(test_guid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
