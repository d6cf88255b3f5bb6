/* lockctl: the client of lockd.
 *
 *   lockctl [--socket P] run NAME [-n N] [--wait D] [--kill-grace D] -- CMD...
 *   lockctl [--socket P] acquire NAME [-n N] [--wait D] [--ttl D]
 *   lockctl [--socket P] release HOLD | renew HOLD
 *   lockctl [--socket P] list [NAME] [-n N] [--json]
 *
 * `run` holds a connection-bound lock on one connection while CMD runs
 * (hooks/proc: own process group, PDEATHSIG, TERM then KILL) and long-polls
 * /v1/wait for revocation on that same connection: both requests go through
 * one libcurl easy handle in one multi handle (common/curl_ev), whose
 * connection cache reuses the connection; lockd's "conn" serial in both
 * answers proves it. Right after starting CMD, lockctl tells lockd its pid on
 * that connection (POST /v1/command): if lockctl is killed, lockd kills CMD's
 * group and keeps the lock until CMD is dead (see lockd/lockd.h), as the
 * kernel closes lockctl's socket before PDEATHSIG reaches CMD. If lockd
 * cannot watch CMD (no pidfd), lockctl goes on without. Revocation: stop
 * CMD within min(--kill-grace, the grace lockd gives), exit 75. The
 * connection drops (lockd died): SIGKILL
 * the group at once, exit 75. CMD exits: the hold ends with the connection,
 * exit with CMD's status. The other commands are plain blocking requests.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ev.h>
#include <jansson.h>

#include "common/clock.h"
#include "common/curl_ev.h"
#include "common/log.h"
#include "common/options.h"
#include "common/uclient.h"
#include "common/valgrind.h"
#include "hooks/proc.h"


#define EX_USAGE_ 2
#define EX_TEMPFAIL_ 75
#define EX_UNAVAILABLE_ 69
#define REQUEST_SLACK_MS 30000L
#define WAIT_POLL "5m"
#define WAIT_POLL_MS (5 * 60 * 1000L)

struct ctl_opts {
	char *socket, *limit_s, *config;
	int64_t wait, kill_grace, ttl;
	int verbose;
	bool json;
	unsigned limit;
};

#define OPT(flag, sh, type, field, arg, help) \
	{ flag, sh, type, offsetof(struct ctl_opts, field), arg, help }

static const struct opt_def ctl_options[] = {
	OPT("socket", 's', OPT_STRING, socket, "PATH", "lockd's socket (default RUNDIR/lockd.sock)"),
	OPT("limit", 'n', OPT_STRING, limit_s, "N", "semaphore: one of N holders (default 1: a lock)"),
	OPT("wait", 'w', OPT_DURATION, wait, "DURATION", "queue this long for the lock (default 0: try once)"),
	OPT("kill-grace", 0, OPT_DURATION, kill_grace, "DURATION",
	    "run: SIGTERM to SIGKILL of CMD on revocation (default: lockd's)"),
	OPT("ttl", 0, OPT_DURATION, ttl, "DURATION", "acquire: the hold ends unless renewed within this (default 30s)"),
	OPT("json", 0, OPT_BOOL, json, "", "list: print lockd's JSON answer instead of a table"),
	OPT("config", 'c', OPT_STRING, config, "FILE", "JSON config file"),
	OPT("verbose", 'v', OPT_COUNT, verbose, "", "more logging"),
	{ NULL, 0, 0, 0, NULL, NULL },
};

/* State of `lockctl run`. */
struct runner {
	struct ev_loop *loop;
	struct ctl_opts *o;
	const char *name;
	char **cmd;
	struct uclient uc;
	struct curl_ev *cev;
	CURL *easy;
	struct uclient_reply reply;
	bool transfer_active;
	char hold[64];
	char cmd_body[128];       /* POST /v1/command, alive during the transfer */
	uint64_t token;
	json_int_t conn;
	int64_t grace_ns;
	struct proc *child;
	ev_signal signals[4];
	int exit_status;
	bool revoked;
};

