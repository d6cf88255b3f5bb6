/* The leader command used by the process-level tests and the benchmark.
 *
 *   leadercmd LOG [--exit-after MS] [--exit-code N] [--ignore-term]
 *             [--env-out FILE] [--mem MB]
 *
 * Appends to LOG (O_APPEND, one write() per line, so lines of concurrent
 * writers never interleave):
 *   start <id> <token> <monotonic ns> <pid>   when it begins
 *   signal <id> <token> <monotonic ns> <pid> <signo>  per forwarded signal
 *   stop <id> <token> <monotonic ns> <pid>    when it ends on its own terms
 *   dead <id> <token> <monotonic ns> <pid>    when the process is gone
 * <id> and <token> come from ELECT_ID and ELECT_TOKEN; the clock is
 * CLOCK_MONOTONIC, the one elect and Python's time.monotonic_ns() use.
 *
 * Why a "dead" line: kill -9 leaves no chance to write "stop". Before the
 * start line, we fork a watcher that leaves our process group and session
 * (so the group signals elect sends do not reach it) and blocks reading a
 * pipe whose only write end we hold. The kernel closes that end when we die,
 * however we die, so the watcher's timestamp is our death to within a
 * scheduler wakeup. The checker ends an interval at "dead" when present.
 *
 * The start timestamp is taken first thing, before the watcher fork: for the
 * safety check an early start is the conservative choice.
 *
 * elect runs its command under a guard that kills the command's whole tree,
 * the watcher included, once the command is gone; a watcher in the tree may
 * then die before it writes "dead". So when LEADERCMD_WATCH names the socket
 * of a watch server (`leadercmd --serve-watch SOCK`, one per test run, started
 * by tests/harness.py outside any elect), the command registers there instead
 * and keeps the connection open: the kernel closes it when the command dies,
 * and the server, outside the tree, writes the "dead" line on the hang-up.
 *
 * Signals are blocked and taken with sigtimedwait(): no handlers, nothing
 * async-signal-unsafe. SIGTERM, SIGINT, SIGHUP, SIGQUIT: write "stop", exit
 * 128+sig (SIGTERM is only logged as "signal" with --ignore-term, so tests
 * can check that elect escalates to SIGKILL). SIGUSR1/SIGUSR2: "signal" line.
 *
 * --mem MB: hold MB MiB of touched memory, as a real workload does; the
 * kernel then takes milliseconds to tear the process down after SIGKILL
 * (its files, and so the watcher's pipe, close only after its memory).
 *
 * Not built by make's wildcards; tests/harness.py compiles it on demand.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int log_fd = -1;
static const char *my_id = "?", *my_token = "?";

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void put_line(const char *what, long long ns, long pid, int extra)
{
	char buf[512];
	int n;

	if (extra >= 0)
		n = snprintf(buf, sizeof buf, "%s %s %s %lld %ld %d\n", what, my_id, my_token,
		             ns, pid, extra);
	else
		n = snprintf(buf, sizeof buf, "%s %s %s %lld %ld\n", what, my_id, my_token, ns, pid);
	if (n > 0 && (size_t)n < sizeof buf && write(log_fd, buf, (size_t)n) != n)
		_exit(3);
}

/* ---- the watch server (--serve-watch) ---- */

#define WATCH_MAX 4096

struct watched {
	int fd;
	size_t len;
	char reg[1024];        /* "LOGPATH\tID TOKEN PID\n" as the client sent it */
};

static void write_dead(const struct watched *w, long long ns)
{
	char *tab = memchr(w->reg, '\t', w->len), *nl, id[256], token[256], line[640];
	long pid;
	int fd, n;

	if (tab == NULL || (nl = memchr(tab, '\n', w->len - (size_t)(tab - w->reg))) == NULL)
		return;
	*tab = *nl = '\0';
	if (sscanf(tab + 1, "%255s %255s %ld", id, token, &pid) != 3)
		return;
	n = snprintf(line, sizeof line, "dead %s %s %lld %ld\n", id, token, ns, pid);
	if ((fd = open(w->reg, O_WRONLY | O_APPEND | O_CLOEXEC)) < 0)
		return;
	if (n > 0 && (size_t)n < sizeof line && write(fd, line, (size_t)n) != n)
		perror("leadercmd: watch server: write");
	close(fd);
}

