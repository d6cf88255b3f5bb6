/* Exponential back-off with jitter, for retries that must not hammer a
 * server that keeps refusing us (a wrong ACL token): the wait doubles from
 * `first` up to `max`, each one drawn from [wait/2, wait] so that agents
 * refused together do not come back together. Pure: no clock, no I/O. */
#ifndef ELECT_BACKOFF_H
#define ELECT_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>

struct backoff {
	int64_t first_ns, max_ns;
	int64_t cur_ns;            /* 0: not backing off */
	uint64_t rnd;              /* xorshift state, never 0 */
};

void backoff_init(struct backoff *b, int64_t first_ns, int64_t max_ns, uint64_t seed);
/* One more refusal: the wait before the next try (first, then doubling). */
int64_t backoff_next(struct backoff *b);
/* A success: the next refusal starts from `first` again. */
void backoff_reset(struct backoff *b);
bool backoff_active(const struct backoff *b);

#endif
