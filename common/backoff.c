/* Exponential back-off with jitter (see backoff.h). */
#include "common/backoff.h"

void backoff_init(struct backoff *b, int64_t first_ns, int64_t max_ns, uint64_t seed)
{
	b->first_ns = first_ns > 0 ? first_ns : 1;
	b->max_ns = max_ns > b->first_ns ? max_ns : b->first_ns;
	b->cur_ns = 0;
	b->rnd = seed ? seed : 0x9e3779b97f4a7c15ULL;
}

static uint64_t next_random(struct backoff *b)
{
	/* xorshift64: jitter only needs to differ between agents, not to be secret. */
	b->rnd ^= b->rnd << 13;
	b->rnd ^= b->rnd >> 7;
	b->rnd ^= b->rnd << 17;
	return b->rnd;
}

int64_t backoff_next(struct backoff *b)
{
	int64_t half;

	if (b->cur_ns == 0)
		b->cur_ns = b->first_ns;
	else if (b->cur_ns > b->max_ns / 2)
		b->cur_ns = b->max_ns;
	else
		b->cur_ns *= 2;
	half = b->cur_ns / 2;
	return b->cur_ns - half + (int64_t)(next_random(b) % (uint64_t)(half + 1));
}

void backoff_reset(struct backoff *b)
{
	b->cur_ns = 0;
}

bool backoff_active(const struct backoff *b)
{
	return b->cur_ns != 0;
}