static int serve_watch(const char *path)
{
	static struct watched w[WATCH_MAX];
	static struct pollfd pf[WATCH_MAX + 1];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct sched_param sp = { .sched_priority = 1 };
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), n = 0;

	/* Ends with the test run that started it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	(void)sched_setscheduler(0, SCHED_FIFO, &sp);
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 512) < 0) {
		perror("leadercmd: watch server");
		return 3;
	}
	for (;;) {
		pf[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		for (int i = 0; i < n; i++)
			pf[i + 1] = (struct pollfd){ .fd = w[i].fd, .events = POLLIN };
		if (poll(pf, (nfds_t)n + 1, -1) < 0)
			continue;
		long long ns = now_ns();
		for (int i = n - 1; i >= 0; i--) {
			ssize_t r;

			if (!pf[i + 1].revents)
				continue;
			char scratch[256];

			/* Past a full registration: read on, keep nothing (a read of 0
			 * bytes must mean the hang-up, never a full buffer). */
			if (w[i].len < sizeof w[i].reg - 1)
				r = read(w[i].fd, w[i].reg + w[i].len, sizeof w[i].reg - 1 - w[i].len);
			else
				r = read(w[i].fd, scratch, sizeof scratch);
			if (r > 0) {
				if (w[i].len < sizeof w[i].reg - 1)
					w[i].len += (size_t)r;
				continue;
			}
			if (r < 0 && errno == EINTR)
				continue;
			write_dead(&w[i], ns);
			close(w[i].fd);
			w[i] = w[--n];
		}
		if ((pf[0].revents & POLLIN) && n < WATCH_MAX) {
			int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0)
				w[n++] = (struct watched){ .fd = fd };
		}
	}
}

/* Registers with the watch server; false if there is none. */
static int register_watch(long pid, const char *log_path)
{
	const char *path = getenv("LEADERCMD_WATCH");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char reg[1024], abs_log[PATH_MAX];
	int fd, n;

	if (path == NULL || *path == '\0' || realpath(log_path, abs_log) == NULL)
		return 0;
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	n = snprintf(reg, sizeof reg, "%s\t%s %s %ld\n", abs_log, my_id, my_token, pid);
	if (n <= 0 || (size_t)n >= sizeof reg)
		return 0;
	/* Not CLOEXEC: what we exec (nothing) would not matter; the connection
	 * must close only when this process dies. */
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0)
		return 0;
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || write(fd, reg, (size_t)n) != n) {
		close(fd);
		return 0;
	}
	return 1;
}

/* Fork the death watcher. Returns the write end we must keep open. */
static void start_watcher(long pid)
{
	int p[2], ready[2];
	char c;
	ssize_t r;

	if (pipe(p) < 0 || pipe(ready) < 0) {
		perror("leadercmd: pipe");
		exit(3);
	}
	switch (fork()) {
	case -1:
		perror("leadercmd: fork");
		exit(3);
	case 0: {
		int null = open("/dev/null", O_RDWR);

		struct sched_param sp = { .sched_priority = 1 };

		setsid();
		/* Out of the command's process group now: tell the command. Until
		 * then a SIGKILL to the group (elect kills what is left of a
		 * leader command's group) could take the watcher down too, and
		 * the command's end would go unrecorded. */
		close(ready[0]);
		close(ready[1]);
		/* Real-time priority (root only; best effort): the death time is
		 * taken on wake-up, which ordinary load must not delay. */
		(void)sched_setscheduler(0, SCHED_FIFO, &sp);
		close(p[1]);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			dup2(null, 2);
		}
		do
			r = read(p[0], &c, 1);
		while (r < 0 && errno == EINTR);
		put_line("dead", now_ns(), pid, -1);
		_exit(0);
	}
	default:
		close(p[0]);
		/* The start line is written only once the watcher is safe. */
		close(ready[1]);
		do
			r = read(ready[0], &c, 1);
		while (r < 0 && errno == EINTR);
		close(ready[0]);
	}
}

