/* ZooKeeper backend: the election recipe (ZooKeeper's "Leader Election"
 * recipe, Curator's node naming).
 *
 *   parent path (persistent, created if missing)
 *   -> our node "<path>/_c_<guid>-n_<seq>" (ephemeral sequential, data = id);
 *      a create whose answer was lost is found again by its guid
 *   -> getChildren: lowest sequence leads; otherwise exists-watch only the
 *      next lower node (no herd), and read the lowest node's data for the
 *      leader's id. Each getChildren is followed at once by a getData of the
 *      handover record (zk_handover.c): the answers come in order, so when
 *      the children make us leader, the record read (its answer) is at
 *      least as new as that view, and goes with the elected report.
 *
 * Every completion runs inside zookeeper_process() on the loop; results reach
 * the core through zk_queue(), delivered from the loop afterwards.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/zk_int.h"
#include "common/clock.h"
#include "common/log.h"

static void send_check(struct backend *b);

/* A request of the current candidacy (answers of a left one are ignored). */
static struct zk_req *req_new(struct backend *b, enum zk_op op, const char *arg)
{
	struct zk_req *r = zk_req_new(&b->c, op, arg);

	if (r != NULL)
		r->tag = b->cand;
	return r;
}

static bool stale_cand(const struct backend *b, const struct zk_req *r)
{
	return r->tag != b->cand || !b->campaigning || b->c.closing;
}

/* The answer to a request of the current candidacy: its backend, or NULL
 * (r then freed) when the handle is closing or the candidacy was left. */
static struct backend *cand_done(struct zk_req *r, int rc)
{
	struct backend *b = zk_req_done(r, rc);

	if (b != NULL && stale_cand(b, r)) {
		zk_req_free(r);
		return NULL;
	}
	return b;
}

/* A step failed. Connection trouble is left to the session watcher (the
 * client reconnects and zk_advance() runs again); anything else is retried
 * after a back-off, with an error in the log. */
static void step_error(struct backend *b, int rc, const char *what)
{
	if (zk_connection_error(rc)) {
		log_debug("zk: %s: %s (waiting for the connection)", what, zerror(rc));
		return;
	}
	log_error("zk: %s under %s failed: %s", what, b->c.path, zerror(rc));
	zk_retry_later(&b->c, b->c.retry_ns);
}

/* ---- parent path ------------------------------------------------------ */

static void parent_done(int rc, const char *value, const void *data)
{
	struct zk_req *r = (struct zk_req *)(uintptr_t)data;
	struct backend *b = zk_req_done(r, rc);
	bool last;

	(void)value;
	if (b == NULL)
		return;
	last = strcmp(r->arg, b->c.path) == 0;
	if (rc != ZOK && rc != ZNODEEXISTS && !zk_connection_error(rc))
		log_debug("zk: creating %s: %s", r->arg, zerror(rc));
	zk_req_free(r);
	if (!last)
		return;
	b->parent_inflight = false;
	if (rc == ZOK || rc == ZNODEEXISTS) {
		b->parent_ok = true;
		zk_advance(b);
	} else {
		step_error(b, rc, "creating the election node");
	}
}

static void send_parent(struct backend *b)
{
	if (b->parent_inflight)
		return;
	b->parent_inflight = true;
	if (!zk_send_parents(&b->c, b->c.path, b->cand, parent_done)) {
		b->parent_inflight = false;
		zk_retry_later(&b->c, b->c.retry_ns);
	}
}

/* ---- our node: create, or find again after a lost answer --------------- */

static void adopt_node(struct backend *b, const char *name)
{
	free(b->node);
	b->node = strdup(name);
	b->seq = (uint64_t)zk_node_seq(name);
	b->create_sent = false;
	log_info("zk: candidate node %s/%s (session 0x%llx)", b->c.path, name,
	         (unsigned long long)b->c.session_id);
	zk_schedule_check(b);
}

