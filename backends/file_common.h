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
/* A lock file's content: "token=N\nholder=ID\n", and for an election a
 * handover record (common/handover.h) as "handover=RECORD\n", written only
 * under its lock. Reads what is there (0 and "" when empty). -1 with errno. */
int file_read_content(int fd, uint64_t *token, char *holder, size_t holder_len);
/* The handover record in the content ("" if none). -1 with errno. */
int file_read_handover(int fd, char *record, size_t len);
/* Replaces the content (handover NULL or "": none); synced when sync is
 * set. -1 with errno. */
int file_write_content(int fd, uint64_t token, const char *holder, const char *handover, bool sync);
/* The fencing-token counter of a lock file lives in a file of its own next
 * to it, so that removing or replacing the lock file never resets it:
 * "DIR/NAME.token" for "DIR/NAME.lock" (".token" appended to any other
 * name). Content: "token=N\n", then "KEY=DEV:INO\n" per lock file (KEY "lock"
 * for NAME.lock, "slotK" for a semaphore's NAME.slotK): the file (device and
 * inode) that its latest holder locked. malloc'd; NULL when out of memory. */
char *file_token_path(const char *lock_path);
/* For the holder of lock file key (locked on held_fd): the next token,
 * max(counter, floor) + 1, written (synced) under the token file's own lock
 * (tried for a few ms, never blocking), with held_fd's inode as key's last
 * holder's. Unless *replaced: key's last holder locked another file than
 * held_fd's (removed or replaced since), whose holder may still run; its
 * device and inode in *old_dev, *old_ino, and the record stays on it until
 * file_token_record() (so a taker after us who never led waits too). -1
 * with errno (EINVAL: the token file holds no counter, so it cannot be
 * trusted not to go backwards). */
int file_token_bump(const char *token_path, const char *key, int held_fd, uint64_t floor,
                    uint64_t *token, bool *replaced, uint64_t *old_dev, uint64_t *old_ino);
/* Records held_fd's file as key's last holder's (once the holder of a
 * replaced file may lead). -1 with errno. */
int file_token_record(const char *token_path, const char *key, int held_fd);
/* The file system of path is wiped by a reboot (tmpfs, ramfs). */
bool file_on_tmpfs(const char *path);
/* Creates the directories leading to path (not path itself). */
int file_make_parents(const char *path);

#endif
