/* Unit tests for backends/k8s_conn.c and k8s_kubeconfig.c: how the Kubernetes
 * backend finds the API server. Kubeconfigs, token files and a fake service
 * account directory are written to a fresh temporary directory per test; the
 * environment (KUBECONFIG, KUBERNETES_SERVICE_*, ELECT_K8S_SA_DIR) is cleared
 * before each. Failing cases check the one-line message, and that no token
 * ever shows in it. */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "backends/etcd_proto.h"
#include "backends/k8s_conn.h"

#define SECRET "SECRET-TOKEN-a1b2c3"

static char dir[64];
static char origcwd[4096];
static char *pem_b64, *key_b64;   /* base64 of a PEM certificate and key */
static const char pem[] = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";
static const char keypem[] = "-----BEGIN EC PRIVATE KEY-----\nMHcfake\n-----END EC PRIVATE KEY-----\n";

static struct k8s_conn c;
static char err[512];

/* ---- fixture ---- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/elect-test-k8s-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	unsetenv("KUBECONFIG");
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	unsetenv("ELECT_K8S_SA_DIR");
	memset(&c, 0, sizeof(c));
	err[0] = '\0';
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	k8s_conn_free(&c);
	if (chdir(origcwd) < 0)
		return -1;
	return nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int group_setup(void **state)
{
	(void)state;
	if (getcwd(origcwd, sizeof(origcwd)) == NULL)
		return -1;
	pem_b64 = etcd_b64_encode(pem, strlen(pem));
	key_b64 = etcd_b64_encode(keypem, strlen(keypem));
	return pem_b64 != NULL && key_b64 != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	free(pem_b64);
	free(key_b64);
	return 0;
}

static char *path_in(const char *name)
{
	static char buf[4][256];
	static int next;
	char *p = buf[next++ % 4];

	snprintf(p, 256, "%s/%s", dir, name);
	return p;
}

static void write_bytes(const char *name, const void *data, size_t len)
{
	FILE *f = fopen(path_in(name), "w");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

__attribute__((format(printf, 2, 3)))
static void write_file(const char *name, const char *fmt, ...)
{
	char *text;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&text, fmt, ap);
	va_end(ap);
	assert_true(n >= 0);
	write_bytes(name, text, (size_t)n);
	free(text);
}

static int resolve(const struct k8s_conn_params *p)
{
	k8s_conn_free(&c);
	err[0] = '\0';
	return k8s_conn_resolve(&c, p, err, sizeof(err));
}

/* The message of a failure: one line, naming want, never the secret. */
static void check_err(const char *want)
{
	if (strstr(err, want) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", err, want);
	assert_null(strchr(err, '\n'));
	assert_null(strstr(err, SECRET));
	assert_null(strstr(err, "SECRET"));
}

static void expect_fail(const struct k8s_conn_params *p, const char *want)
{
	assert_int_equal(resolve(p), -1);
	check_err(want);
	assert_null(c.server);   /* cleaned on failure */
	assert_null(c.token);
	assert_null(c.source);
}

static void expect_ok(const struct k8s_conn_params *p)
{
	if (resolve(p) != 0)
		fail_msg("resolve failed: %s", err);
}

static const struct k8s_conn_params *kc_params(const char *name)
{
	static struct k8s_conn_params p;
	static char path[256];

	memset(&p, 0, sizeof(p));
	snprintf(path, sizeof(path), "%s", path_in(name));
	p.kubeconfig = path;
	return &p;
}

/* A kubeconfig of one context "ctx" on cluster "cl" and user "u", with the
 * cluster's and the user's extra lines. */
static void write_kc(const char *name, const char *cluster_lines, const char *user_lines)
{
	write_file(name,
	           "apiVersion: v1\n"
	           "kind: Config\n"
	           "current-context: ctx\n"
	           "contexts:\n"
	           "- name: ctx\n"
	           "  context:\n"
	           "    cluster: cl\n"
	           "    user: u\n"
	           "    namespace: team-a\n"
	           "clusters:\n"
	           "- name: cl\n"
	           "  cluster:\n"
	           "%s"
	           "users:\n"
	           "- name: u\n"
	           "  user:\n"
	           "%s",
	           cluster_lines, user_lines);
}

/* ---- kubeconfig ---- */

static void test_token_and_ca_data(void **state)
{
	char cl[1024];

	(void)state;
	snprintf(cl, sizeof(cl), "    server: https://api.example:6443/\n"
	         "    certificate-authority-data: %s\n", pem_b64);
	write_kc("kc", cl, "    token: " SECRET "\n");
	expect_ok(kc_params("kc"));
	assert_string_equal(c.server, "https://api.example:6443");
	assert_string_equal(c.token, SECRET);
	assert_null(c.token_file);
	assert_null(c.ca_file);
	assert_int_equal(c.ca_len, strlen(pem));
	assert_memory_equal(c.ca_data, pem, strlen(pem));
	assert_false(c.insecure);
	assert_null(c.cert_file);
	assert_null(c.cert_data);
	assert_string_equal(c.namespace, "team-a");
	assert_true(strncmp(c.source, "kubeconfig ", 11) == 0);
	assert_string_equal(c.source + 11, path_in("kc"));
}

static void test_token_file_relative(void **state)
{
	(void)state;
	assert_int_equal(mkdir(path_in("sub"), 0700), 0);
	write_file("sub/tok", "  " SECRET "\n\n");
	write_kc("kc", "    server: https://10.1.2.3:443\n",
	         "    token: other\n"
	         "    tokenFile: sub/tok\n");
	expect_ok(kc_params("kc"));
	assert_string_equal(c.token_file, path_in("sub/tok"));
	assert_string_equal(c.token, SECRET);   /* the file wins over token, as in client-go */

	/* an unreadable tokenFile fails at start, naming the file */
	write_kc("kc2", "    server: https://10.1.2.3:443\n", "    tokenFile: missing-token\n");
	expect_fail(kc_params("kc2"), "tokenFile");
	check_err(path_in("missing-token"));
}

static void test_client_cert_data(void **state)
{
	char user[2048];

	(void)state;
	snprintf(user, sizeof(user), "    client-certificate-data: %s\n    client-key-data: %s\n", pem_b64, key_b64);
	write_kc("kc", "    server: https://k:6443\n    insecure-skip-tls-verify: true\n", user);
	expect_ok(kc_params("kc"));
	assert_true(c.insecure);
	assert_null(c.ca_file);
	assert_null(c.token);
	assert_null(c.cert_file);
	assert_null(c.key_file);
	assert_int_equal(c.cert_len, strlen(pem));
	assert_memory_equal(c.cert_data, pem, strlen(pem));
	assert_int_equal(c.key_len, strlen(keypem));
	assert_memory_equal(c.key_data, keypem, strlen(keypem));

	/* base64 split over lines, as some tools write it */
	size_t n = strlen(pem_b64);
	snprintf(user, sizeof(user), "    client-certificate-data: \"%.*s\\n%s\"\n    client-key-data: %s\n",
	         (int)(n / 2), pem_b64, pem_b64 + n / 2, key_b64);
	write_kc("kc2", "    server: https://k:6443\n", user);
	expect_ok(kc_params("kc2"));
	assert_memory_equal(c.cert_data, pem, strlen(pem));

	/* a certificate without its key */
	snprintf(user, sizeof(user), "    client-certificate-data: %s\n", pem_b64);
	write_kc("kc3", "    server: https://k:6443\n", user);
	expect_fail(kc_params("kc3"), "no client-key[-data]");
}

static void test_relative_paths(void **state)
{
	char want[512];

	(void)state;
	assert_int_equal(mkdir(path_in("certs"), 0700), 0);
	write_file("certs/ca.pem", "%s", pem);
	write_file("certs/c.pem", "%s", pem);
	write_file("k.pem", "%s", keypem);
	write_file("kc", "current-context: ctx\n"
	           "contexts: [{name: ctx, context: {cluster: cl, user: u}}]\n"
	           "clusters: [{name: cl, cluster: {server: 'https://k:1', certificate-authority: certs/ca.pem}}]\n"
	           "users: [{name: u, user: {client-certificate: certs/c.pem, client-key: %s}}]\n",
	           path_in("k.pem"));
	expect_ok(kc_params("kc"));
	assert_string_equal(c.ca_file, path_in("certs/ca.pem"));
	assert_string_equal(c.cert_file, path_in("certs/c.pem"));
	assert_string_equal(c.key_file, path_in("k.pem"));
	assert_null(c.namespace);

	/* a kubeconfig named relative to the working directory: the paths
	 * come out absolute all the same */
	assert_int_equal(chdir(dir), 0);
	struct k8s_conn_params p = {.kubeconfig = "kc"};
	expect_ok(&p);
	char *real = realpath(dir, NULL);
	assert_non_null(real);
	snprintf(want, sizeof(want), "%s/certs/ca.pem", real);
	free(real);
	assert_string_equal(c.ca_file, want);

	/* a named file that is not there is caught now, with its path */
	write_file("kc2", "current-context: ctx\n"
	           "contexts: [{name: ctx, context: {cluster: cl}}]\n"
	           "clusters: [{name: cl, cluster: {server: 'https://k:1', certificate-authority: nope.pem}}]\n");
	expect_fail(kc_params("kc2"), "CA file");
	check_err(path_in("nope.pem"));
}

static void test_current_context_among_several(void **state)
{
	(void)state;
	write_file("kc",
	           "current-context: two\n"
	           "contexts:\n"
	           "- {name: one, context: {cluster: c1, user: u1, namespace: ns1}}\n"
	           "- {name: two, context: {cluster: c2, user: u2, namespace: ns2}}\n"
	           "- {name: three, context: {cluster: c1, user: u1}}\n"
	           "clusters:\n"
	           "- {name: c1, cluster: {server: 'https://one:1'}}\n"
	           "- {name: c2, cluster: {server: 'https://two:2'}}\n"
	           "users:\n"
	           "- {name: u1, user: {token: tok-one}}\n"
	           "- {name: u2, user: {token: tok-two}}\n"
	           "preferences: {}\n");
	expect_ok(kc_params("kc"));
	assert_string_equal(c.server, "https://two:2");
	assert_string_equal(c.token, "tok-two");
	assert_string_equal(c.namespace, "ns2");
}

static void test_context_errors(void **state)
{
	(void)state;
	/* no current-context */
	write_file("none", "contexts: [{name: a, context: {cluster: b}}]\n");
	expect_fail(kc_params("none"), "no current-context");
	check_err("kubectl config use-context");
	write_file("null", "current-context:\ncontexts: []\n");
	expect_fail(kc_params("null"), "no current-context");
	/* a current-context that is not listed */
	write_file("gone", "current-context: b\ncontexts: [{name: a, context: {cluster: c}}]\n");
	expect_fail(kc_params("gone"), "context \"b\" (the current-context) is not in contexts");
	/* a context's cluster or user that is not listed */
	write_file("nocl", "current-context: a\ncontexts: [{name: a, context: {cluster: c}}]\nclusters: []\n");
	expect_fail(kc_params("nocl"), "cluster \"c\" (named by context \"a\") is not in clusters");
	write_file("nouser", "current-context: a\ncontexts: [{name: a, context: {cluster: c, user: x}}]\n"
	           "clusters: [{name: c, cluster: {server: 'https://k'}}]\n");
	expect_fail(kc_params("nouser"), "user \"x\"");
	/* a context naming no cluster */
	write_file("nc", "current-context: a\ncontexts: [{name: a, context: {user: u}}]\n");
	expect_fail(kc_params("nc"), "names no cluster");
	/* no server and no host in the URL */
	write_file("nos", "current-context: a\ncontexts: [{name: a, context: {cluster: c}}]\n"
	           "clusters: [{name: c, cluster: {insecure-skip-tls-verify: false}}]\n");
	expect_fail(kc_params("nos"), "has no server");
	/* two entries of one name */
	write_file("dup", "current-context: a\ncontexts: [{name: a, context: {cluster: c}}, "
	           "{name: a, context: {cluster: d}}]\n");
	expect_fail(kc_params("dup"), "two contexts are named \"a\"");
	/* a name with a newline is shown on one line */
	write_file("nl", "current-context: \"a\\nb\"\ncontexts: []\n");
	expect_fail(kc_params("nl"), "context \"a?b\"");
}

static void test_unsupported_credentials(void **state)
{
	(void)state;
	write_kc("exec", "    server: https://k:1\n",
	         "    exec:\n"
	         "      apiVersion: client.authentication.k8s.io/v1\n"
	         "      command: aws\n"
	         "      args: [eks, get-token]\n");
	expect_fail(kc_params("exec"), "exec plugin, which elect does not run");
	write_kc("ap", "    server: https://k:1\n", "    auth-provider: {name: gcp, config: {}}\n");
	expect_fail(kc_params("ap"), "auth-provider \"gcp\"");
	write_kc("basic", "    server: https://k:1\n", "    username: admin\n    password: " SECRET "\n");
	expect_fail(kc_params("basic"), "basic authentication");

	/* with a token from --auth the plugin is not needed */
	struct k8s_conn_params p = *kc_params("exec");
	p.token = "flag-token";
	expect_ok(&p);
	assert_string_equal(c.token, "flag-token");
	assert_string_equal(c.server, "https://k:1");
}

/* Broken files of every kind: a clear error each, no crash, no leak. */
static void test_garbage(void **state)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{"", "the file is empty"},
		{"# only a comment\n", "the file is empty"},
		{"{{{: [\n", "not valid YAML"},
		{"a: b\n  c: d\n", "not valid YAML"},
		{"key: \"unterminated\n", "not valid YAML"},
		{"- a\n- b\n", "not a kubeconfig"},
		{"just a string\n", "not a kubeconfig"},
		{"current-context: [a]\n", "current-context is not a string"},
		{"current-context: a\ncontexts: 5\n", "contexts is not a list"},
		{"current-context: a\ncontexts: [5]\n", "an entry of contexts is not a mapping"},
		{"current-context: a\ncontexts: [{name: [x]}]\n", "name is not a string"},
		{"current-context: a\ncontexts: [{name: a, context: [1]}]\n", "\"a\": context is not a mapping"},
		{"current-context: a\ncontexts: [{name: a, context: {cluster: {x: y}}}]\n", "cluster is not a string"},
		{"current-context: a\ncontexts: [{name: a, context: {cluster: c}}]\n"
		 "clusters: [{name: c, cluster: {server: {a: b}}}]\n", "server is not a string"},
		{"current-context: a\ncontexts: [{name: a, context: {cluster: c}}]\n"
		 "clusters: [{name: c, cluster: {server: 'ftp://x'}}]\n", "server must start with https://"},
		{"current-context: a\ncontexts: [{name: a, context: {cluster: c}}]\n"
		 "clusters: [{name: c, cluster: {server: 'https://x y'}}]\n", "server holds a space"},
		{"current-context: a\ncontexts: [{name: a, context: {cluster: c}}]\n"
		 "clusters: [{name: c, cluster: {server: 'https://x', insecure-skip-tls-verify: maybe}}]\n",
		 "insecure-skip-tls-verify must be true or false"},
		{"current-context: a\ncontexts: [{name: a, context: {cluster: c}}]\n"
		 "clusters: [{name: c, cluster: {server: 'https://x', certificate-authority-data: '!!notb64'}}]\n",
		 "certificate-authority-data is not valid base64"},
		{"current-context: a\ncontexts: [{name: a, context: {cluster: c}}]\n"
		 "clusters: [{name: c, cluster: {server: 'https://x', certificate-authority-data: aGVsbG8=}}]\n",
		 "does not decode to PEM"},
		{"current-context: a\ncontexts: [{name: a, context: {cluster: c, user: u}}]\n"
		 "clusters: [{name: c, cluster: {server: 'https://x'}}]\n"
		 "users: [{name: u, user: {token: \"" SECRET "\\0x\"}}]\n", "token holds a NUL byte"},
		{"current-context: a\ncontexts: [{name: a, context: {cluster: c, user: u}}]\n"
		 "clusters: [{name: c, cluster: {server: 'https://x'}}]\n"
		 "users: [{name: u, user: {token: \"" SECRET "\\nx\"}}]\n", "token holds a space or a control"},
		{"current-context: a\ncurrent-context: b\n", "key current-context appears twice"},
		{"current-context: &x a\ncontexts: [{name: *x, context: {cluster: *x}}]\n"
		 "clusters: [{name: a, cluster: {server: 'https://x'}}]\n", NULL},  /* aliases work */
		{"current-context: *nope\n", "not valid YAML"},
		{"---\ncurrent-context: a\n---\nsecond: doc\n", "context \"a\" (the current-context) is not in"},
		{"\xff\xfe garbage \x01\x02", "not valid YAML"},
		{"\x01\x02\x7f", "not valid YAML"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		write_bytes("kc", cases[i].text, strlen(cases[i].text));
		if (cases[i].want == NULL) {
			expect_ok(kc_params("kc"));
			assert_string_equal(c.server, "https://x");
		} else {
			expect_fail(kc_params("kc"), cases[i].want);
		}
	}
}

