/* The elect agent: options, and the glue between the elector core and the
 * loop (timer, signals), the leader command, hooks and the API socket. */
#ifndef ELECT_AGENT_H
#define ELECT_AGENT_H

#include <stdbool.h>
#include <stdint.h>

struct elect_opts {
	char *name, *id, *backend, *socket, *http, *config, *log_format;
	char *on_elected, *on_demoted, *on_leader;
	char *socket_mode, *socket_group;
	char *tls_ca, *tls_cert, *tls_key, *auth, *kubeconfig;
	int64_t ttl, renew, kill_grace, hook_timeout, request_timeout, timeout;
	int64_t campaign_timeout;  /* wrapper mode; 0 = no limit */
	int64_t handover_timeout;  /* resign --to: how long the others stand aside */
	char *to;                  /* resign --to ID */
	char *health_cmd, *health_url;
	int64_t health_interval, health_timeout, health_grace;
	int health_fails, health_passes;
	const char *health_scope;    /* "always" (NULL) or "leader" */
	int verbose;
	bool once, check_config, http_allow_write;
	/* Not options: resolved by main. */
	char **command;           /* NULL in sidecar mode */
	unsigned socket_mode_bits; /* from socket_mode (default 0660) */
	long socket_gid;          /* from socket_group (-1: the agent's) */
};

/* Runs the agent until it exits; returns the exit status. */
int agent_run(struct elect_opts *o);

#endif
