/* The table of backends: adding a backend is one file and one line here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "backends/lock.h"

static const struct backend_ops *const backends[] = {
	&file_backend_ops,
	&zk_backend_ops,
	&etcd_backend_ops,
	&consul_backend_ops,
	&k8s_backend_ops,
};

#define N_BACKENDS (sizeof(backends) / sizeof(backends[0]))

/* The URL starts with "scheme://". */
static bool has_scheme(const char *url, const char *scheme)
{
	const char *sep = strstr(url, "://");
	size_t l = strlen(scheme);

	return sep != NULL && (size_t)(sep - url) == l && strncmp(url, scheme, l) == 0;
}

const struct backend_ops *backend_lookup(const char *url)
{
	for (size_t i = 0; i < N_BACKENDS; i++)
		if (has_scheme(url, backends[i]->scheme))
			return backends[i];
	return NULL;
}

/* The lock backends for lockd (backends/lock.h): one line each. */
static const struct lock_backend_ops *const lock_backends[] = {
	&file_lock_ops,
	&zk_lock_ops,
	&etcd_lock_ops,
	&consul_lock_ops,
	&k8s_lock_ops,
};

#define N_LOCK_BACKENDS (sizeof(lock_backends) / sizeof(lock_backends[0]))

const struct lock_backend_ops *lock_backend_lookup(const char *url)
{
	for (size_t i = 0; i < N_LOCK_BACKENDS; i++)
		if (has_scheme(url, lock_backends[i]->scheme))
			return lock_backends[i];
	return NULL;
}

const char *backend_schemes(void)
{
	static char buf[128];

	if (buf[0] == '\0') {
		for (size_t i = 0; i < N_BACKENDS; i++) {
			if (i)
				strncat(buf, ", ", sizeof(buf) - strlen(buf) - 1);
			strncat(buf, backends[i]->scheme, sizeof(buf) - strlen(buf) - 1);
		}
	}
	return buf;
}

int backend_split_url(const char *url, char **hosts, char **path, char *err, size_t errlen)
{
	const char *sep = strstr(url, "://"), *h, *slash;

	*hosts = *path = NULL;
	if (sep == NULL) {
		snprintf(err, errlen, "backend URL '%s' has no scheme: write it as SCHEME://HOSTS/PATH", url);
		return -1;
	}
	h = sep + 3;
	slash = strchr(h, '/');
	if (slash == NULL)
		slash = h + strlen(h);
	*hosts = strndup(h, (size_t)(slash - h));
	*path = strdup(*slash == '/' ? slash + 1 : slash);
	if (*hosts == NULL || *path == NULL) {
		free(*hosts);
		free(*path);
		*hosts = *path = NULL;
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}
