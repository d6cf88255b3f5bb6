/* ZooKeeper backend: the handover record (elect resign --to ID,
 * common/handover.h).
 *
 * The record is the data of one node, "<path>.handover": a sibling of the
 * election node, so never taken for a candidate. It is ephemeral, owned by
 * the session of the leader that handed over, so it goes with that agent
 * if it dies (a kill -9 right after resign --to leaves no record behind
 * once its session expires; until then the record's own timeout applies).
 *
 *   leave:  one multi(): delete our candidate node + create the record, so
 *           that the release and the record are one transaction: whoever is
 *           elected after the release finds the record. A record left by
 *           someone else (not cleared yet): delete + create in the multi,
 *           so that the new record is ours.
 *   read:   a getData pipelined right after every getChildren of a
 *           candidate's check (zk_elect.c); a session's requests are
 *           answered in order, so the record seen is at least as new as the
 *           children that made us leader. NONODE: no record.
 *   clear:  getData, compare with the record, delete with the version read
 *           (the new leader that took over, or the old one at the timeout).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/zk_int.h"
#include "common/handover.h"
#include "common/log.h"

/* A record that is not there at the create, then there at the delete (or
 * back and forth) is someone else's handover racing ours: give up the
 * record after this many tries and release our node alone. */
#define HANDOVER_TRIES 4

/* ---- leave: release our node and leave the record, in one multi ------- */

static bool send_multi(struct backend *b, const char *node, bool replace);

/* Our node must go whatever happens to the record. */
static void release_alone(struct backend *b, const char *node, const char *why)
{
	log_warnx("zk: no handover record left (%s); releasing %s/%s alone", why, b->c.path, node);
	zk_send_delete(b, node);
}

static void multi_done(int rc, const void *data)
{
	struct zk_req *r = (struct zk_req *)(uintptr_t)data;
	struct backend *b = zk_req_done(r, rc);
	char *node;
	int node_err, record_err;

	if (b == NULL)
		return; /* the handle is closing; our node goes with the session */
	b->ho_inflight = false;
	node = r->arg;
	r->arg = NULL;
	zk_req_free(r);
	/* Ops: [delete node, (delete record,) create record]. */
	node_err = b->ho_results[0].err;
	record_err = rc == ZNODEEXISTS ? ZNODEEXISTS : b->ho_results[1].err;
	if (b->c.closing) {
		/* Closing the session deletes our node anyway: no retries. */
		if (rc == ZOK || (rc == ZNONODE && node_err == ZNONODE))
			zk_forget_stale(b, node);
		zk_kick(&b->c);
	} else if (rc == ZOK) {
		zk_forget_stale(b, node);
		log_info("zk: released %s/%s, handover record left in %s: %s", b->c.path, node,
		         b->record_path, b->ho_record);
	} else if (zk_connection_error(rc)) {
		/* Unknown whether it was applied. Our node stays remembered as
		 * stale: deleted when seen, or gone with the session. */
		log_warnx("zk: leaving the handover record: %s", zerror(rc));
	} else if (rc == ZNONODE && node_err == ZNONODE) {
		log_warnx("zk: our node %s/%s was gone already: no handover record left", b->c.path, node);
		zk_forget_stale(b, node);
	} else if (b->ho_attempt >= HANDOVER_TRIES) {
		release_alone(b, node, zerror(rc));
	} else if (rc == ZNODEEXISTS || (rc == ZNONODE && record_err == ZNONODE)) {
		/* A record was there (replace it) or vanished meanwhile (create). */
		log_debug("zk: leaving the handover record: %s; %s it", zerror(rc),
		          rc == ZNODEEXISTS ? "replacing" : "creating");
		if (!send_multi(b, node, rc == ZNODEEXISTS))
			release_alone(b, node, "cannot send");
	} else {
		release_alone(b, node, zerror(rc));
	}
	free(node);
}

static bool send_multi(struct backend *b, const char *node, bool replace)
{
	zoo_op_t ops[3];
	int n = 0;
	char *full = zk_child_path(&b->c, node);
	struct zk_req *r = full ? zk_req_new(&b->c, OP_DELETE, node) : NULL;
	bool ok;

	memset(b->ho_results, 0, sizeof(b->ho_results));
	if (r != NULL) {
		r->tag = b->cand;
		zoo_delete_op_init(&ops[n++], full, -1);
		if (replace)
			zoo_delete_op_init(&ops[n++], b->record_path, -1);
		zoo_create_op_init(&ops[n++], b->record_path, b->ho_record, (int)strlen(b->ho_record),
		                   b->c.acl, ZOO_EPHEMERAL, b->ho_created, (int)sizeof(b->ho_created));
	}
	ok = r != NULL && zoo_amulti(b->c.zh, n, ops, b->ho_results, multi_done, r) == ZOK;
	if (!ok)
		zk_req_free(r);
	b->ho_inflight = ok;
	b->ho_attempt++;
	free(full);
	return ok;
}

