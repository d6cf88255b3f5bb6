/* `elect status|resign|wait-leader|watch`: blocking requests to a running agent
 * over its Unix socket (libcurl easy, CURLOPT_UNIX_SOCKET_PATH). */
#include <ctype.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "common/clock.h"
#include "common/uclient.h"
#include "elector/api.h"

#define CLIENT_TIMEOUT_MS  10000L        /* beyond any long-poll wait */
#define CLIENT_MAX_WAIT_NS (5 * 60 * NS_PER_SEC)

static struct uclient agent_client(const char *socket_path)
{
	return (struct uclient){ .prog = "elect", .peer = "the agent", .socket_path = socket_path };
}

/* One request. 0 with r filled in, or -1 after printing why the agent could
 * not be reached. */
static int request(const char *socket_path, const char *method, const char *target,
                   long timeout_ms, struct uclient_reply *r)
{
	struct uclient c = agent_client(socket_path);

	return uclient_request(&c, method, target, NULL, timeout_ms, r);
}

static void print_unexpected(const char *socket_path, const struct uclient_reply *r)
{
	struct uclient c = agent_client(socket_path);

	uclient_print_unexpected(&c, r);
}

/* A request whose 200 answer is printed: 0, 1 (other answer; 409 means
 * "not leader" for resign) or 2 (agent unreachable). */
static int print_answer(const char *socket_path, const char *method, const char *target)
{
	struct uclient_reply r;
	int status;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (request(socket_path, method, target, CLIENT_TIMEOUT_MS, &r) < 0) {
		status = 2;
	} else if (r.code == 200) {
		uclient_print_body(stdout, &r);
		status = 0;
	} else if (r.code == 409) {
		fprintf(stderr, "elect: not leader\n");
		status = 1;
	} else {
		print_unexpected(socket_path, &r);
		status = 1;
	}
	free(r.body);
	curl_global_cleanup();
	return status;
}

int client_status(const char *socket_path)
{
	return print_answer(socket_path, "GET", "/v1/status");
}

int client_resign(const char *socket_path)
{
	return print_answer(socket_path, "POST", "/v1/resign");
}

/* Reads is_leader and index from a status body. -1 if it is not one. */
static int parse_status(const struct uclient_reply *r, int *is_leader, uint64_t *index)
{
	json_t *doc = r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;
	json_t *lead = json_object_get(doc, "is_leader");
	json_t *idx = json_object_get(doc, "index");
	int ok = json_is_boolean(lead) && json_is_integer(idx);

	if (ok) {
		*is_leader = json_is_true(lead);
		*index = (uint64_t)json_integer_value(idx);
	}
	json_decref(doc);
	return ok ? 0 : -1;
}

/* One long-poll round. 0 = answered (is_leader/index updated), 2 = error. */
static int poll_once(const char *socket_path, bool first, int64_t wait_ns,
                     int *is_leader, uint64_t *index)
{
	char target[128];
	long long wait_ms = wait_ns / NS_PER_MS;
	struct uclient_reply r;
	int status = 0;

	if (first)
		snprintf(target, sizeof target, "/v1/status");
	else
		snprintf(target, sizeof target, "/v1/status?wait=%lldms&index=%" PRIu64,
		         wait_ms > 0 ? wait_ms : 1, *index);
	if (request(socket_path, "GET", target, CLIENT_TIMEOUT_MS + (first ? 0 : wait_ms), &r) < 0)
		return 2;
	if (r.code != 200) {
		print_unexpected(socket_path, &r);
		status = 2;
	} else if (parse_status(&r, is_leader, index) < 0) {
		fprintf(stderr, "elect: the agent at %s sent a status without is_leader/index\n",
		        socket_path);
		status = 2;
	}
	free(r.body);
	return status;
}

