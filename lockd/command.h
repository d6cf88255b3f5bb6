/* The command of a lockctl client, as lockd watches it (see lockd.h,
 * "Commands"): a pidfd, opened only for a child of the client process that
 * leads its own process group, so a client cannot make lockd kill anything
 * else. No loop here: api.c watches the pidfd with an ev_io. */
#ifndef ELECT_LOCKD_COMMAND_H
#define ELECT_LOCKD_COMMAND_H

#include <stddef.h>
#include <sys/types.h>

/* A pidfd for pid once it is checked to be a child of peer (the client at
 * the other end of the connection) and the leader of its own process group.
 * -1 with the reason in why; *status the HTTP status to answer (403: not the
 * client's command, 501: no pidfd support here, e.g. under valgrind). */
int command_open(pid_t pid, pid_t peer, int *status, char *why, size_t whylen);
/* Kills the command's whole tree: the guard's kill signal (hooks/guard.h)
 * to the pid, if it has not been reaped yet. The pidfd turns readable once
 * the guard has exited, i.e. once the whole tree is dead. */
void command_kill(int pidfd, pid_t pid);

#endif
