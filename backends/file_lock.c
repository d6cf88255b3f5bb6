/* The file lock backend for lockd: one directory (the URL path), OFD write
 * locks on files in it.
 *
 *   lock NAME (limit 1)        DIR/NAME.lock
 *   semaphore NAME, limit N    DIR/NAME.slot0 .. DIR/NAME.slot<N-1>; a hold
 *                              takes the first free slot
 *   fencing token of NAME      DIR/NAME.token: "token=N\n" and per slot the
 *                              inode its last holder locked, bumped under its
 *                              own OFD lock by whoever is granted NAME
 *                              (file_token_bump)
 *   who holds a slot           its content, "token=N\nholder=ID\n", written
 *                              by the holder right after taking it (list()
 *                              believes it only while the file is locked)
 *
 * The kernel drops an OFD lock when the last descriptor of its open file
 * description closes, also when the holder dies, so a crashed lockd frees
 * its locks at once. The "session" is lockd itself: session_alive is
 * reported on open and on every renew, which also checks that no held file
 * was removed or replaced (hold_lost; inotify makes it at once).
 *
 * A slot file that is not the one its last holder locked (removed or
 * replaced since: NAME.token says which inode that holder had) may still be
 * held, on the old file, by a lockd that has not noticed yet. Its new taker
 * keeps the lock but grants it only after one TTL: the old holder's lockd
 * checks its files at every renewal and revokes before its deadline.
 *
 * Waiting: the directory is watched with inotify; a holder's last close
 * raises IN_CLOSE_WRITE on its file, which wakes the waiters of that name
 * only. Probing uses a read-only descriptor and F_OFD_GETLK, so a waiter's
 * own attempts raise no IN_CLOSE_WRITE (no ping-pong between waiters). A
 * slow timer covers what inotify cannot see (shared volumes). Within one
 * lockd, waiters of a name are served in arrival order; across processes
 * fairness is best effort (whoever probes first after a release wins).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <ev.h>

#include "backends/file_common.h"
#include "backends/lock.h"
#include "common/clock.h"
#include "common/duration.h"
#include "common/log.h"

#define POLL_INTERVAL 0.5

enum fl_state { FL_PENDING, FL_HELD, FL_LOST };

struct fl_list {
	struct fl_list *next;
	char **names;
	size_t n;
	bool all;
	lock_list_cb cb;
	void *arg;
};

struct lock_hold {
	struct lock_session *s;
	char name[LOCK_NAME_MAX + 1];
	unsigned limit;
	void *ctx;
	enum fl_state state;
	int fd;                      /* held (or settling) slot file, -1 otherwise */
	int64_t settle_until_ns;     /* > 0: locked a replaced slot file, granted then */
	unsigned slot;               /* which slot fd is */
	char *path;                  /* held slot file's path */
	uint64_t token;
	bool queued_told;
	/* Events waiting for delivery. */
	bool ev_granted, ev_queued, ev_lost;
	char lost_reason[96];
	struct lock_hold *prev, *next;   /* arrival order */
};

struct lock_session {
	struct ev_loop *loop;
	const struct lock_events *ev;
	void *ctx;
	char *dir;
	char *id;
	int ino_fd, ino_wd;
	int64_t ttl_ns;
	bool tmpfs_warned;
	bool open, closing;
	struct lock_hold *head, *tail;
	ev_io ino_watcher;
	ev_timer poll_timer;
	ev_timer kick;
	struct fl_list *lists;       /* list() calls to answer from the loop */
	bool ev_alive, ev_failed, ev_closed, need_scan;
	int64_t alive_sent_ns;
	char failed_reason[160];
};

static void try_all(struct lock_session *s, const char *only_name);
static void deliver_list(struct lock_session *s, struct fl_list *l);

static void queue_kick(struct lock_session *s)
{
	if (!ev_is_active(&s->kick)) {
		ev_timer_set(&s->kick, 0., 0.);
		ev_timer_start(s->loop, &s->kick);
	}
}

