/* The embedded file backend: an OFD write lock on one file.
 *
 * The kernel releases the lock when the holder's last descriptor closes, also
 * when the holder dies, so crash failover is immediate. Waiters keep the file
 * open and watch it with inotify: the holder's close (clean release or death)
 * raises IN_CLOSE_WRITE, which wakes them at once; a slow timer covers shared
 * volumes where inotify sees nothing. The file holds the token counter and the
 * holder's id ("token=N\nholder=ID\n"), written only under the lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ev.h>

#include "backends/backend.h"
#include "backends/file_common.h"
#include "common/clock.h"
#include "common/log.h"

/* Re-check interval where inotify cannot see other hosts (NFS). */
#define POLL_INTERVAL 0.5

struct backend {
	struct backend_params p;
	char *path;
	int fd;                      /* open lock file, -1 when out of the election */
	int ino_fd;                  /* inotify, -1 if unavailable */
	bool campaigning, holding;
	uint64_t token;
	char leader[256];            /* last reported leader ("" = none) */

	ev_io ino_watcher;
	ev_timer poll_timer;
	ev_timer kick;               /* delivers queued events from the loop */

	/* Events waiting for delivery, in this order. */
	bool ev_alive, ev_elected, ev_leader, ev_lost, ev_closed, ev_failed;
	int64_t alive_sent_ns;
	char lost_reason[128], fail_reason[PATH_MAX + 64];
};

static void queue_kick(struct backend *b)
{
	if (!ev_is_active(&b->kick)) {
		ev_timer_set(&b->kick, 0., 0.);
		ev_timer_start(b->p.loop, &b->kick);
	}
}

static void on_kick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct backend *b = w->data;
	const struct backend_events *ev = b->p.ev;
	void *ctx = b->p.ctx;
	char leader[sizeof(b->leader)], reason[sizeof(b->lost_reason)], fail[sizeof(b->fail_reason)];
	bool failed = b->ev_failed, alive = b->ev_alive, elected = b->ev_elected, leader_changed = b->ev_leader;
	bool lost = b->ev_lost, closed = b->ev_closed;
	uint64_t token = b->token;
	int64_t sent = b->alive_sent_ns;

	(void)loop;
	(void)revents;
	/* Copy first: every callback may call back into this backend. */
	memcpy(leader, b->leader, sizeof(leader));
	memcpy(reason, b->lost_reason, sizeof(reason));
	memcpy(fail, b->fail_reason, sizeof(fail));
	b->ev_failed = b->ev_alive = b->ev_elected = b->ev_leader = b->ev_lost = b->ev_closed = false;
	if (failed)
		ev->session_failed(ctx, fail);
	if (alive)
		ev->session_alive(ctx, sent);
	if (elected)
		ev->elected(ctx, token);
	if (leader_changed)
		ev->leader(ctx, leader[0] ? leader : NULL);
	if (lost)
		ev->lost(ctx, reason);
	if (closed)
		ev->closed(ctx);
}

static void report_leader(struct backend *b, const char *id)
{
	if (strcmp(b->leader, id) == 0)
		return;
	snprintf(b->leader, sizeof(b->leader), "%s", id);
	b->ev_leader = true;
	queue_kick(b);
}

static void report_alive(struct backend *b, int64_t sent)
{
	b->alive_sent_ns = sent;
	b->ev_alive = true;
	queue_kick(b);
}

/* ---- the lock -------------------------------------------------------- */

/* The descriptor still names the file at the path (nobody replaced it). */
static bool same_file(const struct backend *b)
{
	return file_same(b->fd, b->path);
}

static void watch_file(struct backend *b)
{
	if (b->ino_fd < 0)
		return;
	if (inotify_add_watch(b->ino_fd, b->path, IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB |
	                      IN_DELETE_SELF | IN_MOVE_SELF) < 0)
		log_debug("file: inotify on %s: %s", b->path, strerror(errno));
}

