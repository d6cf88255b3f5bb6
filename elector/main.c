/* elect: leader election for a command, a sidecar, or scripts.
 *
 *   elect [options] -- CMD [ARGS...]      run CMD only while this node leads
 *   elect run [options]                   sidecar: campaign, hooks, socket
 *   elect status|resign|wait-leader       talk to a running agent
 *
 * main() goes in a fixed order: log init, options, check, run. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


#include "backends/backend.h"
#include "common/clock.h"
#include "common/httpd.h"
#include "common/log.h"
#include "common/options.h"
#include "common/which.h"
#include "elector/agent.h"
#include "elector/api.h"
#include "elector/health.h"

#define ELECT_VERSION "0.1.0"
#define USAGE_EXIT 2

#define OPT(flag, sh, type, field, arg, help) \
	{ flag, sh, type, offsetof(struct elect_opts, field), arg, help }

static const struct opt_def elect_options[] = {
	OPT("name", 'n', OPT_STRING, name, "NAME", "election name (default: default)"),
	OPT("id", 0, OPT_STRING, id, "ID", "this candidate's id (default: hostname)"),
	OPT("backend", 'b', OPT_STRING, backend, "URL", "file:///PATH, etcd://HOSTS/PREFIX, zk://HOSTS/PATH"),
	OPT("ttl", 0, OPT_DURATION_POSITIVE, ttl, "DURATION", "session TTL (default 15s)"),
	OPT("renew", 0, OPT_DURATION_POSITIVE, renew, "DURATION", "renew interval (default TTL/3, zk: TTL/6)"),
	OPT("kill-grace", 0, OPT_DURATION, kill_grace, "DURATION", "SIGTERM to SIGKILL of the command (default 3s)"),
	OPT("socket", 's', OPT_STRING, socket, "PATH", "API socket (default RUNDIR/NAME@ID.sock; none: off)"),
	OPT("socket-mode", 0, OPT_STRING, socket_mode, "MODE", "socket permissions, octal (default 0660)"),
	OPT("socket-group", 0, OPT_STRING, socket_group, "GROUP", "group of the socket (default: elect's)"),
	OPT("http", 0, OPT_STRING, http, "HOST:PORT", "also serve the API on TCP, read-only (:PORT = 127.0.0.1)"),
	OPT("http-allow-write", 0, OPT_BOOL, http_allow_write, "", "allow POST /v1/resign over TCP (unauthenticated!)"),
	OPT("on-elected", 0, OPT_STRING, on_elected, "PATH", "hook run when elected"),
	OPT("on-demoted", 0, OPT_STRING, on_demoted, "PATH", "hook run after leadership ends"),
	OPT("on-leader", 0, OPT_STRING, on_leader, "PATH", "hook run when the observed leader changes"),
	OPT("hook-timeout", 0, OPT_DURATION_POSITIVE, hook_timeout, "DURATION", "time limit of one hook (default 2s)"),
	OPT("config", 'c', OPT_STRING, config, "FILE", "JSON config file (flag > env > file)"),
	OPT("log-format", 0, OPT_STRING, log_format, "text|json", "log format (default text)"),
	OPT("verbose", 'v', OPT_COUNT, verbose, "", "more logging (debug)"),
	OPT("once", 0, OPT_BOOL, once, "", "run the command at most once, then exit"),
	OPT("campaign-timeout", 0, OPT_DURATION, campaign_timeout, "DURATION",
	    "wrapper mode: exit 75 if not leading within this (default: no limit)"),
	OPT("health-cmd", 0, OPT_STRING, health_cmd, "CMD", "health check: /bin/sh -c CMD, exit 0 = healthy"),
	OPT("health-url", 0, OPT_STRING, health_url, "URL", "health check: http://... or unix:SOCKET:/PATH, 2xx = healthy"),
	OPT("health-interval", 0, OPT_DURATION_POSITIVE, health_interval, "DURATION", "time between checks (default 10s)"),
	OPT("health-timeout", 0, OPT_DURATION_POSITIVE, health_timeout, "DURATION", "a check is killed and fails after this (default 5s)"),
	OPT("health-fails", 0, OPT_NUMBER, health_fails, "N", "failures in a row that make it unhealthy (default 3)"),
	OPT("health-passes", 0, OPT_NUMBER, health_passes, "N", "passes in a row that make it healthy again (default 2)"),
	OPT("health-grace", 0, OPT_DURATION, health_grace, "DURATION", "a new leader's failures do not count for this long (default 0s)"),
	OPT("health-scope", 0, OPT_STRING, health_scope, "always|leader", "leader: checks run only while leading (for checks of the leader command; default always)"),
	OPT("check-config", 0, OPT_BOOL, check_config, "", "validate the configuration and exit"),
	OPTS_BACKEND_ACCESS(OPT),
	OPT("timeout", 't', OPT_DURATION, timeout, "DURATION", "wait-leader: give up after this; watch: stop after this"),
	OPT("to", 0, OPT_STRING, to, "ID", "resign: hand leadership to this candidate"),
	OPT("handover-timeout", 0, OPT_DURATION_POSITIVE, handover_timeout, "DURATION",
	    "resign --to: the others stand aside this long for ID (default 10s)"),
	{ NULL, 0, 0, 0, NULL, NULL },
};

static void usage(void)
{
	printf("usage: elect [options] -- CMD [ARGS...]   run CMD only while this node leads\n"
	       "       elect run [options]                 sidecar: campaign, run hooks, serve the socket\n"
	       "       elect status [--socket PATH]        print the agent's status JSON\n"
	       "       elect resign [--socket PATH]        make the agent step down\n"
	       "       elect resign --to ID                hand leadership to candidate ID\n"
	       "       elect wait-leader [--timeout D]     block until the agent leads (exit 0)\n"
	       "       elect watch [--timeout D]           print each leader change as a JSON line\n\n"
	       "options (flag > environment > config file):\n");
	options_usage(elect_options, "ELECT_");
	printf("\nDurations: 500ms, 10s, 1m. Backends: %s.\n", backend_schemes());
}

static void set_default(char **field, const char *value)
{
	if (*field == NULL && (*field = strdup(value)) == NULL)
		log_fatalx(1, "out of memory");
}

static const char *const subcommands[] = { "run", "status", "resign", "wait-leader", "watch", NULL };

static bool is_subcommand(const char *word)
{
	for (size_t i = 0; subcommands[i]; i++)
		if (strcmp(word, subcommands[i]) == 0)
			return true;
	return false;
}

/* Hooks are started as the leader command is (execvp), so they are looked up
 * the same way. */
