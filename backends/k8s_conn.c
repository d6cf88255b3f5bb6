/* How the Kubernetes backend reaches the API server (backends/k8s_conn.h):
 * the URL's host, the --tls-* and --auth flags, the in-cluster service
 * account files and token files; the kubeconfig is read in k8s_kubeconfig.c.
 *
 * Every file read here is untrusted input: a bad or huge file is a one-line
 * error, never a crash. Secrets (tokens, private keys, the kubeconfig text)
 * are wiped before they are freed and never appear in a message. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/k8s_conn_int.h"

#define NAMESPACE_FILE_MAX 4096

/* ---- small helpers ---- */

void k8s_wipe_free(void *p, size_t len)
{
	if (p != NULL) {
		explicit_bzero(p, len);
		free(p);
	}
}

void k8s_wipe_free_str(char *s)
{
	if (s != NULL)
		k8s_wipe_free(s, strlen(s));
}

/* A name from a file, fit for a one-line message: control characters become
 * '?', long names are cut. */
const char *k8s_show(const char *s, char *buf, size_t len)
{
	size_t i = 0;

	for (; s[i] != '\0' && i + 1 < len && i < K8S_SHOW_MAX; i++)
		buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	buf[i] = '\0';
	return buf;
}

/* A bearer token goes into an HTTP header: visible ASCII only. */
bool k8s_token_ok(const char *t)
{
	if (*t == '\0')
		return false;
	for (; *t != '\0'; t++)
		if ((unsigned char)*t <= 0x20 || (unsigned char)*t >= 0x7f)
			return false;
	return true;
}

static bool is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

/* Drops leading and trailing whitespace in place. */
static void trim(char *s)
{
	size_t n = strlen(s), start = 0;

	while (n > 0 && is_space(s[n - 1]))
		n--;
	while (start < n && is_space(s[start]))
		start++;
	memmove(s, s + start, n - start);
	s[n - start] = '\0';
}

/* Reads path whole into a NUL-terminated malloc'd buffer of at most cap
 * bytes. -1 with errno set (EFBIG: larger than cap). Grown buffers are wiped:
 * the file may hold secrets. */
int k8s_read_whole(const char *path, size_t cap, char **out, size_t *outlen)
{
	char *buf = NULL;
	size_t size = 0, alloc = 0;
	int fd, e;

	*out = NULL;
	*outlen = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0)
		return -1;
	for (;;) {
		if (size == alloc) {
			size_t n = alloc == 0 ? 4096 : alloc * 2;
			char *nbuf;
			if (alloc == cap + 1) {
				e = EFBIG;
				goto fail;
			}
			if (n > cap + 1)
				n = cap + 1;
			if ((nbuf = malloc(n + 1)) == NULL) {
				e = ENOMEM;
				goto fail;
			}
			if (size > 0)
				memcpy(nbuf, buf, size);
			k8s_wipe_free(buf, alloc);
			buf = nbuf;
			alloc = n;
		}
		ssize_t r = read(fd, buf + size, alloc - size);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			e = errno;
			goto fail;
		}
		if (r == 0)
			break;
		size += (size_t)r;
	}
	close(fd);
	if (buf == NULL && (buf = malloc(1)) == NULL) {
		errno = ENOMEM;
		return -1;
	}
	buf[size] = '\0';
	*out = buf;
	*outlen = size;
	return 0;
fail:
	close(fd);
	k8s_wipe_free(buf, alloc);
	errno = e;
	return -1;
}

const char *k8s_file_problem(int e, size_t cap, char *buf, size_t len)
{
	if (e == EFBIG)
		snprintf(buf, len, "larger than %zu bytes", cap);
	else
		snprintf(buf, len, "%s", strerror(e));
	return buf;
}

/* dir/rel, or rel when it is absolute. malloc'd. */
char *k8s_path_join(const char *dir, const char *rel)
{
	char *out;

	if (rel[0] == '/' || dir == NULL)
		return strdup(rel);
	if (asprintf(&out, "%s/%s", dir, rel) < 0)
		return NULL;
	return out;
}

int k8s_read_token_file(const char *path, char **token, char *err, size_t errlen)
{
	char *buf, why[64];
	size_t len;

	*token = NULL;
	if (k8s_read_whole(path, K8S_MAX_TOKEN, &buf, &len) < 0) {
		snprintf(err, errlen, "k8s: token file %s: %s", path,
		         k8s_file_problem(errno, K8S_MAX_TOKEN, why, sizeof(why)));
		return -1;
	}
	if (memchr(buf, '\0', len) != NULL) {
		snprintf(err, errlen, "k8s: token file %s holds a NUL byte: it should hold one bearer token", path);
		k8s_wipe_free(buf, len);
		return -1;
	}
	trim(buf);
	if (buf[0] == '\0') {
		snprintf(err, errlen, "k8s: token file %s is empty: it should hold a bearer token", path);
	} else if (!k8s_token_ok(buf)) {
		snprintf(err, errlen, "k8s: token file %s holds more than one line, a space or a control "
		         "character: it should hold one bearer token", path);
	} else {
		*token = buf;
		return 0;
	}
	k8s_wipe_free(buf, len);
	return -1;
}