static int open_file(struct backend *b)
{
	if (b->fd >= 0)
		close(b->fd);
	if (file_make_parents(b->path) < 0 ||
	    (b->fd = open(b->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0) {
		b->fd = -1;
		return -1;
	}
	watch_file(b);
	return 0;
}

static void close_file(struct backend *b)
{
	if (b->fd >= 0)
		close(b->fd);            /* releases the OFD lock, wakes waiters */
	b->fd = -1;
	b->holding = false;
}

static void try_acquire(struct backend *b)
{
	char holder[sizeof(b->leader)];
	uint64_t counter;
	int64_t sent;

	if (!b->campaigning || b->holding)
		return;
	if (b->fd < 0 && open_file(b) < 0) {
		log_warnx("file: cannot open %s: %s", b->path, strerror(errno));
		return;
	}
	sent = clock_now_ns();
	if (file_lock_fd(b->fd, F_WRLCK) < 0) {
		if (errno != EAGAIN && errno != EACCES)
			log_warnx("file: lock %s: %s", b->path, strerror(errno));
		if (file_read_content(b->fd, &counter, holder, sizeof(holder)) == 0)
			report_leader(b, holder);
		return;
	}
	if (!same_file(b)) {
		/* Replaced under us: the lock on the old inode means nothing. */
		if (open_file(b) == 0)
			try_acquire(b);
		return;
	}
	file_read_content(b->fd, &counter, holder, sizeof(holder));
	b->token = counter + 1;
	if (file_write_content(b->fd, b->token, b->p.id, true) < 0) {
		log_warnx("file: cannot write %s: %s", b->path, strerror(errno));
		file_lock_fd(b->fd, F_UNLCK);
		return;
	}
	b->holding = true;
	report_alive(b, sent);
	b->ev_elected = true;
	report_leader(b, b->p.id);
	queue_kick(b);
}

static void on_inotify(struct ev_loop *loop, ev_io *w, int revents)
{
	struct backend *b = w->data;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool rewatch = false;
	ssize_t n;

	(void)loop;
	(void)revents;
	while ((n = read(b->ino_fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ie = (struct inotify_event *)p;
			if (ie->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED))
				rewatch = true;
			p += sizeof(*ie) + ie->len;
		}
	}
	if (rewatch && b->campaigning && !b->holding)
		open_file(b);            /* follow the file that now has the name */
	try_acquire(b);
}

static void on_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct backend *b = w->data;

	(void)loop;
	(void)revents;
	if (b->campaigning && !b->holding && b->fd >= 0 && !same_file(b))
		open_file(b);
	try_acquire(b);
}

/* ---- backend_ops ----------------------------------------------------- */

static int file_create(struct backend **out, const struct backend_params *p, char *err, size_t errlen)
{
	struct backend *b = calloc(1, sizeof(*b));

	if (b == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (file_url_path(p->url, "file:///DIR/NAME.lock", &b->path, err, errlen) < 0) {
		free(b);
		return -1;
	}
	b->p = *p;
	b->fd = -1;
	b->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	ev_io_init(&b->ino_watcher, on_inotify, b->ino_fd, EV_READ);
	ev_timer_init(&b->poll_timer, on_poll, POLL_INTERVAL, POLL_INTERVAL);
	ev_timer_init(&b->kick, on_kick, 0., 0.);
	b->ino_watcher.data = b->poll_timer.data = b->kick.data = b;
	if (b->ino_fd >= 0)
		ev_io_start(p->loop, &b->ino_watcher);
	*out = b;
	return 0;
}

static void file_campaign(struct backend *b)
{
	b->campaigning = true;
	if (b->fd < 0 && open_file(b) < 0) {
		log_warnx("file: cannot open %s: %s (check the directory and its permissions)",
		          b->path, strerror(errno));
	}
	ev_timer_again(b->p.loop, &b->poll_timer);
	try_acquire(b);
}

static void file_renew(struct backend *b)
{
	int64_t sent = clock_now_ns();

	if (b->campaigning && b->fd < 0 && open_file(b) < 0) {
		/* Backend reachability for the core: the file cannot be used. */
		snprintf(b->fail_reason, sizeof(b->fail_reason), "cannot open %s: %s", b->path, strerror(errno));
		b->ev_failed = true;
		queue_kick(b);
		return;
	}
	if (b->holding && !same_file(b)) {
		snprintf(b->lost_reason, sizeof(b->lost_reason), "lock file %s was removed or replaced", b->path);
		close_file(b);
		b->campaigning = false;
		b->ev_lost = true;
		queue_kick(b);
		return;
	}
	report_alive(b, sent);
}

static void file_resign(struct backend *b)
{
	b->campaigning = false;
	ev_timer_stop(b->p.loop, &b->poll_timer);
	if (b->holding)
		file_write_content(b->fd, b->token, "", true);
	close_file(b);
}

static int file_leader_fd(struct backend *b)
{
	return b->holding ? b->fd : -1;
}

static void file_close(struct backend *b)
{
	file_resign(b);
	b->ev_closed = true;
	queue_kick(b);
}

static void file_destroy(struct backend *b)
{
	if (b == NULL)
		return;
	file_resign(b);
	ev_io_stop(b->p.loop, &b->ino_watcher);
	ev_timer_stop(b->p.loop, &b->kick);
	if (b->ino_fd >= 0)
		close(b->ino_fd);
	free(b->path);
	free(b);
}

const struct backend_ops file_backend_ops = {
	.scheme = "file",
	.create = file_create,
	.campaign = file_campaign,
	.renew = file_renew,
	.resign = file_resign,
	.close = file_close,
	.destroy = file_destroy,
	.leader_fd = file_leader_fd,
};
