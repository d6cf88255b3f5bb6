/* The command of a lockctl client, as lockd watches it (see lockd.h,
 * "Commands"): a pidfd, opened only for a child of the client process that
 * leads its own process group, so a client cannot make lockd kill anything
 * else. No loop here: api.c watches the pidfd with an ev_io. */
#ifndef ELECT_LOCKD_COMMAND_H
#define ELECT_LOCKD_COMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A pidfd for pid once it is checked to be a child of peer (the client at
 * the other end of the connection) and the leader of its own process group.
 * -1 with the reason in why; *status the HTTP status to answer (403: not the
 * client's command, 501: no pidfd support here, e.g. under valgrind). */
int command_open(pid_t pid, pid_t peer, int *status, char *why, size_t whylen);
/* Kills the command, if it has not been reaped yet: a guard (hooks/guard.h,
 * as lockctl registers it) gets its kill signal and kills the whole tree, the
 * pidfd turning readable once all of it is dead; any other command gets
 * SIGKILL, and so does its process group. */
void command_kill(int pidfd, pid_t pid, bool guard);

#endif