/* The first hold with an event to deliver, its flag cleared. */
static struct lock_hold *next_event(struct lock_session *s, int *what)
{
	for (struct lock_hold *h = s->head; h; h = h->next) {
		*what = h->ev_granted ? 1 : h->ev_queued ? 2 : h->ev_lost ? 3 : 0;
		if (*what) {
			h->ev_granted = h->ev_queued = h->ev_lost = false;
			return h;
		}
	}
	return NULL;
}

/* Delivers queued events from the loop. Every callback may call back into
 * this backend (release, acquire), so the list is rescanned after each. */
static void on_kick(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct lock_session *s = w->data;
	struct lock_hold *h;
	char reason[sizeof(s->failed_reason)];
	int what;

	(void)loop;
	(void)revents;
	if (s->need_scan) {
		s->need_scan = false;
		try_all(s, NULL);
	}
	if (s->ev_alive) {
		s->ev_alive = false;
		s->ev->session_alive(s->ctx, s->alive_sent_ns);
	}
	if (s->ev_failed) {
		s->ev_failed = false;
		memcpy(reason, s->failed_reason, sizeof(reason));
		s->ev->session_failed(s->ctx, reason);
	}
	while ((h = next_event(s, &what)) != NULL) {
		if (what == 1)
			s->ev->granted(s->ctx, h, h->token);
		else if (what == 2 && s->ev->queued)
			s->ev->queued(s->ctx, h);
		else if (what == 3) {
			memcpy(reason, h->lost_reason, sizeof(h->lost_reason));
			s->ev->hold_lost(s->ctx, h, reason);
		}
	}
	while (s->lists)
		deliver_list(s, s->lists);
	if (s->ev_closed) {
		s->ev_closed = false;
		s->ev->closed(s->ctx);
	}
}

/* ---- files ----------------------------------------------------------- */

static char *slot_path(const struct lock_session *s, const char *name, unsigned limit, unsigned i)
{
	char *p = NULL;

	if ((limit == 1 ? asprintf(&p, "%s/%s.lock", s->dir, name)
	                : asprintf(&p, "%s/%s.slot%u", s->dir, name, i)) < 0)
		return NULL;
	return p;
}

/* DIR/NAME.token, and the key of a slot file in it: the file's own name,
 * "lock" for NAME.lock, "slotK" for NAME.slotK. */
static void token_names(const struct lock_hold *h, unsigned slot, char *path, size_t pathlen,
                        char *key, size_t keylen)
{
	snprintf(path, pathlen, "%s/%s.token", h->s->dir, h->name);
	if (h->limit == 1)
		snprintf(key, keylen, "lock");
	else
		snprintf(key, keylen, "slot%u", slot);
}

/* Takes slot's next token (DIR/NAME.token, file_token_bump) for fd, never
 * below the token in the slot file itself. 0 with *replaced set when the
 * slot's last holder locked another file; -1 on error (logged). */
static int next_token(struct lock_hold *h, unsigned slot, int fd, bool *replaced)
{
	char path[4200], holder[8], key[32];
	uint64_t floor = 0, dev, ino;

	token_names(h, slot, path, sizeof(path), key, sizeof(key));
	file_read_content(fd, &floor, holder, sizeof(holder));
	if (file_token_bump(path, key, fd, floor, &h->token, replaced, &dev, &ino) == 0)
		return 0;
	log_warnx("file: cannot take the next token from %s: %s%s", path, strerror(errno),
	          errno == EINVAL ? " (it holds no counter: restore it, or remove it only if no "
	                            "holder of this lock can be running)" : "");
	return -1;
}

static void grant(struct lock_hold *h)
{
	/* For listings only: a failure costs nothing but the holder's name. */
	if (file_write_content(h->fd, h->token, h->s->id, NULL, false) < 0)
		log_debug("file: cannot write %s: %s", h->path, strerror(errno));
	h->settle_until_ns = 0;
	h->state = FL_HELD;
	h->ev_granted = true;
}

static void drop_slot(struct lock_hold *h)
{
	close(h->fd);
	h->fd = -1;
	free(h->path);
	h->path = NULL;
	h->settle_until_ns = 0;
}

/* A hold on a replaced slot file: granted after the TTL, with the file
 * recorded as its slot's first (until then a later taker waits too);
 * dropped if the file is replaced again. true if granted now. */