void zk_hand_over(struct backend *b, const char *record)
{
	char *node = b->node ? strdup(b->node) : NULL;
	char *copy = strdup(record);
	bool can = node != NULL && copy != NULL && b->c.zh != NULL && b->c.connected &&
	           !b->ho_inflight && b->record_path != NULL;

	/* Forget the candidacy without deleting the node: the multi does. */
	zk_end_candidacy(b, !can);
	if (!can) {
		if (node != NULL)
			log_warnx("zk: cannot leave a handover record now (%s); %s/%s released without it",
			          b->ho_inflight ? "another handover in flight" : "not connected",
			          b->c.path, node);
		free(node);
		free(copy);
		return;
	}
	free(b->ho_record);
	b->ho_record = copy;
	b->ho_attempt = 0;
	if (!send_multi(b, node, false))
		release_alone(b, node, "cannot send");
	free(node);
}

/* ---- read: the getData after a check's getChildren -------------------- */

static void record_read_done(int rc, const char *value, int len, const struct Stat *stat, const void *data)
{
	struct zk_req *r = (struct zk_req *)(uintptr_t)data;
	struct backend *b = zk_req_done(r, rc);
	bool stale, pending;
	char *record = NULL;

	(void)stat;
	if (b == NULL)
		return;
	stale = r->tag != b->cand || !b->campaigning || b->c.closing;
	zk_req_free(r);
	pending = b->lowest_pending;
	if (stale || !pending || b->leading || b->node == NULL)
		return;
	b->lowest_pending = false;
	if (zk_connection_error(rc)) {
		/* Decided again by the check that follows the reconnect. */
		log_debug("zk: reading the handover record: %s (waiting for the connection)", zerror(rc));
		return;
	}
	if (rc == ZOK && value != NULL && len > 0) {
		if (len < HANDOVER_MAX)
			record = strndup(value, (size_t)len);
		else
			log_warnx("zk: %s holds %d bytes, too long for a handover record: ignored",
			          b->record_path, len);
	} else if (rc != ZOK && rc != ZNONODE) {
		/* Who leads is decided by the children; the record only says who
		 * should. Never keep the election waiting on it. */
		log_warnx("zk: cannot read the handover record %s: %s; leading without it",
		          b->record_path, zerror(rc));
	}
	zk_become_leader(b, record);
	free(record);
}

void zk_send_record_read(struct backend *b)
{
	struct zk_req *r = b->record_path ? zk_req_new(&b->c, OP_RECORD, NULL) : NULL;

	if (r != NULL)
		r->tag = b->cand;
	if (r == NULL || zoo_aget(b->c.zh, b->record_path, 0, record_read_done, r) != ZOK) {
		/* A check whose record read is missing decides nothing: the
		 * next check (after the back-off) does. */
		zk_req_free(r);
		zk_retry_later(&b->c, b->c.retry_ns);
	}
}

/* ---- clear: remove the record if it is still the one in force --------- */

static void clear_delete_done(int rc, const void *data)
{
	struct zk_req *r = (struct zk_req *)(uintptr_t)data;
	struct backend *b = zk_req_done(r, rc);

	if (b == NULL)
		return;
	if (rc == ZOK)
		log_info("zk: removed the handover record %s", b->record_path);
	else /* BADVERSION, NONODE: replaced or removed meanwhile; fine */
		log_debug("zk: removing the handover record %s: %s", b->record_path, zerror(rc));
	zk_req_free(r);
}

static void clear_read_done(int rc, const char *value, int len, const struct Stat *stat, const void *data)
{
	struct zk_req *r = (struct zk_req *)(uintptr_t)data;
	struct backend *b = zk_req_done(r, rc);
	struct zk_req *d;

	if (b == NULL)
		return;
	if (rc != ZOK || value == NULL || len < 0 || (size_t)len != strlen(r->arg) ||
	    memcmp(value, r->arg, (size_t)len) != 0) {
		if (rc != ZOK && rc != ZNONODE)
			log_debug("zk: reading the handover record to clear it: %s", zerror(rc));
		zk_req_free(r);
		return;
	}
	zk_req_free(r);
	d = zk_req_new(&b->c, OP_RECORD, NULL);
	if (d == NULL || zoo_adelete(b->c.zh, b->record_path, stat->version, clear_delete_done, d) != ZOK) {
		zk_req_free(d);
		log_warnx("zk: cannot send the removal of the handover record %s", b->record_path);
	}
}

void zk_clear_record(struct backend *b, const char *record)
{
	struct zk_req *r;

	if (b->c.zh == NULL || !b->c.connected || b->c.closing || b->record_path == NULL) {
		/* It goes with its owner's session, and its timeout ends it. */
		log_debug("zk: not connected: handover record %s left as it is", b->record_path);
		return;
	}
	r = zk_req_new(&b->c, OP_RECORD, record);
	if (r == NULL || zoo_aget(b->c.zh, b->record_path, 0, clear_read_done, r) != ZOK) {
		zk_req_free(r);
		log_warnx("zk: cannot send the read of the handover record %s", b->record_path);
	}
}
