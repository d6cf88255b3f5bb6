/* Hook scripts: a FIFO queue, one run at a time, each with a timeout.
 * See hooks.h for the contract. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <ev.h>

#include "common/clock.h"
#include "common/log.h"
#include "hooks/hooks.h"
#include "hooks/proc.h"

static const char *const event_names[HOOK_N] = {
	[HOOK_ELECTED] = "elected",
	[HOOK_DEMOTED] = "demoted",
	[HOOK_LEADER] = "leader",
};

enum { VAR_NAME, VAR_ID, VAR_LEADER, VAR_BACKEND, VAR_REASON, VAR_N };

struct hook_job {
	struct hook_job *next;
	enum hook_event ev;
	char *vars[VAR_N];      /* never NULL: "" stands for a missing value */
	uint64_t token;
};

struct hook_runner {
	struct ev_loop *loop;
	char *paths[HOOK_N];
	int64_t timeout_ns;
	hook_done_cb cb;
	void *data;
	struct hook_job *head, *tail;   /* queued, not started */
	struct proc *running;
	enum hook_event running_ev;
	int timed_out;
	int spawn_failed;               /* a failure waits for report_w */
	enum hook_event failed_ev;
	int in_cb;                      /* inside the done callback */
	int freed;                      /* hooks_free() called from the callback */
	ev_timer timeout_w;
	ev_timer report_w;              /* 0 s: reports a spawn failure from the loop */
	uint64_t runs[HOOK_N], failures[HOOK_N];
};

static void start_next(struct hook_runner *r);

const char *hooks_event_name(enum hook_event ev)
{
	return (unsigned)ev < HOOK_N ? event_names[ev] : "unknown";
}

int hooks_configured(const struct hook_runner *r, enum hook_event ev)
{
	return (unsigned)ev < HOOK_N && r->paths[ev] != NULL;
}

int hooks_idle(const struct hook_runner *r)
{
	return r->running == NULL && r->head == NULL && !r->spawn_failed;
}

uint64_t hooks_runs(const struct hook_runner *r, enum hook_event ev)
{
	return (unsigned)ev < HOOK_N ? r->runs[ev] : 0;
}

uint64_t hooks_failures(const struct hook_runner *r, enum hook_event ev)
{
	return (unsigned)ev < HOOK_N ? r->failures[ev] : 0;
}

static void free_job(struct hook_job *job)
{
	for (int i = 0; i < VAR_N; i++)
		free(job->vars[i]);
	free(job);
}

static void free_runner(struct hook_runner *r)
{
	struct hook_job *job, *next;

	for (job = r->head; job != NULL; job = next) {
		next = job->next;
		free_job(job);
	}
	for (int i = 0; i < HOOK_N; i++)
		free(r->paths[i]);
	free(r);
}

/* Runs the user's callback; afterwards the runner may have been freed, which
 * the return value says (1 = gone, do not touch r). */
static int report(struct hook_runner *r, enum hook_event ev, int ok)
{
	r->in_cb++;
	r->cb(ev, ok, r->data);
	r->in_cb--;
	if (r->freed && r->in_cb == 0) {
		free_runner(r);
		return 1;
	}
	return r->freed;
}

