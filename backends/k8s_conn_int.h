/* Internals shared by backends/k8s_conn.c (URL, flags, in-cluster files,
 * token files) and backends/k8s_kubeconfig.c (the kubeconfig). Not for the
 * rest of the backend: it uses k8s_conn.h. */
#ifndef ELECT_K8S_CONN_INT_H
#define ELECT_K8S_CONN_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "backends/k8s_conn.h"

#define K8S_SHOW_MAX 80   /* longest name from a file quoted in a message */

/* free() after zeroing: tokens, keys, the kubeconfig text. NULL is fine. */
void k8s_wipe_free(void *p, size_t len);
void k8s_wipe_free_str(char *s);
/* s fit for a one-line message in buf: control characters become '?', at
 * most K8S_SHOW_MAX characters. Returns buf. */
const char *k8s_show(const char *s, char *buf, size_t len);
/* A bearer token (or a server URL, a namespace): visible ASCII only, not empty. */
bool k8s_token_ok(const char *t);
/* Reads path whole into a NUL-terminated malloc'd buffer of at most cap
 * bytes. -1 with errno set (EFBIG: larger than cap). */
int k8s_read_whole(const char *path, size_t cap, char **out, size_t *outlen);
/* strerror(e), or "larger than CAP bytes" for EFBIG, in buf. */
const char *k8s_file_problem(int e, size_t cap, char *buf, size_t len);
/* dir/rel, or rel itself when absolute or dir is NULL; malloc'd. */
char *k8s_path_join(const char *dir, const char *rel);

/* The file --kubeconfig or $KUBECONFIG names (malloc'd in *path), NULL when
 * neither is set; of a ':' list in KUBECONFIG, the first file that exists
 * (*env_missing: KUBECONFIG is set but none exists). -1: --kubeconfig names
 * a file that cannot be found. */
int k8s_kubeconfig_pick(const struct k8s_conn_params *p, char **path, bool *env_missing,
                        char *err, size_t errlen);
/* Fills c from the kubeconfig's current context. need_server: the URL names
 * no host, so the cluster must have a server. The user's credentials are
 * skipped where the flags (p) give their own. -1 with one line in err; c is
 * then partly filled (k8s_conn_free cleans it). */
int k8s_kubeconfig_load(struct k8s_conn *c, const char *path, const struct k8s_conn_params *p,
                        bool need_server, char *err, size_t errlen);

#endif
