/* Hook scripts: elected, demoted, leader.
 *
 * One at a time per agent, in the order enqueued. Each runs as
 *   PATH EVENT NAME ID
 * with ELECT_EVENT, ELECT_NAME, ELECT_ID, ELECT_LEADER, ELECT_TOKEN,
 * ELECT_BACKEND, ELECT_REASON in its environment, output captured into the log
 * tagged "hook:<event>". At the timeout it gets SIGTERM (to its group) and
 * HOOK_KILL_GRACE_NS later SIGKILL. Exit 0 is success; anything else, a signal
 * or a timeout is failure.
 */
#ifndef ELECT_HOOKS_H
#define ELECT_HOOKS_H

#include <stdint.h>

#define HOOK_KILL_GRACE_NS (500 * INT64_C(1000000))

struct ev_loop;
struct hook_runner;

enum hook_event { HOOK_ELECTED, HOOK_DEMOTED, HOOK_LEADER, HOOK_N };

struct hook_vars {
	const char *name, *id, *leader, *backend, *reason;
	uint64_t token;
};

/* Called from the loop when the hook finished (ok = exit 0), failed, timed out
 * or could not start. Never called from inside hooks_enqueue(). */
typedef void (*hook_done_cb)(enum hook_event ev, int ok, void *data);

/* paths[event] may be NULL (no hook for that event). Strings are copied.
 * timeout_ns <= 0: no timeout. loop must be ev_default_loop() (see proc.h).
 * The done callback may call hooks_free() (and any other hooks_ function). */
struct hook_runner *hooks_new(struct ev_loop *loop, const char *const paths[HOOK_N],
                              int64_t timeout_ns, hook_done_cb cb, void *data);
int hooks_configured(const struct hook_runner *r, enum hook_event ev);
/* Queue a run (vars are copied; NULL strings become ""). An event with no
 * hook configured is ignored. When nothing runs, the run starts at once. */
void hooks_enqueue(struct hook_runner *r, enum hook_event ev, const struct hook_vars *vars);
/* Drop queued runs of ev that have not started yet (stale after a step-down).
 * Returns how many were dropped. */
int hooks_drop_pending(struct hook_runner *r, enum hook_event ev);
/* Nothing running and nothing queued. */
int hooks_idle(const struct hook_runner *r);
const char *hooks_event_name(enum hook_event ev);
/* Counters for metrics. */
uint64_t hooks_runs(const struct hook_runner *r, enum hook_event ev);
uint64_t hooks_failures(const struct hook_runner *r, enum hook_event ev);
/* Kills a running hook (SIGKILL to its group), drops the queue, frees. */
void hooks_free(struct hook_runner *r);

#endif
