/* lockd: named locks and semaphores for local programs (see lockd.h).
 *
 * main() goes in a fixed order: log init, options, check, set up the loop
 * (core timer, signals, socket), run. */
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "backends/lock.h"
#include "common/clock.h"
#include "common/httpd.h"
#include "common/log.h"
#include "common/options.h"
#include "common/sdnotify.h"
#include "lockd/api.h"
#include "lockd/lockd.h"

#define LOCKD_VERSION "0.1.0"
#define USAGE_EXIT 2

#define OPT(flag, sh, type, field, arg, help) \
	{ flag, sh, type, offsetof(struct lockd_opts, field), arg, help }

static const struct opt_def lockd_options[] = {
	OPT("backend", 'b', OPT_STRING, backend, "URL",
	    "file:///DIR, etcd://HOSTS/PREFIX, zk://HOSTS/PATH, consul://HOSTS/PREFIX, "
	    "k8s://[HOST:PORT]/NAMESPACE[/PREFIX] (default file://STATEDIR/locks)"),
	OPT("socket", 's', OPT_STRING, socket, "PATH", "API socket (default RUNDIR/lockd.sock)"),
	OPT("socket-mode", 0, OPT_STRING, socket_mode, "MODE", "socket permissions, octal (default 0660)"),
	OPT("socket-group", 0, OPT_STRING, socket_group, "GROUP", "group of the socket (default: lockd's)"),
	OPT("ttl", 0, OPT_DURATION_POSITIVE, ttl, "DURATION", "backend session TTL (default 15s)"),
	OPT("renew", 0, OPT_DURATION_POSITIVE, renew, "DURATION", "renew interval (default TTL/3, zk: TTL/6)"),
	OPT("kill-grace", 0, OPT_DURATION, kill_grace, "DURATION",
	    "time clients get to stop after a revocation (default 3s)"),
	OPT("id", 0, OPT_STRING, id, "ID", "this lockd's id, stored with its locks (default hostname)"),
	OPT("max-holds", 0, OPT_STRING, max_holds_s, "N", "refuse acquisitions beyond N holds (default 10000)"),
	OPT("config", 'c', OPT_STRING, config, "FILE", "JSON config file (flag > env > file)"),
	OPT("log-format", 0, OPT_STRING, log_format, "text|json", "log format (default text)"),
	OPT("verbose", 'v', OPT_COUNT, verbose, "", "more logging (debug)"),
	OPT("check-config", 0, OPT_BOOL, check_config, "", "validate the configuration and exit"),
	OPTS_BACKEND_ACCESS(OPT),
	{ NULL, 0, 0, 0, NULL, NULL },
};

static const int handled_signals[] = { SIGTERM, SIGINT };
#define N_SIGNALS (int)(sizeof(handled_signals) / sizeof(handled_signals[0]))

struct daemon {
	struct ev_loop *loop;
	struct lockd *d;
	struct lockd_api *api;
	ev_timer timer;
	ev_signal signals[N_SIGNALS];
	int exit_status;
};

/* ---- actions for the core */

static void act_granted(void *ctx, struct hold *h)
{
	lockd_api_granted(((struct daemon *)ctx)->api, h);
}

static void act_denied(void *ctx, struct hold *h, int status, const char *why)
{
	lockd_api_denied(((struct daemon *)ctx)->api, h, status, why);
}

static void act_revoked(void *ctx, struct hold *h)
{
	lockd_api_revoked(((struct daemon *)ctx)->api, h);
}

static void act_kill_command(void *ctx, struct hold *h)
{
	struct daemon *dm = ctx;

	if (dm->api)
		lockd_api_kill_command(dm->api, h);
}

static void act_forget(void *ctx, struct hold *h)
{
	struct daemon *dm = ctx;

	if (dm->api)
		lockd_api_forget(dm->api, h);
}

static void act_set_timer(void *ctx, int64_t at_ns)
{
	struct daemon *dm = ctx;

	ev_timer_stop(dm->loop, &dm->timer);
	if (at_ns < 0)
		return;
	ev_timer_set(&dm->timer, clock_ns_to_ev(at_ns - clock_now_ns()), 0.);
	ev_timer_start(dm->loop, &dm->timer);
}

static void act_exit(void *ctx, int status)
{
	struct daemon *dm = ctx;

	dm->exit_status = status;
	ev_break(dm->loop, EVBREAK_ALL);
}

