/* The pure part of the etcd backend: what goes over the wire to etcd's v3
 * JSON gateway and what comes back. No I/O, no loop, no logging, so that
 * tests/unit/test_etcd.c can check it line by line.
 *
 * Gateway conventions: keys and values are base64, int64 fields are JSON
 * strings, zero-valued fields are left out (a missing TTL is TTL 0), and
 * streaming calls (keepalive, watch) wrap each message as {"result":{...}}
 * or {"error":{...}}.
 */
#ifndef ELECT_ETCD_PROTO_H
#define ELECT_ETCD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Base64 (RFC 4648, with padding). Results are malloc'd and NUL-terminated;
 * decode returns NULL on invalid input and sets *outlen. */
char *etcd_b64_encode(const void *data, size_t len);
char *etcd_b64_decode(const char *in, size_t inlen, size_t *outlen);

/* The end of the range that holds every key starting with prefix (etcd's
 * clientv3.GetPrefixRangeEnd), malloc'd. "" means "to the end of the key space". */
char *etcd_prefix_end(const char *prefix);

/* Reads an int64 field that the gateway writes as a string (or a number).
 * A missing field is def. Returns -1 if it is there but not an integer. */
int etcd_json_int64(const json_t *obj, const char *field, int64_t def, int64_t *out);
/* Decodes a base64 string field of obj, malloc'd, *n bytes (a missing field
 * is "": proto3 leaves out empty values); NULL if invalid. */
char *etcd_json_b64(const json_t *obj, const char *field, size_t *n);
/* responses[i].<kind> of a txn answer, or NULL. */
const json_t *etcd_txn_response(const json_t *a, size_t i, const char *kind);

/* Outcome of etcd_parse_answer. */
enum etcd_answer {
	ETCD_OK = 0,
	ETCD_MALFORMED = -1,   /* not JSON, not an object, ... */
	ETCD_SERVER_ERROR = -2 /* {"error":...,"code":N} or {"error":{...}} */
};

/* Parses one answer body (or one line of a stream). On ETCD_OK, *out is the
 * message with a {"result":...} wrapper removed (a new reference). On
 * ETCD_SERVER_ERROR, *grpc_code and err say what the server said. */
enum etcd_answer etcd_parse_answer(const char *body, size_t len, json_t **out, int *grpc_code,
                                   char *err, size_t errlen);

/* LeaseGrant: the lease id and the TTL granted. */
int etcd_parse_grant(const json_t *a, int64_t *id, int64_t *ttl, char *err, size_t errlen);
/* Maintenance Status: whether the member's version (its "version", e.g.
 * "3.4.23") is one whose stalled raft leader can revoke live leases on
 * resume (etcd issue #15247; fixed in 3.4.28 and 3.5.11): 1 yes, 0 no, -1
 * no version in the answer. The version goes to ver (NUL-terminated). */
int etcd_parse_status_revokes_early(const json_t *a, char *ver, size_t verlen);
/* LeaseKeepAlive: *ttl is 0 when the lease is gone (the gateway omits TTL). */
int etcd_parse_keepalive(const json_t *a, int64_t *ttl, char *err, size_t errlen);
/* The campaign txn (see etcd_body_campaign): the create revision of our key,
 * whether we just created it or it was there already. */
int etcd_parse_campaign(const json_t *a, int64_t *create_rev, char *err, size_t errlen);

/* The check txn (see etcd_body_check). */
struct etcd_check {
	int64_t revision;      /* store revision the answer reflects */
	bool own_exists;       /* our key is still there */
	int64_t own_rev;       /* its create revision (0 if gone) */
	char *leader_id;       /* value of the lowest key, NULL if none (malloc'd) */
	char *pred_key;        /* our predecessor's key, NULL if we are first (malloc'd) */
	int64_t pred_rev;      /* its create revision */
	char *handover;        /* the handover record's value, NULL if none (malloc'd) */
};
/* with_handover: the body asked for the handover record (last range). */
int etcd_parse_check(const json_t *a, bool with_handover, struct etcd_check *c, char *err,
                     size_t errlen);
void etcd_check_free(struct etcd_check *c);

/* The lock create txn (see etcd_body_lock_create): our key's create
 * revision, and whether it is among the `limit` oldest (granted at once). */
int etcd_parse_lock_create(const json_t *a, int64_t *create_rev, bool *among_first, char *err,
                           size_t errlen);
/* The lock check txn (see etcd_body_lock_check). */
struct etcd_lock_check {
	int64_t revision;      /* store revision the answer reflects */
	int64_t own_rev;       /* create revision of our key, 0 if it is gone */
	char **before;         /* the keys created just before ours, newest first (malloc'd) */
	size_t n_before;       /* how many: at most the limit asked for */
};
int etcd_parse_lock_check(const json_t *a, struct etcd_lock_check *c, char *err, size_t errlen);
void etcd_lock_check_free(struct etcd_lock_check *c);
/* The key check txn (see etcd_body_keys): create_revs[i] is 0 for a key
 * that is gone. */
int etcd_parse_keys(const json_t *a, size_t n, int64_t *create_revs, char *err, size_t errlen);

/* Listings of the lock backend (etcd_lock_list.c's list), all in
 * etcd_proto_list.c: the keys of lock names, "PREFIX/NAME/<id>", with their
 * values (the owner's id). Their request bodies are with the others below
 * (etcd_body_list_page, etcd_body_list_names). */