static bool settle(struct lock_hold *h)
{
	char path[4200], key[32];

	if (!file_same(h->fd, h->path)) {
		drop_slot(h);
		return false;
	}
	if (clock_now_ns() < h->settle_until_ns)
		return false;
	token_names(h, h->slot, path, sizeof(path), key, sizeof(key));
	if (file_token_record(path, key, h->fd) < 0) {
		log_debug("file: cannot record %s in %s: %s; retrying", h->path, path, strerror(errno));
		return false;            /* the poll timer comes back */
	}
	/* Recorded: a later replacement is seen by its taker. */
	if (!file_same(h->fd, h->path)) {
		drop_slot(h);
		return false;
	}
	grant(h);
	return true;
}

/* Takes slot path if it is free: the locked descriptor, or -1. */
static int take_slot(const char *path)
{
	int probe = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0644), fd;
	bool free_now;

	if (probe < 0)
		return -1;
	free_now = file_lock_free(probe);
	close(probe);                /* read-only: no IN_CLOSE_WRITE for others */
	if (!free_now)
		return -1;
	if ((fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
		return -1;
	if (file_lock_fd(fd, F_WRLCK) == 0 && file_same(fd, path))
		return fd;
	close(fd);                   /* lost a race: rare */
	return -1;
}

/* One attempt for a pending hold. true if granted. */
static bool try_hold(struct lock_hold *h)
{
	struct lock_session *s = h->s;
	bool replaced;

	if (h->settle_until_ns > 0 && h->fd >= 0)
		return settle(h);
	for (unsigned i = 0; i < h->limit; i++) {
		char *path = slot_path(s, h->name, h->limit, i);
		int fd = path ? take_slot(path) : -1;

		if (fd < 0) {
			free(path);
			continue;
		}
		if (next_token(h, i, fd, &replaced) < 0) {
			close(fd);
			free(path);
			return false;
		}
		h->fd = fd;
		h->path = path;
		h->slot = i;
		/* Recorded as ours: a later replacement is seen by its taker. */
		if (!replaced && !file_same(fd, path)) {
			drop_slot(h);
			continue;
		}
		if (replaced) {
			char ttl[32];
			duration_format(s->ttl_ns, ttl, sizeof(ttl));
			log_warnx("file: %s is not the file that the holder of token %" PRIu64 " of %s "
			          "locked (it was removed or replaced); granting it only in %s (the TTL), "
			          "when that holder cannot hold it any more", path, h->token - 1, h->name, ttl);
			h->settle_until_ns = clock_now_ns() + s->ttl_ns;
			return false;
		}
		grant(h);
		return true;
	}
	return false;
}

/* Pending holds (of one name, or all), in arrival order. Once an attempt
 * for a name fails, later waiters of that name are not tried: they would
 * only fail too, and must not overtake. */
static void try_all(struct lock_session *s, const char *only_name)
{
	bool any = false;

	if (!s->open || s->closing)
		return;
	for (struct lock_hold *h = s->head; h; h = h->next) {
		bool blocked = false;

		if (h->state != FL_PENDING || (only_name && strcmp(h->name, only_name) != 0))
			continue;
		for (struct lock_hold *e = s->head; e != h && !blocked; e = e->next)
			blocked = e->state == FL_PENDING && strcmp(e->name, h->name) == 0;
		if (blocked)
			continue;
		if (try_hold(h)) {
			any = true;
		} else if (!h->queued_told) {
			h->queued_told = h->ev_queued = true;
			any = true;
		}
	}
	if (any)
		queue_kick(s);
}

/* ---- watching -------------------------------------------------------- */

/* Holds (of one name, or all) whose file was removed or replaced are lost. */
static void check_held(struct lock_session *s, const char *only_name)
{
	bool any = false;

	for (struct lock_hold *h = s->head; h; h = h->next) {
		if (h->state != FL_HELD || (only_name && strcmp(h->name, only_name) != 0) ||
		    file_same(h->fd, h->path))
			continue;
		h->state = FL_LOST;
		snprintf(h->lost_reason, sizeof(h->lost_reason), "lock file was removed or replaced");
		h->ev_lost = any = true;
	}
	if (any)
		queue_kick(s);
}

static void watch_dir(struct lock_session *s)
{
	if (s->ino_fd < 0 || s->ino_wd >= 0)
		return;
	s->ino_wd = inotify_add_watch(s->ino_fd, s->dir, IN_CLOSE_WRITE | IN_DELETE |
	                              IN_MOVED_FROM | IN_MOVED_TO);
	if (s->ino_wd < 0)
		log_debug("file: inotify on %s: %s", s->dir, strerror(errno));
}

/* "NAME.lock", "NAME.slot3", "NAME.token" -> NAME in out. */
static void lock_name_of(const char *file, char *out, size_t len)
{
	const char *dot = strrchr(file, '.');
	size_t n = dot ? (size_t)(dot - file) : strlen(file);

	snprintf(out, len, "%.*s", (int)(n < len ? n : len - 1), file);
}

static void on_inotify(struct ev_loop *loop, ev_io *w, int revents)
{
	struct lock_session *s = w->data;
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	char name[LOCK_NAME_MAX + 1];
	ssize_t n;

	(void)loop;
	(void)revents;
	while ((n = read(s->ino_fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ie = (struct inotify_event *)p;

			if (ie->mask & IN_IGNORED)
				s->ino_wd = -1;          /* the directory went away */
			else if (ie->mask & IN_Q_OVERFLOW)
				s->need_scan = true;
			else if (ie->len > 0) {
				lock_name_of(ie->name, name, sizeof(name));
				if (ie->mask & (IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO))
					check_held(s, name);
				try_all(s, name);
			}
			p += sizeof(*ie) + ie->len;
		}
	}
	if (s->need_scan)
		queue_kick(s);
}

static void on_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct lock_session *s = w->data;

	(void)loop;
	(void)revents;
	watch_dir(s);
	try_all(s, NULL);
}

/* ---- listing -------------------------------------------------------- */

struct fl_entries {
	struct lock_entry *e;
	size_t n, cap;
	bool truncated;
};

/* "NAME.lock" or "NAME.slotK": NAME into name. false for anything else. */
static bool slot_file_name(const char *file, char *name, size_t len)
{
	const char *dot = strrchr(file, '.');
	size_t n = dot ? (size_t)(dot - file) : 0;

	if (dot == NULL || n >= len)
		return false;
	if (strcmp(dot, ".lock") != 0 &&
	    !(strncmp(dot, ".slot", 5) == 0 && dot[5] != '\0' && strspn(dot + 5, "0123456789") == strlen(dot + 5)))
		return false;
	memcpy(name, file, n);
	name[n] = '\0';
	return lock_name_valid(name);
}

static void entry_free(struct lock_entry *e)
{
	free((char *)e->name);
	free((char *)e->owner);
	free((char *)e->key);
}

static bool wanted(const struct fl_list *l, const char *name)
{
	if (l->all)
		return true;
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->names[i], name) == 0)
			return true;
	return false;
}