static void check_hook(const char *flag, const char *path)
{
	if (path && which_command(path, NULL, 0) != 0)
		log_fatalx(USAGE_EXIT, "--%s %s: not an executable file (give the path of an executable hook)",
		           flag, path);
}

/* The socket and TCP address, as listen would take them (also for
 * --check-config). */
static void check_listen(struct elect_opts *o, bool agent)
{
	char err[512];
	mode_t mode = 0660;
	gid_t gid;

	o->socket_gid = -1;
	if (o->socket && httpd_unix_path_check(o->socket, err, sizeof(err)) < 0)
		log_fatalx(USAGE_EXIT, "--socket: %s", err);
	if (!agent)
		return;
	if (o->http && httpd_tcp_addr_check(o->http, err, sizeof(err)) < 0)
		log_fatalx(USAGE_EXIT, "--http: %s", err);
	if (o->socket_mode && httpd_parse_socket_mode(o->socket_mode, &mode, err, sizeof(err)) < 0)
		log_fatalx(USAGE_EXIT, "--socket-mode: %s", err);
	o->socket_mode_bits = mode;
	if (o->socket_group && httpd_parse_socket_group(o->socket_group, &gid, err, sizeof(err)) < 0)
		log_fatalx(USAGE_EXIT, "--socket-group: %s", err);
	if (o->socket_group)
		o->socket_gid = (long)gid;
}