static const struct lockd_actions daemon_actions = {
	.granted = act_granted, .denied = act_denied, .revoked = act_revoked,
	.kill_command = act_kill_command, .forget = act_forget, .set_timer = act_set_timer,
	.exit = act_exit,
};

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	lockd_on_timer(((struct daemon *)w->data)->d);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)revents;
	log_info("signal %d: shutting down", w->signum);
	sdnotify_stopping();
	lockd_shutdown(((struct daemon *)w->data)->d);
}

/* ---- options */

static void usage(void)
{
	printf("usage: lockd [options]   serve named locks on a Unix socket\n\n"
	       "options (flag > environment > config file):\n");
	options_usage(lockd_options, "LOCKD_");
	printf("\nDurations: 500ms, 10s, 1m. Backends: file, etcd, zk. Clients: lockctl(1).\n");
}

static void set_default(char **field, const char *value)
{
	if (*field == NULL && (*field = strdup(value)) == NULL)
		log_fatalx(1, "out of memory");
}

/* The socket as listen would take it (also for --check-config). */
static void check_socket(struct lockd_opts *o)
{
	char err[512];
	mode_t mode = 0660;
	gid_t gid;

	if (httpd_unix_path_check(o->socket, err, sizeof(err)) < 0)
		log_fatalx(USAGE_EXIT, "--socket: %s", err);
	if (o->socket_mode && httpd_parse_socket_mode(o->socket_mode, &mode, err, sizeof(err)) < 0)
		log_fatalx(USAGE_EXIT, "--socket-mode: %s", err);
	o->socket_mode_bits = mode;
	o->socket_gid = -1;
	if (o->socket_group && httpd_parse_socket_group(o->socket_group, &gid, err, sizeof(err)) < 0)
		log_fatalx(USAGE_EXIT, "--socket-group: %s", err);
	if (o->socket_group)
		o->socket_gid = (long)gid;
}

