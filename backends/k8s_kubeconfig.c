/* The kubeconfig half of backends/k8s_conn.h: the current context's cluster
 * and user, read with libyaml's document API.
 *
 * The file is untrusted input: a wrong type, a missing key, broken YAML or a
 * huge file is a one-line error, never a crash. Only the few keys on the path
 * current-context -> context -> cluster / user are looked at, so YAML aliases
 * (which the document API keeps as references, not copies) cost nothing.
 * The text is wiped before it is freed: it may hold tokens and keys. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "backends/etcd_proto.h"   /* etcd_b64_decode */
#include "backends/k8s_conn_int.h"

#define KUBECONFIG_MAX (1024 * 1024)
#define YAML_MAX_DEPTH 64        /* a kubeconfig needs 6 */
#define YAML_MAX_ANCHORS 256     /* and none */

/* The absolute directory of path (not resolving symlinks, as client-go). */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *cwd, *out;
	int n;

	if (slash == path)
		return strdup("/");
	if (path[0] == '/')
		return strndup(path, (size_t)(slash - path));
	if ((cwd = getcwd(NULL, 0)) == NULL)
		return NULL;
	if (slash == NULL)
		n = asprintf(&out, "%s", cwd);
	else
		n = asprintf(&out, "%s/%.*s", strcmp(cwd, "/") == 0 ? "" : cwd, (int)(slash - path), path);
	free(cwd);
	return n < 0 ? NULL : out;
}

struct kc {
	yaml_document_t doc;
	const char *path;           /* for messages */
	char *dir;                  /* absolute directory of the file: base of relative paths */
	char *err;
	size_t errlen;
};