static void create_done(int rc, const char *value, const struct Stat *stat, const void *data)
{
	struct zk_req *r = (struct zk_req *)(uintptr_t)data;
	struct backend *b = zk_req_done(r, rc);
	bool stale;

	if (b == NULL)
		return;
	stale = stale_cand(b, r);
	zk_req_free(r);
	if (stale) {
		/* We left that candidacy while the create was on its way. */
		if (rc == ZOK && value != NULL)
			zk_send_delete(b, zk_basename(value));
		return;
	}
	b->node_inflight = false;
	if (rc != ZOK && !zk_connection_error(rc))
		b->create_sent = false; /* the server answered: nothing was created */
	if (zk_created_ours(&b->c, rc, value, stat)) {
		adopt_node(b, zk_basename(value));
	} else if (rc == ZOK) {
		log_error("zk: created %s but it is not owned by our session; retrying", value ? value : "?");
		b->create_sent = false;
		if (value != NULL)
			zk_send_delete(b, zk_basename(value));
		zk_retry_later(&b->c, b->c.retry_ns);
	} else if (rc == ZNONODE) {
		b->parent_ok = false;
		zk_advance(b);
	} else {
		step_error(b, rc, "creating our candidate node");
	}
}

static void send_create(struct backend *b)
{
	char *prefix = NULL;
	struct zk_req *r;

	if (asprintf(&prefix, "%s/" ZK_NODE_PREFIX "%s" ZK_NODE_SUFFIX, b->c.path, b->guid) < 0)
		prefix = NULL;
	r = prefix ? req_new(b, OP_CREATE, NULL) : NULL;
	b->create_sent = true;
	b->node_inflight = true;
	if (r == NULL || zoo_acreate2(b->c.zh, prefix, b->p.id, (int)strlen(b->p.id), b->c.acl,
	                              ZOO_EPHEMERAL_SEQUENTIAL, create_done, r) != ZOK) {
		zk_req_free(r);
		b->node_inflight = b->create_sent = false;
		zk_retry_later(&b->c, b->c.retry_ns);
	}
	free(prefix);
}

/* The node carrying our guid exists: it is ours only if our session owns it. */
static void owner_done(int rc, const struct Stat *stat, const void *data)
{
	struct zk_req *r = (struct zk_req *)(uintptr_t)data;
	struct backend *b = cand_done(r, rc);

	if (b == NULL)
		return;
	b->node_inflight = false;
	if (rc == ZOK && stat->ephemeralOwner == b->c.session_id) {
		log_info("zk: found our node %s again after a lost create answer", r->arg);
		adopt_node(b, r->arg);
	} else if (rc == ZOK || rc == ZNONODE) {
		b->create_sent = false;
		send_create(b);
	} else {
		step_error(b, rc, "checking the owner of our node");
	}
	zk_req_free(r);
}

static void find_done(int rc, const struct String_vector *sv, const void *data)
{
	struct zk_req *r = (struct zk_req *)(uintptr_t)data;
	struct backend *b = cand_done(r, rc);
	int i;

	if (b == NULL)
		return;
	zk_req_free(r);
	b->node_inflight = false;
	if (rc == ZNONODE) {
		b->parent_ok = b->create_sent = false;
		zk_advance(b);
		return;
	}
	if (rc != ZOK) {
		step_error(b, rc, "looking for our node");
		return;
	}
	i = zk_find_guid((const char *const *)sv->data, sv->count, b->guid);
	if (i < 0) {
		b->create_sent = false;
		send_create(b);
		return;
	}
	char *full = zk_child_path(&b->c, sv->data[i]);
	struct zk_req *o = full ? req_new(b, OP_OWNER, sv->data[i]) : NULL;
	b->node_inflight = true;
	if (o == NULL || zoo_aexists(b->c.zh, full, 0, owner_done, o) != ZOK) {
		zk_req_free(o);
		b->node_inflight = false;
		zk_retry_later(&b->c, b->c.retry_ns);
	}
	free(full);
}

static void send_find(struct backend *b)
{
	struct zk_req *r = req_new(b, OP_FIND, NULL);

	b->node_inflight = true;
	if (r == NULL || zoo_aget_children(b->c.zh, b->c.path, 0, find_done, r) != ZOK) {
		zk_req_free(r);
		b->node_inflight = false;
		zk_retry_later(&b->c, b->c.retry_ns);
	}
}

