/* systemd's readiness protocol (sd_notify(3)) in its few lines, without
 * libsystemd: one datagram per state change to the Unix socket named by
 * $NOTIFY_SOCKET (a path, or "@name" for an abstract socket). Outside
 * systemd (no NOTIFY_SOCKET) every call does nothing. */
#ifndef ELECT_SDNOTIFY_H
#define ELECT_SDNOTIFY_H

/* Reads $NOTIFY_SOCKET and removes it from the environment, so that hooks
 * and the leader command do not inherit it (they would otherwise be able to
 * speak for the agent). Call once, before starting children. */
void sdnotify_init(void);
/* "READY=1": the socket listens and the agent runs. */
void sdnotify_ready(void);
/* "STOPPING=1", once: shutting down. */
void sdnotify_stopping(void);
/* Any message; 0 when sent or not under systemd, -1 if sending failed. */
int sdnotify_send(const char *state);

#endif