__attribute__((format(printf, 2, 3)))
static int kc_fail(struct kc *k, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(k->err, k->errlen, "k8s: kubeconfig %s: ", k->path);

	if (n >= 0 && (size_t)n < k->errlen) {
		va_start(ap, fmt);
		vsnprintf(k->err + n, k->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static bool is_null(const yaml_node_t *n)
{
	const char *v;

	if (n == NULL)
		return true;
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	v = (const char *)n->data.scalar.value;
	return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	       strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static bool scalar_is(const yaml_node_t *n, const char *s)
{
	return n != NULL && n->type == YAML_SCALAR_NODE && n->data.scalar.length == strlen(s) &&
	       memcmp(n->data.scalar.value, s, n->data.scalar.length) == 0;
}

/* The value of key in the mapping map (NULL: absent or null). A map that is
 * NULL has no keys. -1 if key appears twice. */
static int lookup(struct kc *k, yaml_node_t *map, const char *where, const char *key, yaml_node_t **out)
{
	*out = NULL;
	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return 0;
	for (yaml_node_pair_t *pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
		if (!scalar_is(yaml_document_get_node(&k->doc, pair->key), key))
			continue;
		if (*out != NULL)
			return kc_fail(k, "%s: key %s appears twice: keep one", where, key);
		*out = yaml_document_get_node(&k->doc, pair->value);
		if (*out == NULL)  /* cannot happen with libyaml's loader; be safe */
			return kc_fail(k, "%s: %s has no value", where, key);
	}
	if (is_null(*out))
		*out = NULL;
	return 0;
}

/* A string value: 0 with *out NULL when absent, the string otherwise (owned
 * by the document); -1 when it is not a string. */
static int get_str(struct kc *k, yaml_node_t *map, const char *where, const char *key, const char **out)
{
	yaml_node_t *n;

	*out = NULL;
	if (lookup(k, map, where, key, &n) < 0)
		return -1;
	if (n == NULL)
		return 0;
	if (n->type != YAML_SCALAR_NODE)
		return kc_fail(k, "%s: %s is not a string", where, key);
	if (strlen((const char *)n->data.scalar.value) != n->data.scalar.length)
		return kc_fail(k, "%s: %s holds a NUL byte", where, key);
	*out = (const char *)n->data.scalar.value;
	return 0;
}

static int get_bool(struct kc *k, yaml_node_t *map, const char *where, const char *key, bool *out)
{
	static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
	static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
	const char *v;

	*out = false;
	if (get_str(k, map, where, key, &v) < 0)
		return -1;
	if (v == NULL)
		return 0;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcmp(v, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcmp(v, no[i]) == 0)
			return 0;
	}
	return kc_fail(k, "%s: %s must be true or false", where, key);
}

/* The entry named name of the list listkey (contexts, clusters, users): its
 * body under bodykey (context, cluster, user), NULL when empty. */
static int find_named(struct kc *k, yaml_node_t *root, const char *listkey, const char *bodykey,
                      const char *name, const char *why, yaml_node_t **body)
{
	yaml_node_t *list, *found = NULL;
	char nb[K8S_SHOW_MAX + 1];

	*body = NULL;
	if (lookup(k, root, "top level", listkey, &list) < 0)
		return -1;
	if (list != NULL && list->type != YAML_SEQUENCE_NODE)
		return kc_fail(k, "%s is not a list", listkey);
	if (list != NULL) {
		for (yaml_node_item_t *it = list->data.sequence.items.start; it < list->data.sequence.items.top; it++) {
			yaml_node_t *entry = yaml_document_get_node(&k->doc, *it);
			const char *ename;
			if (entry == NULL || entry->type != YAML_MAPPING_NODE)
				return kc_fail(k, "an entry of %s is not a mapping", listkey);
			if (get_str(k, entry, listkey, "name", &ename) < 0)
				return -1;
			if (ename == NULL || strcmp(ename, name) != 0)
				continue;
			if (found != NULL)
				return kc_fail(k, "two %s are named \"%s\": rename one", listkey, k8s_show(name, nb, sizeof(nb)));
			found = entry;
		}
	}
	if (found == NULL)
		return kc_fail(k, "%s \"%s\" (%s) is not in %s: add it or fix the name",
		               bodykey, k8s_show(name, nb, sizeof(nb)), why, listkey);
	if (lookup(k, found, listkey, bodykey, body) < 0)
		return -1;
	if (*body != NULL && (*body)->type != YAML_MAPPING_NODE)
		return kc_fail(k, "%s \"%s\": %s is not a mapping", bodykey, k8s_show(name, nb, sizeof(nb)), bodykey);
	return 0;
}

/* A file named in the kubeconfig, relative to its directory. */
static int kc_path(struct kc *k, yaml_node_t *map, const char *where, const char *key, char **out)
{
	const char *v;

	if (get_str(k, map, where, key, &v) < 0)
		return -1;
	if (v == NULL || v[0] == '\0')
		return 0;
	if ((*out = k8s_path_join(k->dir, v)) == NULL)
		return kc_fail(k, "out of memory");
	return 0;
}

/* A base64 PEM value (certificate-authority-data, client-*-data). Line breaks
 * inside are allowed, as Go's decoder does. */
static int kc_pem(struct kc *k, yaml_node_t *map, const char *where, const char *key,
                  unsigned char **out, size_t *outlen)
{
	const char *v;
	char *clean, *data;
	size_t n = 0, len;

	if (get_str(k, map, where, key, &v) < 0)
		return -1;
	if (v == NULL || v[0] == '\0')
		return 0;
	if ((clean = malloc(strlen(v) + 1)) == NULL)
		return kc_fail(k, "out of memory");
	for (const char *s = v; *s != '\0'; s++)
		if (*s != '\n' && *s != '\r')
			clean[n++] = *s;
	data = etcd_b64_decode(clean, n, &len);
	k8s_wipe_free(clean, n);
	if (data == NULL)
		return kc_fail(k, "%s: %s is not valid base64: it holds the base64 of a PEM file", where, key);
	if (memmem(data, len, "-----BEGIN ", 11) == NULL) {
		k8s_wipe_free(data, len);
		return kc_fail(k, "%s: %s does not decode to PEM (no -----BEGIN line)", where, key);
	}
	*out = (unsigned char *)data;
	*outlen = len;
	return 0;
}

static int kc_cluster(struct kc *k, yaml_node_t *cl, const char *where, bool need_server, struct k8s_conn *c)
{
	const char *server;

	if (get_str(k, cl, where, "server", &server) < 0)
		return -1;
	if (server == NULL || server[0] == '\0') {
		if (need_server)
			return kc_fail(k, "%s has no server: add server: https://HOST:PORT, or name the host "
			               "in the URL (k8s://HOST:PORT/NAMESPACE/NAME)", where);
	} else if (!k8s_token_ok(server)) {
		return kc_fail(k, "%s: server holds a space or a control character", where);
	} else if (strncmp(server, "https://", 8) == 0 || strncmp(server, "http://", 7) == 0) {
		c->server = strdup(server);
	} else if (strstr(server, "://") != NULL) {
		return kc_fail(k, "%s: server must start with https:// or http://", where);
	} else if (asprintf(&c->server, "https://%s", server) < 0) {
		c->server = NULL;
	}
	if (server != NULL && server[0] != '\0' && c->server == NULL)
		return kc_fail(k, "out of memory");
	if (kc_path(k, cl, where, "certificate-authority", &c->ca_file) < 0 ||
	    kc_pem(k, cl, where, "certificate-authority-data", &c->ca_data, &c->ca_len) < 0 ||
	    get_bool(k, cl, where, "insecure-skip-tls-verify", &c->insecure) < 0)
		return -1;
	if (c->ca_data != NULL) {  /* the data wins, as in client-go */
		free(c->ca_file);
		c->ca_file = NULL;
	}
	return 0;
}

/* Credentials elect cannot use: refused unless the flags give others. */
static int kc_refuse(struct kc *k, yaml_node_t *u, const char *where)
{
	yaml_node_t *n, *name;
	const char *user, *pass;
	char nb[K8S_SHOW_MAX + 1];

	if (lookup(k, u, where, "exec", &n) < 0)
		return -1;
	if (n != NULL)
		return kc_fail(k, "%s gets its credentials from an exec plugin, which elect does not run: "
		               "give it a token, tokenFile or client certificate, or pass --auth TOKEN", where);
	if (lookup(k, u, where, "auth-provider", &n) < 0 || lookup(k, n, where, "name", &name) < 0)
		return -1;
	if (n != NULL)
		return kc_fail(k, "%s uses the auth-provider \"%s\" (removed from kubectl in 1.26), which elect "
		               "does not support: give it a token, tokenFile or client certificate, or pass --auth TOKEN",
		               where, name != NULL && name->type == YAML_SCALAR_NODE ?
		               k8s_show((const char *)name->data.scalar.value, nb, sizeof(nb)) : "?");
	if (get_str(k, u, where, "username", &user) < 0 || get_str(k, u, where, "password", &pass) < 0)
		return -1;
	if (user != NULL || pass != NULL)
		return kc_fail(k, "%s uses basic authentication (username/password), which Kubernetes removed "
		               "in 1.19: give it a token, tokenFile or client certificate, or pass --auth TOKEN", where);
	return 0;
}

static int kc_user(struct kc *k, yaml_node_t *u, const char *where, const struct k8s_conn_params *p,
                   struct k8s_conn *c)
{
	bool flag_token = p->token != NULL && p->token[0] != '\0';   /* --auth */
	bool flag_cert = p->tls_cert != NULL && p->tls_cert[0] != '\0';
	const char *token;
	char msg[1024];

	if (!flag_token && !flag_cert && kc_refuse(k, u, where) < 0)
		return -1;
	if (!flag_cert &&
	    (kc_path(k, u, where, "client-certificate", &c->cert_file) < 0 ||
	     kc_path(k, u, where, "client-key", &c->key_file) < 0 ||
	     kc_pem(k, u, where, "client-certificate-data", &c->cert_data, &c->cert_len) < 0 ||
	     kc_pem(k, u, where, "client-key-data", &c->key_data, &c->key_len) < 0))
		return -1;
	if (c->cert_data != NULL) {
		free(c->cert_file);
		c->cert_file = NULL;
	}
	if (c->key_data != NULL) {
		free(c->key_file);
		c->key_file = NULL;
	}
	if ((c->cert_file != NULL || c->cert_data != NULL) != (c->key_file != NULL || c->key_data != NULL))
		return kc_fail(k, "%s has a client %s but no %s: give both", where,
		               c->cert_file != NULL || c->cert_data != NULL ? "certificate" : "key",
		               c->cert_file != NULL || c->cert_data != NULL ? "client-key[-data]" :
		               "client-certificate[-data]");
	if (flag_token)
		return 0;
	if (get_str(k, u, where, "token", &token) < 0 || kc_path(k, u, where, "tokenFile", &c->token_file) < 0)
		return -1;
	if (token != NULL && token[0] != '\0') {
		if (!k8s_token_ok(token))
			return kc_fail(k, "%s: token holds a space or a control character: it must be one "
			               "bearer token", where);
		if ((c->token = strdup(token)) == NULL)
			return kc_fail(k, "out of memory");
	}
	if (c->token_file != NULL) {
		/* Read now: a bad path fails at start. It then wins over token,
		 * as in client-go. */
		k8s_wipe_free_str(c->token);
		c->token = NULL;
		if (k8s_read_token_file(c->token_file, &c->token, msg, sizeof(msg)) < 0)
			return kc_fail(k, "%s: tokenFile: %s", where, msg + (strncmp(msg, "k8s: ", 5) == 0 ? 5 : 0));
	}
	return 0;
}

static int kc_parse(struct kc *k, const struct k8s_conn_params *p, bool need_server, struct k8s_conn *c)
{
	yaml_node_t *root = yaml_document_get_root_node(&k->doc), *ctx, *cl, *u;
	const char *cur, *clname, *uname, *ns;
	char where[2 * K8S_SHOW_MAX], nb[K8S_SHOW_MAX + 1], why[2 * K8S_SHOW_MAX];

	if (root == NULL)
		return kc_fail(k, "the file is empty: point --kubeconfig or KUBECONFIG at a kubeconfig");
	if (root->type != YAML_MAPPING_NODE)
		return kc_fail(k, "not a kubeconfig (its top level is not a mapping)");
	if (get_str(k, root, "top level", "current-context", &cur) < 0)
		return -1;
	if (cur == NULL || cur[0] == '\0')
		return kc_fail(k, "no current-context: set one with 'kubectl config use-context NAME'");
	if (find_named(k, root, "contexts", "context", cur, "the current-context", &ctx) < 0)
		return -1;
	snprintf(where, sizeof(where), "context \"%s\"", k8s_show(cur, nb, sizeof(nb)));
	if (get_str(k, ctx, where, "cluster", &clname) < 0 || get_str(k, ctx, where, "user", &uname) < 0 ||
	    get_str(k, ctx, where, "namespace", &ns) < 0)
		return -1;
	if (clname == NULL || clname[0] == '\0')
		return kc_fail(k, "%s names no cluster: add cluster: NAME to it", where);
	if (ns != NULL && ns[0] != '\0' && (c->namespace = strdup(ns)) == NULL)
		return kc_fail(k, "out of memory");
	snprintf(why, sizeof(why), "named by context \"%s\"", k8s_show(cur, nb, sizeof(nb)));
	if (find_named(k, root, "clusters", "cluster", clname, why, &cl) < 0)
		return -1;
	snprintf(where, sizeof(where), "cluster \"%s\"", k8s_show(clname, nb, sizeof(nb)));
	if (kc_cluster(k, cl, where, need_server, c) < 0)
		return -1;
	if (uname == NULL || uname[0] == '\0')
		return 0;  /* no user: anonymous, or the flags' credentials */
	if (find_named(k, root, "users", "user", uname, why, &u) < 0)
		return -1;
	snprintf(where, sizeof(where), "user \"%s\"", k8s_show(uname, nb, sizeof(nb)));
	return kc_user(k, u, where, p, c);
}

static bool has_anchor(const yaml_event_t *ev)
{
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		return ev->data.scalar.anchor != NULL;
	case YAML_SEQUENCE_START_EVENT:
		return ev->data.sequence_start.anchor != NULL;
	case YAML_MAPPING_START_EVENT:
		return ev->data.mapping_start.anchor != NULL;
	default:
		return false;
	}
}

/* libyaml is quadratic in the nesting depth (its scanner) and in the number
 * of anchors (its loader): 1 MiB of '[' or of anchors takes minutes. A first
 * pass over the events of the first document refuses such files before they
 * are loaded; it stops within about 1024 tokens of the limit. A syntax error
 * is left for the load to report. */
static int kc_shape(struct kc *k, const char *text, size_t len)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	int depth = 0, anchors = 0, r = 0;

	if (!yaml_parser_initialize(&parser))
		return kc_fail(k, "out of memory");
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	while (yaml_parser_parse(&parser, &ev)) {
		yaml_event_type_t type = ev.type;
		bool anchor = has_anchor(&ev);
		yaml_event_delete(&ev);
		if (type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT)
			depth++;
		else if (type == YAML_SEQUENCE_END_EVENT || type == YAML_MAPPING_END_EVENT)
			depth--;
		if (depth > YAML_MAX_DEPTH) {
			r = kc_fail(k, "nested deeper than %d levels: not a kubeconfig", YAML_MAX_DEPTH);
			break;
		}
		if (anchor && ++anchors > YAML_MAX_ANCHORS) {
			r = kc_fail(k, "more than %d YAML anchors: not a kubeconfig", YAML_MAX_ANCHORS);
			break;
		}
		if (type == YAML_DOCUMENT_END_EVENT || type == YAML_STREAM_END_EVENT)
			break;
	}
	yaml_parser_delete(&parser);
	return r;
}

int k8s_kubeconfig_load(struct k8s_conn *c, const char *path, const struct k8s_conn_params *p,
                           bool need_server, char *err, size_t errlen)
{
	struct kc k = {.path = path, .err = err, .errlen = errlen};
	yaml_parser_t parser;
	char *text, why[64];
	size_t len;
	int r;

	if (asprintf(&c->source, "kubeconfig %s", path) < 0) {
		c->source = NULL;
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (k8s_read_whole(path, KUBECONFIG_MAX, &text, &len) < 0) {
		snprintf(err, errlen, "k8s: kubeconfig %s: %s", path,
		         k8s_file_problem(errno, KUBECONFIG_MAX, why, sizeof(why)));
		return -1;
	}
	if ((k.dir = dir_of(path)) == NULL) {
		k8s_wipe_free(text, len);
		snprintf(err, errlen, "k8s: kubeconfig %s: cannot tell its directory: %s", path, strerror(errno));
		return -1;
	}
	if (kc_shape(&k, text, len) < 0) {
		r = -1;
	} else if (!yaml_parser_initialize(&parser)) {
		r = kc_fail(&k, "out of memory");
	} else {
		yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
		int loaded = yaml_parser_load(&parser, &k.doc);  /* a failed load frees what it built */
		if (!loaded && parser.error == YAML_READER_ERROR) {
			r = kc_fail(&k, "not valid YAML: %s at byte %zu",  /* bad UTF-8, control characters */
			            parser.problem ? parser.problem : "unreadable", parser.problem_offset);
		} else if (!loaded) {
			r = kc_fail(&k, "not valid YAML: %s%s%s at line %zu column %zu",
			            parser.problem ? parser.problem : "error",
			            parser.context ? " " : "", parser.context ? parser.context : "",
			            parser.problem_mark.line + 1, parser.problem_mark.column + 1);
		} else {
			r = kc_parse(&k, p, need_server, c);
			yaml_document_delete(&k.doc);
		}
		yaml_parser_delete(&parser);
	}
	k8s_wipe_free(text, len);
	free(k.dir);
	return r;
}

/* The file --kubeconfig or $KUBECONFIG names (malloc'd), NULL: none. In
 * KUBECONFIG, a ':' list, the first file that exists. */
int k8s_kubeconfig_pick(const struct k8s_conn_params *p, char **path, bool *env_missing,
                           char *err, size_t errlen)
{
	const char *env = getenv("KUBECONFIG");
	struct stat st;

	*path = NULL;
	*env_missing = false;
	if (p->kubeconfig != NULL && p->kubeconfig[0] != '\0') {
		if (stat(p->kubeconfig, &st) < 0) {
			snprintf(err, errlen, "k8s: kubeconfig %s (--kubeconfig): %s", p->kubeconfig, strerror(errno));
			return -1;
		}
		if ((*path = strdup(p->kubeconfig)) == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		return 0;
	}
	if (env == NULL || env[0] == '\0')
		return 0;
	for (const char *s = env; *s != '\0';) {
		size_t n = strcspn(s, ":");
		if (n > 0) {
			char *cand = strndup(s, n);
			if (cand == NULL) {
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			if (stat(cand, &st) == 0) {
				*path = cand;
				return 0;
			}
			free(cand);
		}
		s += n;
		if (*s == ':')
			s++;
	}
	*env_missing = true;
	return 0;
}