static void resolve(struct lockd_opts *o)
{
	char dir[512], host[256], buf[600], err[512];
	char *end;
	long n;

	snprintf(buf, sizeof(buf), "file://%s/locks", options_state_dir(dir, sizeof(dir)));
	set_default(&o->backend, buf);
	snprintf(buf, sizeof(buf), "%s/lockd.sock", options_run_dir(dir, sizeof(dir)));
	set_default(&o->socket, buf);
	check_socket(o);
	if (gethostname(host, sizeof(host)) < 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	set_default(&o->id, host);
	if (!options_valid_token(o->id, "._-:@", 200))
		log_fatalx(USAGE_EXIT, "--id '%s': use 1-200 letters, digits, '.', '_', '-', ':' or '@'", o->id);
	/* 0 is "not given": an explicit 0 was refused while reading. */
	if (o->ttl == 0)
		o->ttl = 15 * NS_PER_SEC;
	if (o->renew == 0) {
		const struct lock_backend_ops *be = lock_backend_lookup(o->backend);

		/* A backend whose renewals prove an older request (ZooKeeper's
		 * lag) renews twice as often, so that one late renewal does not
		 * end a hold. */
		o->renew = o->ttl / (be != NULL && be->alive_lag != NULL ? 6 : 3);
	}
	o->max_holds = 10000;
	if (o->max_holds_s) {
		n = strtol(o->max_holds_s, &end, 10);
		if (*o->max_holds_s == '\0' || *end != '\0' || n < 1 || n > 10000000)
			log_fatalx(USAGE_EXIT, "--max-holds '%s': want a whole number from 1 to 10000000",
			           o->max_holds_s);
		o->max_holds = (int)n;
	}
	if (o->log_format && strcmp(o->log_format, "text") && strcmp(o->log_format, "json"))
		log_fatalx(USAGE_EXIT, "--log-format '%s': use text or json", o->log_format);
	if (options_check_backend_access(o->backend, o->tls_ca, o->tls_cert, o->tls_key, o->auth,
	                                 err, sizeof(err)) < 0)
		log_fatalx(USAGE_EXIT, "%s", err);
}

/* ---- run */

static int run(struct lockd_opts *o)
{
	struct daemon dm = { .exit_status = 0 };
	const struct lock_backend_ops *ops = lock_backend_lookup(o->backend);
	struct lockd_config cfg = {
		.id = o->id, .ttl_ns = o->ttl, .renew_ns = o->renew, .kill_grace_ns = o->kill_grace,
		.request_timeout_ns = o->request_timeout, .max_holds = o->max_holds,
	};
	struct backend_params bp = {
		.url = o->backend, .name = "lockd", .id = o->id, .ttl_ns = o->ttl,
		.renew_ns = o->renew, .request_timeout_ns = o->request_timeout,
		.tls_ca = o->tls_ca, .tls_cert = o->tls_cert, .tls_key = o->tls_key, .auth = o->auth,
		.kubeconfig = o->kubeconfig,
	};
	char err[512];

	if (ops == NULL)
		log_fatalx(USAGE_EXIT, "unknown lock backend '%s': use file:///DIR, etcd://HOSTS/PREFIX, "
		           "zk://HOSTS/PATH, consul://HOSTS/PREFIX or k8s:///NAMESPACE[/PREFIX]", o->backend);
	cfg.alive_lag_ns = ops->alive_lag ? ops->alive_lag(&bp) : 0;
	if (lockd_check_timing(&cfg, err, sizeof(err)) < 0)
		log_fatalx(USAGE_EXIT, "%s", err);
	dm.loop = ev_default_loop(EVFLAG_AUTO);
	bp.loop = dm.loop;
	dm.d = lockd_new(&cfg, ops, &bp, &daemon_actions, &dm, err, sizeof(err));
	if (dm.d == NULL)
		log_fatalx(USAGE_EXIT, "%s", err);
	if (o->check_config) {
		lockd_free(dm.d);
		printf("configuration ok: lockd %s, backend %s, socket %s\n", o->id, o->backend, o->socket);
		return 0;
	}
	dm.api = lockd_api_new(dm.loop, dm.d);
	if (dm.api == NULL || lockd_api_listen(dm.api, o->socket, o->socket_mode_bits, o->socket_gid,
	                                          err, sizeof(err)) < 0) {
		lockd_api_free(dm.api);
		lockd_free(dm.d);
		log_fatalx(1, "%s", dm.api ? err : "out of memory");
	}
	sdnotify_init();        /* before any child: they must not inherit it */
	ev_timer_init(&dm.timer, on_timer, 0., 0.);
	dm.timer.data = &dm;
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < N_SIGNALS; i++) {
		ev_signal_init(&dm.signals[i], on_signal, handled_signals[i]);
		dm.signals[i].data = &dm;
		ev_signal_start(dm.loop, &dm.signals[i]);
	}
	log_info("starting: id %s, backend %s, socket %s, ttl %" PRId64 "ms, renew %" PRId64 "ms",
	         o->id, o->backend, o->socket, o->ttl / NS_PER_MS, o->renew / NS_PER_MS);
	lockd_start(dm.d);
	sdnotify_ready();
	ev_run(dm.loop, 0);
	sdnotify_stopping();
	for (int i = 0; i < N_SIGNALS; i++)
		ev_signal_stop(dm.loop, &dm.signals[i]);
	ev_timer_stop(dm.loop, &dm.timer);
	lockd_api_free(dm.api);
	dm.api = NULL;
	lockd_free(dm.d);
	ev_loop_destroy(dm.loop);
	return dm.exit_status;
}

int main(int argc, char **argv)
{
	struct lockd_opts o = { 0 };
	struct opt_result res;
	char err[512];
	int rc;

	/* JSON logs, when asked for, from the first error on. */
	log_init("lockd", options_wants_json_log(argc, argv, "LOCKD_LOG_FORMAT") ? LOG_FMT_JSON
	                                                                            : LOG_FMT_TEXT, 0);
	o.kill_grace = 3 * NS_PER_SEC;
	rc = options_load(lockd_options, &o, "LOCKD_", "config", argc, argv, &res, err, sizeof(err));
	/* The credentials were copied: children must not inherit them. */
	options_scrub_secrets();
	if (rc < 0) {
		options_free(lockd_options, &o);
		log_fatalx(USAGE_EXIT, "%s", err);
	}
	if (options_answered(&res, usage, "lockd", LOCKD_VERSION)) {
		options_free(lockd_options, &o);
		return 0;
	}
	if (res.n_rest > 0)
		log_fatalx(USAGE_EXIT, "unexpected argument '%s' (see --help)", res.rest[0]);
	log_init("lockd", o.log_format && !strcmp(o.log_format, "json") ? LOG_FMT_JSON : LOG_FMT_TEXT,
	         o.verbose);
	resolve(&o);
	rc = run(&o);
	options_free(lockd_options, &o);
	return rc;
}