static void usage(void)
{
	printf("usage: lockctl [--socket PATH] run NAME [-n N] [--wait D] [--kill-grace D] -- CMD [ARGS...]\n"
	       "       lockctl [--socket PATH] acquire NAME [-n N] [--wait D] [--ttl D]\n"
	       "       lockctl [--socket PATH] release HOLD\n"
	       "       lockctl [--socket PATH] renew HOLD\n"
	       "       lockctl [--socket PATH] list [NAME] [-n N] [--json]\n\noptions:\n");
	options_usage(ctl_options, "LOCKCTL_");
	printf("\nrun exits with CMD's status, or 75 when the lock was not granted in time, was\n"
	       "revoked or lockd went away (CMD is stopped first).\n"
	       "list shows who holds and waits for each name on every node, as far as the\n"
	       "backend can tell; -n N is the semaphore size to assume for names this lockd\n"
	       "does not use (etcd and ZooKeeper do not store it).\n");
}

static const char *error_of(const struct uclient_reply *r)
{
	json_t *doc = r->body ? json_loads(r->body, 0, NULL) : NULL;
	static char msg[512];

	snprintf(msg, sizeof(msg), "%s", json_string_value(json_object_get(doc, "error")) ?
	         json_string_value(json_object_get(doc, "error")) : (r->body ? r->body : "no answer"));
	msg[strcspn(msg, "\n")] = '\0';
	json_decref(doc);
	return msg;
}

/* Exit status for a refused acquire: 75 for "not now", 2 for bad input. */
static int refused_status(long code)
{
	return code == 408 || code == 503 ? EX_TEMPFAIL_ : code == 400 ? EX_USAGE_ : 1;
}

static char *acquire_body(const struct ctl_opts *o, const char *name, const char *bind)
{
	json_t *b = json_pack("{s:s, s:I, s:s, s:s}", "name", name, "limit", (json_int_t)o->limit,
	                      "bind", bind, "wait", "0");
	char buf[48];
	char *text;

	if (b == NULL)
		log_fatalx(1, "out of memory");
	snprintf(buf, sizeof(buf), "%" PRId64 "ms", o->wait / NS_PER_MS);
	json_object_set_new(b, "wait", json_string(buf));
	snprintf(buf, sizeof(buf), "%" PRId64 "ms", o->ttl / NS_PER_MS);
	json_object_set_new(b, "ttl", json_string(buf));
	text = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	if (text == NULL)
		log_fatalx(1, "out of memory");
	return text;
}

/* ---- list ------------------------------------------------------------ */

/* "/v1/locks?name=NAME&limit=N" with NAME percent-encoded. */
static void list_target(const struct ctl_opts *o, const char *name, char *out, size_t len)
{
	size_t n = (size_t)snprintf(out, len, "/v1/locks?");

	for (const char *p = name; p && *p && n + 4 < len; p++)
		n += (size_t)(strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", *p)
		      ? snprintf(out + n, len - n, "%s%c", p == name ? "name=" : "", *p)
		      : snprintf(out + n, len - n, "%s%%%02X", p == name ? "name=" : "", (unsigned char)*p));
	if (o->limit_s && n < len)
		snprintf(out + n, len - n, "%slimit=%u", name ? "&" : "", o->limit);
}

struct row {
	const char *cell[6];
};