void zk_advance(struct backend *b)
{
	if (!b->campaigning || b->c.closing || b->c.zh == NULL || !b->c.connected || b->c.refused ||
	    ev_is_active(&b->c.retry))
		return;
	if (!b->parent_ok)
		send_parent(b);
	else if (b->node == NULL && !b->node_inflight)
		b->create_sent ? send_find(b) : send_create(b);
	else if (b->node != NULL)
		zk_schedule_check(b);
}

/* ---- who leads -------------------------------------------------------- */

static void leader_done(int rc, const char *value, int len, const struct Stat *stat, const void *data)
{
	struct zk_req *r = (struct zk_req *)(uintptr_t)data;
	struct backend *b = zk_req_done(r, rc);

	(void)stat;
	if (b == NULL)
		return;
	if (b->leader_node == NULL || strcmp(b->leader_node, r->arg) != 0) {
		zk_req_free(r);
		return;
	}
	zk_req_free(r);
	if (rc != ZOK) {
		/* Gone (a check follows) or unreadable: fetch again next time. */
		free(b->leader_node);
		b->leader_node = NULL;
		if (rc == ZNONODE)
			zk_schedule_check(b);
		return;
	}
	char *id = strndup(value ? value : "", len > 0 ? (size_t)len : 0);
	if (id == NULL)
		return;
	if (b->leader_id == NULL || strcmp(b->leader_id, id) != 0) {
		free(b->leader_id);
		b->leader_id = id;
		if (b->campaigning && !b->c.closing)
			zk_queue(&b->c, ZE_LEADER, 0, id, NULL);
	} else {
		free(id);
	}
}

static void update_leader(struct backend *b, const char *lowest)
{
	struct zk_req *r;
	char *full;

	if (b->leader_node != NULL && strcmp(b->leader_node, lowest) == 0)
		return;
	free(b->leader_node);
	b->leader_node = strdup(lowest);
	full = zk_child_path(&b->c, lowest);
	r = full && b->leader_node ? req_new(b, OP_LEADER, lowest) : NULL;
	if (r == NULL || zoo_aget(b->c.zh, full, 0, leader_done, r) != ZOK) {
		zk_req_free(r);
		free(b->leader_node);
		b->leader_node = NULL;
	}
	free(full);
}

/* ---- the predecessor watch -------------------------------------------- */

static void pred_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
	struct backend *b = ctx;

	(void)zh;
	(void)state;
	/* Session events reach every watcher; the session watcher handles them. */
	if (b->c.in_zk_close || type == ZOO_SESSION_EVENT)
		return;
	b->watch_fires++;
	log_debug("zk: predecessor watch fired on %s (event %d, fires %lu): re-checking",
	          path, type, b->watch_fires);
	if (b->pred_node != NULL && strcmp(zk_basename(path), b->pred_node) == 0) {
		free(b->pred_node);
		b->pred_node = NULL;
	}
	if (b->campaigning && !b->leading)
		zk_schedule_check(b);
}

static void watch_done(int rc, const struct Stat *stat, const void *data)
{
	struct zk_req *r = (struct zk_req *)(uintptr_t)data;
	struct backend *b = zk_req_done(r, rc);
	bool current;

	(void)stat;
	if (b == NULL)
		return;
	current = b->pred_node != NULL && strcmp(b->pred_node, r->arg) == 0;
	zk_req_free(r);
	if (!current || rc == ZOK)
		return;
	free(b->pred_node);
	b->pred_node = NULL;
	if (rc == ZNONODE && b->campaigning) /* gone before the watch was set */
		zk_schedule_check(b);
}

static void watch_pred(struct backend *b, const char *pred)
{
	struct zk_req *r;
	char *full;

	if (b->pred_node != NULL && strcmp(b->pred_node, pred) == 0)
		return; /* set already; the client re-registers it on reconnect */
	free(b->pred_node);
	b->pred_node = strdup(pred);
	full = zk_child_path(&b->c, pred);
	r = full && b->pred_node ? req_new(b, OP_WATCH, pred) : NULL;
	if (r == NULL || zoo_awexists(b->c.zh, full, pred_watcher, b, watch_done, r) != ZOK) {
		zk_req_free(r);
		free(b->pred_node);
		b->pred_node = NULL;
		zk_retry_later(&b->c, b->c.retry_ns);
	}
	log_debug("zk: waiting behind %s", pred);
	free(full);
}