int client_wait_leader(const char *socket_path, long long timeout_ns)
{
	int64_t deadline = timeout_ns >= 0 ? clock_now_ns() + timeout_ns : -1;
	uint64_t index = 0;
	int is_leader = 0, status = 1;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	for (bool first = true;; first = false) {
		int64_t wait_ns = CLIENT_MAX_WAIT_NS;

		if (deadline >= 0 && !first) {
			int64_t left = deadline - clock_now_ns();
			if (left <= 0) {
				fprintf(stderr, "elect: this agent did not become leader in time\n");
				status = 1;
				break;
			}
			if (left < wait_ns)
				wait_ns = left;
		}
		if (poll_once(socket_path, first, wait_ns, &is_leader, &index) != 0) {
			status = 2;
			break;
		}
		if (is_leader) {
			status = 0;
			break;
		}
	}
	curl_global_cleanup();
	return status;
}

/* ---- elect watch ---- */

/* The leader of a status body (NULL: none or unknown) and its index. -1 if
 * the body is not a status. *doc keeps the strings alive. */
static int parse_leader(const struct uclient_reply *r, json_t **doc, const char **leader,
                        uint64_t *index)
{
	json_t *l, *idx;

	*doc = r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;
	l = json_object_get(*doc, "leader");
	idx = json_object_get(*doc, "index");
	if (!json_is_integer(idx) || (l && !json_is_null(l) && !json_is_string(l))) {
		json_decref(*doc);
		*doc = NULL;
		return -1;
	}
	*leader = json_string_value(l);
	*index = (uint64_t)json_integer_value(idx);
	return 0;
}

/* One line per leader change: who leads, with this agent's view of it. */
static void print_change(json_t *st)
{
	json_t *line = json_pack("{s:O?, s:O?, s:O?, s:O?, s:O?, s:O?}",
	                         "leader", json_object_get(st, "leader"),
	                         "token", json_object_get(st, "token"),
	                         "state", json_object_get(st, "state"),
	                         "reason", json_object_get(st, "reason"),
	                         "since", json_object_get(st, "since"),
	                         "index", json_object_get(st, "index"));

	if (line) {
		json_dumpf(line, stdout, JSON_COMPACT);
		fputc('\n', stdout);
		fflush(stdout);
		json_decref(line);
	}
}

