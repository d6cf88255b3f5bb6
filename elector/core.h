/* The election state machine and the safety rule (DESIGN.md), backend- and
 * process-independent. It reads time only through clock_now_ns(), talks to
 * the backend only through struct backend_ops, and to processes, hooks and
 * timers only through struct elector_actions, so unit tests can drive it with
 * an injected clock, a scripted backend and fake actions.
 *
 * Deadline: alive_sent is the send time of the last successful renewal (or
 * acquisition). The backend cannot end the session before alive_sent + ttl,
 * so the leader must have finished stopping (command dead, demoted hook run)
 * by deadline = alive_sent + ttl - margin. It starts stepping down at
 * deadline - step_down_budget, the longest stopping can take.
 */
#ifndef ELECT_CORE_H
#define ELECT_CORE_H

#include <stdbool.h>
#include <stdint.h>

#include "backends/backend.h"
#include "hooks/hooks.h"

enum elector_state {
	ST_FOLLOWER, ST_CANDIDATE, ST_LEADER, ST_SUSPENDED, ST_STEPPING_DOWN, ST_N
};

struct elector_config {
	const char *name, *id, *backend_url;
	int64_t ttl_ns, renew_ns, kill_grace_ns, hook_timeout_ns;
	int64_t alive_lag_ns;       /* the backend's alive_lag (0: none) */
	int64_t backoff_ns;         /* wait before campaigning again after resign / failed elected hook */
	int64_t campaign_timeout_ns; /* wrapper mode: exit ELECT_EXIT_CAMPAIGN_TIMEOUT when not
	                              * ready this long after start or after leading ended (0: no limit) */
	bool has_command;           /* wrapper mode: a leader command runs while leading */
	bool once;                  /* run the command at most once, then exit */
	bool hook[HOOK_N];          /* which hooks are configured */
	bool health_gated;          /* health checks decide whether we may campaign
	                             * (elector_set_health); until the first verdict we do not */
	int64_t handover_timeout_ns; /* elector_resign_to without a timeout */
};

/* What the core asks of its surroundings (elector/agent.c in the program,
 * fakes in unit tests). Completion comes back through elector_command_exited()
 * and elector_hook_done(). None of these may call back into the core
 * synchronously. */
struct elector_actions {
	/* Start the leader command with this token; inherit_fd (> 2) must stay
	 * open in it (backend_ops.leader_fd), 0 for none. 0, or the exit status
	 * to report (126/127) if it could not be executed (then no
	 * elector_command_exited() will come). */
	int (*start_command)(void *ctx, uint64_t token, int inherit_fd);
	/* sig to the command's group now, SIGKILL after grace. */
	void (*stop_command)(void *ctx, int sig, int64_t grace_ns);
	void (*run_hook)(void *ctx, enum hook_event ev, const char *reason);
	/* Forget queued (not started) elected/leader hooks: stale after step-down.
	 * Returns true if an elected hook was dropped (it never ran). */
	bool (*drop_stale_hooks)(void *ctx);
	/* Call elector_on_timer() at monotonic time at_ns (-1: no wakeup needed). */
	void (*set_timer)(void *ctx, int64_t at_ns);
	/* The published status changed (state, leader, token, readiness or backend
	 * reachability): wake status waiters. Called once at the end of each
	 * input of the core, after all changes of that input are applied, so
	 * every index names one consistent snapshot. */
	void (*changed)(void *ctx);
	/* The agent is done; leave the loop and exit with this status. */
	void (*exit)(void *ctx, int status);
};

struct elector_metrics {
	uint64_t transitions[ST_N];     /* entries into each state */
	uint64_t backend_errors;
	uint64_t renewals_ok;
	int64_t renew_latency_last_ns;
	int64_t renew_latency_sum_ns;
	uint64_t hook_runs[HOOK_N], hook_failures[HOOK_N];
};

/* Exit status of wrapper mode when --campaign-timeout passed (EX_TEMPFAIL,
 * as lockctl's timeout). */
#define ELECT_EXIT_CAMPAIGN_TIMEOUT 75

/* Backend reachability as the core last heard it. */
enum backend_reach { BACKEND_UNKNOWN, BACKEND_UP, BACKEND_DOWN };

struct elector_status {
	const char *name, *id, *state;
	const char *leader;                      /* NULL when unknown; never our own id
	                                          * unless we lead (state leader/suspended) */
	uint64_t token;                          /* 0 when we never led */
	bool is_leader;                          /* = ready */
	bool ready;                              /* leading, elected hook done (ok), leader
	                                          * command started (wrapper mode) */
	enum backend_reach backend;              /* unknown until the first answer or failure */
	const char *last_error;                  /* last backend failure, NULL if none yet */
	int64_t since_wall_ms;                   /* wall time of the last transition */
	int64_t deadline_left_ns;                /* -1 unless leading */
	bool health_gated;                       /* health checks configured */
	bool healthy;                            /* may campaign (always true without checks) */
	const char *health_reason;               /* the last verdict's reason, NULL without checks */
	uint64_t index;                          /* bumps on every change */
	const char *reason;                      /* reason of the last transition */
	const struct elector_metrics *metrics;
};

struct elector;

/* Checks that the timing can be safe (DESIGN.md rule 4).
 * Returns -1 with the reason in err. */
int elector_check_timing(const struct elector_config *cfg, char *err, size_t errlen);
/* Step-down budget: the longest stopping leader work can take. */
int64_t elector_step_down_budget(const struct elector_config *cfg);

/* Creates the backend through ops->create with the core's event handlers.
 * bp->ev and bp->ctx are filled in by the core. NULL + err on failure. */
struct elector *elector_new(const struct elector_config *cfg, const struct backend_ops *ops,
                            struct backend_params *bp, const struct elector_actions *act,
                            void *act_ctx, char *err, size_t errlen);
void elector_start(struct elector *e);
void elector_on_timer(struct elector *e);
/* The leader command exited with this waitpid status. */
void elector_command_exited(struct elector *e, int status);
void elector_hook_done(struct elector *e, enum hook_event ev, int ok);
/* The health checks' verdict changed (elector/health.h). Unhealthy: a
 * candidate leaves the election, a leader steps down with reason
 * "unhealthy" (command stopped, demoted hook, key released), and neither
 * campaigns again until healthy; healthy: campaign again. */
void elector_set_health(struct elector *e, bool healthy, const char *reason);
/* Resign leadership (socket API). 0 if stepping down, -1 if not leading. */
int elector_resign(struct elector *e);
/* Resign in favour of the candidate `to` (elect resign --to): step down as
 * elector_resign does, then leave a handover record (common/handover.h) as
 * the key is released. Candidates other than `to` that are elected within
 * timeout_ns of first seeing it stand aside; the named one takes over and
 * removes it; the old leader removes it after timeout_ns. 0 if stepping
 * down; -1 not leading; -2 refused (to is our own id, bad arguments), with
 * the reason in err. timeout_ns 0: the configured handover_timeout_ns. */
int elector_resign_to(struct elector *e, const char *to, int64_t timeout_ns, char *err, size_t errlen);
/* SIGTERM/SIGINT: step down (forwarding sig to the command), leave the
 * election, close the backend, then actions->exit(). */
void elector_shutdown(struct elector *e, int sig);
void elector_status(const struct elector *e, struct elector_status *st);
const char *elector_state_name(enum elector_state s);
void elector_free(struct elector *e);

#endif
