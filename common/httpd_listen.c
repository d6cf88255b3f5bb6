/* Listening sockets for httpd (see httpd.h): a Unix socket that replaces a
 * stale file but never a live agent's socket, a TCP address (loopback unless
 * a host is given), accepting, and each listener's connection limit.
 *
 * Every listener has its own HTTPD_MAX_CONNS slots, so a flood on one (idle
 * TCP connections, say) cannot lock out another (the Unix socket, the
 * probes). A new connection on a full listener closes that listener's
 * longest-idle connection (one with no request in progress); failing that,
 * its oldest long-poll, whose client sees the close and may reconnect; never
 * a connection marked with httpd_keep_connection(). When every slot is such
 * a kept connection, the new one is refused. */
#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ev.h>

#include "common/httpd.h"
#include "common/httpd_int.h"
#include "common/log.h"

#define HTTPD_MAX_CONNS    128      /* per listener */
#define HTTPD_ACCEPT_PAUSE 1.0      /* out of fds: stop accepting for a while */
#define SUN_PATH_MAX (sizeof ((struct sockaddr_un *)0)->sun_path - 1)

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

int httpd_unix_path_check(const char *path, char *err, size_t errlen)
{
	if (!path || !*path || strlen(path) > SUN_PATH_MAX) {
		snprintf(err, errlen, "socket path \"%.80s%s\" is %s (a Unix socket path has at "
		         "most %zu bytes: pick a shorter one)", path ? path : "",
		         path && strlen(path) > 80 ? "..." : "", path && *path ? "too long" : "empty",
		         SUN_PATH_MAX);
		return -1;
	}
	return 0;
}

int httpd_parse_socket_mode(const char *s, mode_t *mode, char *err, size_t errlen)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = s && *s ? strtoul(s, &end, 8) : 0;
	if (!s || !*s || errno || *end || strspn(s, "01234567") != strlen(s) || v > 0777 ||
	    (v & 0600) != 0600) {
		snprintf(err, errlen, "socket mode \"%s\": want octal permissions such as 0660 or "
		         "0600 (the owner needs rw)", s ? s : "");
		return -1;
	}
	*mode = (mode_t)v;
	return 0;
}

int httpd_parse_socket_group(const char *s, gid_t *gid, char *err, size_t errlen)
{
	struct group *g;
	char *end;
	unsigned long v;

	if (!s || !*s) {
		snprintf(err, errlen, "socket group is empty: give a group name or a numeric gid");
		return -1;
	}
	if (strspn(s, "0123456789") == strlen(s)) {
		errno = 0;
		v = strtoul(s, &end, 10);
		if (errno || v >= (unsigned long)(gid_t)-1) {
			snprintf(err, errlen, "socket group \"%s\": gid out of range", s);
			return -1;
		}
		*gid = (gid_t)v;
		return 0;
	}
	errno = 0;
	g = getgrnam(s);
	if (!g) {
		snprintf(err, errlen, "socket group \"%s\": no such group (create it, e.g. "
		         "groupadd --system %s, or give a numeric gid)", s, s);
		return -1;
	}
	*gid = g->gr_gid;
	return 0;
}

