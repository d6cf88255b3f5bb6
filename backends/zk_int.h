/* ZooKeeper election backend: state shared by backends/zk.c (events, the
 * backend_ops) and backends/zk_elect.c (the election recipe). The session
 * and the loop are driven by backends/zk_conn.c. */
#ifndef ELECT_ZK_INT_H
#define ELECT_ZK_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "backends/backend.h"
#include "backends/zk.h"
#include "backends/zk_conn.h"

#define ZK_MAX_STALE  8    /* guids of left candidacies whose nodes may linger */

struct backend {
	struct backend_params p;
	struct zk_conn c;            /* the session (zk_conn.c) */

	bool campaigning, leading;
	bool drop_on_campaign;
	bool parent_ok, parent_inflight;
	bool node_inflight, create_sent;
	bool check_inflight, check_again;
	unsigned cand;               /* bumps whenever a candidacy ends */
	char guid[ZK_GUID_LEN + 1];
	char *node;                  /* our candidate node (child name), NULL if none */
	uint64_t seq;
	char *pred_node;             /* the predecessor we watch */
	char *leader_node, *leader_id;
	char stale[ZK_MAX_STALE][ZK_GUID_LEN + 1];
	unsigned long watch_fires;

	/* Handover (zk_handover.c): the record's node, a sibling of the
	 * election node (not a candidate child); the last check found us
	 * lowest and waits for the record read pipelined after it. */
	char *record_path;           /* "<path>.handover" */
	bool lowest_pending;
	/* The one handover multi in flight (delete our node + leave the
	 * record): its record, attempt and results (written by the client
	 * until the completion runs or the handle is closed). */
	bool ho_inflight;
	int ho_attempt;
	char *ho_record;
	zoo_op_result_t ho_results[3];
	char ho_created[64];
};

/* zk_elect.c */
void zk_advance(struct backend *b);
void zk_schedule_check(struct backend *b);
void zk_send_delete(struct backend *b, const char *name);
/* Leave the candidacy (resign, lost, close): forget our node, deleting it
 * when delete_node and connected. */
void zk_end_candidacy(struct backend *b, bool delete_node);
void zk_send_renew(struct backend *b);
/* The check found us lowest and the record read after it answered: lead,
 * reporting the record found (NULL: none). */
void zk_become_leader(struct backend *b, const char *record);
/* Clears the stale entry of a candidacy whose node `name` is gone. */
void zk_forget_stale(struct backend *b, const char *name);

/* zk_handover.c */
/* Leave the candidacy like zk_end_candidacy(b, true), but release our node
 * in one multi() with the record left in record_path. */
void zk_hand_over(struct backend *b, const char *record);
/* Remove the record if it still holds `record` (getData, compare, delete
 * with the version read). */
void zk_clear_record(struct backend *b, const char *record);
/* The record read pipelined right after a check's getChildren. */
void zk_send_record_read(struct backend *b);

#endif
