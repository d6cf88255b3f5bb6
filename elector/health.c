/* Health check rounds on the loop (see health.h): the command through
 * hooks/proc, the URL through common/curl_ev, one timeout for the round,
 * and the counting that turns results into a state. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <ev.h>

#include "common/clock.h"
#include "common/curl_ev.h"
#include "common/duration.h"
#include "common/log.h"
#include "elector/health.h"
#include "hooks/proc.h"

struct health {
	struct ev_loop *loop;
	struct health_config cfg;
	char *cmd;
	struct health_url url;
	health_changed_fn cb;
	void *data;
	struct health_info info;
	ev_timer next_w;          /* the next round */
	ev_timer timeout_w;       /* the running round's time limit */
	struct curl_ev *cev;
	CURL *easy;
	struct proc *proc;
	bool cmd_pending, url_pending, running, timed_out;
	bool cmd_ok, url_ok;
	bool body_done;           /* the answer's first line is in text */
	bool leading;
	ev_timer holdoff_w;       /* leader_only: after an unhealthy step-down */
	char cmd_detail[64], url_detail[CURL_ERROR_SIZE + 32];
	char curl_err[CURL_ERROR_SIZE];
	int64_t started_ns, grace_until_ns;
	char text[sizeof(((struct health_info *)0)->output)];
	size_t text_len;
};

/* ---- output of one round ---- */