/* Every prefix of a good kubeconfig, and every byte of it replaced by a
 * character that upsets YAML: success or a clean one-line error, never the
 * token in it (the run under valgrind and ASan checks the rest). */
static void test_truncated_and_mutated(void **state)
{
	static const char bad[] = {':', '\n', '[', '"', '\0'};
	char good[2048], buf[2048];
	size_t n;

	(void)state;
	snprintf(good, sizeof(good),
	         "current-context: ctx\n"
	         "contexts:\n- name: ctx\n  context: {cluster: cl, user: u, namespace: n}\n"
	         "clusters:\n- name: cl\n  cluster:\n    server: https://k:1\n"
	         "    certificate-authority-data: %s\n"
	         "users:\n- name: u\n  user:\n    token: " SECRET "\n", pem_b64);
	n = strlen(good);
	for (size_t len = 0; len <= n; len++) {
		write_bytes("kc", good, len);
		if (resolve(kc_params("kc")) < 0)
			check_err("k8s: ");
	}
	assert_string_equal(c.token, SECRET);
	for (size_t i = 0; i < n; i++) {
		for (size_t b = 0; b < sizeof(bad); b++) {
			memcpy(buf, good, n);
			buf[i] = bad[b];
			write_bytes("kc", buf, n);
			if (resolve(kc_params("kc")) < 0)
				check_err("k8s: ");
		}
	}
}