/* The answer of GET /v1/locks as a table: one row per holder or waiter. */
static int print_locks(const struct uclient_reply *r)
{
	static const char *const head[6] = { "NAME", "STATE", "TOKEN", "OWNER", "HERE", "KEY" };
	json_t *doc = r->body ? json_loads(r->body, 0, NULL) : NULL, *l, *e;
	json_t *locks = json_object_get(doc, "locks");
	struct row *rows = NULL;
	char (*tokens)[24] = NULL;
	size_t n = 0, cap = 0, i, j;
	int width[6] = { 0 }, status = 0;

	if (!json_is_array(locks)) {
		fprintf(stderr, "lockctl: lockd answered something that is not a listing: %.200s\n",
		        r->body ? r->body : "(empty)");
		json_decref(doc);
		return 1;
	}
	json_array_foreach(locks, i, l)
		for (int w = 0; w < 2; w++)
			cap += json_array_size(json_object_get(l, w ? "waiting" : "holders"));
	rows = calloc(cap + 1, sizeof(*rows));
	tokens = calloc(cap + 1, sizeof(*tokens));
	if (rows == NULL || tokens == NULL)
		log_fatalx(1, "out of memory");
	rows[n++] = (struct row){ { head[0], head[1], head[2], head[3], head[4], head[5] } };
	json_array_foreach(locks, i, l) {
		const char *name = json_string_value(json_object_get(l, "name"));
		for (int w = 0; w < 2; w++) {
			json_array_foreach(json_object_get(l, w ? "waiting" : "holders"), j, e) {
				const char *owner = json_string_value(json_object_get(e, "owner"));
				const char *key = json_string_value(json_object_get(e, "key"));
				json_t *tok = json_object_get(e, "token");
				snprintf(tokens[n], sizeof(tokens[n]), "%" JSON_INTEGER_FORMAT,
				         json_integer_value(tok));
				rows[n] = (struct row){ { name ? name : "?", w ? "waiting" : "held",
					tok ? tokens[n] : "-", owner && owner[0] ? owner : "-",
					json_is_true(json_object_get(e, "here")) ? "yes" : "no", key ? key : "-" } };
				n++;
			}
		}
	}
	for (i = 0; i < n; i++)
		for (int c = 0; c < 6; c++)
			if ((int)strlen(rows[i].cell[c]) > width[c])
				width[c] = (int)strlen(rows[i].cell[c]);
	for (i = 0; n > 1 && i < n; i++)
		printf("%-*s  %-*s  %*s  %-*s  %-*s  %s\n", width[0], rows[i].cell[0], width[1],
		       rows[i].cell[1], width[2], rows[i].cell[2], width[3], rows[i].cell[3], width[4],
		       rows[i].cell[4], rows[i].cell[5]);
	if (json_is_true(json_object_get(doc, "truncated")))
		fprintf(stderr, "lockctl: the backend had more entries than one listing shows\n");
	if (json_string_value(json_object_get(doc, "backend_error"))) {
		fprintf(stderr, "lockctl: only this lockd's own holds are shown: %s\n",
		        json_string_value(json_object_get(doc, "backend_error")));
		status = 1;
	}
	free(rows);
	free(tokens);
	json_decref(doc);
	return status;
}

/* ---- simple commands ------------------------------------------------- */

static int simple(struct ctl_opts *o, const char *sub, const char *arg)
{
	struct uclient uc = { .prog = "lockctl", .peer = "lockd", .socket_path = o->socket };
	struct uclient_reply r;
	char *body = NULL, target[512] = "/v1/locks";
	const char *method = "POST";
	long timeout = REQUEST_SLACK_MS;
	int status;

	if (!strcmp(sub, "acquire")) {
		body = acquire_body(o, arg, "ttl");
		snprintf(target, sizeof(target), "/v1/acquire");
		timeout += o->wait / NS_PER_MS;
	} else if (!strcmp(sub, "list")) {
		method = "GET";
		list_target(o, arg, target, sizeof(target));
	} else {
		json_t *b = json_pack("{s:s}", "hold", arg);
		body = b ? json_dumps(b, JSON_COMPACT) : NULL;
		json_decref(b);
		snprintf(target, sizeof(target), "/v1/%s", sub);
	}
	if (uclient_request(&uc, method, target, body, timeout, &r) < 0) {
		free(body);
		return EX_UNAVAILABLE_;
	}
	free(body);
	if (r.code == 200 && !strcmp(sub, "list") && !o->json) {
		status = print_locks(&r);
	} else if (r.code == 200) {
		if (strcmp(sub, "release") != 0)
			uclient_print_body(stdout, &r);
		status = 0;
	} else {
		fprintf(stderr, "lockctl: %s\n", r.code == 404 ? "no such hold (released, expired "
		        "or never known to this lockd)" : error_of(&r));
		status = !strcmp(sub, "acquire") || r.code == 400 ? refused_status(r.code) : 1;
	}
	uclient_reply_free(&r);
	return status;
}

/* ---- run ------------------------------------------------------------- */

static void run_finish(struct runner *rn, int status)
{
	rn->exit_status = status;
	ev_break(rn->loop, EVBREAK_ALL);
}

static void start_wait(struct runner *rn);

static void on_child_exit(struct proc *p, int status, void *data)
{
	struct runner *rn = data;

	(void)p;
	rn->child = NULL;
	if (rn->revoked) {
		run_finish(rn, EX_TEMPFAIL_);
		return;
	}
	/* Closing the connection ends the connection-bound hold at once. */
	run_finish(rn, proc_exit_code(status));
}

