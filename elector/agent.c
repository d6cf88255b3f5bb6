/* Glue between the elector core and the world: one libev loop with a timer
 * for the core, signal watchers, the leader command (hooks/proc), hook
 * scripts (hooks/hooks) and the API socket (elector/api). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "backends/backend.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/sdnotify.h"
#include "elector/agent.h"
#include "elector/api.h"
#include "elector/core.h"
#include "elector/health.h"
#include "hooks/hooks.h"
#include "hooks/proc.h"

/* SIGTERM and SIGINT stop the agent; the rest go to the leader command. */
static const int handled_signals[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
#define N_SIGNALS (int)(sizeof(handled_signals) / sizeof(handled_signals[0]))

struct agent {
	struct ev_loop *loop;
	struct elect_opts *o;
	struct elector *e;
	struct hook_runner *hooks;
	struct api *api;
	struct proc *cmd;
	struct health *health;       /* NULL without health checks */
	bool was_leading;            /* for the new leader's health grace */
	ev_timer timer;
	ev_timer publish;            /* wakes status waiters once per loop iteration */
	ev_signal signals[N_SIGNALS];
	int exit_status;
};

/* ---- actions for the core -------------------------------------------- */

static void on_command_exit(struct proc *p, int status, void *data)
{
	struct agent *a = data;

	(void)p;
	a->cmd = NULL;
	log_info("leader command exited with status %d", proc_exit_code(status));
	elector_command_exited(a->e, status);
}

static int act_start_command(void *ctx, uint64_t token, int inherit_fd)
{
	struct agent *a = ctx;
	char tok[32], name[320], id[320], leader[320], backend[1100], err[512];
	char *env[] = { tok, name, id, leader, backend, "ELECT_EVENT=elected", NULL };
	/* JSON logs: every line on stderr must be JSON, so the command's output
	 * goes to the log as tagged lines; text logs: it is the command's own. */
	bool json_log = a->o->log_format && strcmp(a->o->log_format, "json") == 0;
	struct proc_spec spec = { .argv = a->o->command, .env = env,
	                          .log_tag = json_log ? "command" : NULL, .inherit_fd = inherit_fd,
	                          .guard = true };

	snprintf(tok, sizeof(tok), "ELECT_TOKEN=%" PRIu64, token);
	snprintf(name, sizeof(name), "ELECT_NAME=%s", a->o->name);
	snprintf(id, sizeof(id), "ELECT_ID=%s", a->o->id);
	snprintf(leader, sizeof(leader), "ELECT_LEADER=%s", a->o->id);
	snprintf(backend, sizeof(backend), "ELECT_BACKEND=%s", a->o->backend);
	a->cmd = proc_spawn(a->loop, &spec, on_command_exit, a, err, sizeof(err));
	if (a->cmd == NULL) {
		int code = errno == ENOENT ? 127 : 126;   /* as a shell reports it */
		log_error("%s", err);
		return code;
	}
	log_info("leader command started (its guard: pid %d), token %" PRIu64, (int)proc_pid(a->cmd), token);
	return 0;
}

static void act_stop_command(void *ctx, int sig, int64_t grace_ns)
{
	struct agent *a = ctx;

	if (a->cmd)
		proc_stop(a->cmd, sig, grace_ns);
}

static void act_run_hook(void *ctx, enum hook_event ev, const char *reason)
{
	struct agent *a = ctx;
	struct elector_status st;
	struct hook_vars vars;

	elector_status(a->e, &st);
	vars = (struct hook_vars){ .name = a->o->name, .id = a->o->id, .leader = st.leader,
	                           .backend = a->o->backend, .reason = reason, .token = st.token };
	hooks_enqueue(a->hooks, ev, &vars);
}

static bool act_drop_stale_hooks(void *ctx)
{
	struct agent *a = ctx;

	hooks_drop_pending(a->hooks, HOOK_LEADER);
	return hooks_drop_pending(a->hooks, HOOK_ELECTED) > 0;
}

static void act_set_timer(void *ctx, int64_t at_ns)
{
	struct agent *a = ctx;

	ev_timer_stop(a->loop, &a->timer);
	if (at_ns < 0)
		return;
	ev_timer_set(&a->timer, clock_ns_to_ev(at_ns - clock_now_ns()), 0.);
	ev_timer_start(a->loop, &a->timer);
}

/* The core publishes one consistent snapshot per input; several inputs can
 * come in one loop iteration (a backend delivers its queued events at once):
 * waiters are answered once, from a zero timer, with the latest. */
static void act_changed(void *ctx)
{
	struct agent *a = ctx;
	struct elector_status st;

	/* A new leader's checks (which may target its command) get a grace. */
	elector_status(a->e, &st);
	if (st.is_leader != a->was_leading) {
		a->was_leading = st.is_leader;
		health_leading(a->health, st.is_leader);
	}

	if (a->api && !ev_is_active(&a->publish)) {
		ev_timer_set(&a->publish, 0., 0.);
		ev_timer_start(a->loop, &a->publish);
	}
}

static void on_publish(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct agent *a = w->data;

	(void)loop;
	(void)revents;
	if (a->api)
		api_changed(a->api);
}

static void act_exit(void *ctx, int status)
{
	struct agent *a = ctx;

	a->exit_status = status;
	ev_break(a->loop, EVBREAK_ALL);
}

static const struct elector_actions agent_actions = {
	.start_command = act_start_command, .stop_command = act_stop_command,
	.run_hook = act_run_hook, .drop_stale_hooks = act_drop_stale_hooks,
	.set_timer = act_set_timer, .changed = act_changed, .exit = act_exit,
};

/* ---- callbacks from the loop ----------------------------------------- */

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct agent *a = w->data;

	(void)loop;
	(void)revents;
	elector_on_timer(a->e);
}

