/* Pieces shared by the file backends (file.c for elections, file_lock.c for
 * lockd): URL parsing, OFD locks, and checks that a descriptor still names
 * the file at its path. */
#ifndef ELECT_FILE_COMMON_H
#define ELECT_FILE_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "file:///ABS/PATH" (or file://localhost/...) -> malloc'd "/ABS/PATH".
 * -1 with a message naming `example` (e.g. "file:///DIR/NAME.lock"). */
int file_url_path(const char *url, const char *example, char **path, char *err, size_t errlen);
/* F_OFD_SETLK of the whole file: type F_WRLCK or F_UNLCK. -1 with errno. */
int file_lock_fd(int fd, short type);
/* Nobody holds a conflicting OFD/POSIX write lock on fd's file (F_OFD_GETLK;
 * fd may be read-only). */
bool file_lock_free(int fd);
/* fd still names the file at path (nobody removed or replaced it). */
bool file_same(int fd, const char *path);
/* A lock file's content: "token=N\nholder=ID\n", written only under its
 * lock. Reads what is there (0 and "" when empty). -1 with errno. */
int file_read_content(int fd, uint64_t *token, char *holder, size_t holder_len);
/* Replaces the content; synced when sync is set. -1 with errno. */
int file_write_content(int fd, uint64_t token, const char *holder, bool sync);
/* Creates the directories leading to path (not path itself). */
int file_make_parents(const char *path);

#endif
