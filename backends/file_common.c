/* Shared by the file backends (see file_common.h). */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

#define CONTENT_MAX 512

int file_read_content(int fd, uint64_t *token, char *holder, size_t holder_len)
{
	char buf[CONTENT_MAX + 1], *line, *save = NULL;
	ssize_t n = pread(fd, buf, CONTENT_MAX, 0);

	*token = 0;
	holder[0] = '\0';
	if (n < 0)
		return -1;
	buf[n] = '\0';
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "token=", 6) == 0)
			*token = strtoull(line + 6, NULL, 10);
		else if (strncmp(line, "holder=", 7) == 0)
			snprintf(holder, holder_len, "%s", line + 7);
	}
	return 0;
}

int file_write_content(int fd, uint64_t token, const char *holder, bool sync)
{
	char buf[CONTENT_MAX];
	int len = snprintf(buf, sizeof(buf), "token=%" PRIu64 "\nholder=%s\n", token, holder);

	if (len < 0 || (size_t)len >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if (pwrite(fd, buf, (size_t)len, 0) != len || ftruncate(fd, len) < 0 ||
	    (sync && fdatasync(fd) < 0))
		return -1;
	return 0;
}