static void on_hook_done(enum hook_event ev, int ok, void *data)
{
	struct agent *a = data;

	elector_hook_done(a->e, ev, ok);
}

static void on_health(void *data, enum health_state state, const char *reason)
{
	struct agent *a = data;

	elector_set_health(a->e, state == HEALTH_HEALTHY, reason);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct agent *a = w->data;

	(void)loop;
	(void)revents;
	if (w->signum == SIGTERM || w->signum == SIGINT) {
		sdnotify_stopping();
		elector_shutdown(a->e, w->signum);
	} else if (a->cmd) {
		proc_signal(a->cmd, w->signum);
	} else {
		log_info("signal %d ignored: no leader command running", w->signum);
	}
}

/* ---- setup ----------------------------------------------------------- */

static void start_signals(struct agent *a)
{
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < N_SIGNALS; i++) {
		ev_signal_init(&a->signals[i], on_signal, handled_signals[i]);
		a->signals[i].data = a;
		ev_signal_start(a->loop, &a->signals[i]);
	}
}

static void fill_config(const struct elect_opts *o, struct elector_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->name = o->name;
	cfg->id = o->id;
	cfg->backend_url = o->backend;
	cfg->ttl_ns = o->ttl;
	cfg->renew_ns = o->renew;
	cfg->kill_grace_ns = o->kill_grace;
	cfg->hook_timeout_ns = o->hook_timeout;
	cfg->backoff_ns = o->renew;
	cfg->handover_timeout_ns = o->handover_timeout;
	cfg->campaign_timeout_ns = o->command ? o->campaign_timeout : 0;
	cfg->has_command = o->command != NULL;
	cfg->once = o->once;
	cfg->hook[HOOK_ELECTED] = o->on_elected != NULL;
	cfg->hook[HOOK_DEMOTED] = o->on_demoted != NULL;
	cfg->hook[HOOK_LEADER] = o->on_leader != NULL;
	cfg->health_gated = o->health_cmd != NULL || o->health_url != NULL;
}

static void agent_free(struct agent *a)
{
	for (int i = 0; i < N_SIGNALS; i++)
		ev_signal_stop(a->loop, &a->signals[i]);
	ev_timer_stop(a->loop, &a->timer);
	ev_timer_stop(a->loop, &a->publish);
	if (a->api)
		api_free(a->api);
	if (a->hooks)
		hooks_free(a->hooks);
	if (a->cmd)
		proc_abandon(a->cmd);
	health_free(a->health);
	elector_free(a->e);
}