/* The entry of a locked slot file; false if it is free or unreadable. */
static bool read_slot(struct lock_session *s, const char *name, const char *path,
                      struct lock_entry *e)
{
	char holder[256];
	uint64_t token;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	bool held = fd >= 0 && !file_lock_free(fd) && file_read_content(fd, &token, holder, sizeof(holder)) == 0;

	if (fd >= 0)
		close(fd);           /* read-only: no IN_CLOSE_WRITE for waiters */
	if (!held)
		return false;
	*e = (struct lock_entry){ .name = strdup(name), .token = token, .owner = strdup(holder),
	                          .key = strdup(path), .held = 1 };
	if (e->name == NULL || e->owner == NULL || e->key == NULL) {
		entry_free(e);
		return false;
	}
	for (struct lock_hold *h = s->head; h; h = h->next)
		if (h->state == FL_HELD && strcmp(h->path, path) == 0)
			e->mine = h;
	return true;
}

static int entry_order(const void *a, const void *b)
{
	const struct lock_entry *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : x->token < y->token ? -1 : x->token > y->token;
}

static void entries_free(struct fl_entries *es)
{
	for (size_t i = 0; i < es->n; i++)
		entry_free(&es->e[i]);
	free(es->e);
}

/* Every locked slot file of the names l asks for. -1 on errors. */
static int scan_dir(struct lock_session *s, const struct fl_list *l, struct fl_entries *es)
{
	char name[LOCK_NAME_MAX + 1], *path;
	DIR *dir = opendir(s->dir);
	struct dirent *de;

	if (dir == NULL)
		return errno == ENOENT ? 0 : -1;
	while ((de = readdir(dir)) != NULL) {
		if (!slot_file_name(de->d_name, name, sizeof(name)) || !wanted(l, name))
			continue;
		if (es->n == LOCK_LIST_MAX) {
			es->truncated = true;
			break;
		}
		if (es->n == es->cap) {
			size_t cap = es->cap ? es->cap * 2 : 16;
			struct lock_entry *ne = realloc(es->e, cap * sizeof(*ne));
			if (ne == NULL) {
				es->truncated = true;
				break;
			}
			es->e = ne;
			es->cap = cap;
		}
		if (asprintf(&path, "%s/%s", s->dir, de->d_name) < 0)
			break;
		if (read_slot(s, name, path, &es->e[es->n]))
			es->n++;
		free(path);
	}
	closedir(dir);
	return 0;
}

