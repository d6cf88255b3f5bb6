/* The handover record: what a leader that resigns in favour of a named
 * candidate (`elect resign --to ID`) leaves in the backend for the next
 * candidates, and what they read when elected (backend_events.elected).
 *
 * It is one line of JSON, opaque to the backends, which only store it next
 * to the election (etcd: key PREFIX.handover; ZooKeeper: node PATH.handover;
 * Consul: the value of the released .lock; file: a line of the lock file)
 * and hand it back as they found it:
 *
 *   {"to":"ID","from":"OLD LEADER","token":N,"timeout_ms":T}
 *
 * (from, token) names one handover: the old leader's token is unique. A
 * candidate other than "to" that is elected while a record is in force
 * stands aside (elector/core.c); a record is in force for timeout_ms from the
 * moment this candidate first saw it, on its own monotonic clock (never a
 * wall-clock time from another host). */
#ifndef ELECT_HANDOVER_H
#define ELECT_HANDOVER_H

#include <stddef.h>
#include <stdint.h>

#define HANDOVER_MAX 1024        /* longest record a backend must keep */

struct handover {
	char to[256], from[256];
	uint64_t token;
	int64_t timeout_ns;
};

/* Encodes h into buf (NUL-terminated). -1 if it does not fit. */
int handover_encode(const struct handover *h, char *buf, size_t len);
/* Decodes a record. -1 if s is not one (the caller ignores it). */
int handover_decode(const char *s, struct handover *h);
/* Same handover (from, token and to). */
int handover_same(const struct handover *a, const struct handover *b);

#endif
