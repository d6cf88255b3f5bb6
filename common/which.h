/* Finding a command the way execvp(3) will, so that a command that cannot
 * run is refused before anything is started for it. */
#ifndef ELECT_WHICH_H
#define ELECT_WHICH_H

#include <stddef.h>

/* cmd with a '/' is taken as a path; otherwise each directory of $PATH is
 * tried (glibc's default /bin:/usr/bin when PATH is unset; an empty entry is
 * the current directory). Returns 0 when an executable regular file was
 * found (its path in found, if given), ENOENT when there is none, EACCES
 * when there is one that cannot be executed (a directory, no x permission),
 * as execvp would report. */
int which_command(const char *cmd, char *found, size_t len);

#endif