static void test_huge_and_deep(void **state)
{
	size_t big = 1024 * 1024 + 1, deep = 200000;
	char *buf = malloc(big);

	(void)state;
	assert_non_null(buf);
	memset(buf, '#', big);
	write_bytes("kc", buf, big);
	expect_fail(kc_params("kc"), "larger than 1048576 bytes");
	/* a file just under the cap is read (and found to be no kubeconfig) */
	write_bytes("kc", buf, big - 1);
	expect_fail(kc_params("kc"), "the file is empty");
	/* deep nesting and many anchors (quadratic in libyaml: minutes for
	 * a megabyte) are refused at once */
	memset(buf, '[', big - 1);
	write_bytes("kc", buf, big - 1);
	expect_fail(kc_params("kc"), "nested deeper than 64 levels");
	for (size_t i = 0; i + 4 <= deep; i += 4)
		memcpy(buf + i, "{a: ", 4);
	write_bytes("kc", buf, deep);
	expect_fail(kc_params("kc"), "nested deeper than 64 levels");
	memcpy(buf, "x:\n", 3);
	size_t n = 3;
	for (int i = 0; n + 32 < deep; i++)
		n += (size_t)snprintf(buf + n, 32, "- &a%d x\n", i);
	write_bytes("kc", buf, n);
	expect_fail(kc_params("kc"), "more than 256 YAML anchors");
	free(buf);
	/* 64 levels and 256 anchors are fine (and no kubeconfig) */
	char ok[1024];
	memset(ok, '[', 64);
	memset(ok + 64, ']', 64);
	write_bytes("kc", ok, 128);
	expect_fail(kc_params("kc"), "not a kubeconfig (its top level is not a mapping)");
	/* a directory */
	assert_int_equal(mkdir(path_in("d"), 0700), 0);
	expect_fail(kc_params("d"), "Is a directory");
}