static void describe_failure(char *buf, size_t len, int status, int timed_out)
{
	if (timed_out)
		snprintf(buf, len, "timed out (exit %d)", proc_exit_code(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
	else
		snprintf(buf, len, "exit %d", proc_exit_code(status));
}

static void hook_exit_cb(struct proc *p, int status, void *data)
{
	struct hook_runner *r = data;
	enum hook_event ev = r->running_ev;
	int ok = !r->timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0;

	(void)p;
	ev_timer_stop(r->loop, &r->timeout_w);
	r->running = NULL;
	r->runs[ev]++;
	if (ok) {
		log_info("hook %s finished", event_names[ev]);
	} else {
		char why[64];
		describe_failure(why, sizeof(why), status, r->timed_out);
		r->failures[ev]++;
		log_warnx("hook %s failed: %s", event_names[ev], why);
	}
	if (report(r, ev, ok))
		return;
	start_next(r);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hook_runner *r = w->data;

	(void)loop;
	(void)revents;
	if (r->running == NULL)
		return;
	r->timed_out = 1;
	log_warnx("hook %s timed out after %.3f s, stopping it",
	          event_names[r->running_ev], clock_ns_to_ev(r->timeout_ns));
	proc_stop(r->running, SIGTERM, HOOK_KILL_GRACE_NS);
}

static void report_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct hook_runner *r = w->data;

	(void)loop;
	(void)revents;
	r->spawn_failed = 0;
	if (report(r, r->failed_ev, 0))
		return;
	start_next(r);
}

/* The environment entries of a job, as "KEY=VALUE" strings. */
#define HOOK_ENV_N 7

static char *env_entry(const char *key, const char *value)
{
	size_t len = strlen(key) + strlen(value) + 2;
	char *entry = malloc(len);

	if (entry != NULL)
		snprintf(entry, len, "%s=%s", key, value);
	return entry;
}

static int build_env(char *env[HOOK_ENV_N + 1], const struct hook_job *job)
{
	char token[24];

	snprintf(token, sizeof(token), "%" PRIu64, job->token);
	env[0] = env_entry("ELECT_EVENT", event_names[job->ev]);
	env[1] = env_entry("ELECT_NAME", job->vars[VAR_NAME]);
	env[2] = env_entry("ELECT_ID", job->vars[VAR_ID]);
	env[3] = env_entry("ELECT_LEADER", job->vars[VAR_LEADER]);
	env[4] = env_entry("ELECT_TOKEN", token);
	env[5] = env_entry("ELECT_BACKEND", job->vars[VAR_BACKEND]);
	env[6] = env_entry("ELECT_REASON", job->vars[VAR_REASON]);
	env[HOOK_ENV_N] = NULL;
	for (int i = 0; i < HOOK_ENV_N; i++)
		if (env[i] == NULL)
			return -1;
	return 0;
}

static struct proc *spawn_job(struct hook_runner *r, const struct hook_job *job)
{
	char *env[HOOK_ENV_N + 1] = { NULL };
	char tag[32], err[256];
	char *argv[] = {
		r->paths[job->ev], (char *)event_names[job->ev],
		job->vars[VAR_NAME], job->vars[VAR_ID], NULL,
	};
	struct proc_spec spec = { .argv = argv, .env = env, .log_tag = tag };
	struct proc *p = NULL;

	snprintf(tag, sizeof(tag), "hook:%s", event_names[job->ev]);
	if (build_env(env, job) < 0)
		snprintf(err, sizeof(err), "out of memory");
	else
		p = proc_spawn(r->loop, &spec, hook_exit_cb, r, err, sizeof(err));
	for (int i = 0; i < HOOK_ENV_N; i++)
		free(env[i]);
	if (p == NULL)
		log_warnx("hook %s failed: %s", event_names[job->ev], err);
	return p;
}

/* Starts queued runs until one is running or a failure must be reported. */
static void start_next(struct hook_runner *r)
{
	while (r->running == NULL && !r->spawn_failed && r->head != NULL) {
		struct hook_job *job = r->head;

		r->head = job->next;
		if (r->head == NULL)
			r->tail = NULL;
		r->running = spawn_job(r, job);
		if (r->running != NULL) {
			log_debug("hook %s started, pid %ld", event_names[job->ev],
			          (long)proc_pid(r->running));
			r->running_ev = job->ev;
			r->timed_out = 0;
			if (r->timeout_ns > 0) {
				/* Count from now, not from the cached loop
				 * time: spawning blocked until the exec. */
				ev_now_update(r->loop);
				ev_timer_set(&r->timeout_w, clock_ns_to_ev(r->timeout_ns), 0.0);
				ev_timer_start(r->loop, &r->timeout_w);
			}
		} else {
			r->runs[job->ev]++;
			r->failures[job->ev]++;
			r->spawn_failed = 1;
			r->failed_ev = job->ev;
			ev_timer_set(&r->report_w, 0.0, 0.0);
			ev_timer_start(r->loop, &r->report_w);
		}
		free_job(job);
	}
}

struct hook_runner *hooks_new(struct ev_loop *loop, const char *const paths[HOOK_N],
                              int64_t timeout_ns, hook_done_cb cb, void *data)
{
	struct hook_runner *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->loop = loop;
	r->timeout_ns = timeout_ns;
	r->cb = cb;
	r->data = data;
	for (int i = 0; i < HOOK_N; i++) {
		if (paths[i] != NULL && (r->paths[i] = strdup(paths[i])) == NULL) {
			free_runner(r);
			return NULL;
		}
	}
	ev_timer_init(&r->timeout_w, timeout_cb, 0.0, 0.0);
	r->timeout_w.data = r;
	ev_timer_init(&r->report_w, report_cb, 0.0, 0.0);
	r->report_w.data = r;
	return r;
}

static struct hook_job *job_new(enum hook_event ev, const struct hook_vars *vars)
{
	const char *src[VAR_N] = {
		[VAR_NAME] = vars->name, [VAR_ID] = vars->id, [VAR_LEADER] = vars->leader,
		[VAR_BACKEND] = vars->backend, [VAR_REASON] = vars->reason,
	};
	struct hook_job *job = calloc(1, sizeof(*job));

	if (job == NULL)
		return NULL;
	job->ev = ev;
	job->token = vars->token;
	for (int i = 0; i < VAR_N; i++) {
		if ((job->vars[i] = strdup(src[i] != NULL ? src[i] : "")) == NULL) {
			free_job(job);
			return NULL;
		}
	}
	return job;
}

void hooks_enqueue(struct hook_runner *r, enum hook_event ev, const struct hook_vars *vars)
{
	struct hook_job *job;

	if (!hooks_configured(r, ev) || r->freed)
		return;
	if ((job = job_new(ev, vars)) == NULL) {
		log_error("hook %s: out of memory, not run", event_names[ev]);
		return;
	}
	if (r->tail != NULL)
		r->tail->next = job;
	else
		r->head = job;
	r->tail = job;
	start_next(r);
}

int hooks_drop_pending(struct hook_runner *r, enum hook_event ev)
{
	struct hook_job **link = &r->head, *job;
	int dropped = 0;

	r->tail = NULL;
	while ((job = *link) != NULL) {
		if (job->ev == ev) {
			*link = job->next;
			free_job(job);
			dropped++;
		} else {
			r->tail = job;
			link = &job->next;
		}
	}
	return dropped;
}

void hooks_free(struct hook_runner *r)
{
	struct hook_job *job, *next;

	if (r == NULL || r->freed)
		return;
	if (r->running != NULL) {
		proc_abandon(r->running);
		r->running = NULL;
	}
	ev_timer_stop(r->loop, &r->timeout_w);
	ev_timer_stop(r->loop, &r->report_w);
	r->spawn_failed = 0;
	for (job = r->head; job != NULL; job = next) {
		next = job->next;
		free_job(job);
	}
	r->head = r->tail = NULL;
	r->freed = 1;
	if (r->in_cb == 0)
		free_runner(r);
}
