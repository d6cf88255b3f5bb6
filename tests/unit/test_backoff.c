/* common/backoff.c: the wait doubles from first to max and stays there,
 * every wait lies in [cur/2, cur], different seeds give different waits,
 * and a reset starts over from first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/backoff.h"

#define S 1000000000LL

static void test_doubles_to_max_with_jitter(void **state)
{
	static const int64_t want[] = { 1 * S, 2 * S, 4 * S, 8 * S, 16 * S, 30 * S, 30 * S, 30 * S };
	struct backoff b;

	(void)state;
	backoff_init(&b, 1 * S, 30 * S, 42);
	assert_false(backoff_active(&b));
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		int64_t w = backoff_next(&b);
		assert_int_equal(b.cur_ns, want[i]);
		assert_true(w >= want[i] / 2 && w <= want[i]);
	}
	assert_true(backoff_active(&b));
	backoff_reset(&b);
	assert_false(backoff_active(&b));
	int64_t w = backoff_next(&b);
	assert_true(w >= S / 2 && w <= S);
}

static void test_jitter_spreads(void **state)
{
	struct backoff a, b;
	int differ = 0;
	int64_t lo = 30 * S, hi = 0;

	(void)state;
	backoff_init(&a, S, 30 * S, 1);
	backoff_init(&b, S, 30 * S, 2);
	for (int i = 0; i < 50; i++) {
		int64_t x = backoff_next(&a), y = backoff_next(&b);
		differ += x != y;
		if (i >= 5) {
			lo = x < lo ? x : lo;
			hi = x > hi ? x : hi;
		}
	}
	assert_true(differ > 40);
	/* At the cap the waits cover much of [15 s, 30 s], not one value. */
	assert_true(lo >= 15 * S && hi <= 30 * S && hi - lo > 5 * S);
}

static void test_odd_settings(void **state)
{
	struct backoff b;

	(void)state;
	backoff_init(&b, 0, -1, 0);         /* nonsense: still a positive, bounded wait */
	for (int i = 0; i < 70; i++) {
		int64_t w = backoff_next(&b);
		assert_true(w >= 0 && w <= 1);
	}
	backoff_init(&b, 20 * S, 30 * S, 7); /* first over max/2: straight to max */
	backoff_next(&b);
	backoff_next(&b);
	assert_int_equal(b.cur_ns, 30 * S);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_doubles_to_max_with_jitter),
		cmocka_unit_test(test_jitter_spreads),
		cmocka_unit_test(test_odd_settings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
