/* Listening sockets for httpd (see httpd.h): a Unix socket that replaces a
 * stale file but never a live agent's socket, and a TCP address. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/httpd.h"

static int mkdir_parents(const char *path)
{
	char dir[sizeof ((struct sockaddr_un *)0)->sun_path];
	char *slash;

	snprintf(dir, sizeof dir, "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return mkdir(dir, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

/* bind() said EADDRINUSE: is somebody listening there? */
static int unix_in_use(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int live;

	if (fd < 0)
		return 1;
	live = connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0 || errno == EAGAIN;
	close(fd);
	return live;
}

int httpd_unix_socket(const char *path, mode_t mode, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (!path || !*path || strlen(path) >= sizeof sa.sun_path) {
		snprintf(err, errlen, "socket path \"%s\" is empty or too long (max %zu bytes)",
		         path ? path : "", sizeof sa.sun_path - 1);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (mkdir_parents(path) < 0) {
		snprintf(err, errlen, "cannot create the directory of socket %s: %s", path,
		         strerror(errno));
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		if (errno != EADDRINUSE)
			goto bind_failed;
		if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a socket", path);
			goto fail;
		}
		if (unix_in_use(&sa)) {
			snprintf(err, errlen, "socket %s is in use by another agent "
			         "(use --socket to pick another path)", path);
			goto fail;
		}
		unlink(path);   /* stale: left by an agent that died */
		if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
			goto bind_failed;
	}
	/* Nobody can connect before listen(), so there is no window with the
	 * default permissions. */
	if (chmod(path, mode) < 0 || listen(fd, SOMAXCONN) < 0) {
		snprintf(err, errlen, "cannot set up socket %s: %s", path, strerror(errno));
		unlink(path);
		goto fail;
	}
	return fd;
bind_failed:
	snprintf(err, errlen, "cannot bind socket %s: %s", path, strerror(errno));
fail:
	close(fd);
	return -1;
}

int httpd_tcp_socket(const char *addr, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
	                          .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL, *ai;
	char host[256];
	const char *colon = addr ? strrchr(addr, ':') : NULL;
	const char *port = colon ? colon + 1 : "";
	size_t hostlen = colon ? (size_t)(colon - addr) : 0;
	int rc, fd = -1, one = 1, zero = 0, saved = 0;

	if (!colon || !*port || strspn(port, "0123456789") != strlen(port) ||
	    strtol(port, NULL, 10) > 65535 || hostlen >= sizeof host) {
		snprintf(err, errlen, "bad TCP address \"%s\" (want HOST:PORT or :PORT)",
		         addr ? addr : "");
		return -1;
	}
	if (hostlen >= 2 && addr[0] == '[' && addr[hostlen - 1] == ']') {
		addr++;
		hostlen -= 2;
	}
	memcpy(host, addr, hostlen);
	host[hostlen] = '\0';
	rc = getaddrinfo(hostlen ? host : NULL, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve \"%s\": %s", host, gai_strerror(rc));
		return -1;
	}
	/* ":PORT" means every address: try the IPv6 wildcard first, as a dual
	 * stack socket that also takes IPv4, then whatever else resolved. */
	for (int pass = hostlen ? 1 : 0; pass < 2 && fd < 0; pass++) {
		for (ai = res; ai && fd < 0; ai = ai->ai_next) {
			if (pass == 0 && ai->ai_family != AF_INET6)
				continue;
			fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			            ai->ai_protocol);
			if (fd < 0) {
				saved = errno;
				continue;
			}
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
			if (pass == 0)
				setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
			if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0)
				break;
			saved = errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, errlen, "cannot listen on %s:%s: %s", host, port, strerror(saved));
		return -1;
	}
	return fd;
}
