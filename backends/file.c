/* The embedded file backend: an OFD write lock on one file.
 *
 * The kernel releases the lock when the holder's last descriptor closes, also
 * when the holder dies, so crash failover is immediate. Waiters keep the file
 * open and watch it with inotify: the holder's close (clean release or death)
 * raises IN_CLOSE_WRITE, which wakes them at once; a slow timer covers shared
 * volumes where inotify sees nothing. The file holds the holder's id and its
 * token ("token=N\nholder=ID\n"), written only under the lock, and the
 * handover record a leader that resigned in favour of another candidate left
 * ("handover=RECORD\n", common/handover.h): a new holder keeps it in the
 * file until the core clears it (clear_handover), so that a candidate that
 * stands aside (resign) does not erase it.
 *
 * The token counter lives apart, in NAME.token next to NAME.lock
 * (file_common.h), with the inode of the lock file its last holder locked. A
 * lock is only as good as the file it is on: if the lock file is removed or
 * replaced, a new file at the path can be locked while the old holder still
 * runs on the old one. So a candidate that locks a file other than the one
 * the last holder locked does not lead until that holder cannot be running:
 * at once if it still has the old file open and finds it unlocked (the guard
 * keeps the lock until the old leader's whole tree is gone), else after one
 * TTL (the old holder checks its file at every renewal, and its deadline is
 * its last good check + TTL - margin). A holder notices the replacement of
 * its own file at once (inotify) and steps down.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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
#include "common/duration.h"
#include "common/handover.h"
#include "common/log.h"

/* Re-check interval where inotify cannot see other hosts (NFS). */
#define POLL_INTERVAL 0.5

struct backend {
	struct backend_params p;
	char *path;
	int fd;                      /* open lock file, -1 when out of the election */
	int ino_fd;                  /* inotify, -1 if unavailable */
	int old_fd;                  /* the file the path named before it was replaced, -1 */
	char *token_path;            /* the token counter (file_token_path) */
	bool campaigning, holding;
	bool settling;               /* holding a replaced file: not leading before settle_until */
	int64_t settle_until_ns;
	uint64_t old_dev, old_ino;   /* the file the last holder locked, while settling */
	uint64_t token;
	uint64_t seen_token;         /* highest token seen in the lock file: never go below */
	int token_errno;             /* last error taking a token (logged once per kind) */
	char leader[256];            /* last reported leader ("" = none) */
	char handover[HANDOVER_MAX]; /* the record found in the file we hold ("" = none) */

	ev_io ino_watcher;
	ev_timer poll_timer;
	ev_timer settle_timer;
	ev_timer kick;               /* delivers queued events from the loop */

