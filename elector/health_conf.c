/* The pure side of health checks: --health-url parsing and the settings'
 * checks (elector/health.h), unit-tested without a loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "elector/health.h"

static const char *const state_names[] = { "unknown", "healthy", "unhealthy" };

const char *health_state_name(enum health_state s)
{
	return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "unknown";
}

void health_url_free(struct health_url *u)
{
	free(u->url);
	free(u->socket_path);
	u->url = u->socket_path = NULL;
}

/* unix:/run/app.sock:/healthz -> socket /run/app.sock, GET /healthz. The
 * socket path ends at the last ":/" (a path may hold ':' itself). */
static int parse_unix(const char *text, struct health_url *out, char *err, size_t errlen)
{
	const char *rest = text + 5, *sep = NULL;

	for (const char *p = rest; (p = strstr(p, ":/")) != NULL; p++)
		sep = p;
	if (sep == NULL || sep == rest) {
		snprintf(err, errlen, "--health-url %s: write unix:SOCKET:/PATH, e.g. "
		         "unix:/run/app.sock:/healthz", text);
		return -1;
	}
	if (*rest != '/') {
		snprintf(err, errlen, "--health-url %s: the socket path must be absolute", text);
		return -1;
	}
	out->socket_path = strndup(rest, (size_t)(sep - rest));
	if (out->socket_path == NULL || asprintf(&out->url, "http://localhost%s", sep + 1) < 0) {
		out->url = NULL;
		health_url_free(out);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

int health_parse_url(const char *text, struct health_url *out, char *err, size_t errlen)
{
	const char *host;
	size_t hostlen;

	out->url = out->socket_path = NULL;
	if (strncmp(text, "unix:", 5) == 0)
		return parse_unix(text, out, err, errlen);
	if (strncmp(text, "http://", 7) != 0) {
		snprintf(err, errlen, "--health-url %s: use http://HOST[:PORT]/PATH or "
		         "unix:SOCKET:/PATH (2xx is healthy)", text);
		return -1;
	}
	host = text + 7;
	hostlen = strcspn(host, "/?#");
	if (hostlen == 0) {
		snprintf(err, errlen, "--health-url %s: no host (write e.g. http://127.0.0.1:8080/healthz)",
		         text);
		return -1;
	}
	if (strpbrk(text, " \t\r\n") != NULL) {
		snprintf(err, errlen, "--health-url %s: spaces are not allowed in a URL", text);
		return -1;
	}
	if ((out->url = strdup(text)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

int health_check_config(const struct health_config *c, char *err, size_t errlen)
{
	if (c->cmd == NULL && c->url == NULL) {
		snprintf(err, errlen, "--health-interval, --health-timeout, --health-fails, "
		         "--health-passes and --health-grace need a check: give --health-cmd or --health-url");
		return -1;
	}
	if (c->cmd != NULL && *c->cmd == '\0') {
		snprintf(err, errlen, "--health-cmd: empty command");
		return -1;
	}
	if (c->interval_ns <= 0 || c->timeout_ns <= 0) {
		snprintf(err, errlen, "--health-interval and --health-timeout must be more than zero");
		return -1;
	}
	if (c->fails < 1 || c->passes < 1) {
		snprintf(err, errlen, "--health-fails and --health-passes must be at least 1");
		return -1;
	}
	if (c->grace_ns < 0) {
		snprintf(err, errlen, "--health-grace must not be negative");
		return -1;
	}
	return 0;
}