/* ---- the check: where do we stand? ------------------------------------ */

/* Nodes of candidacies we left (a lost create answer, a failed delete) would
 * block the election while our session lives: delete them when seen. */
static void clean_stale(struct backend *b, const char *const *ch, int n)
{
	for (int s = 0; s < ZK_MAX_STALE; s++) {
		int i;

		if (b->stale[s][0] == '\0' || strcmp(b->stale[s], b->guid) == 0)
			continue;
		i = zk_find_guid(ch, n, b->stale[s]);
		if (i >= 0) {
			zk_send_delete(b, ch[i]);
		} else {
			if (!zk_req_pending(&b->c, OP_CREATE, NULL))
				b->stale[s][0] = '\0';
		}
	}
}

static void node_gone(struct backend *b, const char *reason)
{
	log_warnx("zk: %s", reason);
	zk_end_candidacy(b, false);
	zk_queue(&b->c, ZE_LOST, 0, reason, NULL);
}

static void evaluate(struct backend *b, const struct String_vector *sv)
{
	const char *const *ch = (const char *const *)sv->data;
	struct zk_view v;

	clean_stale(b, ch, sv->count);
	zk_view_of(ch, sv->count, b->node, &v);
	if (v.own < 0) {
		node_gone(b, "our election node is gone");
		return;
	}
	if (v.lowest == v.own) {
		if (b->leading)
			zk_release_alive(&b->c);
		else
			b->lowest_pending = true; /* elected when the record read answers */
		return;
	}
	b->lowest_pending = false;
	if (b->leading) {
		/* Cannot happen while sequence numbers grow; never lead on doubt. */
		node_gone(b, "another node is lower than ours");
		return;
	}
	update_leader(b, ch[v.lowest]);
	if (v.pred >= 0)
		watch_pred(b, ch[v.pred]);
}

/* The check found us lowest and the record read that followed it answered:
 * we lead, with the record found (NULL: none). */
void zk_become_leader(struct backend *b, const char *record)
{
	bool changed = b->leader_id == NULL || strcmp(b->leader_id, b->p.id) != 0;

	zk_release_alive(&b->c);
	b->leading = true;
	b->lowest_pending = false;
	free(b->leader_node);
	free(b->leader_id);
	b->leader_node = strdup(b->node);
	b->leader_id = strdup(b->p.id);
	log_info("zk: %s/%s is the lowest node: elected, token %llu%s%s", b->c.path, b->node,
	         (unsigned long long)b->seq + 1, record ? ", handover record " : "", record ? record : "");
	/* seq + 1: the first node's sequence is 0, and token 0 means "never
	 * led" on the socket and in ELECT_TOKEN. */
	zk_queue(&b->c, ZE_ELECTED, (int64_t)b->seq + 1, record, NULL);
	/* The leader as seen (like the other backends): after we step down,
	 * the core then shows no leader until the next one is known, not the
	 * one before us. */
	if (changed)
		zk_queue(&b->c, ZE_LEADER, 0, b->p.id, NULL);
}

static void check_done(int rc, const struct String_vector *sv, const void *data)
{
	struct zk_req *r = (struct zk_req *)(uintptr_t)data;
	struct backend *b = cand_done(r, rc);

	if (b == NULL)
		return;
	zk_req_free(r);
	b->check_inflight = false;
	if (rc == ZOK)
		evaluate(b, sv);
	else if (rc == ZNONODE)
		node_gone(b, "the election node was deleted");
	else
		step_error(b, rc, "listing the candidates");
	if (b->check_again && b->campaigning) {
		b->check_again = false;
		send_check(b);
	}
}

