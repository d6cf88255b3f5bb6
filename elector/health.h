/* Health checks that leadership follows (issue 14).
 *
 * A check is a shell command (/bin/sh -c CMD: exit 0 is a pass) and/or an
 * HTTP GET (http://HOST/PATH or unix:SOCKET:/PATH; 2xx is a pass); with both,
 * a round passes only if both pass. Rounds run every interval, never two at a
 * time (the next starts one interval after the last one started, or at once
 * if it took longer), and never block the loop: the command is forked with
 * hooks/proc (its own process group, ev_child), the request goes through
 * common/curl_ev. A round that outlives its timeout is killed (SIGKILL to the
 * command's group, the transfer removed) and fails.
 *
 * fails failures in a row make it unhealthy, passes passes in a row healthy
 * again. Before the first result the state is "unknown": one pass makes it
 * healthy, fails failures unhealthy. During a grace (health_leading(), a new
 * leader's start-up) failures do not count. The owner hears of changes only,
 * through the callback; every round's result is in health_info. */
#ifndef ELECT_HEALTH_H
#define ELECT_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct health;

enum health_state { HEALTH_UNKNOWN, HEALTH_HEALTHY, HEALTH_UNHEALTHY };

struct health_config {
	const char *cmd;          /* NULL: none */
	const char *url;          /* NULL: none; checked by health_parse_url() */
	int64_t interval_ns, timeout_ns, grace_ns;
	int fails, passes;
	/* Checks of the leader command itself (it runs only on the leader):
	 * rounds run only while leading; a candidate counts as healthy, except
	 * for a hold-off (grace + fails x interval) after it stepped down as
	 * unhealthy, so that the others go first. */
	bool leader_only;
};

/* What the API shows; updated in place after every round. */
struct health_info {
	enum health_state state;
	char reason[160];         /* why the state is what it is */
	char output[512];         /* the last round's output (command) or status (URL) */
	bool last_ok;
	int64_t last_wall_ms;     /* -1 before the first round */
	int64_t last_duration_ns;
	int fails_in_row, passes_in_row;
	uint64_t checks, failures, timeouts;
	int64_t duration_sum_ns;
};

/* Called when the state changes (not per round); info->reason says why. */
typedef void (*health_changed_fn)(void *data, enum health_state state, const char *reason);

/* A parsed --health-url: the URL libcurl gets and the Unix socket, if any. */
struct health_url {
	char *url;                /* "http://localhost/path" for a socket */
	char *socket_path;        /* NULL for http:// */
};

/* Pure: accepts http://HOST[:PORT][/PATH] and unix:/SOCKET:/PATH. Returns 0,
 * or -1 with a one-line message in err. Free with health_url_free(). */
int health_parse_url(const char *text, struct health_url *out, char *err, size_t errlen);
void health_url_free(struct health_url *u);
/* Pure: the settings together (counts at least 1, durations positive). */
int health_check_config(const struct health_config *c, char *err, size_t errlen);
const char *health_state_name(enum health_state s);

/* Starts the first round at once. loop must be ev_default_loop(). */
struct health *health_new(struct ev_loop *loop, const struct health_config *c,
                          health_changed_fn cb, void *data, char *err, size_t errlen);
/* Leadership began (ready) or ended. Failures do not count until now + the
 * configured grace after it began; leader_only: rounds start and stop. */
void health_leading(struct health *h, bool leading);
const struct health_info *health_info(const struct health *h);
/* Kills a running round; no callback after it. */
void health_free(struct health *h);

#endif