/* Stop CMD; `lost`: lockd is gone, so no grace at all. */
static void stop_for(struct runner *rn, const char *why, bool lost)
{
	if (rn->revoked)
		return;
	rn->revoked = true;
	fprintf(stderr, "lockctl: lock %s %s; stopping the command\n", rn->name, why);
	if (rn->child == NULL) {
		run_finish(rn, EX_TEMPFAIL_);
		return;
	}
	if (lost)
		proc_stop(rn->child, SIGKILL, 0);
	else
		proc_stop(rn->child, SIGTERM, rn->grace_ns);
}

static void wait_done(CURL *easy, CURLcode rc, void *arg)
{
	struct runner *rn = arg;
	json_t *doc;
	const char *state;
	char why[300];

	rn->transfer_active = false;
	if (uclient_finish(&rn->uc, easy, rc, &rn->reply) < 0) {
		stop_for(rn, "lost: the connection to lockd dropped", true);
		return;
	}
	doc = rn->reply.body ? json_loads(rn->reply.body, 0, NULL) : NULL;
	state = json_string_value(json_object_get(doc, "state"));
	if (rn->reply.code == 200 && state && strcmp(state, "held") == 0 &&
	    json_integer_value(json_object_get(doc, "conn")) == rn->conn) {
		start_wait(rn);
	} else if (rn->reply.code == 200 && state && strcmp(state, "revoked") == 0) {
		snprintf(why, sizeof(why), "revoked: %s",
		         json_string_value(json_object_get(doc, "reason")) ?: "no reason given");
		stop_for(rn, why, false);
	} else if (rn->reply.code == 200 && state && strcmp(state, "held") == 0) {
		stop_for(rn, "lost: lockd answered on another connection than the hold's", true);
	} else {
		snprintf(why, sizeof(why), "lost: HTTP %ld %s", rn->reply.code, error_of(&rn->reply));
		stop_for(rn, why, true);
	}
	json_decref(doc);
	uclient_reply_free(&rn->reply);
}

static void start_wait(struct runner *rn)
{
	char target[160];

	snprintf(target, sizeof(target), "/v1/wait?hold=%s&wait=%s", rn->hold, WAIT_POLL);
	uclient_setup(&rn->uc, rn->easy, "GET", target, NULL, WAIT_POLL_MS + REQUEST_SLACK_MS,
	              &rn->reply);
	if (curl_ev_add(rn->cev, rn->easy, wait_done, rn) < 0)
		stop_for(rn, "lost: cannot wait for revocation", true);
	else
		rn->transfer_active = true;
}

static void command_done(CURL *easy, CURLcode rc, void *arg)
{
	struct runner *rn = arg;

	rn->transfer_active = false;
	if (uclient_finish(&rn->uc, easy, rc, &rn->reply) < 0) {
		stop_for(rn, "lost: the connection to lockd dropped", true);
		return;
	}
	/* Not fatal: the command runs as before, only a kill -9 of lockctl may
	 * then free the lock a moment before the command is dead. */
	if (rn->reply.code != 200)
		log_msg(rn->reply.code == 501 || rn->reply.code == 404 ? LOG_LVL_DEBUG : LOG_LVL_WARN,
		        "lockd does not watch the command: HTTP %ld %s", rn->reply.code,
		        error_of(&rn->reply));
	uclient_reply_free(&rn->reply);
	start_wait(rn);
}

/* Tells lockd the command's pid on the hold's connection, then waits. */
static void register_command(struct runner *rn)
{
	snprintf(rn->cmd_body, sizeof(rn->cmd_body), "{\"hold\":\"%s\",\"pid\":%d,\"guard\":true}", rn->hold,
	         (int)proc_pid(rn->child));
	uclient_setup(&rn->uc, rn->easy, "POST", "/v1/command", rn->cmd_body, REQUEST_SLACK_MS,
	              &rn->reply);
	if (curl_ev_add(rn->cev, rn->easy, command_done, rn) < 0)
		stop_for(rn, "lost: cannot talk to lockd", true);
	else
		rn->transfer_active = true;
}

/* A copy of lockd's lock descriptor (file backend), or -1. */
static int copy_lock_fd(json_t *doc)
{
	json_t *fd = json_object_get(doc, "fd"), *pid = json_object_get(doc, "pid");
	int pidfd, copy;

	if (!json_is_integer(fd) || !json_is_integer(pid) || RUNNING_ON_VALGRIND)
		return -1;
	pidfd = (int)syscall(SYS_pidfd_open, (pid_t)json_integer_value(pid), 0);
	if (pidfd < 0)
		return -1;
	copy = (int)syscall(SYS_pidfd_getfd, pidfd, (int)json_integer_value(fd), 0);
	if (copy < 0)
		log_debug("cannot copy lockd's lock descriptor: %s", strerror(errno));
	close(pidfd);
	return copy;
}

