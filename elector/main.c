/* elect: leader election for a command, a sidecar, or scripts.
 *
 *   elect [options] -- CMD [ARGS...]      run CMD only while this node leads
 *   elect run [options]                   sidecar: campaign, hooks, socket
 *   elect status|resign|wait-leader       talk to a running agent
 *
 * main() goes in a fixed order: log init, options, check, run. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


#include "backends/backend.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/options.h"
#include "elector/agent.h"
#include "elector/api.h"

#define ELECT_VERSION "0.1.0"
#define USAGE_EXIT 2

#define OPT(flag, sh, type, field, arg, help) \
	{ flag, sh, type, offsetof(struct elect_opts, field), arg, help }

static const struct opt_def elect_options[] = {
	OPT("name", 'n', OPT_STRING, name, "NAME", "election name (default: default)"),
	OPT("id", 0, OPT_STRING, id, "ID", "this candidate's id (default: hostname)"),
	OPT("backend", 'b', OPT_STRING, backend, "URL", "file:///PATH, etcd://HOSTS/PREFIX, zk://HOSTS/PATH"),
	OPT("ttl", 0, OPT_DURATION, ttl, "DURATION", "session TTL (default 15s)"),
	OPT("renew", 0, OPT_DURATION, renew, "DURATION", "renew interval (default TTL/3)"),
	OPT("kill-grace", 0, OPT_DURATION, kill_grace, "DURATION", "SIGTERM to SIGKILL of the command (default 3s)"),
	OPT("socket", 's', OPT_STRING, socket, "PATH", "API socket (default RUNDIR/NAME@ID.sock; none: off)"),
	OPT("http", 0, OPT_STRING, http, "HOST:PORT", "also serve the API on TCP"),
	OPT("on-elected", 0, OPT_STRING, on_elected, "PATH", "hook run when elected"),
	OPT("on-demoted", 0, OPT_STRING, on_demoted, "PATH", "hook run after leadership ends"),
	OPT("on-leader", 0, OPT_STRING, on_leader, "PATH", "hook run when the observed leader changes"),
	OPT("hook-timeout", 0, OPT_DURATION, hook_timeout, "DURATION", "time limit of one hook (default 2s)"),
	OPT("config", 'c', OPT_STRING, config, "FILE", "JSON config file (flag > env > file)"),
	OPT("log-format", 0, OPT_STRING, log_format, "text|json", "log format (default text)"),
	OPT("verbose", 'v', OPT_COUNT, verbose, "", "more logging (debug)"),
	OPT("once", 0, OPT_BOOL, once, "", "run the command at most once, then exit"),
	OPT("campaign-timeout", 0, OPT_DURATION, campaign_timeout, "DURATION",
	    "wrapper mode: exit 75 if not leading within this (default: no limit)"),
	OPT("check-config", 0, OPT_BOOL, check_config, "", "validate the configuration and exit"),
	OPTS_BACKEND_ACCESS(OPT),
	OPT("timeout", 't', OPT_DURATION, timeout, "DURATION", "wait-leader: give up after this"),
	{ NULL, 0, 0, 0, NULL, NULL },
};

static void usage(void)
{
	printf("usage: elect [options] -- CMD [ARGS...]   run CMD only while this node leads\n"
	       "       elect run [options]                 sidecar: campaign, run hooks, serve the socket\n"
	       "       elect status [--socket PATH]        print the agent's status JSON\n"
	       "       elect resign [--socket PATH]        make the agent step down\n"
	       "       elect wait-leader [--timeout D]     block until the agent leads (exit 0)\n\n"
	       "options (flag > environment > config file):\n");
	options_usage(elect_options, "ELECT_");
	printf("\nDurations: 500ms, 10s, 1m. Backends: %s.\n", backend_schemes());
}

static void set_default(char **field, const char *value)
{
	if (*field == NULL && (*field = strdup(value)) == NULL)
		log_fatalx(1, "out of memory");
}

static void check_hook(const char *flag, const char *path)
{
	if (path && access(path, X_OK) < 0)
		log_fatalx(USAGE_EXIT, "--%s %s: not an executable file (give the path of an executable hook)",
		           flag, path);
}

/* Fills defaults and refuses what cannot work, before anything runs. */
static void resolve(struct elect_opts *o, bool agent)
{
	char dir[512], host[256];

	set_default(&o->name, "default");
	if (!options_valid_token(o->name, "._-", 128))
		log_fatalx(USAGE_EXIT, "--name '%s': use 1-128 letters, digits, '.', '_' or '-'", o->name);
	if (o->id == NULL) {
		if (gethostname(host, sizeof(host)) < 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		set_default(&o->id, host);
	}
	if (!options_valid_token(o->id, "._-:@", 200))
		log_fatalx(USAGE_EXIT, "--id '%s': use 1-200 letters, digits, '.', '_', '-', ':' or '@'", o->id);
	options_run_dir(dir, sizeof(dir));
	if (o->socket == NULL && asprintf(&o->socket, "%s/%s@%s.sock", dir, o->name, o->id) < 0)
		log_fatalx(1, "out of memory");
	if (strcmp(o->socket, "none") == 0 || *o->socket == '\0') {
		free(o->socket);
		o->socket = NULL;
	}
	if (!agent)
		return;
	if (o->backend == NULL && asprintf(&o->backend, "file://%s/%s.lock", dir, o->name) < 0)
		log_fatalx(1, "out of memory");
	if (o->ttl == 0)
		o->ttl = 15 * NS_PER_SEC;
	if (o->renew == 0)
		o->renew = o->ttl / 3;
	if (o->log_format && strcmp(o->log_format, "text") && strcmp(o->log_format, "json"))
		log_fatalx(USAGE_EXIT, "--log-format '%s': use text or json", o->log_format);
	check_hook("on-elected", o->on_elected);
	check_hook("on-demoted", o->on_demoted);
	check_hook("on-leader", o->on_leader);
}

static void default_durations(struct elect_opts *o)
{
	o->kill_grace = 3 * NS_PER_SEC;
	o->hook_timeout = 2 * NS_PER_SEC;
	o->timeout = -1;
}

static void free_opts(struct elect_opts *o)
{
	options_free(elect_options, o);
}

int main(int argc, char **argv)
{
	struct elect_opts o = { 0 };
	struct opt_result res;
	const char *sub = NULL;
	char err[512];
	int rc;

	log_init("elect", LOG_FMT_TEXT, 0);
	if (argc > 1 && (!strcmp(argv[1], "run") || !strcmp(argv[1], "status") ||
	                 !strcmp(argv[1], "resign") || !strcmp(argv[1], "wait-leader"))) {
		sub = argv[1];
		argv++;
		argc--;
	}
	default_durations(&o);
	if (options_load(elect_options, &o, "ELECT_", "config", argc, argv, &res, err, sizeof(err)) < 0) {
		free_opts(&o);
		log_fatalx(USAGE_EXIT, "%s", err);
	}
	if (options_answered(&res, usage, "elect", ELECT_VERSION)) {
		free_opts(&o);
		return 0;
	}
	log_init("elect", o.log_format && !strcmp(o.log_format, "json") ? LOG_FMT_JSON : LOG_FMT_TEXT,
	         o.verbose);
	if (sub && strcmp(sub, "run") != 0) {
		if (res.n_rest > 0)
			log_fatalx(USAGE_EXIT, "'elect %s' takes no command (unexpected '%s')", sub, res.rest[0]);
		resolve(&o, false);
		if (o.socket == NULL)
			log_fatalx(USAGE_EXIT, "'elect %s' needs the agent's socket: give --socket PATH", sub);
		if (!strcmp(sub, "status"))
			rc = client_status(o.socket);
		else if (!strcmp(sub, "resign"))
			rc = client_resign(o.socket);
		else
			rc = client_wait_leader(o.socket, o.timeout);
		free_opts(&o);
		return rc;
	}
	if (sub == NULL && res.n_rest == 0)
		log_fatalx(USAGE_EXIT, "no command given: use 'elect [options] -- CMD [ARGS...]', "
		           "or 'elect run' for the sidecar (see --help)");
	if (sub && res.n_rest > 0)
		log_fatalx(USAGE_EXIT, "'elect run' takes no command (unexpected '%s'); "
		           "use 'elect [options] -- CMD' to run one", res.rest[0]);
	o.command = sub ? NULL : res.rest;
	resolve(&o, true);
	/* curl (and OpenSSL) are initialised by the backends that use them. */
	rc = agent_run(&o);
	free_opts(&o);
	return rc;
}
