/* The deadline arithmetic of the safety rule (DESIGN.md rule 1), in one place
 * for the elector core and lockd.
 *
 * alive_sent is the send time of the last request that proved the session
 * alive. The backend cannot end the session before alive_sent + ttl, so all
 * leader work (or every lock hold) must be stopped by
 *   deadline = alive_sent + ttl - margin,
 * and stopping starts at deadline - budget, the longest stopping can take. */
#ifndef ELECT_LEASE_H
#define ELECT_LEASE_H

#include <stdbool.h>
#include <stdint.h>

struct lease {
	int64_t ttl_ns, margin_ns, budget_ns;
	int64_t alive_sent_ns;    /* 0: the session is not known to be alive */
};

/* The margin for a TTL: the loop's own lateness and clock-rate differences. */
int64_t lease_margin(int64_t ttl_ns);
void lease_init(struct lease *l, int64_t ttl_ns, int64_t budget_ns);
/* How long after a renewal is sent stopping must begin. Timing is safe when
 * this is longer than the renew interval. */
int64_t lease_lead_time(int64_t ttl_ns, int64_t budget_ns);
/* A request sent at sent_ns proved the session alive (keeps the latest). */
void lease_alive(struct lease *l, int64_t sent_ns);
void lease_forget(struct lease *l);
bool lease_known(const struct lease *l);
int64_t lease_deadline(const struct lease *l);
int64_t lease_stop_at(const struct lease *l);

#endif
