/* The guard: a small process between the agent and the leader command (or
 * lockctl's command) that makes the whole tree of the command die with the
 * agent (DESIGN.md, safety rule 2).
 *
 * PR_SET_PDEATHSIG reaches only the direct child, and a descendant that
 * leaves the command's process group (setsid, setpgid, a double fork) is out
 * of reach of a signal to that group. The guard is a child subreaper
 * (PR_SET_CHILD_SUBREAPER): every orphaned descendant of the command is
 * reparented to it, not to init, so it can always see and kill what is left.
 *
 *   agent ── guard (own group, PDEATHSIG = guard_kill_signal())
 *               └─ command (own group, PDEATHSIG = SIGKILL) ── descendants
 *
 * The guard forwards every signal it gets to the command's process group,
 * except guard_kill_signal(): that one (sent by the agent instead of SIGKILL,
 * and delivered by the kernel when the agent dies, even by kill -9) makes it
 * SIGKILL the command's group and then every remaining descendant, layer by
 * layer as they are reparented to it. When the command exits on its own, the
 * rest of its tree is killed the same way. The guard exits only once it has
 * no child left, with the command's status (an exit code, or 128 + the
 * signal that killed it), so whatever the guard holds open — the file
 * backend's lock descriptor — is released only when the whole tree is gone.
 *
 * It runs in the forked child of a process that may have threads, so it uses
 * only async-signal-safe system calls: no malloc, no stdio, no opendir.
 */
#ifndef ELECT_GUARD_H
#define ELECT_GUARD_H

#include <sys/types.h>

/* The signal that makes a guard kill the whole tree and exit (a real-time
 * signal, whose default action also terminates a process that is not a
 * guard). Send it instead of SIGKILL, which would kill the guard alone. */
int guard_kill_signal(void);

/* In the child after fork(), with all signals blocked: becomes the guard of
 * the command that exec_child() starts in a grandchild. parent: the agent's
 * pid (checked after PR_SET_PDEATHSIG). keep_fd (> 2): the one descriptor
 * the guard keeps open until the tree is gone (0: none); every other one but
 * stdio is closed once the command has been forked. err_fd: where a failure
 * of the guard itself is reported as an errno (as exec_child() reports a
 * failed exec). done_fd (-1: none): kept open too; once the whole tree is
 * gone the guard closes keep_fd, writes there the int that waitpid() will
 * report for its own exit, and exits: the agent may go on at once instead of
 * waiting for the exit of a process that is a copy of its address space
 * (tearing that down costs about half a millisecond). exec_child() runs in the command's process, a vfork() child
 * of the guard: only system calls on its own stack until the exec or _exit,
 * and it must not return. Never returns. */
void guard_main(pid_t parent, int keep_fd, int err_fd, int done_fd,
                void (*exec_child)(pid_t guard, void *arg), void *arg)
	__attribute__((noreturn));

#endif
