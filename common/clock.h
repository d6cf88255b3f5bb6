/* Monotonic time in nanoseconds (CLOCK_MONOTONIC). All deadlines in elect are
 * kept in this clock; ev_now() is wall time and must not be mixed in.
 * clock_now_ns() is a seam: unit tests replace it with -Wl,--wrap. */
#ifndef ELECT_CLOCK_H
#define ELECT_CLOCK_H

#include <stdint.h>

#define NS_PER_MS  INT64_C(1000000)
#define NS_PER_SEC INT64_C(1000000000)

int64_t clock_now_ns(void);
/* Wall clock in milliseconds since the epoch, for logs and "since" fields. */
int64_t clock_wall_ms(void);

/* Seconds as libev wants them, from a nanosecond span (negative -> 0). */
double clock_ns_to_ev(int64_t ns);

#endif