/* Answers l from the directory as it is now, and forgets it. */
static void deliver_list(struct lock_session *s, struct fl_list *l)
{
	struct fl_entries es = { 0 };
	char err[200];
	int rc;

	for (struct fl_list **pp = &s->lists; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	rc = scan_dir(s, l, &es);
	if (rc < 0) {
		snprintf(err, sizeof(err), "file: listing %s: %s", s->dir, strerror(errno));
		l->cb(l->arg, NULL, 0, false, err);
	} else {
		if (es.n > 0)
			qsort(es.e, es.n, sizeof(*es.e), entry_order);
		for (size_t i = 0; i < es.n; i++)
			es.e[i].position = i > 0 && strcmp(es.e[i - 1].name, es.e[i].name) == 0
			                   ? es.e[i - 1].position + 1 : 0;
		l->cb(l->arg, es.e, es.n, es.truncated, NULL);
	}
	entries_free(&es);
	for (size_t i = 0; i < l->n; i++)
		free(l->names[i]);
	free(l->names);
	free(l);
}

/* ---- lock_backend_ops ------------------------------------------------ */

static int fl_create(struct lock_session **out, const struct backend_params *p,
                     const struct lock_events *ev, void *ctx, char *err, size_t errlen)
{
	struct lock_session *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (file_url_path(p->url, "file:///DIR (a directory for the lock files)", &s->dir,
	                  err, errlen) < 0) {
		free(s);
		return -1;
	}
	if ((s->id = strdup(p->id ? p->id : "")) == NULL) {
		free(s->dir);
		free(s);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	s->loop = p->loop;
	s->ttl_ns = p->ttl_ns;
	s->ev = ev;
	s->ctx = ctx;
	s->ino_wd = -1;
	s->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	ev_io_init(&s->ino_watcher, on_inotify, s->ino_fd, EV_READ);
	ev_timer_init(&s->poll_timer, on_poll, POLL_INTERVAL, POLL_INTERVAL);
	ev_timer_init(&s->kick, on_kick, 0., 0.);
	s->ino_watcher.data = s->poll_timer.data = s->kick.data = s;
	if (s->ino_fd >= 0)
		ev_io_start(s->loop, &s->ino_watcher);
	*out = s;
	return 0;
}

static void fl_open(struct lock_session *s)
{
	char probe[4200];
	int64_t sent = clock_now_ns();

	snprintf(probe, sizeof(probe), "%s/.", s->dir);
	if (!s->tmpfs_warned && file_on_tmpfs(probe)) {
		s->tmpfs_warned = true;
		log_warnx("file: %s is on a tmpfs, so its token counters (NAME.token) restart after a "
		          "reboot; put it on persistent storage (e.g. /var/lib/elect/locks) to keep "
		          "fencing tokens increasing", s->dir);
	}
	if (file_make_parents(probe) < 0) {
		snprintf(s->failed_reason, sizeof(s->failed_reason), "cannot create %s: %s", s->dir,
		         strerror(errno));
		s->ev_failed = true;
	} else {
		s->open = true;
		s->alive_sent_ns = sent;
		s->ev_alive = true;
		watch_dir(s);
		ev_timer_again(s->loop, &s->poll_timer);
		s->need_scan = true;
	}
	queue_kick(s);
}

/* Checks that every held file is still the one at its path. */
static void fl_renew(struct lock_session *s)
{
	int64_t sent = clock_now_ns();

	if (!s->open) {
		fl_open(s);
		return;
	}
	check_held(s, NULL);
	s->alive_sent_ns = sent;
	s->ev_alive = true;
	queue_kick(s);
}

static struct lock_hold *fl_acquire(struct lock_session *s, const char *name, unsigned limit,
                                    void *hold_ctx)
{
	struct lock_hold *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return NULL;
	h->s = s;
	snprintf(h->name, sizeof(h->name), "%s", name);
	h->limit = limit ? limit : 1;
	h->ctx = hold_ctx;
	h->fd = -1;
	h->prev = s->tail;
	if (s->tail)
		s->tail->next = h;
	else
		s->head = h;
	s->tail = h;
	/* Decided from the loop, never inside acquire(). */
	s->need_scan = true;
	queue_kick(s);
	return h;
}

static void fl_release(struct lock_hold *h)
{
	struct lock_session *s = h->s;

	/* Only close: if a lockctl command inherited this description, the
	 * lock lasts until that command is gone too (see lockd's hold_fd). */
	if (h->fd >= 0) {
		close(h->fd);
		s->need_scan = true;     /* local waiters need no inotify */
		queue_kick(s);
	}
	if (h->prev)
		h->prev->next = h->next;
	else
		s->head = h->next;
	if (h->next)
		h->next->prev = h->prev;
	else
		s->tail = h->prev;
	free(h->path);
	free(h);
}

static void *fl_hold_ctx(const struct lock_hold *h)
{
	return h->ctx;
}

static int fl_hold_fd(struct lock_hold *h)
{
	return h->state == FL_HELD ? h->fd : -1;
}

static int fl_list(struct lock_session *s, const char *const *names, size_t n, bool all,
                   lock_list_cb cb, void *arg)
{
	struct fl_list *l = calloc(1, sizeof(*l));

	if (l == NULL || (n > 0 && (l->names = calloc(n, sizeof(char *))) == NULL)) {
		free(l);
		return -1;
	}
	for (l->n = 0; l->n < n; l->n++) {
		if ((l->names[l->n] = strdup(names[l->n])) == NULL) {
			while (l->n > 0)
				free(l->names[--l->n]);
			free(l->names);
			free(l);
			return -1;
		}
	}
	l->all = all;
	l->cb = cb;
	l->arg = arg;
	l->next = s->lists;
	s->lists = l;
	queue_kick(s);               /* answered from the loop, never in here */
	return 0;
}

static void fl_close(struct lock_session *s)
{
	s->closing = true;
	ev_timer_stop(s->loop, &s->poll_timer);
	s->ev_closed = true;
	queue_kick(s);
}

static void fl_destroy(struct lock_session *s)
{
	if (s == NULL)
		return;
	while (s->head)
		fl_release(s->head);
	ev_io_stop(s->loop, &s->ino_watcher);
	ev_timer_stop(s->loop, &s->poll_timer);
	ev_timer_stop(s->loop, &s->kick);
	if (s->ino_fd >= 0)
		close(s->ino_fd);
	while (s->lists)
		deliver_list(s, s->lists);
	free(s->dir);
	free(s->id);
	free(s);
}

const struct lock_backend_ops file_lock_ops = {
	.scheme = "file",
	.create = fl_create,
	.open = fl_open,
	.renew = fl_renew,
	.acquire = fl_acquire,
	.release = fl_release,
	.hold_ctx = fl_hold_ctx,
	.hold_fd = fl_hold_fd,
	.list = fl_list,
	.close = fl_close,
	.destroy = fl_destroy,
	.check_timing = NULL,
};