/* A wrapper whose command cannot be executed must not campaign, let alone
 * lead: refuse it at once, with the shell's codes (127 not found, 126 not
 * executable), as the run would end anyway. */
static void check_command(char *const *command)
{
	const char *cmd = command[0];

	switch (which_command(cmd, NULL, 0)) {
	case 0:
		return;
	case EACCES:
		log_fatalx(126, "%s: not executable (a directory, or no execute permission): "
		           "give the command to run after '--'", cmd);
	default:
		if (strchr(cmd, '/'))
			log_fatalx(127, "%s: no such file: give the command to run after '--'", cmd);
		log_fatalx(127, "%s: command not found in PATH: give the command to run after '--'", cmd);
	}
}

/* The file backend's lock is a file: a directory there can never be locked
 * (the backend would retry for ever). The URL's own errors are the backend's
 * to report. */
static void check_file_backend(const char *url)
{
	const char *path;
	struct stat st;

	if (strncmp(url, "file://", 7) != 0)
		return;
	path = url + 7;
	if (strncmp(path, "localhost/", 10) == 0)
		path += 9;
	if (*path == '/' && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		log_fatalx(USAGE_EXIT, "--backend %s: %s is a directory; name the lock file, "
		           "e.g. file://%s%sNAME.lock", url, path, path,
		           path[strlen(path) - 1] == '/' ? "" : "/");
}

/* Health check settings: defaults, the URL's form, settings without a check. */
static void check_health(struct elect_opts *o)
{
	struct health_config hc;
	struct health_url url;
	char err[512];
	bool tuned = o->health_interval || o->health_timeout || o->health_grace ||
	             o->health_fails || o->health_passes || o->health_scope;

	if (o->health_cmd == NULL && o->health_url == NULL && !tuned)
		return;
	if (o->health_interval == 0)
		o->health_interval = 10 * NS_PER_SEC;
	if (o->health_timeout == 0)
		o->health_timeout = 5 * NS_PER_SEC;
	if (o->health_fails == 0)
		o->health_fails = 3;
	if (o->health_passes == 0)
		o->health_passes = 2;
	hc = (struct health_config){ .cmd = o->health_cmd, .url = o->health_url,
	                             .interval_ns = o->health_interval, .timeout_ns = o->health_timeout,
	                             .grace_ns = o->health_grace, .fails = o->health_fails,
	                             .passes = o->health_passes };
	if (o->health_scope && strcmp(o->health_scope, "always") != 0 && strcmp(o->health_scope, "leader") != 0)
		log_fatalx(USAGE_EXIT, "--health-scope '%s': use 'always' (checks run on every candidate) or "
		           "'leader' (only while leading, for checks of the leader command)", o->health_scope);
	hc.leader_only = o->health_scope && strcmp(o->health_scope, "leader") == 0;
	if (health_check_config(&hc, err, sizeof(err)) < 0)
		log_fatalx(USAGE_EXIT, "%s", err);
	if (o->health_url) {
		if (health_parse_url(o->health_url, &url, err, sizeof(err)) < 0)
			log_fatalx(USAGE_EXIT, "%s", err);
		health_url_free(&url);
	}
}

/* Fills defaults and refuses what cannot work, before anything runs. */
static void resolve(struct elect_opts *o, bool agent)
{
	char dir[512], host[256], err[512];

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
	check_listen(o, agent);
	if (!agent)
		return;
	if (o->backend == NULL &&
	    asprintf(&o->backend, "file://%s/%s.lock", options_state_dir(dir, sizeof(dir)), o->name) < 0)
		log_fatalx(1, "out of memory");
	/* 0 is "not given": an explicit 0 was refused while reading. */
	if (o->ttl == 0)
		o->ttl = 15 * NS_PER_SEC;
	if (o->renew == 0) {
		const struct backend_ops *be = backend_lookup(o->backend);

		/* A backend whose renewals prove an older request (ZooKeeper's
		 * lag) renews twice as often, so that one late renewal does not
		 * end a hold. */
		o->renew = o->ttl / (be != NULL && be->alive_lag != NULL ? 6 : 3);
	}
	if (o->log_format && strcmp(o->log_format, "text") && strcmp(o->log_format, "json"))
		log_fatalx(USAGE_EXIT, "--log-format '%s': use text or json", o->log_format);
	if (options_check_backend_access(o->backend, o->tls_ca, o->tls_cert, o->tls_key, o->auth,
	                                 err, sizeof(err)) < 0)
		log_fatalx(USAGE_EXIT, "%s", err);
	check_file_backend(o->backend);
	if (o->command)
		check_command(o->command);
	check_hook("on-elected", o->on_elected);
	check_hook("on-demoted", o->on_demoted);
	check_hook("on-leader", o->on_leader);
	check_health(o);
}

static void default_durations(struct elect_opts *o)
{
	o->kill_grace = 3 * NS_PER_SEC;
	o->hook_timeout = 2 * NS_PER_SEC;
	o->timeout = -1;
	o->handover_timeout = 10 * NS_PER_SEC;
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

	/* JSON logs, when asked for, from the first error on. */
	log_init("elect", options_wants_json_log(argc, argv, "ELECT_LOG_FORMAT") ? LOG_FMT_JSON
	                                                                            : LOG_FMT_TEXT, 0);
	if (argc > 1 && is_subcommand(argv[1])) {
		sub = argv[1];
		argv++;
		argc--;
	}
	default_durations(&o);
	rc = options_load(elect_options, &o, "ELECT_", "config", argc, argv, &res, err, sizeof(err));
	if (rc == 0)
		options_backend_env_auth(o.backend, &o.auth);
	/* The credentials were copied: children must not inherit them. */
	options_scrub_secrets();
	if (rc < 0) {
		free_opts(&o);
		log_fatalx(USAGE_EXIT, "%s", err);
	}
	if (options_answered(&res, usage, "elect", ELECT_VERSION)) {
		free_opts(&o);
		return 0;
	}
	log_init("elect", o.log_format && !strcmp(o.log_format, "json") ? LOG_FMT_JSON : LOG_FMT_TEXT,
	         o.verbose);
	/* A word that is not a subcommand is a typo unless "--" says it is the
	 * command: "elect statu" must not campaign and then run "statu". */
	if (sub == NULL && res.n_rest > 0 && !res.dashdash) {
		if (is_subcommand(res.rest[0]))
			log_fatalx(USAGE_EXIT, "'%s' must come first: elect %s [options]", res.rest[0],
			           res.rest[0]);
		log_fatalx(USAGE_EXIT, "unknown command '%s': use run, status, resign, wait-leader or watch, "
		           "or give a command to run after '--' (elect [options] -- CMD [ARGS...])",
		           res.rest[0]);
	}
	if (o.to && (sub == NULL || strcmp(sub, "resign") != 0))
		log_fatalx(USAGE_EXIT, "--to names the candidate to hand over to: use it with 'elect resign --to ID'");
	if (o.to && !options_valid_token(o.to, "._-:@", 200))
		log_fatalx(USAGE_EXIT, "--to '%s': a candidate id is 1-200 letters, digits, '.', '_', '-', ':' or '@'",
		           o.to);
	if (sub && strcmp(sub, "run") != 0) {
		if (res.n_rest > 0)
			log_fatalx(USAGE_EXIT, "'elect %s' takes no command (unexpected '%s')", sub, res.rest[0]);
		resolve(&o, false);
		if (o.socket == NULL)
			log_fatalx(USAGE_EXIT, "'elect %s' needs the agent's socket: give --socket PATH", sub);
		if (!strcmp(sub, "status"))
			rc = client_status(o.socket);
		else if (!strcmp(sub, "resign") && o.to)
			rc = client_resign_to(o.socket, o.to, o.handover_timeout);
		else if (!strcmp(sub, "resign"))
			rc = client_resign(o.socket);
		else if (!strcmp(sub, "watch"))
			rc = client_watch(o.socket, o.timeout);
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
