/* ZooKeeper backend: zk://HOST:PORT[,HOST:PORT...]/PATH
 *
 * The election's backend_ops and its side of the session: the session and
 * the loop are driven by zk_conn.c (shared with the lock backend), the
 * election recipe is in zk_elect.c, the handover record (resign --to) in
 * zk_handover.c. Here: what a session change means for
 * the candidacy, and the delivery of events to the core.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/zk_int.h"
#include "common/log.h"

/* ---- events to the core, always delivered from the loop ---------------- */

static bool candidacy_event(const struct zk_event *e, void *arg)
{
	(void)arg;
	return e->kind == ZE_ELECTED || e->kind == ZE_LOST || e->kind == ZE_LEADER;
}

/* Events a left candidacy must not deliver ("nothing more is reported until
 * the next campaign()"). */
static void purge_candidacy_events(struct backend *b)
{
	zk_purge(&b->c, candidacy_event, NULL);
}

static void deliver(void *owner, const struct zk_event *e)
{
	struct backend *b = owner;
	const struct backend_events *ev = b->p.ev;

	switch (e->kind) {
	case ZE_ALIVE:   ev->session_alive(b->p.ctx, e->num); break;
	case ZE_FAILED:  ev->session_failed(b->p.ctx, e->str ? e->str : "error"); break;
	case ZE_ELECTED: ev->elected(b->p.ctx, (uint64_t)e->num, e->str); break;
	case ZE_LOST:    ev->lost(b->p.ctx, e->str ? e->str : "lost"); break;
	case ZE_LEADER:  ev->leader(b->p.ctx, e->str); break;
	case ZE_CLOSED:  ev->closed(b->p.ctx); break;
	default:         break;
	}
}

/* ---- the session's changes, as they concern the candidacy ------------- */

static bool wants_session(void *owner)
{
	return ((struct backend *)owner)->campaigning;
}

static bool on_refused(void *owner)
{
	struct backend *b = owner;

	if (!b->leading)
		return true;
	/* Step down first; close the session (which deletes our node) only
	 * when the core campaigns again, i.e. after stepping down. */
	zk_end_candidacy(b, false);
	zk_queue(&b->c, ZE_LOST, 0, "session timeout shorter than --ttl", NULL);
	b->drop_on_campaign = true;
	return false;
}

static void on_connected(void *owner, bool new_session)
{
	struct backend *b = owner;

	if (new_session) {
		for (int s = 0; s < ZK_MAX_STALE; s++)
			b->stale[s][0] = '\0'; /* the old session's nodes are gone with it */
	} else if (b->leading) {
		/* Answers prove the session but not our node: hold session_alive
		 * back until the re-check finds us lowest. */
		b->c.hold_alive = true;
		b->c.held_alive_ns = 0;
	}
	/* Also the re-check after a reconnect: we keep leading only if our node
	 * still exists and is still the lowest. */
	zk_advance(b);
}

static void on_ended(void *owner, const char *why)
{
	struct backend *b = owner;

	if (b->campaigning) {
		zk_end_candidacy(b, false);
		zk_queue(&b->c, ZE_LOST, 0, why, NULL);
	}
}

static void on_handle_closed(void *owner)
{
	struct backend *b = owner;

	b->parent_inflight = b->node_inflight = b->check_inflight = b->check_again = false;
	b->lowest_pending = b->ho_inflight = false;
	free(b->pred_node);
	free(b->leader_node);
	b->pred_node = b->leader_node = NULL;
}

static void on_retry(void *owner)
{
	zk_advance(owner);
}

static void free_backend(void *owner)
{
	struct backend *b = owner;

	zk_conn_cleanup(&b->c);
	free(b->node);
	free(b->pred_node);
	free(b->leader_node);
	free(b->leader_id);
	free(b->record_path);
	free(b->ho_record);
	free(b);
}

static const struct zk_conn_owner election_owner = {
	.wants_session = wants_session,
	.connected = on_connected,
	.refused = on_refused,
	.ended = on_ended,
	.handle_closed = on_handle_closed,
	.retry = on_retry,
	.deliver = deliver,
	.free = free_backend,
};

/* ---- backend_ops -------------------------------------------------------- */

static int zk_create(struct backend **out, const struct backend_params *p, char *err, size_t errlen)
{
	struct backend *b;

	*out = NULL;
	b = calloc(1, sizeof(*b));
	if (b == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	b->p = *p;
	if (zk_conn_init(&b->c, p, p->name, &election_owner, b, err, errlen) < 0) {
		free(b);
		return -1;
	}
	if (asprintf(&b->record_path, "%s.handover", b->c.path) < 0) {
		zk_conn_cleanup(&b->c);
		free(b);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	*out = b;
	return 0;
}

static void zk_campaign(struct backend *b)
{
	if (b->c.closing || b->campaigning)
		return;
	if (zk_make_guid(b->guid) < 0) {
		log_error("zk: cannot read /dev/urandom for the candidate guid");
		zk_queue(&b->c, ZE_FAILED, 0, "no random guid", NULL);
		return;
	}
	b->campaigning = true;
	b->leading = false;
	if (b->drop_on_campaign) {
		b->drop_on_campaign = false;
		b->c.drop_handle = true;
	}
	zk_advance(b);
	zk_kick(&b->c);
}

static void zk_renew(struct backend *b)
{
	if (zk_renew_wanted(&b->c))
		zk_send_renew(b);
}

static void zk_resign(struct backend *b)
{
	purge_candidacy_events(b);
	if (b->campaigning || b->node != NULL)
		zk_end_candidacy(b, true);
	zk_kick(&b->c);
}

/* Like resign, but the release leaves the record for the next candidates. */
static void zk_handover(struct backend *b, const char *record)
{
	purge_candidacy_events(b);
	zk_hand_over(b, record);
	zk_kick(&b->c);
}

static void zk_clear_handover(struct backend *b, const char *record)
{
	zk_clear_record(b, record);
	zk_kick(&b->c);
}

static void zk_close(struct backend *b)
{
	if (b->c.closing)
		return;
	purge_candidacy_events(b);
	zk_end_candidacy(b, true);
	zk_conn_close(&b->c);
}

static void zk_destroy(struct backend *b)
{
	if (b != NULL)
		zk_conn_destroy(&b->c);
}

const struct backend_ops zk_backend_ops = {
	.scheme = "zk",
	.create = zk_create,
	.campaign = zk_campaign,
	.renew = zk_renew,
	.resign = zk_resign,
	.handover = zk_handover,
	.clear_handover = zk_clear_handover,
	.close = zk_close,
	.destroy = zk_destroy,
	.check_timing = NULL,
	.alive_lag = zk_alive_lag,
};
