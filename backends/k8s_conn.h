/* Where and how the Kubernetes backend reaches the API server: resolved once
 * at create() from, in this order of precedence,
 *   - the backend URL's host (k8s://HOST:PORT/NAMESPACE/NAME): the server,
 *     always https://HOST:PORT; the credentials still come from below;
 *   - --tls-ca / --tls-cert / --tls-key / --auth (a bearer token): override
 *     what a kubeconfig or the in-cluster files say (--tls-ca also turns
 *     insecure-skip-tls-verify off; --auth drops a token file);
 *   - a kubeconfig, when --kubeconfig or KUBECONFIG names one (KUBECONFIG may
 *     be a ':'-separated list: the first file that exists; if none does, as
 *     if unset): its current context's namespace, cluster (server,
 *     certificate-authority[-data], insecure-skip-tls-verify) and user
 *     (token, tokenFile, client-certificate[-data], client-key[-data]); the
 *     -data forms win over the file forms, tokenFile over token (as in
 *     client-go); relative paths are relative to the kubeconfig's directory
 *     and come out absolute; exec and auth-provider credential plugins and
 *     username/password are refused with a clear message unless --auth or
 *     --tls-cert gives the credentials;
 *   - otherwise, when KUBERNETES_SERVICE_HOST is set, in-cluster
 *     configuration: KUBERNETES_SERVICE_HOST (an IPv6 address gets brackets)
 *     and KUBERNETES_SERVICE_PORT, and DIR/token (required unless --auth),
 *     DIR/ca.crt (required unless --tls-ca), DIR/namespace (optional) with
 *     DIR = $ELECT_K8S_SA_DIR or /var/run/secrets/kubernetes.io/serviceaccount;
 *   - otherwise the URL's host alone (source "URL"), with the flags'
 *     credentials if any; with no host either, an error.
 * A token file is read at once (a bad one fails at start) and kept in
 * token_file for the backend to re-read. Files named for TLS are checked to
 * be readable. Parsing the kubeconfig uses libyaml (files over 1 MiB, nested
 * deeper than 64 levels or with over 256 anchors are refused). No network
 * I/O. A token never appears in a message. */
#ifndef ELECT_K8S_CONN_H
#define ELECT_K8S_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define K8S_DEFAULT_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define K8S_MAX_TOKEN 16384

struct k8s_conn {
	char *server;              /* "https://HOST:PORT" (or http://, maybe with a path
	                            * prefix from a kubeconfig), no trailing '/' */
	char *ca_file;             /* CA bundle file, NULL: ca_data or the system's */
	unsigned char *ca_data;    /* PEM from certificate-authority-data */
	size_t ca_len;
	char *cert_file, *key_file;           /* client certificate, NULL: none or data */
	unsigned char *cert_data, *key_data;  /* PEM from client-*-data */
	size_t cert_len, key_len;
	bool insecure;             /* insecure-skip-tls-verify (logged as a warning) */
	char *token;               /* bearer token, NULL: none (or in token_file) */
	char *token_file;          /* re-read at least once a minute (bound tokens rotate) */
	char *namespace;           /* the context's or in-cluster namespace, NULL: none */
	char *source;              /* "kubeconfig PATH" or "in-cluster" or "URL": for messages */
};

struct k8s_conn_params {
	const char *url_host;      /* "HOST:PORT" from the URL, "" or NULL: none */
	const char *kubeconfig;    /* --kubeconfig, NULL: $KUBECONFIG, else in-cluster */
	const char *tls_ca, *tls_cert, *tls_key;
	const char *token;         /* --auth: a bearer token */
};

/* Fills c (zeroed first). -1 with one line in err: what is wrong and how to
 * fix it (e.g. "k8s: no API server: the URL names no host, no kubeconfig
 * (--kubeconfig, KUBECONFIG) and not in a cluster (KUBERNETES_SERVICE_HOST
 * unset): ..."); c is then empty (k8s_conn_free on it is harmless). */
int k8s_conn_resolve(struct k8s_conn *c, const struct k8s_conn_params *p, char *err, size_t errlen);
/* Frees and zeroes c; the token and private key are wiped first. */
void k8s_conn_free(struct k8s_conn *c);
/* Reads a token file: one token (surrounding whitespace dropped; visible
 * ASCII only, so it is fit for an HTTP header), at most K8S_MAX_TOKEN bytes.
 * *token malloc'd (wipe it before free). -1 with a message (not the token). */
int k8s_read_token_file(const char *path, char **token, char *err, size_t errlen);

#endif