static void write_env(const char *path)
{
	static const char *const names[] = {
		"ELECT_NAME", "ELECT_ID", "ELECT_TOKEN", "ELECT_LEADER",
		"ELECT_EVENT", "ELECT_BACKEND", NULL
	};
	FILE *f = fopen(path, "w");

	if (!f)
		return;
	for (int i = 0; names[i]; i++) {
		const char *v = getenv(names[i]);
		fprintf(f, "%s=%s\n", names[i], v ? v : "<unset>");
	}
	fclose(f);
}

int main(int argc, char **argv)
{
	long long t_start = now_ns();
	long exit_after_ms = -1, mem_mb = 0;
	int exit_code = 0, ignore_term = 0;
	const char *env_out = NULL;
	sigset_t set;

	if (argc == 3 && !strcmp(argv[1], "--serve-watch"))
		return serve_watch(argv[2]);
	if (argc < 2) {
		fprintf(stderr, "usage: leadercmd LOG [--exit-after MS] [--exit-code N] "
		        "[--ignore-term] [--env-out FILE] [--mem MB]\n");
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--exit-after") && i + 1 < argc)
			exit_after_ms = atol(argv[++i]);
		else if (!strcmp(argv[i], "--exit-code") && i + 1 < argc)
			exit_code = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--ignore-term"))
			ignore_term = 1;
		else if (!strcmp(argv[i], "--env-out") && i + 1 < argc)
			env_out = argv[++i];
		else if (!strcmp(argv[i], "--mem") && i + 1 < argc)
			mem_mb = atol(argv[++i]);
		else {
			fprintf(stderr, "leadercmd: bad argument %s\n", argv[i]);
			return 2;
		}
	}
	if (getenv("ELECT_ID"))
		my_id = getenv("ELECT_ID");
	if (getenv("ELECT_TOKEN"))
		my_token = getenv("ELECT_TOKEN");

	/* Block before the fork so the watcher, too, ignores group signals
	 * sent before its setsid(). */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);

	log_fd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (log_fd < 0) {
		perror("leadercmd: open log");
		return 3;
	}
	if (!register_watch((long)getpid(), argv[1]))
		start_watcher((long)getpid());
	if (mem_mb > 0 && mmap(NULL, (size_t)mem_mb << 20, PROT_READ | PROT_WRITE,
	                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0) == MAP_FAILED) {
		perror("leadercmd: mmap");
		return 3;
	}
	put_line("start", t_start, (long)getpid(), -1);
	if (env_out)
		write_env(env_out);

	long long end = exit_after_ms >= 0 ? t_start + exit_after_ms * 1000000LL : -1;
	for (;;) {
		struct timespec to = { 3600, 0 };
		int sig;

		if (end >= 0) {
			long long left = end - now_ns();
			if (left <= 0)
				break;
			to.tv_sec = left / 1000000000LL;
			to.tv_nsec = left % 1000000000LL;
		}
		sig = sigtimedwait(&set, NULL, &to);
		if (sig < 0)
			continue;       /* timeout or EINTR: recheck the end */
		if (sig == SIGUSR1 || sig == SIGUSR2 || (sig == SIGTERM && ignore_term)) {
			put_line("signal", now_ns(), (long)getpid(), sig);
			continue;
		}
		put_line("stop", now_ns(), (long)getpid(), -1);
		return 128 + sig;
	}
	put_line("stop", now_ns(), (long)getpid(), -1);
	return exit_code;
}