static void test_insecure_and_ca_conflict(void **state)
{
	char cl[1024];

	(void)state;
	snprintf(cl, sizeof(cl), "    server: https://k:1\n    insecure-skip-tls-verify: true\n"
	         "    certificate-authority-data: %s\n", pem_b64);
	write_kc("kc", cl, "    token: t\n");
	expect_fail(kc_params("kc"), "insecure-skip-tls-verify and a certificate-authority are both set");
	/* --tls-ca overrides both */
	write_file("ca.pem", "%s", pem);
	struct k8s_conn_params p = *kc_params("kc");
	p.tls_ca = path_in("ca.pem");
	expect_ok(&p);
	assert_false(c.insecure);
	assert_null(c.ca_data);
	assert_string_equal(c.ca_file, path_in("ca.pem"));
	/* a server without a scheme gets https:// */
	write_kc("kc2", "    server: 10.0.0.1:6443\n", "    token: t\n");
	expect_ok(kc_params("kc2"));
	assert_string_equal(c.server, "https://10.0.0.1:6443");
	write_kc("kc3", "    server: http://127.0.0.1:8080\n", "    token: t\n");
	expect_ok(kc_params("kc3"));
	assert_string_equal(c.server, "http://127.0.0.1:8080");
}

/* ---- which configuration ---- */