static void add_text(struct health *h, const char *s, size_t n)
{
	size_t room = sizeof(h->text) - 1 - h->text_len;

	if (h->text_len > 0 && room > 0) {
		h->text[h->text_len++] = ' ';
		room--;
	}
	if (n > room)
		n = room;
	/* Printable ASCII only: the status is JSON (valid UTF-8, whatever the
	 * check printed or where a byte limit cut it) and logs are one line. */
	for (size_t i = 0; i < n; i++)
		h->text[h->text_len + i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	h->text_len += n;
	h->text[h->text_len] = '\0';
}

static void on_cmd_line(const char *line, void *data)
{
	add_text(data, line, strlen(line));
}

static size_t on_body(char *buf, size_t size, size_t n, void *data)
{
	struct health *h = data;
	size_t len = size * n, line = 0;

	if (h->body_done)
		return len;     /* past the first line: read and dropped */
	while (line < len && buf[line] != '\n' && buf[line] != '\r')
		line++;         /* libcurl's buffer has no terminating NUL */
	add_text(h, buf, line);
	h->body_done = line < len;
	return len;
}

/* ---- counting ---- */

static void set_state(struct health *h, enum health_state to, const char *why)
{
	snprintf(h->info.reason, sizeof(h->info.reason), "%s", why);
	if (to == h->info.state)
		return;
	h->info.state = to;
	if (to == HEALTH_HEALTHY)
		log_info("health: healthy (%s)", why);
	else
		log_warnx("health: unhealthy (%s)", why);
	h->cb(h->data, to, h->info.reason);
}

static void count(struct health *h, bool ok, const char *detail)
{
	char why[sizeof(h->info.reason)];
	enum health_state st = h->info.state;

	if (ok) {
		h->info.passes_in_row++;
		h->info.fails_in_row = 0;
		if (st != HEALTH_HEALTHY && (st == HEALTH_UNKNOWN || h->info.passes_in_row >= h->cfg.passes)) {
			snprintf(why, sizeof(why), "%d check%s passed in a row", h->info.passes_in_row,
			         h->info.passes_in_row == 1 ? "" : "s");
			set_state(h, HEALTH_HEALTHY, why);
		}
		return;
	}
	h->info.passes_in_row = 0;
	if (clock_now_ns() < h->grace_until_ns) {
		log_debug("health: check failed during the start-up grace (not counted): %s", detail);
		return;
	}
	h->info.fails_in_row++;
	if (st != HEALTH_UNHEALTHY && h->info.fails_in_row >= h->cfg.fails) {
		snprintf(why, sizeof(why), "%d check%s failed in a row: %.100s", h->info.fails_in_row,
		         h->info.fails_in_row == 1 ? "" : "s", detail);
		set_state(h, HEALTH_UNHEALTHY, why);
	}
}

/* ---- rounds ---- */

static void schedule_next(struct health *h)
{
	int64_t now = clock_now_ns(), at = h->started_ns + h->cfg.interval_ns;

	if (h->cfg.leader_only && !h->leading)
		return;

	ev_timer_stop(h->loop, &h->next_w);
	ev_timer_set(&h->next_w, clock_ns_to_ev(at > now ? at - now : 0), 0.);
	ev_timer_start(h->loop, &h->next_w);
}

static void finish_round(struct health *h)
{
	bool ok = true;
	char detail[sizeof(h->url_detail) + sizeof(h->cmd_detail) + 8] = "";

	if (h->cmd_pending || h->url_pending)
		return;
	ev_timer_stop(h->loop, &h->timeout_w);
	h->running = false;
	if (h->cmd) {
		ok = ok && h->cmd_ok;
		snprintf(detail, sizeof(detail), "%s", h->cmd_detail);
	}
	if (h->url.url) {
		ok = ok && h->url_ok;
		snprintf(detail + strlen(detail), sizeof(detail) - strlen(detail), "%s%s",
		         h->cmd ? ", " : "", h->url_detail);
	}
	h->info.checks++;
	h->info.failures += !ok;
	h->info.timeouts += h->timed_out;
	h->info.last_ok = ok;
	h->info.last_wall_ms = clock_wall_ms();
	h->info.last_duration_ns = clock_now_ns() - h->started_ns;
	h->info.duration_sum_ns += h->info.last_duration_ns;
	snprintf(h->info.output, sizeof(h->info.output), "%.180s%s%.320s", detail, h->text_len ? ": " : "",
	         h->text);
	log_debug("health: check %s in %lldms (%s)", ok ? "passed" : "failed",
	          (long long)(h->info.last_duration_ns / NS_PER_MS), h->info.output);
	schedule_next(h);
	count(h, ok, h->info.output);
}

static void on_cmd_exit(struct proc *p, int status, void *data)
{
	struct health *h = data;

	(void)p;
	h->proc = NULL;
	h->cmd_pending = false;
	h->cmd_ok = !h->timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0;
	if (!h->timed_out)
		snprintf(h->cmd_detail, sizeof(h->cmd_detail), "exit status %d", proc_exit_code(status));
	finish_round(h);
}

static void on_url_done(CURL *easy, CURLcode rc, void *data)
{
	struct health *h = data;
	long code = 0;

	h->url_pending = false;
	if (rc == CURLE_OK) {
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
		h->url_ok = code >= 200 && code < 300;
		snprintf(h->url_detail, sizeof(h->url_detail), "HTTP %ld", code);
	} else {
		h->url_ok = false;
		snprintf(h->url_detail, sizeof(h->url_detail), "%s",
		         h->curl_err[0] ? h->curl_err : curl_easy_strerror(rc));
	}
	finish_round(h);
}

static void start_cmd(struct health *h)
{
	char *argv[] = { "/bin/sh", "-c", h->cmd, NULL };
	char err[512];
	struct proc_spec spec = { .argv = argv, .on_line = on_cmd_line, .line_data = h };

	h->proc = proc_spawn(h->loop, &spec, on_cmd_exit, h, err, sizeof(err));
	if (h->proc == NULL) {
		h->cmd_ok = false;
		snprintf(h->cmd_detail, sizeof(h->cmd_detail), "%.63s", err);
		return;
	}
	h->cmd_pending = true;
}

static void start_url(struct health *h)
{
	/* A fresh handle per round: no state (cookies, connections) carries over. */
	if (h->easy)
		curl_easy_cleanup(h->easy);
	h->easy = curl_easy_init();
	h->url_ok = false;
	h->body_done = false;
	h->curl_err[0] = '\0';
	if (h->easy == NULL || h->cev == NULL) {
		snprintf(h->url_detail, sizeof(h->url_detail), "libcurl could not be loaded");
		return;
	}
	curl_easy_setopt(h->easy, CURLOPT_URL, h->url.url);
	if (h->url.socket_path)
		curl_easy_setopt(h->easy, CURLOPT_UNIX_SOCKET_PATH, h->url.socket_path);
	/* The round's timer cuts it (and counts the timeout); curl's own limit
	 * is only a backstop a little later. */
	curl_easy_setopt(h->easy, CURLOPT_TIMEOUT_MS, (long)(h->cfg.timeout_ns / NS_PER_MS) + 1000);
	curl_easy_setopt(h->easy, CURLOPT_ERRORBUFFER, h->curl_err);
	curl_easy_setopt(h->easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h->easy, CURLOPT_WRITEDATA, h);
	curl_easy_setopt(h->easy, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(h->easy, CURLOPT_USERAGENT, "elect-health/1");
	curl_easy_setopt(h->easy, CURLOPT_NOPROXY, "*");        /* a local service, never a proxy */
	curl_easy_setopt(h->easy, CURLOPT_FORBID_REUSE, 1L);    /* a new connection each round */
	if (curl_ev_add(h->cev, h->easy, on_url_done, h) < 0) {
		snprintf(h->url_detail, sizeof(h->url_detail), "libcurl refused the request");
		return;
	}
	h->url_pending = true;
}

static void start_round(struct health *h)
{
	h->running = true;
	h->timed_out = false;
	h->text_len = 0;
	h->text[0] = '\0';
	h->cmd_detail[0] = h->url_detail[0] = '\0';
	h->started_ns = clock_now_ns();
	ev_timer_set(&h->timeout_w, clock_ns_to_ev(h->cfg.timeout_ns), 0.);
	ev_timer_start(h->loop, &h->timeout_w);
	if (h->cmd)
		start_cmd(h);
	if (h->url.url)
		start_url(h);
	finish_round(h);        /* if nothing could start */
}

static void on_next(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct health *h = w->data;

	(void)loop;
	(void)revents;
	if (!h->running && (!h->cfg.leader_only || h->leading))
		start_round(h);
}

/* A hanging check: kill its whole group (sh and what it started); the round
 * ends as a failure. */
static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct health *h = w->data;
	char limit[32];

	(void)loop;
	(void)revents;
	h->timed_out = true;
	duration_format(h->cfg.timeout_ns, limit, sizeof(limit));
	if (h->proc) {
		/* SIGKILL to its group, and the round ends now: a check stuck
		 * where SIGKILL cannot reach it (a dead NFS mount) must not freeze
		 * the health state. libev reaps it whenever it goes. */
		snprintf(h->cmd_detail, sizeof(h->cmd_detail), "killed: timed out after %s", limit);
		proc_abandon(h->proc);
		h->proc = NULL;
		h->cmd_pending = false;
		h->cmd_ok = false;
	}
	if (h->url_pending) {
		curl_ev_remove(h->cev, h->easy);
		h->url_pending = false;
		h->url_ok = false;
		snprintf(h->url_detail, sizeof(h->url_detail), "timed out after %s", limit);
	}
	finish_round(h);
}

/* leader_only: the hold-off after an unhealthy step-down is over; its
 * checks cannot run before it leads again. */
static void on_holdoff(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct health *h = w->data;

	(void)loop;
	(void)revents;
	h->info.fails_in_row = h->info.passes_in_row = 0;
	set_state(h, HEALTH_HEALTHY, "hold-off over; checks run only while leading");
}

/* ---- life cycle ---- */

struct health *health_new(struct ev_loop *loop, const struct health_config *c,
                          health_changed_fn cb, void *data, char *err, size_t errlen)
{
	struct health *h;

	if (health_check_config(c, err, errlen) < 0)
		return NULL;
	if ((h = calloc(1, sizeof(*h))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->loop = loop;
	h->cfg = *c;
	h->cb = cb;
	h->data = data;
	h->info.last_wall_ms = -1;
	ev_timer_init(&h->next_w, on_next, 0., 0.);
	h->next_w.data = h;
	ev_timer_init(&h->timeout_w, on_timeout, 0., 0.);
	h->timeout_w.data = h;
	snprintf(h->info.reason, sizeof(h->info.reason), "waiting for the first check");
	if ((c->cmd && (h->cmd = strdup(c->cmd)) == NULL) ||
	    (c->url && health_parse_url(c->url, &h->url, err, errlen) < 0)) {
		if (h->cmd == NULL && c->cmd)
			snprintf(err, errlen, "out of memory");
		health_free(h);
		return NULL;
	}
	if (h->url.url && (h->cev = curl_ev_new(loop)) == NULL) {
		snprintf(err, errlen, "--health-url: libcurl (libcurl.so.4) could not be loaded");
		health_free(h);
		return NULL;
	}
	ev_timer_init(&h->holdoff_w, on_holdoff, 0., 0.);
	h->holdoff_w.data = h;
	if (c->leader_only) {
		/* Nothing to check before leading: the owner reads the state. */
		h->info.state = HEALTH_HEALTHY;
		snprintf(h->info.reason, sizeof(h->info.reason), "checks run only while leading");
		return h;
	}
	ev_timer_start(loop, &h->next_w);
	return h;
}

/* Ends a running round without counting it (leader_only, leadership over). */
static void cancel_round(struct health *h)
{
	ev_timer_stop(h->loop, &h->next_w);
	ev_timer_stop(h->loop, &h->timeout_w);
	if (h->proc) {
		proc_abandon(h->proc);   /* kills its group; libev reaps it */
		h->proc = NULL;
	}
	if (h->url_pending) {
		curl_ev_remove(h->cev, h->easy);
		h->url_pending = false;
	}
	h->cmd_pending = false;
	h->running = false;
}

void health_leading(struct health *h, bool leading)
{
	if (h == NULL || leading == h->leading)
		return;
	h->leading = leading;
	if (leading) {
		h->info.fails_in_row = h->info.passes_in_row = 0;   /* earlier failures do not count */
		if (h->cfg.grace_ns > 0)
			h->grace_until_ns = clock_now_ns() + h->cfg.grace_ns;
		if (h->cfg.leader_only) {
			ev_timer_stop(h->loop, &h->holdoff_w);
			if (!h->running) {
				ev_timer_stop(h->loop, &h->next_w);
				ev_timer_set(&h->next_w, 0., 0.);
				ev_timer_start(h->loop, &h->next_w);
			}
		}
		return;
	}
	if (!h->cfg.leader_only)
		return;
	cancel_round(h);
	if (h->info.state == HEALTH_UNHEALTHY) {
		int64_t hold = h->cfg.grace_ns + h->cfg.fails * h->cfg.interval_ns;
		ev_timer_set(&h->holdoff_w, clock_ns_to_ev(hold), 0.);
		ev_timer_start(h->loop, &h->holdoff_w);
	}
}

const struct health_info *health_info(const struct health *h)
{
	return &h->info;
}

void health_free(struct health *h)
{
	if (h == NULL)
		return;
	if (h->loop) {
		ev_timer_stop(h->loop, &h->next_w);
		ev_timer_stop(h->loop, &h->timeout_w);
		ev_timer_stop(h->loop, &h->holdoff_w);
	}
	if (h->proc)
		proc_abandon(h->proc);
	if (h->easy) {
		if (h->url_pending)
			curl_ev_remove(h->cev, h->easy);
		curl_easy_cleanup(h->easy);
	}
	if (h->cev)
		curl_ev_free(h->cev);
	health_url_free(&h->url);
	free(h->cmd);
	free(h);
}
