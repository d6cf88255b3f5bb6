/* ZooKeeper backend internals: the pure parts (URL, node names, who leads),
 * kept apart from the I/O in backends/zk.c so unit tests can reach them. */
#ifndef ELECT_ZK_H
#define ELECT_ZK_H

#include <stddef.h>
#include <stdint.h>

/* Candidate node names follow the Curator / ZooKeeper recipe:
 * "_c_<guid>-n_" + the 10-digit sequence the server appends. */
#define ZK_NODE_PREFIX "_c_"
#define ZK_NODE_SUFFIX "-n_"
#define ZK_GUID_LEN 36
/* Lock nodes (Curator's InterProcessMutex naming): "_c_<guid>-lock-<seq>". */
#define ZK_LOCK_SUFFIX "-lock-"

/* "zk://h1:2181,h2:2181/elect/web" -> hosts "h1:2181,h2:2181" and path
 * "/elect/web" (no trailing '/'); an empty path becomes "/<name>". The
 * options after '?' are left to zk_url_tick().
 * Both malloc'd. -1 with a one-line message on a malformed URL. */
int zk_parse_url(const char *url, const char *name, char **hosts, char **path,
                 char *err, size_t errlen);

/* The URL's options: "?tick=DURATION", the servers' tickTime (between 1ms
 * and 60s); *tick_ns is default_ns without it. -1 with a one-line message
 * for anything else. */
int zk_url_tick(const char *url, int64_t default_ns, int64_t *tick_ns, char *err, size_t errlen);

/* The sequence number a ZooKeeper sequential node name ends with (the
 * trailing decimal digits), or -1 if the name has none. */
int64_t zk_node_seq(const char *name);

/* Where we stand among the children of the election node. Indices into the
 * children array, -1 when there is none: lowest = the leader's node, own = the
 * child named own_name, pred = the highest sequence below own's (the only
 * node we watch). Children without a sequence number are ignored. */
struct zk_view {
	int lowest, own, pred;
};
void zk_view_of(const char *const *children, int n, const char *own_name, struct zk_view *v);

/* Where a lock or semaphore node stands (limit 1: a lock). rank = how many
 * sequential children are lower than own_name: it holds when rank < limit.
 * Otherwise it waits, and watch[] (room for n entries) gets the children to
 * watch: the first in line (rank == limit) watches every holder below it,
 * since any of them may leave first; a later one watches only the waiter
 * just before it, which marks its node when it is granted (a data change
 * fires that watch). No herd: a release wakes the first in line only. Returns
 * how many to watch (0 when held), -1 when own_name is not among children. */
int zk_lock_view(const char *const *children, int n, const char *own_name, unsigned limit,
                 int *rank, int *watch);

/* The sequence number of a lock node: "<anything>-lock-<seq>" (ours and
 * Curator's "_c_<guid>-lock-<seq>") or "lock-<seq>"; -1 for any other name. */
int64_t zk_lock_node_seq(const char *name);

/* The lock nodes among children, by sequence: their indices into idx and
 * their sequence numbers into seq (room for n each). Returns how many, -1
 * when out of memory. */
int zk_lock_nodes(const char *const *children, int n, int *idx, int64_t *seq);

/* A node's data (len bytes; none when data is NULL or len < 0) as text for
 * listings: valid UTF-8 is kept, every byte of an invalid sequence and every
 * control character becomes '?'. Cut before the first character that does
 * not fit into outlen - 1 bytes; out is always NUL-terminated. */
void zk_printable(char *out, size_t outlen, const char *data, int len);

/* Index of the first child whose name contains guid, or -1. */
int zk_find_guid(const char *const *children, int n, const char *guid);

/* A random version-4 UUID (ZK_GUID_LEN chars + NUL) from /dev/urandom.
 * -1 if /dev/urandom cannot be read. */
int zk_make_guid(char out[ZK_GUID_LEN + 1]);

#endif