static void test_kubeconfig_list(void **state)
{
	char list[1024];

	(void)state;
	write_kc("b", "    server: https://bee:1\n", "    token: t\n");
	write_kc("c", "    server: https://sea:1\n", "    token: t\n");
	snprintf(list, sizeof(list), "%s::%s:%s", path_in("missing"), path_in("b"), path_in("c"));
	setenv("KUBECONFIG", list, 1);
	struct k8s_conn_params p = {0};
	expect_ok(&p);
	assert_string_equal(c.server, "https://bee:1");
	/* --kubeconfig wins over KUBECONFIG */
	p.kubeconfig = path_in("c");
	expect_ok(&p);
	assert_string_equal(c.server, "https://sea:1");
	/* an explicit file that is not there */
	p.kubeconfig = path_in("absent");
	expect_fail(&p, "(--kubeconfig): No such file or directory");
	/* a list of which no file exists, and no cluster */
	snprintf(list, sizeof(list), "%s:%s", path_in("x"), path_in("y"));
	setenv("KUBECONFIG", list, 1);
	p.kubeconfig = NULL;
	expect_fail(&p, "no file in KUBECONFIG exists");
	/* nothing at all */
	unsetenv("KUBECONFIG");
	expect_fail(&p, "no API server: the URL names no host, no kubeconfig (--kubeconfig, KUBECONFIG) "
	            "and not in a cluster");
}

