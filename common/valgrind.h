/* RUNNING_ON_VALGRIND, or 0 where valgrind's header is not installed.
 * valgrind 3.19 does not know the pidfd calls (it warns and fails them with
 * ENOSYS); code using them answers as a kernel without them would. */
#ifndef ELECT_VALGRIND_H
#define ELECT_VALGRIND_H

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#endif