/* An option or parameter that is set: NULL and "" are not. */
static bool given(const char *s)
{
	return s != NULL && s[0] != '\0';
}

/* ---- in-cluster ---- */

static bool port_ok(const char *s)
{
	char *end;
	long v;

	if (s == NULL || *s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtol(s, &end, 10);
	return errno == 0 && *end == '\0' && v >= 1 && v <= 65535;
}

static int load_in_cluster(struct k8s_conn *c, const struct k8s_conn_params *p, bool need_server,
                           char *err, size_t errlen)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
	const char *dir = getenv("ELECT_K8S_SA_DIR");
	char *ns, why[64];
	size_t len;

	if (!given(dir))
		dir = K8S_DEFAULT_SA_DIR;
	if ((c->source = strdup("in-cluster")) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (need_server) {
		bool v6 = strchr(host, ':') != NULL && host[0] != '[';
		if (strpbrk(host, "/@?# \t\r\n") != NULL || !port_ok(port)) {
			snprintf(err, errlen, "k8s: in-cluster: KUBERNETES_SERVICE_HOST or KUBERNETES_SERVICE_PORT "
			         "is not a host and a port (1-65535): fix them or name the host in the URL");
			return -1;
		}
		if (asprintf(&c->server, v6 ? "https://[%s]:%s" : "https://%s:%s", host, port) < 0) {
			c->server = NULL;
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	if (!given(p->token)) {
		if ((c->token_file = k8s_path_join(dir, "token")) == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		if (k8s_read_token_file(c->token_file, &c->token, err, errlen) < 0)
			return -1;
	}
	if (!given(p->tls_ca)) {
		if ((c->ca_file = k8s_path_join(dir, "ca.crt")) == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		if (access(c->ca_file, R_OK) < 0) {
			snprintf(err, errlen, "k8s: in-cluster CA %s: %s (set ELECT_K8S_SA_DIR or give --tls-ca)",
			         c->ca_file, strerror(errno));
			return -1;
		}
	}
	char *nsfile = k8s_path_join(dir, "namespace");
	if (nsfile == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (k8s_read_whole(nsfile, NAMESPACE_FILE_MAX, &ns, &len) == 0) {
		bool nul = memchr(ns, '\0', len) != NULL;
		trim(ns);
		if (ns[0] == '\0') {
			free(ns);  /* none: the URL names the namespace anyway */
		} else if (!nul && k8s_token_ok(ns)) {
			c->namespace = ns;
		} else {
			snprintf(err, errlen, "k8s: in-cluster namespace file %s holds a space or a control "
			         "character: it should hold one namespace name", nsfile);
			free(ns);
			free(nsfile);
			return -1;
		}
	} else if (errno != ENOENT) {
		snprintf(err, errlen, "k8s: in-cluster namespace file %s: %s", nsfile,
		         k8s_file_problem(errno, NAMESPACE_FILE_MAX, why, sizeof(why)));
		free(nsfile);
		return -1;
	}
	free(nsfile);
	return 0;
}

/* ---- resolution ---- */

/* The URL's HOST:PORT: no path, user info, query or whitespace. */
static int check_url_host(const char *host, char *err, size_t errlen)
{
	for (const char *s = host; *s != '\0'; s++) {
		if ((unsigned char)*s <= 0x20 || *s == 0x7f || strchr("/@?#\\", *s) != NULL) {
			snprintf(err, errlen, "k8s: the URL's host holds '/', '@', '?', '#', a space or a control "
			         "character: write k8s://HOST:PORT/NAMESPACE/NAME");
			return -1;
		}
	}
	if (strlen(host) > 512) {
		snprintf(err, errlen, "k8s: the URL's host is longer than 512 characters");
		return -1;
	}
	return 0;
}

/* A file the TLS setup will read, checked now for a clear message. flag:
 * the option that named it, NULL when it came from c->source. */
static int check_readable(const char *file, const char *what, const char *flag, const struct k8s_conn *c,
                          char *err, size_t errlen)
{
	if (file == NULL || access(file, R_OK) == 0)
		return 0;
	if (flag != NULL)
		snprintf(err, errlen, "k8s: %s %s (--%s): %s", what, file, flag, strerror(errno));
	else
		snprintf(err, errlen, "k8s: %s %s (from %s): %s", what, file, c->source, strerror(errno));
	return -1;
}

/* The flags win over the kubeconfig or in-cluster files. */
static int apply_flags(struct k8s_conn *c, const struct k8s_conn_params *p, char *err, size_t errlen)
{
	bool oom = false;

	if (given(p->tls_ca)) {
		free(c->ca_file);
		free(c->ca_data);
		c->ca_data = NULL;
		c->ca_len = 0;
		c->insecure = false;
		oom |= (c->ca_file = strdup(p->tls_ca)) == NULL;
	}
	if (given(p->tls_cert)) {
		free(c->cert_file);
		free(c->cert_data);
		c->cert_data = NULL;
		c->cert_len = 0;
		oom |= (c->cert_file = strdup(p->tls_cert)) == NULL;
	}
	if (given(p->tls_key)) {
		free(c->key_file);
		k8s_wipe_free(c->key_data, c->key_len);
		c->key_data = NULL;
		c->key_len = 0;
		oom |= (c->key_file = strdup(p->tls_key)) == NULL;
	}
	if (given(p->token)) {
		if (!k8s_token_ok(p->token)) {
			snprintf(err, errlen, "k8s: --auth holds a space or a control character: it must be one bearer token");
			return -1;
		}
		k8s_wipe_free_str(c->token);
		free(c->token_file);
		c->token_file = NULL;
		oom |= (c->token = strdup(p->token)) == NULL;
	}
	if (oom) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

int k8s_conn_resolve(struct k8s_conn *c, const struct k8s_conn_params *p, char *err, size_t errlen)
{
	const char *host = given(p->url_host) ? p->url_host : NULL;
	const char *svc = getenv("KUBERNETES_SERVICE_HOST");
	char *kubeconfig = NULL;
	bool env_missing;
	int r;

	memset(c, 0, sizeof(*c));
	if (host != NULL && check_url_host(host, err, errlen) < 0)
		return -1;
	if (k8s_kubeconfig_pick(p, &kubeconfig, &env_missing, err, errlen) < 0)
		return -1;
	if (kubeconfig != NULL) {
		r = k8s_kubeconfig_load(c, kubeconfig, p, host == NULL, err, errlen);
		free(kubeconfig);
	} else if (given(svc)) {
		r = load_in_cluster(c, p, host == NULL, err, errlen);
	} else if (host != NULL) {
		r = (c->source = strdup("URL")) == NULL ? -1 : 0;
		if (r < 0)
			snprintf(err, errlen, "out of memory");
	} else {
		snprintf(err, errlen, "k8s: no API server: the URL names no host, %s and not in a cluster "
		         "(KUBERNETES_SERVICE_HOST unset): write k8s://HOST:PORT/NAMESPACE/NAME or give --kubeconfig",
		         env_missing ? "no file in KUBECONFIG exists" : "no kubeconfig (--kubeconfig, KUBECONFIG)");
		r = -1;
	}
	if (r == 0 && host != NULL) {
		free(c->server);
		if (asprintf(&c->server, "https://%s", host) < 0) {
			c->server = NULL;
			snprintf(err, errlen, "out of memory");
			r = -1;
		}
	}
	if (r == 0)
		r = apply_flags(c, p, err, errlen);
	if (r == 0 && c->server != NULL) {
		size_t n = strlen(c->server);
		while (n > 0 && c->server[n - 1] == '/')
			c->server[--n] = '\0';
	}
	if (r == 0 && (c->cert_file != NULL || c->cert_data != NULL) != (c->key_file != NULL || c->key_data != NULL)) {
		snprintf(err, errlen, "k8s: a client certificate needs its key and a key its certificate: "
		         "give both --tls-cert and --tls-key");
		r = -1;
	}
	if (r == 0 && c->insecure && (c->ca_file != NULL || c->ca_data != NULL)) {
		snprintf(err, errlen, "k8s: %s: insecure-skip-tls-verify and a certificate-authority are both set: "
		         "keep one", c->source);
		r = -1;
	}
	if (r == 0 && (check_readable(c->ca_file, "CA file", given(p->tls_ca) ? "tls-ca" : NULL, c, err, errlen) < 0 ||
	               check_readable(c->cert_file, "client certificate", given(p->tls_cert) ? "tls-cert" : NULL,
	                              c, err, errlen) < 0 ||
	               check_readable(c->key_file, "client key", given(p->tls_key) ? "tls-key" : NULL,
	                              c, err, errlen) < 0))
		r = -1;
	if (r < 0)
		k8s_conn_free(c);
	return r;
}

void k8s_conn_free(struct k8s_conn *c)
{
	free(c->server);
	free(c->ca_file);
	free(c->ca_data);
	free(c->cert_file);
	free(c->key_file);
	free(c->cert_data);
	k8s_wipe_free(c->key_data, c->key_len);
	k8s_wipe_free_str(c->token);
	free(c->token_file);
	free(c->namespace);
	free(c->source);
	memset(c, 0, sizeof(*c));
}