static void make_sa_dir(void)
{
	assert_int_equal(mkdir(path_in("sa"), 0700), 0);
	write_file("sa/token", SECRET "\n");
	write_file("sa/ca.crt", "%s", pem);
	write_file("sa/namespace", "kube-app\n");
	setenv("ELECT_K8S_SA_DIR", path_in("sa"), 1);
}

static void test_in_cluster(void **state)
{
	struct k8s_conn_params p = {0};

	(void)state;
	make_sa_dir();
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	expect_ok(&p);
	assert_string_equal(c.server, "https://10.96.0.1:443");
	assert_string_equal(c.source, "in-cluster");
	assert_string_equal(c.token_file, path_in("sa/token"));
	assert_string_equal(c.token, SECRET);
	assert_string_equal(c.ca_file, path_in("sa/ca.crt"));
	assert_null(c.ca_data);
	assert_string_equal(c.namespace, "kube-app");

	setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
	expect_ok(&p);
	assert_string_equal(c.server, "https://[fd00:10:96::1]:443");

	setenv("KUBERNETES_SERVICE_PORT", "https", 1);
	expect_fail(&p, "KUBERNETES_SERVICE_PORT");
	unsetenv("KUBERNETES_SERVICE_PORT");
	expect_fail(&p, "KUBERNETES_SERVICE_PORT");
	setenv("KUBERNETES_SERVICE_PORT", "6443", 1);

	/* no namespace file: none */
	assert_int_equal(unlink(path_in("sa/namespace")), 0);
	expect_ok(&p);
	assert_null(c.namespace);

	/* a token that will not do */
	write_file("sa/token", SECRET " and more\n");
	expect_fail(&p, "holds more than one line, a space or a control character");
	check_err(path_in("sa/token"));
	write_file("sa/token", "\n \n");
	expect_fail(&p, "is empty");
	assert_int_equal(unlink(path_in("sa/token")), 0);
	expect_fail(&p, "No such file or directory");
	check_err(path_in("sa/token"));
	/* ... unless --auth gives one */
	p.token = "flag-token";
	expect_ok(&p);
	assert_string_equal(c.token, "flag-token");
	assert_null(c.token_file);

	/* no CA */
	assert_int_equal(unlink(path_in("sa/ca.crt")), 0);
	expect_fail(&p, "in-cluster CA");
	check_err("ELECT_K8S_SA_DIR");
}

