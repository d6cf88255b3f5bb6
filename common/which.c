/* Looking a command up as execvp(3) does (see which.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/which.h"

#define DEFAULT_PATH "/bin:/usr/bin"   /* glibc's confstr(_CS_PATH) */

static int check_executable(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return errno == EACCES ? EACCES : ENOENT;
	/* execve refuses directories and other non-regular files with EACCES. */
	if (!S_ISREG(st.st_mode) || eaccess(path, X_OK) < 0)
		return EACCES;
	return 0;
}

static void copy_found(char *found, size_t len, const char *path)
{
	if (found && len)
		snprintf(found, len, "%s", path);
}

int which_command(const char *cmd, char *found, size_t len)
{
	const char *dirs = getenv("PATH"), *p;
	int rc, denied = 0;

	if (cmd == NULL || *cmd == '\0')
		return ENOENT;
	if (strchr(cmd, '/')) {
		if ((rc = check_executable(cmd)) == 0)
			copy_found(found, len, cmd);
		return rc;
	}
	if (dirs == NULL)
		dirs = DEFAULT_PATH;
	for (p = dirs;; p++) {
		size_t n = strcspn(p, ":");
		char *path;

		if ((n ? asprintf(&path, "%.*s/%s", (int)n, p, cmd) : asprintf(&path, "./%s", cmd)) < 0)
			return ENOENT;
		rc = check_executable(path);
		if (rc == 0)
			copy_found(found, len, path);
		free(path);
		if (rc == 0)
			return 0;
		denied |= rc == EACCES;
		p += n;
		if (*p == '\0')
			break;
	}
	return denied ? EACCES : ENOENT;
}
