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
};

/* zk_elect.c */
void zk_advance(struct backend *b);
void zk_schedule_check(struct backend *b);
void zk_send_delete(struct backend *b, const char *name);
/* Leave the candidacy (resign, lost, close): forget our node, deleting it
 * when delete_node and connected. */
void zk_end_candidacy(struct backend *b, bool delete_node);
void zk_send_renew(struct backend *b);

#endif