static void test_url_host(void **state)
{
	struct k8s_conn_params p = {.url_host = "api.internal:6443"};

	(void)state;
	/* a host and nothing else: the flags give CA and token */
	write_file("ca.pem", "%s", pem);
	p.tls_ca = path_in("ca.pem");
	p.token = SECRET;
	expect_ok(&p);
	assert_string_equal(c.server, "https://api.internal:6443");
	assert_string_equal(c.source, "URL");
	assert_string_equal(c.ca_file, path_in("ca.pem"));
	assert_string_equal(c.token, SECRET);
	assert_null(c.token_file);

	/* a host overrides the kubeconfig's server, the rest stays */
	p.tls_ca = NULL;
	p.token = NULL;
	write_kc("kc", "    server: http://elsewhere:80\n", "    token: kt\n");
	p.kubeconfig = path_in("kc");
	expect_ok(&p);
	assert_string_equal(c.server, "https://api.internal:6443");
	assert_string_equal(c.token, "kt");
	assert_string_equal(c.namespace, "team-a");
	/* ... and the cluster then needs no server */
	write_kc("kc2", "    insecure-skip-tls-verify: true\n", "    token: kt\n");
	p.kubeconfig = path_in("kc2");
	expect_ok(&p);
	assert_string_equal(c.server, "https://api.internal:6443");
	assert_true(c.insecure);

	/* in a cluster, a host overrides the service address */
	p.kubeconfig = NULL;
	make_sa_dir();
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	p.url_host = "[::1]:6443";
	expect_ok(&p);
	assert_string_equal(c.server, "https://[::1]:6443");
	assert_string_equal(c.token, SECRET);
	assert_string_equal(c.source, "in-cluster");

	/* a host that is not one */
	p.url_host = "user@host:1";
	expect_fail(&p, "the URL's host holds");
}