static void start_child(struct runner *rn, json_t *doc)
{
	char tok[48], name[160], limit[40], err[512];
	char *env[] = { tok, name, limit, NULL };
	int fd = copy_lock_fd(doc);
	struct proc_spec spec = { .argv = rn->cmd, .env = env, .inherit_fd = fd > 2 ? fd : 0,
	                          .guard = true };

	snprintf(tok, sizeof(tok), "LOCK_TOKEN=%" PRIu64, rn->token);
	snprintf(name, sizeof(name), "LOCK_NAME=%s", rn->name);
	snprintf(limit, sizeof(limit), "LOCK_LIMIT=%u", rn->o->limit);
	errno = 0;
	rn->child = proc_spawn(rn->loop, &spec, on_child_exit, rn, err, sizeof(err));
	if (fd >= 0)
		close(fd);               /* the child has its own copy */
	if (rn->child == NULL) {
		fprintf(stderr, "lockctl: %s\n", err);
		run_finish(rn, errno == ENOENT || strstr(err, strerror(ENOENT)) ? 127 : 126);
		return;
	}
	register_command(rn);
}

static void acquire_done(CURL *easy, CURLcode rc, void *arg)
{
	struct runner *rn = arg;
	json_t *doc;
	json_int_t grace_ms;

	rn->transfer_active = false;
	if (uclient_finish(&rn->uc, easy, rc, &rn->reply) < 0) {
		run_finish(rn, EX_UNAVAILABLE_);
		return;
	}
	if (rn->reply.code != 200) {
		fprintf(stderr, "lockctl: %s\n", error_of(&rn->reply));
		run_finish(rn, refused_status(rn->reply.code));
		uclient_reply_free(&rn->reply);
		return;
	}
	doc = json_loads(rn->reply.body, 0, NULL);
	snprintf(rn->hold, sizeof(rn->hold), "%s", json_string_value(json_object_get(doc, "hold")) ?: "");
	rn->token = (uint64_t)json_integer_value(json_object_get(doc, "token"));
	rn->conn = json_integer_value(json_object_get(doc, "conn"));
	grace_ms = json_integer_value(json_object_get(doc, "revoke_grace_ms"));
	if (grace_ms * NS_PER_MS < rn->grace_ns)
		rn->grace_ns = grace_ms * NS_PER_MS;
	uclient_reply_free(&rn->reply);
	if (rn->hold[0] == '\0' || strspn(rn->hold, "0123456789abcdef") != strlen(rn->hold)) {
		fprintf(stderr, "lockctl: lockd sent no usable hold id\n");
		run_finish(rn, 1);
	} else {
		start_child(rn, doc);
	}
	json_decref(doc);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct runner *rn = w->data;

	(void)loop;
	(void)revents;
	if (rn->child)
		proc_signal(rn->child, w->signum);
	else
		run_finish(rn, 128 + w->signum);
}

static int run(struct ctl_opts *o, const char *name, char **cmd)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT };
	struct runner rn = { .o = o, .name = name, .cmd = cmd, .exit_status = 1,
	                     .uc = { .prog = "lockctl", .peer = "lockd", .socket_path = o->socket } };
	char *body = acquire_body(o, name, "connection");

	rn.grace_ns = o->kill_grace > 0 ? o->kill_grace : INT64_MAX;
	rn.loop = ev_default_loop(EVFLAG_AUTO);
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < 4; i++) {
		ev_signal_init(&rn.signals[i], on_signal, sigs[i]);
		rn.signals[i].data = &rn;
		ev_signal_start(rn.loop, &rn.signals[i]);
	}
	rn.cev = curl_ev_new(rn.loop);
	rn.easy = curl_easy_init();
	if (rn.cev == NULL || rn.easy == NULL)
		log_fatalx(1, "cannot start libcurl");
	uclient_setup(&rn.uc, rn.easy, "POST", "/v1/acquire", body,
	              o->wait / NS_PER_MS + REQUEST_SLACK_MS, &rn.reply);
	if (curl_ev_add(rn.cev, rn.easy, acquire_done, &rn) < 0)
		log_fatalx(1, "cannot start the request");
	rn.transfer_active = true;
	ev_run(rn.loop, 0);
	if (rn.child)
		proc_abandon(rn.child);
	if (rn.transfer_active)
		curl_ev_remove(rn.cev, rn.easy);
	curl_easy_cleanup(rn.easy);
	curl_ev_free(rn.cev);
	uclient_reply_free(&rn.reply);
	for (int i = 0; i < 4; i++)
		ev_signal_stop(rn.loop, &rn.signals[i]);
	free(body);
	return rn.exit_status;
}

