/* lockd: named locks and semaphores for local programs, held under one
 * backend session (backends/lock.h), with the elector's deadline rule
 * (elector/lease.h): every hold is revoked before the backend could grant its
 * lock to another node.
 *
 * Roles: lockd.c is the hold table and the deadline logic (no HTTP, time only
 * through clock_now_ns(), the loop only through struct lockd_actions, so unit
 * tests drive it with a fake clock and a scripted backend); api.c the socket
 * API; main.c options and the loop; lockctl.c the client.
 *
 * A hold is: waiting (queued in the backend) -> held (granted, has a token)
 * -> revoked (client told; the backend lock is released once the client's
 * connection closes, it releases, or the kill grace has passed) -> gone.
 *
 * Commands: `lockctl run` registers the pid of its command (POST /v1/command
 * on the hold's connection); lockd checks that it is a child of the peer
 * (SO_PEERCRED) leading its own process group and keeps a pidfd
 * (lockd/command.c). When that connection drops (kill -9 of lockctl closes
 * its socket before the kernel sends PDEATHSIG to the command), lockd
 * tells the command's guard (hooks/guard.h) to kill the whole tree and
 * releases the lock in the backend only once the pidfd says the guard has
 * exited, i.e. the whole tree is dead, or after the kill grace (then with an
 * error logged); holds without a command are released at once.
 */
#ifndef ELECT_LOCKD_H
#define ELECT_LOCKD_H

#include <stdbool.h>
#include <stdint.h>

#include "backends/lock.h"

#define HOLD_ID_LEN 32            /* hex digits of a 128-bit random id */

struct lockd_opts {
	char *backend, *socket, *id, *config, *log_format;
	char *socket_mode, *socket_group;
	unsigned socket_mode_bits;    /* resolved: default 0660 */
	long socket_gid;              /* resolved: -1 for lockd's own */
	char *tls_ca, *tls_cert, *tls_key, *auth, *kubeconfig;
	int64_t ttl, renew, kill_grace, request_timeout;
	int verbose, max_holds;
	char *max_holds_s;
	bool check_config;
};

enum hold_state { HOLD_WAITING, HOLD_HELD, HOLD_REVOKED };
enum hold_bind { BIND_CONNECTION, BIND_TTL };

struct hold {
	char id[HOLD_ID_LEN + 1];
	char name[LOCK_NAME_MAX + 1];
	unsigned limit;
	enum hold_state state;
	enum hold_bind bind;
	bool try_once;            /* wait 0: 408 as soon as the backend queues it */
	uint64_t conn;            /* connection that acquired it (0: none) */
	uint64_t token;
	int64_t ttl_ns;           /* ttl-bound: extended by renew */
	int64_t expires_ns;       /* ttl-bound held: revoke at; waiting: give up at */
	int64_t release_at_ns;    /* revoked: release in the backend at (-1: done) */
	int64_t granted_wall_ms;
	char reason[128];         /* why it was revoked */
	struct lock_hold *bh;     /* backend's hold, NULL once released */
	int cmd_pid;              /* the client's command, watched by api.c (0: none) */
	bool draining;            /* client gone: released when the command is dead */
	void *api;                /* api.c's per-hold data */
	struct hold *prev, *next;
};

struct lockd_config {
	const char *id;
	int64_t ttl_ns, renew_ns, kill_grace_ns, request_timeout_ns;
	int64_t alive_lag_ns;       /* the backend's alive_lag (0: none) */
	int max_holds;
};

/* What the core asks of api.c/main.c (fakes in unit tests). None may call
 * back into the core synchronously. */