int httpd_unix_socket(const char *path, mode_t mode, gid_t group, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (httpd_unix_path_check(path, err, errlen) < 0)
		return -1;
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
	 * default permissions or group. */
	if (group != (gid_t)-1 && chown(path, (uid_t)-1, group) < 0) {
		snprintf(err, errlen, "cannot give socket %s to group %u: %s (the agent must run "
		         "as root or be a member of that group)", path, (unsigned)group,
		         strerror(errno));
		unlink(path);
		goto fail;
	}
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

/* "HOST:PORT", "[V6]:PORT" or ":PORT" into host (127.0.0.1 for none) and
 * port. -1 with a message. */
static int tcp_addr_split(const char *addr, char *host, size_t hostlen, char *port,
                          size_t portlen, char *err, size_t errlen)
{
	const char *colon = addr ? strrchr(addr, ':') : NULL;
	const char *p = colon ? colon + 1 : "";
	size_t n = colon ? (size_t)(colon - addr) : 0;

	if (!colon || !*p || strlen(p) > 5 || strspn(p, "0123456789") != strlen(p) ||
	    strtol(p, NULL, 10) > 65535 || n + 1 > hostlen ||
	    (n > 0 && addr[0] == '[') != (n > 0 && addr[n - 1] == ']') ||
	    (n > 0 && addr[0] != '[' && memchr(addr, ':', n))) {
		snprintf(err, errlen, "bad TCP address \"%.100s\": want HOST:PORT with a port up to "
		         "65535 (e.g. 127.0.0.1:4040, 0.0.0.0:4040 for every IPv4 address, "
		         "[::]:4040 for all), or :PORT for 127.0.0.1", addr ? addr : "");
		return -1;
	}
	if (n >= 2 && addr[0] == '[') {
		addr++;
		n -= 2;
	}
	memcpy(host, addr, n);
	host[n] = '\0';
	if (n == 0)
		snprintf(host, hostlen, "127.0.0.1");   /* no host: loopback only */
	snprintf(port, portlen, "%s", p);
	return 0;
}

static int tcp_resolve(const char *addr, struct addrinfo **res, char *host, size_t hostlen,
                       char *port, size_t portlen, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
	                          .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	int rc;

	if (tcp_addr_split(addr, host, hostlen, port, portlen, err, errlen) < 0)
		return -1;
	rc = getaddrinfo(host, port, &hints, res);
	if (rc != 0) {
		snprintf(err, errlen, "TCP address \"%.100s\": cannot resolve \"%s\": %s", addr, host,
		         gai_strerror(rc));
		return -1;
	}
	return 0;
}

int httpd_tcp_addr_check(const char *addr, char *err, size_t errlen)
{
	struct addrinfo *res = NULL;
	char host[256], port[8];

	if (tcp_resolve(addr, &res, host, sizeof host, port, sizeof port, err, errlen) < 0)
		return -1;
	freeaddrinfo(res);
	return 0;
}

int httpd_tcp_socket(const char *addr, char *err, size_t errlen)
{
	struct addrinfo *res = NULL, *ai;
	char host[256], port[8];
	int fd = -1, one = 1, zero = 0, saved = 0;

	if (tcp_resolve(addr, &res, host, sizeof host, port, sizeof port, err, errlen) < 0)
		return -1;
	for (ai = res; ai && fd < 0; ai = ai->ai_next) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ai->ai_addr;

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		            ai->ai_protocol);
		if (fd < 0) {
			saved = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		/* "[::]:PORT": a dual-stack socket that takes IPv4 too. */
		if (ai->ai_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr))
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0)
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, errlen, "cannot listen on %s port %s: %s", host, port, strerror(saved));
		return -1;
	}
	return fd;
}

/* What a TCP socket is bound to, for logs, and whether that is loopback. */
static bool tcp_describe(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof ss;
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	bool loopback = false;

	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) == 0 && ss.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
		port = ntohs(sin->sin_port);
		loopback = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
		const uint8_t *b = sin6->sin6_addr.s6_addr;

		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof host);
		port = ntohs(sin6->sin6_port);
		loopback = IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr) ||
		           (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) && b[12] == 127);
	}
	snprintf(buf, len, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
	return loopback;
}

/* ---- accepting */

static void accept_pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct httpd *h = w->data;

	(void)revents;
	for (struct listener *l = h->listeners; l; l = l->next)
		ev_io_start(loop, &l->io);
}

/* The connection of l to close for a new one: the longest idle (no request
 * in progress), else the oldest long-poll; never a kept one. NULL if none. */
static struct conn *eviction_victim(struct listener *l)
{
	struct conn *best = NULL;
	int best_rank = 0;

	for (struct conn *c = l->h->conns; c; c = c->next) {
		int rank = !c->req_active ? 1 : c->deferred ? 2 : 0;

		if (c->l != l || c->keep || rank == 0)
			continue;
		if (!best || rank < best_rank ||
		    (rank == best_rank && c->last_active < best->last_active)) {
			best = c;
			best_rank = rank;
		}
	}
	return best;
}