static void send_check(struct backend *b)
{
	struct zk_req *r;

	if (b->c.zh == NULL || !b->c.connected || b->node == NULL)
		return;
	r = req_new(b, OP_CHECK, NULL);
	b->check_inflight = true;
	if (r == NULL || zoo_aget_children(b->c.zh, b->c.path, 0, check_done, r) != ZOK) {
		zk_req_free(r);
		b->check_inflight = false;
		zk_retry_later(&b->c, b->c.retry_ns);
		return;
	}
	/* A leader's re-check (after a reconnect) needs no record. */
	if (!b->leading)
		zk_send_record_read(b);
}

void zk_schedule_check(struct backend *b)
{
	if (b->check_inflight)
		b->check_again = true;
	else
		send_check(b);
}

/* ---- delete, renew, leave --------------------------------------------- */

void zk_forget_stale(struct backend *b, const char *name)
{
	for (int s = 0; s < ZK_MAX_STALE; s++)
		if (b->stale[s][0] != '\0' && strstr(name, b->stale[s]) != NULL)
			b->stale[s][0] = '\0';
}

static void delete_done(int rc, const void *data)
{
	struct zk_req *r = (struct zk_req *)(uintptr_t)data;
	struct backend *b = zk_req_done(r, rc);

	if (b == NULL)
		return;
	if (rc == ZOK || rc == ZNONODE) {
		zk_forget_stale(b, r->arg);
		log_debug("zk: deleted %s/%s", b->c.path, r->arg);
	} else {
		log_debug("zk: deleting %s/%s: %s", b->c.path, r->arg, zerror(rc));
	}
	zk_req_free(r);
	if (b->c.closing)
		zk_kick(&b->c);
}

void zk_send_delete(struct backend *b, const char *name)
{
	struct zk_req *r;
	char *full;

	if (b->c.zh == NULL || !b->c.connected)
		return;
	if (zk_req_pending(&b->c, OP_DELETE, name))
		return;
	full = zk_child_path(&b->c, name);
	r = full ? req_new(b, OP_DELETE, name) : NULL;
	if (r != NULL && zoo_adelete(b->c.zh, full, -1, delete_done, r) != ZOK)
		zk_req_free(r);
	free(full);
}

static void remember_stale(struct backend *b)
{
	int free_slot = 0;

	for (int s = 0; s < ZK_MAX_STALE; s++) {
		if (strcmp(b->stale[s], b->guid) == 0)
			return;
		if (b->stale[s][0] == '\0')
			free_slot = s;
	}
	memcpy(b->stale[free_slot], b->guid, sizeof(b->guid));
}

void zk_end_candidacy(struct backend *b, bool delete_node)
{
	if (b->node != NULL || b->create_sent)
		remember_stale(b);
	if (b->node != NULL && delete_node)
		zk_send_delete(b, b->node);
	free(b->node);
	free(b->pred_node);
	b->node = b->pred_node = NULL;
	b->create_sent = b->node_inflight = b->check_inflight = b->check_again = false;
	b->lowest_pending = false;
	b->campaigning = b->leading = b->c.hold_alive = false;
	b->c.held_alive_ns = 0;
	b->cand++;
}

static void renew_done(int rc, const struct Stat *stat, const void *data)
{
	struct zk_req *r = (struct zk_req *)(uintptr_t)data;
	struct backend *b = zk_req_done(r, rc);

	(void)stat;
	if (b == NULL)
		return;
	if (rc == ZNONODE && r->arg != NULL && b->campaigning) {
		/* Our node (-> lost) or the leader's (-> who leads now?) is gone. */
		zk_schedule_check(b);
	}
	zk_req_free(r);
}

/* A renewal is a sync (the alive proof, see zk_conn.h) and one cheap read
 * pipelined after it: the leader asks for its own node, a follower for the
 * leader's (which also notices a leader change within one renew interval
 * without watching the leader: no herd). The sync's answer ends the
 * renewal; the read only looks. */
void zk_send_renew(struct backend *b)
{
	const char *target = b->leading ? b->node : b->leader_node;
	char *full;
	struct zk_req *r;

	if (!zk_send_renew_sync(&b->c) || target == NULL)
		return;
	full = zk_child_path(&b->c, target);
	r = full ? req_new(b, OP_RENEW, target) : NULL;
	if (r != NULL && zoo_aexists(b->c.zh, full, 0, renew_done, r) != ZOK)
		zk_req_free(r);
	free(full);
}
