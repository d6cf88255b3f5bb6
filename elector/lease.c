#include "common/clock.h"
#include "elector/lease.h"

int64_t lease_margin(int64_t ttl_ns)
{
	return 50 * NS_PER_MS + ttl_ns / 100;
}

void lease_init(struct lease *l, int64_t ttl_ns, int64_t budget_ns)
{
	l->ttl_ns = ttl_ns;
	l->margin_ns = lease_margin(ttl_ns);
	l->budget_ns = budget_ns;
	l->alive_sent_ns = 0;
}

int64_t lease_lead_time(int64_t ttl_ns, int64_t budget_ns)
{
	return ttl_ns - lease_margin(ttl_ns) - budget_ns;
}

void lease_alive(struct lease *l, int64_t sent_ns)
{
	if (sent_ns > l->alive_sent_ns)
		l->alive_sent_ns = sent_ns;
}

void lease_forget(struct lease *l)
{
	l->alive_sent_ns = 0;
}

bool lease_known(const struct lease *l)
{
	return l->alive_sent_ns != 0;
}

int64_t lease_deadline(const struct lease *l)
{
	return l->alive_sent_ns + l->ttl_ns - l->margin_ns;
}

int64_t lease_stop_at(const struct lease *l)
{
	return lease_deadline(l) - l->budget_ns;
}