/* l is full: make room. false if every slot is kept. */
static bool make_room(struct listener *l)
{
	struct conn *victim = eviction_victim(l);

	if (!l->full_logged)
		log_warnx("http: %s: %d connections open, the limit; each new one now closes "
		          "the longest-idle one", l->name, l->max_conns);
	l->full_logged = true;
	if (!victim)
		return false;
	log_debug("http: %s full: closing the %s connection from %s", l->name,
	          victim->req_active ? "oldest long-poll" : "longest-idle", victim->peer);
	httpd_conn_close(victim);
	return true;
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct listener *l = w->data;
	struct httpd *h = l->h;

	(void)revents;
	for (;;) {
		struct sockaddr_storage sa;
		socklen_t salen = sizeof sa;
		int fd = accept4(l->fd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* Out of descriptors or memory: the listener would stay
			 * readable and spin, so stop accepting for a moment. */
			log_warnx("http: accept: %s; pausing new connections", strerror(errno));
			for (struct listener *o = h->listeners; o; o = o->next)
				ev_io_stop(loop, &o->io);
			ev_timer_stop(loop, &h->accept_pause);
			ev_timer_set(&h->accept_pause, HTTPD_ACCEPT_PAUSE, 0.);
			ev_timer_start(loop, &h->accept_pause);
			return;
		}
		if (l->nconns >= l->max_conns && !make_room(l)) {
			close(fd);      /* every slot carries state: refuse */
			continue;
		}
		httpd_conn_new(l, fd, &sa, salen);
	}
}

/* ---- listeners */

static struct listener *listener_add(struct httpd *h, int fd, bool tcp, const char *unix_path)
{
	struct listener *l = calloc(1, sizeof *l);
	struct stat st;

	if (!l) {
		close(fd);
		return NULL;
	}
	l->h = h;
	l->fd = fd;
	l->tcp = tcp;
	l->max_conns = HTTPD_MAX_CONNS;
	if (unix_path && stat(unix_path, &st) == 0) {
		l->unix_path = strdup(unix_path);
		l->dev = st.st_dev;
		l->ino = st.st_ino;
	}
	snprintf(l->name, sizeof l->name, "unix socket %s", unix_path ? unix_path : "");
	ev_io_init(&l->io, accept_cb, fd, EV_READ);
	l->io.data = l;
	l->next = h->listeners;
	h->listeners = l;
	ev_io_start(h->loop, &l->io);
	return l;
}

int httpd_listen_unix(struct httpd *h, const char *path, mode_t mode, gid_t group, char *err,
                      size_t errlen)
{
	int fd = httpd_unix_socket(path, mode, group, err, errlen);

	if (fd < 0)
		return -1;
	if (!listener_add(h, fd, false, path)) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

int httpd_listen_tcp(struct httpd *h, const char *addr, struct httpd_bound *bound, char *err,
                     size_t errlen)
{
	int fd = httpd_tcp_socket(addr, err, errlen);
	struct httpd_bound b;
	struct listener *l;

	if (fd < 0)
		return -1;
	b.loopback = tcp_describe(fd, b.addr, sizeof b.addr);
	if ((l = listener_add(h, fd, true, NULL)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(l->name, sizeof l->name, "TCP %s", b.addr);
	if (bound)
		*bound = b;
	return 0;
}

void httpd_listeners_init(struct httpd *h)
{
	ev_timer_init(&h->accept_pause, accept_pause_cb, 0., 0.);
	h->accept_pause.data = h;
}

void httpd_listeners_free(struct httpd *h)
{
	struct stat st;

	while (h->listeners) {
		struct listener *l = h->listeners;

		h->listeners = l->next;
		ev_io_stop(h->loop, &l->io);
		close(l->fd);
		/* Only remove the file if it is still the socket we made. */
		if (l->unix_path && stat(l->unix_path, &st) == 0 && st.st_dev == l->dev &&
		    st.st_ino == l->ino)
			unlink(l->unix_path);
		free(l->unix_path);
		free(l);
	}
	ev_timer_stop(h->loop, &h->accept_pause);
}