struct lockd_actions {
	/* A waiting hold was granted (answer its acquire with 200). */
	void (*granted)(void *ctx, struct hold *h);
	/* A waiting hold failed (408 timed out, 503 unsafe or shutting down);
	 * it is forgotten right after. */
	void (*denied)(void *ctx, struct hold *h, int status, const char *why);
	/* A held hold was revoked (h->reason): tell its long-poll waiter. */
	void (*revoked)(void *ctx, struct hold *h);
	/* The client of a hold with a command (h->cmd_pid) is gone: kill the
	 * command's whole tree and call lockd_command_gone() once it has
	 * exited (from the loop, not from inside this call). May be NULL. */
	void (*kill_command)(void *ctx, struct hold *h);
	/* The hold is about to be freed: drop every pointer to it. */
	void (*forget)(void *ctx, struct hold *h);
	void (*set_timer)(void *ctx, int64_t at_ns);
	void (*exit)(void *ctx, int status);
};

struct lockd_metrics {
	uint64_t grants, revocations, backend_errors;
};

struct lockd;

/* Checks timing and fills in derived values. -1 with the reason in err. */
int lockd_check_timing(const struct lockd_config *cfg, char *err, size_t errlen);
struct lockd *lockd_new(const struct lockd_config *cfg, const struct lock_backend_ops *ops,
                        struct backend_params *bp, const struct lockd_actions *act,
                        void *act_ctx, char *err, size_t errlen);
void lockd_start(struct lockd *d);
void lockd_on_timer(struct lockd *d);
/* SIGTERM: revoke all holds, release them after the kill grace (or when
 * their clients are gone), close the session, then actions->exit(0). */
void lockd_shutdown(struct lockd *d);
void lockd_free(struct lockd *d);

/* Requests. A 4xx/5xx answer is returned as its status with a message. */
struct acquire_req {
	const char *name;
	unsigned limit;
	int64_t wait_ns;          /* 0: try once */
	enum hold_bind bind;
	int64_t ttl_ns;
	uint64_t conn;
};
/* 0 with *out (waiting; granted/denied comes later), or an HTTP status. */
int lockd_acquire(struct lockd *d, const struct acquire_req *r, struct hold **out,
                  char *why, size_t whylen);
struct hold *lockd_find(struct lockd *d, const char *hold_id);
void lockd_release(struct lockd *d, struct hold *h);
/* 0, or 409 (revoked or not ttl-bound... with why). */
int lockd_renew(struct lockd *d, struct hold *h, char *why, size_t whylen);
/* The connection closed: end every hold bound to it. */
void lockd_conn_closed(struct lockd *d, uint64_t conn);
/* An acquire request went away before it was answered. */
void lockd_abandon(struct lockd *d, struct hold *h);
/* The command of a draining hold has exited: release it in the backend. */
void lockd_command_gone(struct lockd *d, struct hold *h);

/* For listings and metrics. */
struct hold *lockd_holds(struct lockd *d);
bool lockd_session_up(const struct lockd *d);
int64_t lockd_revoke_grace_ns(const struct lockd *d);
const struct lockd_metrics *lockd_metrics(const struct lockd *d);
bool lockd_shutting_down(const struct lockd *d);
/* The backend's descriptor a command holding h should inherit (file
 * backend), or -1. */
int lockd_hold_fd(const struct lockd *d, const struct hold *h);
/* The backend's view of who holds and waits, on every node (see
 * lock_backend_ops.list): cb runs once, later. -1 if the backend cannot
 * list or is out of memory: cb never runs. */
int lockd_list(struct lockd *d, const char *const *names, size_t n, bool all, lock_list_cb cb,
               void *arg);
/* The hold behind a listing entry's `mine`, or NULL. */
struct hold *lockd_hold_of(struct lockd *d, struct lock_hold *bh);
/* 0 if name (a valid lock name) suits the backend, else -1 with one line in
 * why: what is wrong and how to fix it (lock_backend_ops.name_check). */
int lockd_name_check(const struct lockd *d, const char *name, char *why, size_t whylen);
/* --request-timeout, or the backends' default (renew interval, at most 2 s). */
int64_t lockd_request_timeout_ns(const struct lockd *d);
const char *lockd_id(const struct lockd *d);


#endif
