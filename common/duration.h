/* Durations as users write them: 500ms, 10s, 1m, 1h, 1m30s, 250us. */
#ifndef ELECT_DURATION_H
#define ELECT_DURATION_H

#include <stddef.h>
#include <stdint.h>

/* Returns 0 and sets *ns, or -1 if s is not a duration (no unit, negative,
 * overflow). A bare "0" is accepted. */
int duration_parse(const char *s, int64_t *ns);
/* Formats ns as e.g. "1.5s", "250ms" into buf. Returns buf. */
char *duration_format(int64_t ns, char *buf, size_t len);

#endif
