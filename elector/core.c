/* The election state machine: follower -> candidate -> leader -> suspended ->
 * stepping-down -> follower, and the deadline that keeps a leader from
 * outliving its session (DESIGN.md, "The safety rule"). Backend-independent:
 * every backend feeds the same events, and this file alone decides when to
 * stop leader work. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "common/clock.h"
#include "common/duration.h"
#include "common/handover.h"
#include "common/log.h"
#include "elector/core.h"
#include "elector/lease.h"

/* Time for the kernel to deliver a SIGKILLed child's exit to the loop. */
#define REAP_SLACK_NS (50 * NS_PER_MS)
/* If the backend never reports closed(), exit anyway after this. */
#define CLOSE_TIMEOUT_NS (10 * NS_PER_SEC)
/* Shortest retry after a failed renewal. */
#define MIN_RETRY_NS (50 * NS_PER_MS)
/* Standing aside for a handover to another candidate: campaign again after
 * this (by then the named one normally leads; if not, we stand aside again,
 * twice as long each time, until the record's timeout has passed on our
 * clock). */
#define HANDOVER_RETRY_NS (100 * NS_PER_MS)

struct elector {
	struct elector_config cfg;
	const struct backend_ops *ops;
	struct backend *be;
	struct backend_events ev;
	const struct elector_actions *act;
	void *act_ctx;

	enum elector_state state;
	const char *state_name;      /* log context points here */
	char reason[192];
	int64_t since_wall_ms;
	uint64_t index;

	uint64_t token;
	char *reported;              /* leader id as the backend last reported it */
	char *leader;                /* leader id as published (see published_leader) */
	bool published_ready;        /* readiness at the last publish */
	bool dirty;                  /* something published changed since the last publish */
	bool warned_dup_id;
	int64_t left_lead_ns;        /* when we last stopped leading (or gave up an election), -1 never */
	int64_t campaign_deadline_ns; /* --campaign-timeout: give up at this time; -1 = none */

	bool healthy;                /* health checks allow campaigning (true without checks) */
	bool out_of_election;        /* left it for health: the backend reports no leader
	                              * any more, so the last report is stale */
	char health_reason[160];

	/* Handover (elect resign --to): the record we leave when our step-down
	 * ends (pending), or left and clear at clear_at (-1: none); the last
	 * record we saw and when we first saw it (its timeout runs from then). */
	char *handover_record;
	bool handover_pending;
	int64_t handover_clear_at_ns;
	struct handover seen;
	bool seen_any;
	int64_t seen_first_ns;
	unsigned seen_asides;        /* times we stood aside for it */

	enum backend_reach backend;  /* as last heard: answers (up) and failures (down) */
	char last_error[192];

	struct lease lease;          /* deadline arithmetic (elector/lease.h) */
	int64_t next_renew_ns;       /* -1 until campaigning */
	int64_t campaign_at_ns;      /* follower: campaign again at this time; -1 = not planned */
	int64_t close_by_ns;         /* -1 unless closing */

	bool command_running;
	bool command_ran;            /* for --once */
	bool command_exited_self;    /* it ended without us asking: elect exits */
	bool awaiting_elected_hook;
	bool demoted_started, demoted_done;
	bool skip_demoted;           /* the elected hook never ran: nothing to undo */
	bool backoff_after_step_down;
	bool shutting_down, closing, exited;
	int shutdown_sig;
	int exit_status;

	struct elector_metrics m;
};

static const char *const state_names[ST_N] = {
	"follower", "candidate", "leader", "suspended", "stepping-down"
};

const char *elector_state_name(enum elector_state s)
{
	return s < ST_N ? state_names[s] : "unknown";
}

static bool leading(const struct elector *e)
{
	return e->state == ST_LEADER || e->state == ST_SUSPENDED;
}

/* Leading and doing the leader's work: the elected hook has finished (and
 * succeeded) and the leader command runs (wrapper mode). What readyz,
 * is_leader and wait-leader report. */
static bool ready(const struct elector *e)
{
	return leading(e) && !e->awaiting_elected_hook && (!e->cfg.has_command || e->command_running);
}

/* ---- timing ---------------------------------------------------------- */

static int64_t hook_allowance(const struct elector_config *cfg)
{
	return cfg->hook_timeout_ns + HOOK_KILL_GRACE_NS;
}

