/* sd_notify(3) without libsystemd (see sdnotify.h). Failures are logged at
 * debug level only: readiness is advisory, the agent works without it. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "common/sdnotify.h"

static struct sockaddr_un notify_addr;
static socklen_t notify_len;            /* 0: not under systemd */
static bool stopping_sent;

void sdnotify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	size_t n = path ? strlen(path) : 0;

	notify_len = 0;
	stopping_sent = false;
	if (n == 0)
		return;
	if ((path[0] != '/' && path[0] != '@') || n >= sizeof notify_addr.sun_path) {
		log_warnx("NOTIFY_SOCKET \"%.100s\" is not a Unix socket path or @name: "
		          "not telling systemd of readiness", path);
		unsetenv("NOTIFY_SOCKET");
		return;
	}
	memset(&notify_addr, 0, sizeof notify_addr);
	notify_addr.sun_family = AF_UNIX;
	memcpy(notify_addr.sun_path, path, n);
	if (path[0] == '@')
		notify_addr.sun_path[0] = '\0';         /* abstract namespace */
	/* An abstract name is exactly its bytes, without a trailing NUL. */
	notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
	                         (path[0] == '@' ? 0 : 1));
	unsetenv("NOTIFY_SOCKET");
}

int sdnotify_send(const char *state)
{
	int fd, rc = 0;

	if (notify_len == 0)
		return 0;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || sendto(fd, state, strlen(state), MSG_NOSIGNAL,
	                     (const struct sockaddr *)&notify_addr, notify_len) < 0) {
		log_debug("sd_notify %s: %s", state, strerror(errno));
		rc = -1;
	}
	if (fd >= 0)
		close(fd);
	return rc;
}

void sdnotify_ready(void)
{
	sdnotify_send("READY=1");
}

void sdnotify_stopping(void)
{
	if (stopping_sent)
		return;
	stopping_sent = true;
	sdnotify_send("STOPPING=1");
}