static bool same_leader(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* One round of following the leader: the status now (first), else once its
 * index differs from *index or wait_ns passed. 0 with *doc (free it) and
 * *leader in it, *index updated; 2 after saying why it failed. */
static int poll_leader(const char *socket_path, bool first, int64_t wait_ns, uint64_t *index,
                       json_t **doc, const char **leader)
{
	char target[128];
	struct uclient_reply r;
	long long wait_ms = wait_ns / NS_PER_MS;

	if (first)
		snprintf(target, sizeof target, "/v1/status");
	else
		snprintf(target, sizeof target, "/v1/status?wait=%lldms&index=%" PRIu64,
		         wait_ms > 0 ? wait_ms : 1, *index);
	if (request(socket_path, "GET", target, CLIENT_TIMEOUT_MS + (first ? 0 : (long)wait_ms), &r) < 0)
		return 2;
	if (r.code != 200 || parse_leader(&r, doc, leader, index) < 0) {
		if (r.code == 200)
			fprintf(stderr, "elect: the agent at %s sent a status without leader/index\n",
			        socket_path);
		else
			print_unexpected(socket_path, &r);
		free(r.body);
		return 2;
	}
	free(r.body);
	return 0;
}

int client_watch(const char *socket_path, long long timeout_ns)
{
	int64_t deadline = timeout_ns >= 0 ? clock_now_ns() + timeout_ns : -1;
	char *last = NULL;
	uint64_t index = 0;
	int status = 0;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	for (bool first = true;; first = false) {
		int64_t wait_ns = CLIENT_MAX_WAIT_NS;
		const char *leader;
		json_t *doc;

		if (deadline >= 0) {
			int64_t left = deadline - clock_now_ns();
			if (left <= 0 && !first)
				break;
			if (left < wait_ns)
				wait_ns = left > NS_PER_MS ? left : NS_PER_MS;
		}
		if ((status = poll_leader(socket_path, first, wait_ns, &index, &doc, &leader)) != 0)
			break;
		if (first || !same_leader(leader, last)) {
			print_change(doc);
			free(last);
			last = leader ? strdup(leader) : NULL;
		}
		json_decref(doc);
	}
	free(last);
	curl_global_cleanup();
	return status;
}

/* ---- elect resign --to ---- */

/* After the timeout, how long to wait for whoever leads next, to name it. */
#define HANDOVER_REPORT_NS (5 * NS_PER_SEC)

static void print_handover(const char *to, const char *leader, int64_t elapsed_ns)
{
	json_t *line = json_pack("{s:b, s:s, s:s?, s:I}", "handed_over",
	                         leader && strcmp(leader, to) == 0, "to", to, "leader", leader,
	                         "elapsed_ms", (json_int_t)(elapsed_ns / NS_PER_MS));

	if (line) {
		json_dumpf(line, stdout, JSON_COMPACT);
		fputc('\n', stdout);
		fflush(stdout);
		json_decref(line);
	}
}

/* Asks the agent to hand over to `to`, then follows its view of the leader:
 * 0 when `to` leads; 1 when `to` did not take over within the timeout
 * (naming who leads then, or within HANDOVER_REPORT_NS after); 2 when the
 * agent cannot be reached. */
int client_resign_to(const char *socket_path, const char *to, long long timeout_ns)
{
	int64_t start = clock_now_ns(), deadline = start + timeout_ns;
	char esc[3 * 256 + 1], target[900];
	struct uclient_reply r;
	uint64_t index = 0;
	int status = 1;
	size_t n = 0;

	/* Percent-encoded: main checked the id's characters, but not every
	 * caller need have. */
	for (const unsigned char *p = (const unsigned char *)to; *p && n + 4 < sizeof esc; p++) {
		if (isalnum(*p) || strchr("._-~", *p))
			esc[n++] = (char)*p;
		else
			n += (size_t)snprintf(esc + n, sizeof esc - n, "%%%02X", *p);
	}
	esc[n] = '\0';
	curl_global_init(CURL_GLOBAL_DEFAULT);
	snprintf(target, sizeof target, "/v1/resign?to=%s&timeout=%lldms", esc,
	         timeout_ns / NS_PER_MS > 0 ? timeout_ns / NS_PER_MS : 1);
	if (request(socket_path, "POST", target, CLIENT_TIMEOUT_MS, &r) < 0) {
		curl_global_cleanup();
		return 2;
	}
	if (r.code != 200) {
		if (r.code == 409)
			fprintf(stderr, "elect: not leader\n");
		else
			print_unexpected(socket_path, &r);
		free(r.body);
		curl_global_cleanup();
		return 1;
	}
	free(r.body);
	for (bool first = true;; first = false) {
		int64_t now = clock_now_ns(), wait_ns = deadline - now;
		const char *leader;
		json_t *doc;
		bool done;

		if (now >= deadline)
			wait_ns = deadline + HANDOVER_REPORT_NS - now;
		if (wait_ns <= 0) {
			fprintf(stderr, "elect: %s did not take over within %lld ms, and no other "
			        "candidate leads yet\n", to, timeout_ns / NS_PER_MS);
			print_handover(to, NULL, now - start);
			break;
		}
		if (poll_leader(socket_path, first, wait_ns + NS_PER_MS, &index, &doc, &leader) != 0) {
			status = 2;
			break;
		}
		now = clock_now_ns();
		if (leader && strcmp(leader, to) == 0) {
			print_handover(to, leader, now - start);
			status = 0;
		} else if (leader && now >= deadline) {
			/* Before the deadline another leader can be one standing
			 * aside a moment, or a peer that ignores handovers: wait. */
			fprintf(stderr, "elect: %s did not take over within %lld ms (is it a healthy "
			        "candidate?); %s leads\n", to, timeout_ns / NS_PER_MS, leader);
			print_handover(to, leader, now - start);
		}
		done = status == 0 || (leader && now >= deadline);
		json_decref(doc);
		if (done)
			break;
	}
	curl_global_cleanup();
	return status;
}