int64_t elector_step_down_budget(const struct elector_config *cfg)
{
	int64_t budget = REAP_SLACK_NS;
	bool any_hook = cfg->hook[HOOK_ELECTED] || cfg->hook[HOOK_DEMOTED] || cfg->hook[HOOK_LEADER];

	if (cfg->has_command)
		budget += cfg->kill_grace_ns;
	if (any_hook)               /* a hook already running must end before demoted starts */
		budget += hook_allowance(cfg);
	if (cfg->hook[HOOK_DEMOTED])
		budget += hook_allowance(cfg);
	return budget;
}

int elector_check_timing(const struct elector_config *cfg, char *err, size_t errlen)
{
	char ttl[32], renew[32], grace[32], hook[32], left[32];
	int64_t lead_for, hooks_ns;

	if (cfg->ttl_ns <= 0 || cfg->renew_ns <= 0 || cfg->kill_grace_ns < 0 || cfg->hook_timeout_ns <= 0) {
		snprintf(err, errlen, "--ttl, --renew and --hook-timeout must be positive and --kill-grace not negative");
		return -1;
	}
	duration_format(cfg->ttl_ns, ttl, sizeof(ttl));
	duration_format(cfg->renew_ns, renew, sizeof(renew));
	duration_format(cfg->kill_grace_ns, grace, sizeof(grace));
	hooks_ns = elector_step_down_budget(cfg) - REAP_SLACK_NS - (cfg->has_command ? cfg->kill_grace_ns : 0);
	duration_format(hooks_ns, hook, sizeof(hook));
	if (cfg->renew_ns >= cfg->ttl_ns) {
		snprintf(err, errlen, "unsafe timing: --renew %s must be shorter than --ttl %s (etcd and Kubernetes renew every TTL/3)",
		         renew, ttl);
		return -1;
	}
	lead_for = lease_lead_time(cfg->ttl_ns, elector_step_down_budget(cfg));
	if (cfg->alive_lag_ns > 0 && lead_for - cfg->alive_lag_ns <= cfg->renew_ns) {
		char lag[32];

		duration_format(cfg->alive_lag_ns - cfg->renew_ns, lag, sizeof(lag));
		duration_format(lead_for - cfg->alive_lag_ns, left, sizeof(left));
		snprintf(err, errlen,
		         "unsafe timing: a renewal proves the session only as of a request sent up to %s "
		         "(1.5 x the ZooKeeper tick, ?tick= in the URL) plus --renew %s before it, so a leader "
		         "must start stepping down %s after a renewal (--ttl %s minus margin, --kill-grace %s, "
		         "hooks %s and that lag), which is not later than the next renewal: raise --ttl or "
		         "lower --renew, --kill-grace or --hook-timeout",
		         lag, renew, left, ttl, cfg->has_command ? grace : "0s (no command)", hook);
		return -1;
	}
	if (lead_for <= cfg->renew_ns) {
		/* Negative as it is: how far the budget overshoots the TTL. */
		duration_format(lead_for, left, sizeof(left));
		snprintf(err, errlen,
		         "unsafe timing: a leader must start stepping down %s after its last renewal "
		         "(--ttl %s minus margin, --kill-grace %s and hooks %s), which is not later than "
		         "the next renewal (--renew %s): raise --ttl or lower --renew, --kill-grace or --hook-timeout",
		         left, ttl, cfg->has_command ? grace : "0s (no command)", hook, renew);
		return -1;
	}
	return 0;
}

static int64_t step_down_at_ns(const struct elector *e)
{
	return lease_stop_at(&e->lease);
}

static void reschedule(struct elector *e)
{
	int64_t at = -1;

#define EARLIER(t) do { if ((t) >= 0 && (at < 0 || (t) < at)) at = (t); } while (0)
	if (!e->closing)
		EARLIER(e->next_renew_ns);
	if (!e->closing && !e->handover_pending)
		EARLIER(e->handover_clear_at_ns);
	if (leading(e))
		EARLIER(step_down_at_ns(e));
	if (e->state == ST_FOLLOWER && !e->shutting_down)
		EARLIER(e->campaign_at_ns);
	if (e->closing)
		EARLIER(e->close_by_ns);
	if (!e->shutting_down)
		EARLIER(e->campaign_deadline_ns);
#undef EARLIER
	if (e->exited)
		return;
	e->act->set_timer(e->act_ctx, at);
}