static void test_flag_overrides(void **state)
{
	char user[2048], cl[1024];

	(void)state;
	write_file("tok", "file-token\n");
	write_file("ca.pem", "%s", pem);
	write_file("c.pem", "%s", pem);
	write_file("k.pem", "%s", keypem);
	snprintf(cl, sizeof(cl), "    server: https://k:1\n    certificate-authority-data: %s\n", pem_b64);
	snprintf(user, sizeof(user), "    tokenFile: tok\n    client-certificate-data: %s\n    client-key-data: %s\n",
	         pem_b64, key_b64);
	write_kc("kc", cl, user);
	struct k8s_conn_params p = *kc_params("kc");
	expect_ok(&p);
	assert_string_equal(c.token, "file-token");
	assert_non_null(c.cert_data);

	p.tls_ca = path_in("ca.pem");
	p.tls_cert = path_in("c.pem");
	p.tls_key = path_in("k.pem");
	p.token = SECRET;
	expect_ok(&p);
	assert_string_equal(c.ca_file, path_in("ca.pem"));
	assert_null(c.ca_data);
	assert_string_equal(c.cert_file, path_in("c.pem"));
	assert_string_equal(c.key_file, path_in("k.pem"));
	assert_null(c.cert_data);
	assert_null(c.key_data);
	assert_string_equal(c.token, SECRET);
	assert_null(c.token_file);

	/* a flag's file that is not there, named by its flag */
	p.tls_key = path_in("nokey.pem");
	expect_fail(&p, "client key");
	check_err("(--tls-key)");
	/* a certificate without a key */
	p.tls_key = NULL;
	write_kc("kc2", "    server: https://k:1\n", "    token: t\n");
	p.kubeconfig = path_in("kc2");
	expect_fail(&p, "give both --tls-cert and --tls-key");
	/* an --auth that cannot go in a header */
	p.tls_cert = NULL;
	p.token = SECRET "\r\nX-Evil: 1";
	expect_fail(&p, "--auth holds a space or a control character");
}

static void test_read_token_file(void **state)
{
	char *tok = NULL, *big;

	(void)state;
	write_file("t", "\t" SECRET " \r\n");
	assert_int_equal(k8s_read_token_file(path_in("t"), &tok, err, sizeof(err)), 0);
	assert_string_equal(tok, SECRET);
	free(tok);

	write_bytes("t", SECRET "\0x", sizeof(SECRET) + 1);
	assert_int_equal(k8s_read_token_file(path_in("t"), &tok, err, sizeof(err)), -1);
	assert_null(tok);
	check_err("NUL byte");

	big = malloc(K8S_MAX_TOKEN + 1);
	assert_non_null(big);
	memset(big, 'a', K8S_MAX_TOKEN + 1);
	write_bytes("t", big, K8S_MAX_TOKEN);
	assert_int_equal(k8s_read_token_file(path_in("t"), &tok, err, sizeof(err)), 0);
	assert_int_equal(strlen(tok), K8S_MAX_TOKEN);
	free(tok);
	write_bytes("t", big, K8S_MAX_TOKEN + 1);
	assert_int_equal(k8s_read_token_file(path_in("t"), &tok, err, sizeof(err)), -1);
	check_err("larger than 16384 bytes");
	free(big);

	/* a message that does not fit is cut, not overrun */
	char small[8];
	assert_int_equal(k8s_read_token_file(path_in("none"), &tok, small, sizeof(small)), -1);
	assert_int_equal(strlen(small), sizeof(small) - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_token_and_ca_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_token_file_relative, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_cert_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_relative_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_current_context_among_several, setup, teardown),
		cmocka_unit_test_setup_teardown(test_context_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsupported_credentials, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated_and_mutated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_huge_and_deep, setup, teardown),
		cmocka_unit_test_setup_teardown(test_insecure_and_ca_conflict, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kubeconfig_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_in_cluster, setup, teardown),
		cmocka_unit_test_setup_teardown(test_url_host, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flag_overrides, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_token_file, setup, teardown),
	};

	return cmocka_run_group_tests_name("k8s_conn", tests, group_setup, group_teardown);
}