/* ---- command line ---------------------------------------------------- */

/* Does this argument (an option) take the next argument as its value? */
static bool takes_value(const char *arg)
{
	for (size_t i = 0; ctl_options[i].flag; i++) {
		const struct opt_def *d = &ctl_options[i];
		bool valued = d->type == OPT_STRING || d->type == OPT_DURATION;

		if (arg[1] != '-' && arg[1] == d->short_flag && arg[2] == '\0')
			return valued;
		if (arg[1] == '-' && strcmp(arg + 2, d->flag) == 0)
			return valued;
	}
	return false;
}

int main(int argc, char **argv)
{
	struct ctl_opts o = { 0 };
	struct opt_result res;
	char **args = calloc((size_t)argc + 1, sizeof(char *));
	char err[512], dir[512], *end;
	const char *sub = NULL, *arg = NULL;
	int n = 0, i, rc;

	log_init("lockctl", LOG_FMT_TEXT, 0);
	if (args == NULL)
		log_fatalx(1, "out of memory");
	/* Options may come before and after "SUB [ARG]": take those two out. */
	args[n++] = argv[0];
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			while (i < argc)
				args[n++] = argv[i++];
			break;
		}
		if (argv[i][0] == '-' && argv[i][1] != '\0') {
			args[n++] = argv[i];
			if (!strchr(argv[i], '=') && takes_value(argv[i]) && i + 1 < argc)
				args[n++] = argv[++i];
		} else if (sub == NULL) {
			sub = argv[i];
		} else if (arg == NULL) {
			arg = argv[i];
		} else {
			args[n++] = argv[i];
		}
	}
	o.ttl = 30 * NS_PER_SEC;
	if (options_load(ctl_options, &o, "LOCKCTL_", "config", n, args, &res, err, sizeof(err)) < 0)
		log_fatalx(EX_USAGE_, "%s", err);
	if (res.help || sub == NULL) {
		usage();
		return res.help ? 0 : EX_USAGE_;
	}
	log_init("lockctl", LOG_FMT_TEXT, o.verbose);
	if (o.socket == NULL && asprintf(&o.socket, "%s/lockd.sock", options_run_dir(dir, sizeof(dir))) < 0)
		log_fatalx(1, "out of memory");
	o.limit = 1;
	if (o.limit_s) {
		long l = strtol(o.limit_s, &end, 10);
		if (*o.limit_s == '\0' || *end != '\0' || l < 1 || l > 1000)
			log_fatalx(EX_USAGE_, "-n '%s': want a whole number from 1 to 1000", o.limit_s);
		o.limit = (unsigned)l;
	}
	if (!strcmp(sub, "run")) {
		if (arg == NULL || res.n_rest == 0)
			log_fatalx(EX_USAGE_, "usage: lockctl run NAME [-n N] [--wait D] -- CMD [ARGS...]");
		rc = run(&o, arg, res.rest);
	} else if (!strcmp(sub, "acquire") || !strcmp(sub, "release") || !strcmp(sub, "renew") ||
	           !strcmp(sub, "list")) {
		if ((arg == NULL && strcmp(sub, "list") != 0) || res.n_rest > 0)
			log_fatalx(EX_USAGE_, "usage: lockctl %s%s", sub, !strcmp(sub, "list") ? " [NAME] [-n N] [--json]" :
			     !strcmp(sub, "acquire") ? " NAME [-n N] [--wait D] [--ttl D]" : " HOLD");
		curl_global_init(CURL_GLOBAL_DEFAULT);
		rc = simple(&o, sub, arg);
		curl_global_cleanup();
	} else {
		log_fatalx(EX_USAGE_, "unknown command '%s': use run, acquire, release, renew or list", sub);
	}
	options_free(ctl_options, &o);
	free(args);
	return rc;
}
