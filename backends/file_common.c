/* Shared by the file backends (see file_common.h). */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <unistd.h>

#include "backends/backend.h"
#include "backends/file_common.h"

int file_url_path(const char *url, const char *example, char **path, char *err, size_t errlen)
{
	char *hosts, *rest;

	*path = NULL;
	if (backend_split_url(url, &hosts, &rest, err, errlen) < 0)
		return -1;
	if ((*hosts && strcmp(hosts, "localhost") != 0) || *rest == '\0') {
		snprintf(err, errlen, "file backend URL '%s' must name an absolute path: %s", url, example);
		free(hosts);
		free(rest);
		return -1;
	}
	free(hosts);
	if (asprintf(path, "/%s", rest) < 0) {
		*path = NULL;
		snprintf(err, errlen, "out of memory");
	}
	free(rest);
	return *path ? 0 : -1;
}

int file_lock_fd(int fd, short type)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };

	return fcntl(fd, F_OFD_SETLK, &fl);
}

bool file_lock_free(int fd)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };

	return fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type == F_UNLCK;
}

bool file_same(int fd, const char *path)
{
	struct stat a, p;

	return fstat(fd, &a) == 0 && stat(path, &p) == 0 && a.st_ino == p.st_ino &&
	       a.st_dev == p.st_dev;
}

int file_make_parents(const char *path)
{
	char dir[PATH_MAX], *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	for (slash = strchr(dir + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return -1;
		*slash = '/';
	}
	return 0;
}

#define CONTENT_MAX 2048

static int read_lines(int fd, uint64_t *token, char *holder, size_t holder_len,
                      char *handover, size_t handover_len)
{
	char buf[CONTENT_MAX + 1], *line, *save = NULL;
	ssize_t n = pread(fd, buf, CONTENT_MAX, 0);

	if (n < 0)
		return -1;
	buf[n] = '\0';
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (token && strncmp(line, "token=", 6) == 0)
			*token = strtoull(line + 6, NULL, 10);
		else if (holder && strncmp(line, "holder=", 7) == 0)
			snprintf(holder, holder_len, "%s", line + 7);
		else if (handover && strncmp(line, "handover=", 9) == 0 && strlen(line + 9) < handover_len)
			snprintf(handover, handover_len, "%s", line + 9);
	}
	return 0;
}

int file_read_content(int fd, uint64_t *token, char *holder, size_t holder_len)
{
	*token = 0;
	holder[0] = '\0';
	return read_lines(fd, token, holder, holder_len, NULL, 0);
}

int file_read_handover(int fd, char *record, size_t len)
{
	record[0] = '\0';
	return read_lines(fd, NULL, NULL, 0, record, len);
}

int file_write_content(int fd, uint64_t token, const char *holder, const char *handover, bool sync)
{
	char buf[CONTENT_MAX];
	int len = snprintf(buf, sizeof(buf), "token=%" PRIu64 "\nholder=%s\n%s%s%s", token, holder,
	                   handover && *handover ? "handover=" : "", handover ? handover : "",
	                   handover && *handover ? "\n" : "");

	if (len < 0 || (size_t)len >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (pwrite(fd, buf, (size_t)len, 0) != len || ftruncate(fd, len) < 0 ||
	    (sync && fdatasync(fd) < 0))
		return -1;
	return 0;
}

char *file_token_path(const char *lock_path)
{
	size_t len = strlen(lock_path);
	char *p = NULL;

	if (len > 5 && strcmp(lock_path + len - 5, ".lock") == 0) {
		if (asprintf(&p, "%.*s.token", (int)(len - 5), lock_path) < 0)
			return NULL;
	} else if (asprintf(&p, "%s.token", lock_path) < 0) {
		return NULL;
	}
	return p;
}

bool file_on_tmpfs(const char *path)
{
	char dir[PATH_MAX], *slash;
	struct statfs st;

	snprintf(dir, sizeof(dir), "%s", path);
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir)
		*slash = '\0';
	return statfs(dir, &st) == 0 && (st.f_type == TMPFS_MAGIC || st.f_type == RAMFS_MAGIC);
}

/* Tries at the token file's lock (50 us apart) before giving up for now: it
 * is held by others only for a read and a write, but its holder may be
 * stopped, and the loop must not block on it. */
#define TOKEN_LOCK_TRIES 200
#define TOKEN_FILE_MAX 4096