	/* Events waiting for delivery, in this order. */
	bool ev_alive, ev_elected, ev_leader, ev_lost, ev_closed, ev_failed;
	bool sync_content;           /* the holder's content is written, not yet synced */
	int64_t alive_sent_ns;
	char lost_reason[128], fail_reason[PATH_MAX + 64];
	char elected_handover[HANDOVER_MAX]; /* with ev_elected */
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
	char handover[sizeof(b->elected_handover)];
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
	memcpy(handover, b->elected_handover, sizeof(handover));
	b->ev_failed = b->ev_alive = b->ev_elected = b->ev_leader = b->ev_lost = b->ev_closed = false;
	if (failed)
		ev->session_failed(ctx, fail);
	if (alive)
		ev->session_alive(ctx, sent);
	if (elected)
		ev->elected(ctx, token, handover[0] ? handover : NULL);
	/* After the command started (elected): the sync is no step of the
	 * handover, the token counter is on disk already (file_token_bump). */
	if (b->sync_content) {
		b->sync_content = false;
		if (b->holding && fdatasync(b->fd) < 0)
			log_warnx("file: cannot sync %s: %s", b->path, strerror(errno));
	}
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

/* Keeps fd (the file the path named before) open, unlocked by us, to see when
 * nobody holds it any more (old_gone); open, its inode number cannot be
 * reused by a new file either. fd must not be the lock our command holds. */
static void keep_old(struct backend *b, int fd)
{
	if (b->old_fd >= 0)
		close(b->old_fd);
	b->old_fd = fd;
	if (fd >= 0)
		file_lock_fd(fd, F_UNLCK);   /* ours, if we had just taken it */
}

static int open_file(struct backend *b)
{
	keep_old(b, b->fd);
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
	b->holding = b->settling = false;
	ev_timer_stop(b->p.loop, &b->settle_timer);
}

/* The last holder's file (old_dev:old_ino) is provably free: we still have it
 * open and nobody holds its lock any more (nobody can lead on it again: the
 * path names another file). */
static bool old_gone(const struct backend *b)
{
	struct stat st;

	return b->old_fd >= 0 && fstat(b->old_fd, &st) == 0 && (uint64_t)st.st_dev == b->old_dev &&
	       (uint64_t)st.st_ino == b->old_ino && file_lock_free(b->old_fd);
}

static void lead(struct backend *b, int64_t sent)
{
	b->settling = false;
	ev_timer_stop(b->p.loop, &b->settle_timer);
	keep_old(b, -1);
	b->holding = true;
	/* The holder's id and token, for followers and listings, and a floor
	 * for the next token should the counter be lost (synced once the
	 * command has started: on_kick), and the handover record found. */
	file_read_handover(b->fd, b->handover, sizeof(b->handover));
	if (file_write_content(b->fd, b->token, b->p.id, b->handover, false) < 0)
		log_warnx("file: cannot write %s: %s", b->path, strerror(errno));
	else
		b->sync_content = true;
	report_alive(b, sent);
	memcpy(b->elected_handover, b->handover, sizeof(b->handover));
	b->ev_elected = true;
	report_leader(b, b->p.id);
	queue_kick(b);
}

/* Holding a replaced file: lead once its last holder cannot be running,
 * with this file recorded as ours first. true if leading now. */
static bool settle(struct backend *b)
{
	int64_t sent = clock_now_ns();

	if (!b->settling)
		return false;
	if (same_file(b) && sent < b->settle_until_ns && !old_gone(b))
		return false;
	if (same_file(b) && file_token_record(b->token_path, "lock", b->fd) < 0) {
		log_debug("file: cannot record %s in %s: %s; retrying", b->path, b->token_path,
		          strerror(errno));
		return false;            /* the poll timer comes back */
	}
	/* Recorded: a file that replaces ours from now on is seen as replaced
	 * by whoever locks it, so this check is the last one needed. */
	if (!same_file(b)) {
		log_info("file: %s was replaced again while waiting; starting over", b->path);
		close_file(b);
		open_file(b);
		return false;
	}
	lead(b, sent);
	return true;
}

static void on_settle(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	settle(w->data);
}

static void start_settling(struct backend *b, uint64_t last_token)
{
	char ttl[32];

	b->settling = true;
	b->settle_until_ns = clock_now_ns() + b->p.ttl_ns;
	if (settle(b) || !b->settling)
		return;
	duration_format(b->p.ttl_ns, ttl, sizeof(ttl));
	log_warnx("file: %s is not the file that the holder of token %" PRIu64 " locked (it was "
	          "removed or replaced); not leading for %s (the TTL) unless that holder is seen gone",
	          b->path, last_token, ttl);
	ev_timer_set(&b->settle_timer, clock_ns_to_ev(b->p.ttl_ns), 0.);
	ev_timer_start(b->p.loop, &b->settle_timer);
}

/* Holding, and the path names another file now: lost. */
static bool check_replaced(struct backend *b)
{
	char self[64];

	if (!b->holding || b->settling || same_file(b))
		return false;
	snprintf(b->lost_reason, sizeof(b->lost_reason), "lock file %s was removed or replaced", b->path);
	/* A description of our own on the old file, so that we see when our
	 * command and its guard (which hold the lock on) are gone. */
	snprintf(self, sizeof(self), "/proc/self/fd/%d", b->fd);
	keep_old(b, open(self, O_RDONLY | O_CLOEXEC));
	close_file(b);
	b->campaigning = false;
	b->ev_lost = true;
	queue_kick(b);
	return true;
}

static void try_acquire(struct backend *b)
{
	char holder[sizeof(b->leader)];
	uint64_t counter;
	int64_t sent;
	bool replaced;

	settle(b);
	if (!b->campaigning || b->holding)
		return;
	if (b->fd < 0 && open_file(b) < 0) {
		log_debug("file: cannot open %s: %s", b->path, strerror(errno));
		return;
	}
	sent = clock_now_ns();
	if (file_lock_fd(b->fd, F_WRLCK) < 0) {
		if (errno != EAGAIN && errno != EACCES)
			log_warnx("file: lock %s: %s", b->path, strerror(errno));
		if (file_read_content(b->fd, &counter, holder, sizeof(holder)) == 0) {
			report_leader(b, holder);
			if (counter > b->seen_token)
				b->seen_token = counter;
		}
		return;
	}
	if (!same_file(b)) {
		/* Replaced under us: the lock on the old inode means nothing. */
		if (open_file(b) == 0)
			try_acquire(b);
		return;
	}
	file_read_content(b->fd, &counter, holder, sizeof(holder));
	if (counter > b->seen_token)
		b->seen_token = counter;
	if (file_token_bump(b->token_path, "lock", b->fd, b->seen_token, &b->token, &replaced,
	                    &b->old_dev, &b->old_ino) < 0) {
		if (errno != b->token_errno)
			log_error("file: cannot take the next token from %s: %s%s", b->token_path,
			          strerror(errno), errno == EINVAL ? " (it holds no counter: restore it, or "
			          "remove it only if no holder of this election can be running)" : "");
		b->token_errno = errno;
		file_lock_fd(b->fd, F_UNLCK);
		return;
	}
	b->token_errno = 0;
	b->holding = true;
	if (replaced) {
		start_settling(b, b->token - 1);
		return;
	}
	/* Recorded as ours: a file that replaces ours after this is seen as
	 * replaced by whoever locks it, so checking now is enough. */
	if (!same_file(b)) {
		close_file(b);
		open_file(b);
		return;
	}
	lead(b, sent);
}

static void on_inotify(struct ev_loop *loop, ev_io *w, int revents)
{
	struct backend *b = w->data;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool rewatch = false;
	ssize_t n;

	(void)loop;
	(void)revents;
	if (check_replaced(b))
		return;
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
	if (check_replaced(b))
		return;
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
	if ((b->token_path = file_token_path(b->path)) == NULL) {
		snprintf(err, errlen, "out of memory");
		free(b->path);
		free(b);
		return -1;
	}
	b->p = *p;
	b->fd = b->old_fd = -1;
	b->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	ev_io_init(&b->ino_watcher, on_inotify, b->ino_fd, EV_READ);
	ev_timer_init(&b->poll_timer, on_poll, POLL_INTERVAL, POLL_INTERVAL);
	ev_timer_init(&b->kick, on_kick, 0., 0.);
	ev_timer_init(&b->settle_timer, on_settle, 0., 0.);
	b->ino_watcher.data = b->poll_timer.data = b->kick.data = b->settle_timer.data = b;
	if (b->ino_fd >= 0)
		ev_io_start(p->loop, &b->ino_watcher);
	*out = b;
	return 0;
}

static void file_campaign(struct backend *b)
{
	static bool warned;

	if (!warned && file_on_tmpfs(b->path)) {
		warned = true;
		log_warnx("file: %s is on a tmpfs, so its token counter %s restarts after a reboot; "
		          "put the lock file on persistent storage (e.g. /var/lib/elect) to keep "
		          "fencing tokens increasing", b->path, b->token_path);
	}
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
	if (!check_replaced(b))
		report_alive(b, sent);
}

/* Leaves the file with no holder and `handover` (NULL: the record found). */
static void release(struct backend *b, const char *handover)
{
	b->campaigning = false;
	ev_timer_stop(b->p.loop, &b->poll_timer);
	/* Not synced: the release must not wait for the disk (the content is
	 * for listings and the next holder, who reads it from the same cache;
	 * the kernel's lock is what waiters take). */
	if (b->holding && !b->settling &&
	    file_write_content(b->fd, b->token, "", handover ? handover : b->handover, false) < 0)
		log_warnx("file: cannot write %s: %s", b->path, strerror(errno));
	b->handover[0] = '\0';
	close_file(b);
}

static void file_resign(struct backend *b)
{
	release(b, NULL);
}

static void file_handover(struct backend *b, const char *record)
{
	release(b, record);
}

/* Only a holder may write the file: the record stays otherwise, and the
 * next holder clears it (the core clears what it finds when it leads). */
static void file_clear_handover(struct backend *b, const char *record)
{
	if (!b->holding || b->settling || strcmp(b->handover, record) != 0)
		return;
	b->handover[0] = '\0';
	if (file_write_content(b->fd, b->token, b->p.id, NULL, true) < 0)
		log_warnx("file: cannot write %s: %s", b->path, strerror(errno));
}

static int file_leader_fd(struct backend *b)
{
	return b->holding && !b->settling ? b->fd : -1;
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
	keep_old(b, -1);
	ev_io_stop(b->p.loop, &b->ino_watcher);
	ev_timer_stop(b->p.loop, &b->kick);
	if (b->ino_fd >= 0)
		close(b->ino_fd);
	free(b->token_path);
	free(b->path);
	free(b);
}

const struct backend_ops file_backend_ops = {
	.scheme = "file",
	.create = file_create,
	.campaign = file_campaign,
	.renew = file_renew,
	.resign = file_resign,
	.handover = file_handover,
	.clear_handover = file_clear_handover,
	.close = file_close,
	.destroy = file_destroy,
	.leader_fd = file_leader_fd,
};