/* ---- transitions ----------------------------------------------------- */

/* Published changes are collected during one input of the core and
 * published once at its end (input_done), so that a long-poll never sees
 * the state of one moment with the leader of another. */
static void mark_changed(struct elector *e)
{
	e->dirty = true;
}

static void set_state(struct elector *e, enum elector_state to, const char *reason)
{
	const char *from = state_names[e->state];

	if (reason != e->reason)
		snprintf(e->reason, sizeof(e->reason), "%s", reason);
	if (to == e->state)
		return;
	e->state = to;
	e->state_name = state_names[to];
	e->since_wall_ms = clock_wall_ms();
	e->m.transitions[to]++;
	log_transition_token(from, state_names[to], reason, e->token);
	mark_changed(e);
}

static bool is_own_id(const struct elector *e, const char *id)
{
	return id != NULL && strcmp(id, e->cfg.id) == 0;
}

static bool same_id(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* Records the leader as the backend reports it. */
static void record_reported(struct elector *e, const char *id)
{
	if (id != NULL && *id == '\0')
		id = NULL;
	if (same_id(id, e->reported))
		return;
	free(e->reported);
	e->reported = id ? strdup(id) : NULL;
}

/* The leader as published: our own id exactly while we lead; otherwise what
 * the backend reports, except our own id (stale after a step-down, or a
 * duplicate --id): unknown until the backend reports another. */
static const char *published_leader(const struct elector *e)
{
	if (leading(e))
		return e->cfg.id;
	if (e->out_of_election)
		return NULL;
	return is_own_id(e, e->reported) ? NULL : e->reported;
}

/* Updates the published leader. True if the `leader` hook should run: the
 * leader changed, other than to "unknown" because we stopped leading. */
static bool refresh_leader(struct elector *e)
{
	const char *id = published_leader(e);
	bool worthy;

	if (same_id(id, e->leader))
		return false;
	worthy = id != NULL || (e->reported == NULL && !e->out_of_election);
	free(e->leader);
	e->leader = id ? strdup(id) : NULL;
	mark_changed(e);
	if (worthy)
		log_info("leader is now %s", e->leader ? e->leader : "(none)");
	else
		log_debug("leader unknown after stepping down");
	return worthy;
}

static void leader_hook(struct elector *e)
{
	if (e->cfg.hook[HOOK_LEADER])
		e->act->run_hook(e->act_ctx, HOOK_LEADER, "leader changed");
}

static void backend_up(struct elector *e)
{
	if (e->backend == BACKEND_UP)
		return;
	if (e->backend == BACKEND_DOWN)
		log_info("backend reachable again");
	e->backend = BACKEND_UP;
	mark_changed(e);
}

static void backend_down(struct elector *e, const char *reason)
{
	snprintf(e->last_error, sizeof(e->last_error), "%s", reason);
	if (e->backend == BACKEND_DOWN) {
		log_debug("backend still failing: %s", reason);
		return;
	}
	log_warnx("backend unreachable: %s (retrying)", reason);
	e->backend = BACKEND_DOWN;
	mark_changed(e);
}

static void campaign_timed_out(struct elector *e);

/* The end of every input of the core (timer, backend event, hook or
 * command completion, request): follow readiness with the campaign
 * timeout, publish the leader, arm the timer, then publish one snapshot. */
static void input_done(struct elector *e)
{
	bool is_ready = ready(e);

	if (is_ready != e->published_ready) {
		e->published_ready = is_ready;
		mark_changed(e);
		if (is_ready)
			e->campaign_deadline_ns = -1;
		else if (e->cfg.campaign_timeout_ns > 0 && !e->shutting_down)
			e->campaign_deadline_ns = clock_now_ns() + e->cfg.campaign_timeout_ns;
	}
	if (refresh_leader(e))
		leader_hook(e);
	reschedule(e);
	if (e->dirty && !e->exited) {
		e->dirty = false;
		e->index++;
		e->act->changed(e->act_ctx);
	}
}

static void begin_close(struct elector *e)
{
	if (e->closing)
		return;
	e->closing = true;
	e->close_by_ns = clock_now_ns() + CLOSE_TIMEOUT_NS;
	log_info("leaving the election and closing the backend session");
	e->ops->close(e->be);
}

static void finish_exit(struct elector *e)
{
	if (e->exited)
		return;
	e->exited = true;
	e->act->set_timer(e->act_ctx, -1);
	e->act->exit(e->act_ctx, e->exit_status);
}

/* Leader work is over: leave the election, then campaign again or exit. */
static void step_down_done(struct elector *e)
{
	bool done_with_command = e->cfg.has_command &&
	                         (e->command_exited_self || (e->cfg.once && e->command_ran));

	bool handed_over = e->handover_pending;

	if (handed_over) {
		e->handover_pending = false;
		e->ops->handover(e->be, e->handover_record);
		/* We stand aside too: the record is in force for us from now. */
		handover_decode(e->handover_record, &e->seen);
		e->seen_any = true;
		e->seen_first_ns = clock_now_ns();
		e->seen_asides = 0;
		e->handover_clear_at_ns = e->seen_first_ns + e->seen.timeout_ns;
	} else {
		e->ops->resign(e->be);
	}
	e->demoted_started = e->demoted_done = e->skip_demoted = false;
	set_state(e, ST_FOLLOWER, e->reason);
	if (done_with_command)
		e->shutting_down = true;
	if (e->shutting_down) {
		begin_close(e);
		return;
	}
	/* Unhealthy: stay out until the checks pass (elector_set_health). */
	e->out_of_election = !e->healthy;
	e->campaign_at_ns = !e->healthy ? -1 :
	                    clock_now_ns() + (handed_over ? HANDOVER_RETRY_NS :
	                                      e->backoff_after_step_down ? e->cfg.backoff_ns : 0);
	e->backoff_after_step_down = false;
}

/* Stepping down goes: command dead -> demoted hook done -> resign. */
static void step_down_progress(struct elector *e)
{
	if (e->state != ST_STEPPING_DOWN || e->command_running)
		return;
	if (e->cfg.hook[HOOK_DEMOTED] && !e->demoted_started && !e->skip_demoted) {
		e->demoted_started = true;
		e->act->run_hook(e->act_ctx, HOOK_DEMOTED, e->reason);
		return;
	}
	if (e->demoted_started && !e->demoted_done)
		return;
	step_down_done(e);
}

static void begin_step_down(struct elector *e, const char *reason, bool backoff)
{
	if (!leading(e))
		return;
	e->backoff_after_step_down = backoff;
	e->left_lead_ns = clock_now_ns();
	set_state(e, ST_STEPPING_DOWN, reason);
	e->skip_demoted = e->act->drop_stale_hooks(e->act_ctx);
	e->awaiting_elected_hook = false;
	if (e->command_running)
		e->act->stop_command(e->act_ctx, e->shutdown_sig ? e->shutdown_sig : SIGTERM,
		                     e->cfg.kill_grace_ns);
	step_down_progress(e);
}

static void start_command(struct elector *e)
{
	int rc, fd;

	if (!e->cfg.has_command || !leading(e))
		return;
	fd = e->ops->leader_fd ? e->ops->leader_fd(e->be) : -1;
	rc = e->act->start_command(e->act_ctx, e->token, fd > 2 ? fd : 0);
	if (rc == 0) {
		e->command_running = true;
		e->command_ran = true;
		return;
	}
	e->exit_status = rc;
	e->command_exited_self = true;
	begin_step_down(e, "leader command could not be started", false);
}

static void check_deadline(struct elector *e, int64_t now)
{
	char buf[32], reason[96];

	if (!leading(e) || now < step_down_at_ns(e))
		return;
	duration_format(now - e->lease.alive_sent_ns, buf, sizeof(buf));
	snprintf(reason, sizeof(reason), "deadline: no successful renewal for %s", buf);
	begin_step_down(e, reason, false);
}

/* ---- backend events -------------------------------------------------- */

static void on_session_alive(void *ctx, int64_t sent_ns)
{
	struct elector *e = ctx;
	int64_t now = clock_now_ns();

	lease_alive(&e->lease, sent_ns);
	backend_up(e);
	e->m.renewals_ok++;
	e->m.renew_latency_last_ns = now - sent_ns;
	e->m.renew_latency_sum_ns += now - sent_ns;
	if (e->state == ST_SUSPENDED && now < step_down_at_ns(e))
		set_state(e, ST_LEADER, "renewal succeeded");
	check_deadline(e, now);
	input_done(e);
}

static void on_session_failed(void *ctx, const char *reason)
{
	struct elector *e = ctx;
	int64_t now = clock_now_ns(), retry = e->cfg.renew_ns / 4;

	e->m.backend_errors++;
	log_debug("renewal failed: %s", reason);
	backend_down(e, reason);
	if (e->state == ST_LEADER) {
		char why[160];
		snprintf(why, sizeof(why), "renewal failed: %s", reason);
		set_state(e, ST_SUSPENDED, why);
	}
	if (retry < MIN_RETRY_NS)
		retry = MIN_RETRY_NS;
	if (e->next_renew_ns > now + retry)
		e->next_renew_ns = now + retry;
	check_deadline(e, now);
	input_done(e);
}

/* A handover record came with our election: stand aside if it names
 * another candidate and is still in force on our clock. true if we did. */
static bool stand_aside(struct elector *e, const char *record, int64_t now)
{
	struct handover h;
	char reason[sizeof(e->reason)];
	int64_t retry, left;

	if (record == NULL || handover_decode(record, &h) < 0)
		return false;
	if (!e->seen_any || !handover_same(&h, &e->seen)) {
		e->seen = h;
		e->seen_any = true;
		e->seen_first_ns = now;
		e->seen_asides = 0;
	}
	left = e->seen_first_ns + h.timeout_ns - now;
	if (is_own_id(e, h.to) || left <= 0)
		return false;
	retry = HANDOVER_RETRY_NS << (e->seen_asides < 6 ? e->seen_asides : 6);
	e->seen_asides++;
	/* Out of the queue, so that the named candidate comes first. Reports
	 * of our own id that follow are stale. */
	e->left_lead_ns = now;
	e->ops->resign(e->be);
	e->out_of_election = true;
	record_reported(e, NULL);     /* the leader before the handover: stale */
	snprintf(reason, sizeof(reason), "standing aside: %.60s hands over to %.60s", h.from, h.to);
	set_state(e, ST_FOLLOWER, reason);
	e->campaign_at_ns = now + (retry < left ? retry : left);
	return true;
}

/* Leading with a handover record in the backend: it is done (we are the
 * named candidate) or over (its timeout passed): remove it. */
static void end_handover(struct elector *e, const char *record)
{
	struct handover h;

	if (record == NULL || handover_decode(record, &h) < 0)
		return;
	if (is_own_id(e, h.to))
		log_info("took over from %s by handover", h.from);
	else
		log_warnx("leading although %s handed over to %s: %s did not take over in time",
		          h.from, h.to, h.to);
	e->ops->clear_handover(e->be, record);
}

static void on_elected(void *ctx, uint64_t token, const char *record)
{
	struct elector *e = ctx;
	int64_t now = clock_now_ns();

	if (e->state != ST_CANDIDATE || e->shutting_down) {
		/* We left the election meanwhile; make sure the backend does too.
		 * Reports of our own id that follow are stale, not a duplicate. */
		e->left_lead_ns = now;
		e->ops->resign(e->be);
		input_done(e);
		return;
	}
	if (!lease_known(&e->lease)) {
		log_error("backend reported leadership without a live session; resigning");
		e->left_lead_ns = now;
		e->ops->resign(e->be);
		set_state(e, ST_FOLLOWER, "no live session");
		e->campaign_at_ns = now + e->cfg.backoff_ns;
		input_done(e);
		return;
	}
	if (stand_aside(e, record, now)) {
		input_done(e);
		return;
	}
	e->token = token;
	set_state(e, ST_LEADER, "elected");
	end_handover(e, record);
	if (now >= step_down_at_ns(e)) {
		begin_step_down(e, "elected with a session too old to lead safely", false);
	} else if (e->cfg.hook[HOOK_ELECTED]) {
		e->awaiting_elected_hook = true;
		e->act->run_hook(e->act_ctx, HOOK_ELECTED, "elected");
	} else {
		start_command(e);
	}
	/* input_done() queues the leader hook after the elected hook: hooks see
	 * "elected" before "leader". */
	input_done(e);
}

static void on_lost(void *ctx, const char *reason)
{
	struct elector *e = ctx;

	lease_forget(&e->lease);
	log_warnx("backend: %s", reason);
	if (leading(e)) {
		begin_step_down(e, reason, false);
	} else if (e->state == ST_CANDIDATE && !e->shutting_down) {
		set_state(e, ST_FOLLOWER, reason);
		e->campaign_at_ns = e->healthy ? clock_now_ns() : -1;
	}
	input_done(e);
}

/* The backend reports our own id as leader while we do not lead. Right after
 * we led (or gave up an election) that is a stale view; later it means
 * another candidate uses our id (both would believe the other leads), or a
 * killed earlier run of this agent whose session has not expired yet. */
static void check_duplicate_id(struct elector *e, const char *leader_id)
{
	int64_t now = clock_now_ns();

	if (!is_own_id(e, leader_id) || leading(e) || e->warned_dup_id)
		return;
	if (e->state != ST_FOLLOWER && e->state != ST_CANDIDATE)
		return;
	if (e->left_lead_ns >= 0 && now - e->left_lead_ns < e->cfg.ttl_ns)
		return;
	e->warned_dup_id = true;
	log_warnx("another candidate uses the id %s (or an earlier run of this agent, until its "
	          "session expires); give each candidate its own --id", leader_id);
}

static void on_leader(void *ctx, const char *leader_id)
{
	struct elector *e = ctx;

	check_duplicate_id(e, leader_id);
	record_reported(e, leader_id);
	input_done(e);
}

static void on_closed(void *ctx)
{
	struct elector *e = ctx;

	if (e->closing)
		finish_exit(e);
}

/* ---- inputs from the agent ------------------------------------------- */

void elector_on_timer(struct elector *e)
{
	int64_t now = clock_now_ns();

	if (e->exited)
		return;
	if (e->closing && now >= e->close_by_ns) {
		log_warnx("backend did not confirm the close in time; exiting anyway");
		finish_exit(e);
		return;
	}
	check_deadline(e, now);
	if (!e->closing && !e->handover_pending && e->handover_clear_at_ns >= 0 &&
	    now >= e->handover_clear_at_ns) {
		/* The named candidate did not take over in time (or did and
		 * removed it already: then this is a no-op). */
		e->handover_clear_at_ns = -1;
		e->ops->clear_handover(e->be, e->handover_record);
	}
	if (!e->closing && e->next_renew_ns >= 0 && now >= e->next_renew_ns) {
		e->next_renew_ns = now + e->cfg.renew_ns;
		e->ops->renew(e->be);
	}
	if (e->state == ST_FOLLOWER && !e->shutting_down && e->healthy && e->campaign_at_ns >= 0 &&
	    now >= e->campaign_at_ns) {
		e->campaign_at_ns = -1;
		e->out_of_election = false;
		set_state(e, ST_CANDIDATE, "campaigning");
		e->ops->campaign(e->be);
	}
	if (!e->shutting_down && e->campaign_deadline_ns >= 0 && now >= e->campaign_deadline_ns)
		campaign_timed_out(e);
	input_done(e);
}

void elector_start(struct elector *e)
{
	int64_t now = clock_now_ns();

	e->next_renew_ns = now + e->cfg.renew_ns;
	if (e->cfg.campaign_timeout_ns > 0)
		e->campaign_deadline_ns = now + e->cfg.campaign_timeout_ns;
	if (!e->healthy) {
		/* The session is opened by the first campaign; until then renew()
		 * reports "no session", which is harmless. */
		set_state(e, ST_FOLLOWER, "waiting for the first health check");
		input_done(e);
		return;
	}
	set_state(e, ST_CANDIDATE, "campaigning");
	e->ops->campaign(e->be);
	input_done(e);
}

void elector_set_health(struct elector *e, bool healthy, const char *reason)
{
	int64_t now = clock_now_ns();

	snprintf(e->health_reason, sizeof(e->health_reason), "%s", reason);
	mark_changed(e);
	if (!healthy && e->state == ST_FOLLOWER && !e->shutting_down)
		set_state(e, ST_FOLLOWER, "unhealthy");     /* what `elect status` says */
	if (healthy == e->healthy || e->exited) {
		input_done(e);
		return;
	}
	e->healthy = healthy;
	if (healthy) {
		if (e->state == ST_FOLLOWER && !e->shutting_down && !e->closing)
			e->campaign_at_ns = now;
	} else if (leading(e)) {
		/* The normal step-down path: command stopped, demoted hook run
		 * with this reason, then resign() releases the key at once. */
		begin_step_down(e, "unhealthy", false);
	} else if (e->state == ST_CANDIDATE) {
		/* Out of the queue, so that no healthy candidate waits behind us.
		 * Reports of our own id that follow are stale. */
		e->left_lead_ns = now;
		e->ops->resign(e->be);
		e->out_of_election = true;
		set_state(e, ST_FOLLOWER, "unhealthy");
		e->campaign_at_ns = -1;
	} else {
		e->campaign_at_ns = -1;
	}
	input_done(e);
}

/* --campaign-timeout passed without leading: give up and exit 75 (the
 * backend could not be reached, or another candidate kept the lead). */
static void campaign_timed_out(struct elector *e)
{
	char limit[32];

	e->campaign_deadline_ns = -1;
	duration_format(e->cfg.campaign_timeout_ns, limit, sizeof(limit));
	if (e->backend == BACKEND_DOWN)
		log_error("campaign timeout: could not reach the backend within %s (%s); exiting with "
		          "status %d", limit, e->last_error, ELECT_EXIT_CAMPAIGN_TIMEOUT);
	else
		log_error("campaign timeout: not leading after %s (leader: %s); exiting with status %d",
		          limit, published_leader(e) ? published_leader(e) : "none",
		          ELECT_EXIT_CAMPAIGN_TIMEOUT);
	e->exit_status = ELECT_EXIT_CAMPAIGN_TIMEOUT;
	e->shutting_down = true;
	if (leading(e))
		begin_step_down(e, "campaign timeout", false);
	else if (e->state != ST_STEPPING_DOWN)
		begin_close(e);
}

static int exit_code_of(int status)
{
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

void elector_command_exited(struct elector *e, int status)
{
	char reason[64];

	e->command_running = false;
	e->exit_status = exit_code_of(status);
	if (leading(e)) {
		snprintf(reason, sizeof(reason), "leader command exited with status %d", e->exit_status);
		e->command_exited_self = true;
		begin_step_down(e, reason, false);
	} else {
		log_info("leader command stopped, status %d", e->exit_status);
		step_down_progress(e);
	}
	input_done(e);
}

void elector_hook_done(struct elector *e, enum hook_event ev, int ok)
{
	e->m.hook_runs[ev]++;
	if (!ok)
		e->m.hook_failures[ev]++;
	if (ev == HOOK_ELECTED && e->awaiting_elected_hook) {
		e->awaiting_elected_hook = false;
		if (ok)
			start_command(e);
		else
			begin_step_down(e, "elected hook failed", true);
	} else if (ev == HOOK_DEMOTED && e->demoted_started) {
		e->demoted_done = true;
		step_down_progress(e);
	}
	input_done(e);
}

int elector_resign(struct elector *e)
{
	if (!leading(e))
		return -1;
	begin_step_down(e, "resigned on request", true);
	input_done(e);
	return 0;
}

int elector_resign_to(struct elector *e, const char *to, int64_t timeout_ns, char *err, size_t errlen)
{
	struct handover h = { .token = e->token };
	char record[HANDOVER_MAX], reason[sizeof(e->reason)];

	if (timeout_ns == 0)
		timeout_ns = e->cfg.handover_timeout_ns;
	h.timeout_ns = timeout_ns;

	if (!leading(e) || e->state == ST_STEPPING_DOWN) {
		snprintf(err, errlen, "not leader");
		return -1;
	}
	if (is_own_id(e, to)) {
		snprintf(err, errlen, "%s is this agent, which leads already: name another candidate", to);
		return -2;
	}
	if (e->ops->handover == NULL || e->ops->clear_handover == NULL) {
		snprintf(err, errlen, "the %s backend cannot hand over to a named candidate yet; "
		         "use resign without --to", e->ops->scheme);
		return -2;
	}
	if (timeout_ns <= 0 || strlen(to) >= sizeof(h.to) || strlen(e->cfg.id) >= sizeof(h.from)) {
		snprintf(err, errlen, "bad handover: the id must be shorter than %zu bytes and the "
		         "timeout positive", sizeof(h.to));
		return -2;
	}
	snprintf(h.to, sizeof(h.to), "%s", to);
	snprintf(h.from, sizeof(h.from), "%s", e->cfg.id);
	if (handover_encode(&h, record, sizeof(record)) < 0) {
		snprintf(err, errlen, "bad handover: the ids are too long");
		return -2;
	}
	free(e->handover_record);
	if ((e->handover_record = strdup(record)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -2;
	}
	e->handover_pending = true;
	e->handover_clear_at_ns = -1;
	snprintf(reason, sizeof(reason), "resigned on request: handing over to %s", to);
	begin_step_down(e, reason, true);
	input_done(e);
	return 0;
}

void elector_shutdown(struct elector *e, int sig)
{
	if (e->shutting_down) {
		/* A second signal: do not wait out the kill grace. */
		if (e->command_running)
			e->act->stop_command(e->act_ctx, SIGKILL, 0);
		return;
	}
	e->shutting_down = true;
	e->shutdown_sig = sig;
	log_info("signal %d: shutting down", sig);
	if (leading(e))
		begin_step_down(e, "shutting down", false);
	else if (e->state != ST_STEPPING_DOWN)
		begin_close(e);
	input_done(e);
}

void elector_status(const struct elector *e, struct elector_status *st)
{
	memset(st, 0, sizeof(*st));
	st->name = e->cfg.name;
	st->id = e->cfg.id;
	st->state = state_names[e->state];
	st->leader = published_leader(e);
	st->token = e->token;
	st->ready = st->is_leader = ready(e);
	st->backend = e->backend;
	st->last_error = e->last_error[0] ? e->last_error : NULL;
	st->since_wall_ms = e->since_wall_ms;
	st->deadline_left_ns = -1;
	if (leading(e)) {
		st->deadline_left_ns = lease_deadline(&e->lease) - clock_now_ns();
		if (st->deadline_left_ns < 0)
			st->deadline_left_ns = 0;
	}
	st->health_gated = e->cfg.health_gated;
	st->healthy = e->healthy;
	st->health_reason = e->cfg.health_gated ? e->health_reason : NULL;
	st->index = e->index;
	st->reason = e->reason;
	st->metrics = &e->m;
}

/* ---- life cycle ------------------------------------------------------ */

struct elector *elector_new(const struct elector_config *cfg, const struct backend_ops *ops,
                            struct backend_params *bp, const struct elector_actions *act,
                            void *act_ctx, char *err, size_t errlen)
{
	struct elector *e = calloc(1, sizeof(*e));

	if (e == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	e->cfg = *cfg;
	lease_init(&e->lease, cfg->ttl_ns, elector_step_down_budget(cfg));
	e->ops = ops;
	e->act = act;
	e->act_ctx = act_ctx;
	e->state = ST_FOLLOWER;
	e->state_name = state_names[ST_FOLLOWER];
	e->since_wall_ms = clock_wall_ms();
	e->next_renew_ns = e->campaign_at_ns = e->close_by_ns = -1;
	e->left_lead_ns = e->campaign_deadline_ns = -1;
	e->handover_clear_at_ns = -1;
	e->healthy = !cfg->health_gated;
	snprintf(e->health_reason, sizeof(e->health_reason), "waiting for the first check");
	e->ev = (struct backend_events){
		.session_alive = on_session_alive, .session_failed = on_session_failed,
		.elected = on_elected, .lost = on_lost, .leader = on_leader, .closed = on_closed,
	};
	bp->ev = &e->ev;
	bp->ctx = e;
	if (ops->check_timing && ops->check_timing(bp, err, errlen) < 0) {
		free(e);
		return NULL;
	}
	if (ops->create(&e->be, bp, err, errlen) < 0) {
		free(e);
		return NULL;
	}
	log_set_context(e->cfg.name, &e->state_name);
	return e;
}

void elector_free(struct elector *e)
{
	if (e == NULL)
		return;
	log_set_context(NULL, NULL);
	e->ops->destroy(e->be);
	free(e->leader);
	free(e->reported);
	free(e->handover_record);
	free(e);
}
