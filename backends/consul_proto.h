/* The pure part of the Consul backend: request bodies and the parsing of
 * Consul's HTTP API answers. No I/O, no loop, no logging, so that
 * tests/unit/test_consul.c can check it, broken answers included.
 *
 * Consul writes a KV entry's Flags as a bare JSON number that may be above
 * 2^63 (consul lock's semaphore flag 0xe0f69a2baa414de0). A double corrupts
 * values above 2^53 and jansson refuses integers above 2^63, so the Flags are
 * read from the JSON text itself as unsigned 64-bit numbers before jansson
 * sees the document.
 */
#ifndef ELECT_CONSUL_PROTO_H
#define ELECT_CONSUL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* consul lock's flag values (api/lock.go, api/semaphore.go). */
#define CONSUL_LOCK_FLAG UINT64_C(0x2ddccbc058a50c18)  /* 3304740253564472344 */
#define CONSUL_SEM_FLAG  UINT64_C(0xe0f69a2baa414de0)  /* 16210313421097356768 */
#define CONSUL_MIN_TTL_S 10      /* Consul refuses session TTLs below 10s by default */
#define CONSUL_MAX_LOCK_DELAY_NS (60 * INT64_C(1000000000))   /* Consul's longest lock-delay */

/* PUT /v1/session/create: TTL in whole seconds, LockDelay, release
 * behaviour, and no health checks at all ("NodeChecks": [], "Checks": []):
 * a check (the default serfHealth) can end a session before its TTL. */
char *consul_body_session(const char *name, int64_t ttl_s, int64_t lock_delay_ms,
                          const char *behavior /* "release" or "delete" */);

/* {"ID":"..."} of session/create: *id is malloc'd. */
int consul_parse_session(const char *body, size_t len, char **id, char *err, size_t errlen);
/* session/renew's answer: 1 = the session is alive (an array holding it),
 * 0 = gone (an empty array, null, an empty body), -1 = malformed. */
int consul_parse_renew(const char *body, size_t len, char *err, size_t errlen);
/* "true" / "false" of an acquire or release: 1, 0, or -1 when malformed. */
int consul_parse_bool(const char *body, size_t len);

/* One KV entry, the first of a GET /v1/kv/KEY answer. */
struct consul_kv {
	bool exists;
	char *key;             /* (malloc'd) */
	uint64_t flags;
	uint64_t modify_index, lock_index, create_index;
	char *session;         /* NULL when no session holds it (malloc'd) */
	char *value;           /* decoded, NUL-terminated, "" when null (malloc'd) */
	size_t value_len;
};
/* Parses the answer body of a 200; an empty array is "does not exist". */
int consul_parse_kv(const char *body, size_t len, struct consul_kv *kv, char *err, size_t errlen);
void consul_kv_free(struct consul_kv *kv);
/* Every entry of a GET ?recurse answer (*n of them, *kvs malloc'd). */
int consul_parse_kv_list(const char *body, size_t len, struct consul_kv **kvs, size_t *n, char *err,
                         size_t errlen);
void consul_kv_list_free(struct consul_kv *kvs, size_t n);

/* PUT /v1/txn: one operation {"KV":{...}}; value (raw, base64'd here),
 * flags, session and index are left out when NULL. */
char *consul_txn_op(const char *verb, const char *key, const char *value, const uint64_t *flags,
                    const char *session, const uint64_t *index);
/* The answer of a transaction that succeeded (200): the ModifyIndex of its
 * first result, i.e. the Raft index of the transaction's writes. */
int consul_parse_txn_index(const char *body, size_t len, uint64_t *index, char *err, size_t errlen);
/* The KV entries of a transaction's Results (200), in order; Flags are not
 * kept (0). */
int consul_parse_txn_kvs(const char *body, size_t len, struct consul_kv **kvs, size_t *n, char *err,
                         size_t errlen);
/* The OpIndex of each of a failed transaction's Errors (409): at most max,
 * *n of them. */
int consul_parse_txn_errors(const char *body, size_t len, size_t *ops, size_t max, size_t *n, char *err,
                            size_t errlen);

/* `consul lock -n N`'s lock value (api/semaphore.go semaphoreLock):
 * {"Limit":N,"Holders":{"<session>":true,...}}. An empty value: limit 0 and
 * no holders. */
struct consul_sem {
	unsigned limit;
	char **holders;        /* session ids (malloc'd); entries may be set NULL */
	size_t n;
};
int consul_sem_decode(const char *value, size_t len, struct consul_sem *sem, char *err, size_t errlen);
char *consul_sem_encode(const struct consul_sem *sem);
bool consul_sem_has(const struct consul_sem *sem, const char *session);
void consul_sem_free(struct consul_sem *sem);

/* The Flags of the objects directly inside the top-level array of text, in
 * order (flags[i] of the i-th object, has[i] whether it had one), at most max.
 * Their digits are overwritten with "0" and spaces, so that jansson can parse
 * text afterwards. -1 when a Flags value is not an unsigned 64-bit integer. */
int consul_scrub_flags(char *text, size_t len, uint64_t *flags, bool *has, size_t max);

/* An X-Consul-Index header value: 0 when missing or not a number. */
uint64_t consul_parse_index(const char *s);

/* A key path with every byte outside [A-Za-z0-9/_.~-] %-escaped (malloc'd). */
char *consul_escape_key(const char *key);

/* The URL's options, '&'-separated (query NULL or empty: none):
 *   lock-delay=DURATION       the session's LockDelay, the TTL to 60s
 *                             (default: the TTL);
 *   session-ttl-min=DURATION  the servers' session_ttl_min, the shortest
 *                             TTL they take (default: Consul's 10s).
 * A TTL over 60 s, a lock-delay shorter than the TTL or an unknown option is
 * refused with a line in err. */
struct consul_opts {
	int64_t lock_delay_ns, ttl_min_ns;
};
int consul_parse_options(const char *query, int64_t ttl_ns, struct consul_opts *o, char *err,
                         size_t errlen);

#endif