struct etcd_list_kv {
	char *name;            /* NAME: between the prefix and the last '/' */
	char *key;             /* the whole key */
	char *value;           /* "" when empty (etcdctl lock) */
	int64_t create_rev;
	unsigned position;     /* in NAME's queue, set by etcd_list_finish */
};
struct etcd_list {
	struct etcd_list_kv *kv;
	size_t n, cap;
	bool more;             /* keys left out: a range's limit, names not asked */
	/* Pages of the range over the whole prefix (etcd_parse_list_page). */
	int64_t revision;      /* the first page's: the others read the same view */
	char *after;           /* the last key read, lock key or not (after_len bytes) */
	size_t after_len;
	bool next_page;        /* the server has keys after it */
};
/* Appends the lock keys of one page (a RangeResponse to etcd_body_list_page)
 * or of the n ranges of a txn answer (etcd_body_list_names) to l. Keys that
 * are not PREFIX/NAME/<id> with a valid lock name are skipped. A malformed
 * answer is -1 and leaves l as it was. */
int etcd_parse_list_page(const json_t *range, const char *prefix, struct etcd_list *l, char *err,
                         size_t errlen);
int etcd_parse_list_txn(const json_t *a, size_t n, const char *prefix, struct etcd_list *l, char *err,
                        size_t errlen);
/* Keeps the first max keys in the order they came; when keys after them were
 * left out (more than max, pages not read), the last name's too, as it may
 * be incomplete. Then groups them by name in key order, each name's by create
 * revision, and numbers their positions. Returns whether keys were left out. */
bool etcd_list_finish(struct etcd_list *l, size_t max);
void etcd_list_free(struct etcd_list *l);

/* One line of a watch stream. */
enum etcd_watch_msg {
	ETCD_WATCH_NOTHING,    /* created, progress, events that do not matter */
	ETCD_WATCH_DELETED,    /* a DELETE event */
	ETCD_WATCH_CANCELED,   /* the server ended the watch (compaction, ...) */
	ETCD_WATCH_BAD         /* malformed or an error: treat as the end of the watch */
};
enum etcd_watch_msg etcd_parse_watch_line(const char *line, size_t len);

/* Splits a byte stream into lines across arbitrary chunk boundaries. */
struct etcd_lines {
	char *buf;
	size_t len, cap, max;  /* max: longest line accepted */
};
typedef int (*etcd_line_fn)(const char *line, size_t len, void *arg);
/* Calls fn for every complete line (without '\n'; empty lines skipped).
 * Returns 0, or -1 if a line is longer than max or fn returned non-zero
 * (the rest of the chunk is then dropped). */
int etcd_lines_feed(struct etcd_lines *l, const char *data, size_t n, etcd_line_fn fn, void *arg);
void etcd_lines_reset(struct etcd_lines *l);

/* Request bodies, malloc'd JSON text (NULL on out of memory). */
char *etcd_body_grant(int64_t ttl_s);
char *etcd_body_lease(int64_t lease_id);   /* keepalive and revoke: {"ID":"..."} */
/* If our key has create_revision 0 (does not exist), put value with the
 * lease, else get it: concurrency.Election.Campaign's txn. */
char *etcd_body_campaign(const char *key, const char *value, int64_t lease_id);
/* One txn, one consistent view: [our key, the lowest key under prefix, the
 * highest key created before my_rev, the handover record handover_key].
 * my_rev 0 leaves the third out, handover_key NULL the last. */
char *etcd_body_check(const char *prefix, const char *key, int64_t my_rev, const char *handover_key);
/* The campaign txn, each branch also reading the `limit` oldest keys under
 * prefix (names and revisions): concurrency.Mutex's tryAcquire. */
char *etcd_body_lock_create(const char *prefix, const char *key, const char *value, int64_t lease_id,
                            unsigned limit);
/* One txn: [our key, the `limit` keys under prefix created just before
 * my_rev, newest first], names and revisions only (concurrency.Mutex's
 * check, widened to a semaphore of `limit` holders). */
char *etcd_body_lock_check(const char *prefix, const char *key, int64_t my_rev, unsigned limit);
/* One txn reading n keys (names and revisions only); at most etcd's
 * --max-txn-ops (128 by default) per txn. */
char *etcd_body_keys(const char *const *keys, size_t n);
/* Listings: a RangeRequest (/v3/kv/range) of at most limit keys under
 * prefix with their values, in key order, from just after the key `after`
 * (after_len bytes; NULL: from the start) and at store revision `revision`
 * (0: now). And a txn of one range per name over "PREFIX/NAME/", oldest
 * (create revision) first (n at most etcd's --max-txn-ops). */
char *etcd_body_list_page(const char *prefix, const char *after, size_t after_len, unsigned limit,
                          int64_t revision);
char *etcd_body_list_names(const char *prefix, const char *const *names, size_t n, unsigned limit);
/* Watch key for deletions from start_rev on (PUTs filtered out). */
char *etcd_body_watch(const char *key, int64_t start_rev);
/* The same for n keys on one stream: one create request per line. */
char *etcd_body_watch_keys(const char *const *keys, size_t n, int64_t start_rev);
/* Resign leaving a handover record (common/handover.h): one txn that puts
 * record_key = record with our lease and deletes our key. */
char *etcd_body_handover(const char *record_key, const char *record, int64_t lease_id,
                         const char *my_key);
/* Delete record_key if its value is still record. */
char *etcd_body_handover_clear(const char *record_key, const char *record);
char *etcd_body_delete(const char *key);
char *etcd_body_auth(const char *user, const char *password);

#endif