/* The token line, then key=dev:ino, then the other files' lines of content. */
static int token_content(char *out, size_t outlen, const char *content, const char *key,
                         uint64_t token, uint64_t dev, uint64_t ino)
{
	char *save = NULL, copy[TOKEN_FILE_MAX + 1];
	size_t keylen = strlen(key), used;
	int n;

	n = snprintf(out, outlen, "token=%" PRIu64 "\n%s=%" PRIu64 ":%" PRIu64 "\n", token, key,
	             dev, ino);
	if (n < 0 || (size_t)n >= outlen)
		return -1;
	used = (size_t)n;
	snprintf(copy, sizeof(copy), "%s", content);
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "token=", 6) == 0 || (strncmp(line, key, keylen) == 0 &&
		                                         line[keylen] == '='))
			continue;
		n = snprintf(out + used, outlen - used, "%s\n", line);
		if (n < 0 || (size_t)n >= outlen - used)
			return -1;
		used += (size_t)n;
	}
	return (int)used;
}

/* Reads, updates and writes the token file under its lock: the counter
 * becomes max(counter, floor) + 1 when bump is set; key's record becomes
 * held_fd's file unless bump found it naming another (then it stays, so that
 * whoever takes the lock next still waits for that file's holder). */
static int token_update(const char *token_path, const char *key_name, int held_fd,
                        bool bump, uint64_t floor, uint64_t *token, bool *replaced,
                        uint64_t *old_dev, uint64_t *old_ino)
{
	char content[TOKEN_FILE_MAX + 1], out[TOKEN_FILE_MAX + 64], key[32];
	const char *tok, *rec;
	uint64_t counter = 0, rec_dev = 0, rec_ino = 0;
	struct stat held;
	ssize_t n;
	int fd, len, tries = 0, rc = -1, saved;
	bool has_rec;

	*replaced = false;
	if (fstat(held_fd, &held) < 0)
		return -1;
	if ((fd = open(token_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
		return -1;
	while (file_lock_fd(fd, F_WRLCK) < 0) {
		if ((errno != EAGAIN && errno != EACCES) || ++tries >= TOKEN_LOCK_TRIES)
			goto out;
		usleep(50);
	}
	if ((n = pread(fd, content, TOKEN_FILE_MAX, 0)) < 0)
		goto out;
	content[n] = '\0';
	tok = strncmp(content, "token=", 6) == 0 ? content : strstr(content, "\ntoken=");
	if (tok == NULL && (n > 0 || !bump)) {
		errno = EINVAL;          /* unreadable: do not restart from 0 */
		goto out;
	}
	if (tok != NULL)
		counter = strtoull(tok + (*tok == '\n' ? 7 : 6), NULL, 10);
	snprintf(key, sizeof(key), "%s=", key_name);
	rec = strncmp(content, key, strlen(key)) == 0 ? content : strstr(content, key);
	has_rec = rec != NULL && (rec == content || rec[-1] == '\n') &&
	          sscanf(rec + strlen(key), "%" SCNu64 ":%" SCNu64, &rec_dev, &rec_ino) == 2;
	if (has_rec && (rec_dev != (uint64_t)held.st_dev || rec_ino != (uint64_t)held.st_ino)) {
		*replaced = bump;
		*old_dev = rec_dev;
		*old_ino = rec_ino;
	}
	*token = bump ? (counter > floor ? counter : floor) + 1 : counter;
	len = token_content(out, sizeof(out), content, key_name, *token,
	                    *replaced ? rec_dev : (uint64_t)held.st_dev,
	                    *replaced ? rec_ino : (uint64_t)held.st_ino);
	if (len < 0) {
		errno = EFBIG;
		goto out;
	}
	/* Synced: a token must never repeat, not even after a power loss. */
	if (pwrite(fd, out, (size_t)len, 0) == len && ftruncate(fd, len) == 0 && fdatasync(fd) == 0)
		rc = 0;
out:
	saved = errno;
	close(fd);                   /* drops the token file's lock */
	errno = saved;
	return rc;
}

int file_token_bump(const char *token_path, const char *key, int held_fd, uint64_t floor,
                    uint64_t *token, bool *replaced, uint64_t *old_dev, uint64_t *old_ino)
{
	return token_update(token_path, key, held_fd, true, floor, token, replaced, old_dev, old_ino);
}

int file_token_record(const char *token_path, const char *key, int held_fd)
{
	uint64_t token, dev, ino;
	bool replaced;

	return token_update(token_path, key, held_fd, false, 0, &token, &replaced, &dev, &ino);
}