int agent_run(struct elect_opts *o)
{
	struct agent a = { .o = o, .exit_status = 0 };
	struct elector_config cfg;
	const struct backend_ops *ops = backend_lookup(o->backend);
	const char *hook_paths[HOOK_N] = { o->on_elected, o->on_demoted, o->on_leader };
	struct backend_params bp = {
		.url = o->backend, .name = o->name, .id = o->id, .ttl_ns = o->ttl,
		.renew_ns = o->renew, .request_timeout_ns = o->request_timeout,
		.tls_ca = o->tls_ca, .tls_cert = o->tls_cert, .tls_key = o->tls_key, .auth = o->auth,
		.kubeconfig = o->kubeconfig,
	};
	char err[512];

	fill_config(o, &cfg);
	if (ops == NULL)
		log_fatalx(2, "unknown backend '%s': use one of %s, e.g. file:///run/elect/NAME.lock",
		           o->backend, backend_schemes());
	cfg.alive_lag_ns = ops->alive_lag ? ops->alive_lag(&bp) : 0;
	if (elector_check_timing(&cfg, err, sizeof(err)) < 0)
		log_fatalx(2, "%s", err);
	if (o->campaign_timeout > 0 && o->command == NULL)
		log_fatalx(2, "--campaign-timeout is for wrapper mode (elect [options] -- CMD); "
		           "a sidecar keeps campaigning: drop it or run a command");
	a.loop = ev_default_loop(EVFLAG_AUTO);
	bp.loop = a.loop;
	a.e = elector_new(&cfg, ops, &bp, &agent_actions, &a, err, sizeof(err));
	if (a.e == NULL)
		log_fatalx(2, "%s", err);
	if (o->check_config) {
		elector_free(a.e);
		printf("configuration ok: election %s, id %s, backend %s\n", o->name, o->id, o->backend);
		return 0;
	}
	sdnotify_init();        /* before any child: they must not inherit it */
	a.hooks = hooks_new(a.loop, hook_paths, o->hook_timeout, on_hook_done, &a);
	a.api = api_new(a.loop, a.e, o->backend);
	api_set_access(a.api, o->socket_gid, o->http_allow_write);
	if (api_listen(a.api, o->socket, o->socket_mode_bits ? o->socket_mode_bits : 0660, o->http,
	               err, sizeof(err)) < 0) {
		agent_free(&a);
		log_fatalx(1, "%s", err);
	}
	if (cfg.health_gated) {
		struct health_config hc = {
			.cmd = o->health_cmd, .url = o->health_url, .interval_ns = o->health_interval,
			.timeout_ns = o->health_timeout, .grace_ns = o->health_grace,
			.fails = o->health_fails, .passes = o->health_passes,
			.leader_only = o->health_scope && strcmp(o->health_scope, "leader") == 0,
		};
		a.health = health_new(a.loop, &hc, on_health, &a, err, sizeof(err));
		if (a.health == NULL) {
			agent_free(&a);
			log_fatalx(1, "%s", err);
		}
		api_set_health(a.api, health_info(a.health));
	}
	ev_timer_init(&a.timer, on_timer, 0., 0.);
	a.timer.data = &a;
	ev_timer_init(&a.publish, on_publish, 0., 0.);
	a.publish.data = &a;
	if (a.health && o->health_scope && strcmp(o->health_scope, "leader") == 0)
		/* Checks of the leader command: a candidate until it leads and they fail. */
		elector_set_health(a.e, true, health_info(a.health)->reason);
	start_signals(&a);
	log_info("starting: id %s, backend %s, ttl %" PRId64 "ms, renew %" PRId64 "ms",
	         o->id, o->backend, o->ttl / NS_PER_MS, o->renew / NS_PER_MS);
	elector_start(a.e);
	sdnotify_ready();
	ev_run(a.loop, 0);
	sdnotify_stopping();
	agent_free(&a);
	ev_loop_destroy(a.loop);
	return a.exit_status;
}
