/* The Kubernetes API client: HTTP(S) requests to one API server through
 * libcurl multi on the backend's loop (common/curl_ev.c), the watch stream
 * split into lines, the bearer token (read again from its file at least once
 * a minute, and at once after a 401: bound service-account tokens rotate),
 * TLS from the resolved connection (k8s_conn.h), and back-off.
 *
 * The token goes only into the Authorization header of each request; it is
 * never in a URL, a log line or the command line. A 429 (the API server's
 * priority and fairness), a 5xx, a timeout or a connection error is a
 * failure of this try: the slot backs off, doubling with jitter up to
 * K8S_BACKOFF_MAX_NS, so that many candidates do not flood a server that is
 * struggling. 401 and 403 are answers (the caller says what is missing) but
 * back off the same way. The back-off never exceeds the lease duration: a
 * candidate that tries less often than that would add more than a lease
 * duration to the first failover after an API server outage (the chaos
 * suite saw 20 s without a leader at a 3 s TTL after a restart). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/k8s.h"
#include "common/clock.h"
#include "common/curl_ev.h"
#include "common/http_endpoints.h"
#include "common/log.h"

#define K8S_MAX_ANSWER   (4 * 1024 * 1024)
#define K8S_MAX_LINE     (1024 * 1024)

int k8s_client_init(struct k8s_client *c, const struct backend_params *p, char **path,
                    char *err, size_t errlen)
{
	struct k8s_conn_params cp = { .tls_ca = p->tls_ca, .tls_cert = p->tls_cert,
	                              .tls_key = p->tls_key, .token = p->auth,
	                              .kubeconfig = p->kubeconfig };
	char *hosts = NULL;
	int rc = -1;

	memset(c, 0, sizeof(*c));
	*path = NULL;
	c->loop = p->loop;
	http_default_timing(p->request_timeout_ns, p->renew_ns, &c->req_timeout_ns, &c->retry_ns);
	c->backoff_max_ns = p->ttl_ns < K8S_BACKOFF_MAX_NS ? p->ttl_ns : K8S_BACKOFF_MAX_NS;
	if (c->backoff_max_ns < c->retry_ns)
		c->backoff_max_ns = c->retry_ns;
	if (backend_split_url(p->url, &hosts, path, err, errlen) < 0)
		goto out;
	cp.url_host = hosts;
	if (k8s_conn_resolve(&c->conn, &cp, err, errlen) < 0)
		goto out;
	c->token_read_ns = clock_now_ns();
	if (asprintf(&c->user_agent, "elect (%s)", p->id ? p->id : "") < 0) {
		c->user_agent = NULL;
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (c->conn.insecure)
		log_warnx("k8s: insecure-skip-tls-verify is set (%s): the API server's certificate "
		          "is not checked", c->conn.source ? c->conn.source : "kubeconfig");
	if ((c->cev = curl_ev_new(c->loop)) == NULL) {
		snprintf(err, errlen, "k8s: cannot set up libcurl");
		goto out;
	}
	rc = 0;
out:
	free(hosts);
	if (rc < 0) {
		k8s_conn_free(&c->conn);
		memset(&c->conn, 0, sizeof(c->conn));
		free(c->user_agent);
		c->user_agent = NULL;
		free(*path);
		*path = NULL;
	}
	return rc;
}

void k8s_client_free(struct k8s_client *c)
{
	curl_ev_free(c->cev);
	c->cev = NULL;
	free(c->user_agent);
	c->user_agent = NULL;
	if (c->conn.token)
		memset(c->conn.token, 0, strlen(c->conn.token));
	k8s_conn_free(&c->conn);
}

/* The token file again, if it is time (or forced after a 401). A file that
 * cannot be read keeps the token we have. */
static void refresh_token(struct k8s_client *c, bool force)
{
	char err[256], *tok = NULL;
	int64_t now = clock_now_ns();

	if (c->conn.token_file == NULL || (!force && now - c->token_read_ns < K8S_TOKEN_REREAD_NS))
		return;
	c->token_read_ns = now;
	if (k8s_read_token_file(c->conn.token_file, &tok, err, sizeof(err)) < 0) {
		log_warnx("%s (keeping the token read before)", err);
		return;
	}
	if (c->conn.token) {
		if (strcmp(c->conn.token, tok) != 0)
			log_info("k8s: read a new token from %s", c->conn.token_file);
		memset(c->conn.token, 0, strlen(c->conn.token));
		free(c->conn.token);
	}
	c->conn.token = tok;
}

void k8s_req_init(struct k8s_client *c, struct k8s_req *r, void *owner)
{
	memset(r, 0, sizeof(*r));
	r->c = c;
	r->owner = owner;
	r->lines.max = K8S_MAX_LINE;
	backoff_init(&r->backoff, c->retry_ns, c->backoff_max_ns,
	             (uint64_t)clock_now_ns() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)r);
}

/* Runs inside libcurl: only collect, or split the stream into lines. */
static int line_cb(const char *line, size_t len, void *arg)
{
	struct k8s_req *r = arg;

	return r->on_line(r, line, len);
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	struct k8s_req *r = arg;
	size_t n = size * nmemb;
	long status = 0;

	if (r->on_line) {
		/* An error status has a Status object as its body: keep it. */
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
		if (status == 200)
			return etcd_lines_feed(&r->lines, data, n, line_cb, r) == 0 ? n : 0;
	}
	return http_collect(&r->resp, &r->resp_len, &r->resp_cap, data, n, K8S_MAX_ANSWER) == 0 ? n : 0;
}

static void drop_easy(struct k8s_req *r)
{
	http_drop_transfer(r->easy ? r->c->cev : NULL, &r->easy, &r->hdrs);
}

/* One line per change of the client's state: failing, working again. */
static void note_failure(struct k8s_req *r, const char *err)
{
	struct k8s_client *c = r->c;

	if (!c->failing)
		log_info("k8s: %s to %s failed: %s", r->what, c->conn.server, err);
	else
		log_debug("k8s: %s failed: %s", r->what, err);
	c->failing = true;
}

static void note_answer(struct k8s_req *r)
{
	if (r->c->failing)
		log_info("k8s: %s answered again", r->c->conn.server);
	r->c->failing = false;
}

int64_t k8s_req_retry_ns(const struct k8s_req *r)
{
	return backoff_active(&r->backoff) ? r->retry_wait_ns : r->c->retry_ns;
}

static void back_off(struct k8s_req *r)
{
	r->retry_wait_ns = backoff_next(&r->backoff);
}

void k8s_status_reason(const struct k8s_req *r, long status, char *buf, size_t len)
{
	json_t *doc = r->resp && r->resp_len ? json_loadb(r->resp, r->resp_len, 0, NULL) : NULL;
	char msg[512];
	long code;

	k8s_status_message(doc, &code, msg, sizeof(msg));
	json_decref(doc);
	if (msg[0] == '\0')
		snprintf(msg, sizeof(msg), "%.200s", r->resp ? r->resp : "");
	msg[strcspn(msg, "\r\n")] = '\0';
	snprintf(buf, len, "HTTP %ld: %s", status, msg);
}

static void req_done(CURL *easy, CURLcode rc, void *arg)
{
	struct k8s_req *r = arg;
	long status = 0;
	char err[CURL_ERROR_SIZE + 600];

	snprintf(err, sizeof(err), "%s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	drop_easy(r);
	r->busy = false;
	etcd_lines_reset(&r->lines);
	if (r->resp == NULL && (r->resp = malloc(1)) != NULL)
		r->resp[0] = '\0';
	if (rc == CURLE_OK && (status >= 500 || status == 429)) {
		k8s_status_reason(r, status, err, sizeof(err));
		rc = CURLE_HTTP_RETURNED_ERROR;
	}
	if (rc != CURLE_OK) {
		note_failure(r, err);
		back_off(r);
		r->done(r, 0, err);
		return;
	}
	note_answer(r);
	if (status == 401 || status == 403) {
		if (status == 401)
			refresh_token(r->c, true);
		back_off(r);
	} else {
		backoff_reset(&r->backoff);
	}
	r->done(r, status, r->resp ? NULL : "out of memory");
}

static int setup_easy(struct k8s_req *r, long timeout_ms)
{
	struct k8s_client *c = r->c;
	const struct k8s_conn *k = &c->conn;
	char url[2048], *auth = NULL;

	if ((r->easy = curl_easy_init()) == NULL)
		return -1;
	refresh_token(c, false);
	snprintf(url, sizeof(url), "%s%s", k->server, r->path);
	r->hdrs = curl_slist_append(NULL, "Expect:");
	r->hdrs = curl_slist_append(r->hdrs, "Accept: application/json");
	if (r->body)
		r->hdrs = curl_slist_append(r->hdrs, "Content-Type: application/json");
	if (k->token) {
		if (asprintf(&auth, "Authorization: Bearer %s", k->token) < 0)
			return -1;
		r->hdrs = curl_slist_append(r->hdrs, auth);
		memset(auth, 0, strlen(auth));
		free(auth);
	}
	curl_easy_setopt(r->easy, CURLOPT_URL, url);
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->hdrs);
	if (c->user_agent)
		curl_easy_setopt(r->easy, CURLOPT_USERAGENT, c->user_agent);
	curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, r->method);
	if (r->body)
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	r->errbuf[0] = '\0';
	curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, c->req_timeout_ns / NS_PER_MS);
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
	if (r->on_line) {
		/* A watch can be silent for minutes: keepalive probes find a dead
		 * peer (a cut link) long before the server's timeout. */
		curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPALIVE, 1L);
		curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPIDLE, 5L);
		curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPINTVL, 2L);
	}
	if (k->ca_file)
		curl_easy_setopt(r->easy, CURLOPT_CAINFO, k->ca_file);
	if (k->ca_data) {
		struct curl_blob b = { .data = k->ca_data, .len = k->ca_len, .flags = CURL_BLOB_COPY };
		curl_easy_setopt(r->easy, CURLOPT_CAINFO_BLOB, &b);
	}
	if (k->cert_file)
		curl_easy_setopt(r->easy, CURLOPT_SSLCERT, k->cert_file);
	if (k->key_file)
		curl_easy_setopt(r->easy, CURLOPT_SSLKEY, k->key_file);
	if (k->cert_data) {
		struct curl_blob b = { .data = k->cert_data, .len = k->cert_len, .flags = CURL_BLOB_COPY };
		curl_easy_setopt(r->easy, CURLOPT_SSLCERT_BLOB, &b);
	}
	if (k->key_data) {
		struct curl_blob b = { .data = k->key_data, .len = k->key_len, .flags = CURL_BLOB_COPY };
		curl_easy_setopt(r->easy, CURLOPT_SSLKEY_BLOB, &b);
	}
	if (k->insecure) {
		curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	return 0;
}

static void send_req(struct k8s_req *r, const char *what, k8s_req_done_fn done, k8s_line_fn on_line,
                     const char *method, const char *body, int64_t timeout_ns, const char *fmt,
                     va_list ap)
{
	struct k8s_client *c = r->c;
	int64_t t = timeout_ns > 0 ? timeout_ns : c->req_timeout_ns;
	long timeout_ms = (long)(t / NS_PER_MS);
	int n;

	k8s_req_cancel(r);
	free(r->path);
	free(r->body);
	r->path = r->body = NULL;
	r->what = what;
	r->done = done;
	r->on_line = on_line;
	r->method = method;
	r->resp_len = 0;
	if (r->resp)
		r->resp[0] = '\0';
	etcd_lines_reset(&r->lines);
	n = vasprintf(&r->path, fmt, ap);
	if (n < 0 || (body && (r->body = strdup(body)) == NULL) ||
	    setup_easy(r, timeout_ms > 0 ? timeout_ms : 1L) < 0) {
		if (n < 0)
			r->path = NULL;
		drop_easy(r);
		log_warnx("k8s: %s: out of memory", what);
		return;    /* the caller's next trigger (timer, renew) tries again */
	}
	r->busy = true;
	r->sent_ns = clock_now_ns();
	if (curl_ev_add(c->cev, r->easy, req_done, r) < 0) {
		drop_easy(r);
		r->busy = false;
		log_warnx("k8s: %s: libcurl refused the request", what);
	}
}

void k8s_req_send(struct k8s_req *r, const char *what, k8s_req_done_fn done, const char *method,
                  const char *body, int64_t timeout_ns, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	send_req(r, what, done, NULL, method, body, timeout_ns, fmt, ap);
	va_end(ap);
}

void k8s_req_stream(struct k8s_req *r, const char *what, k8s_line_fn on_line, k8s_req_done_fn done,
                    int64_t timeout_ns, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	send_req(r, what, done, on_line, "GET", NULL, timeout_ns, fmt, ap);
	va_end(ap);
}

void k8s_req_cancel(struct k8s_req *r)
{
	drop_easy(r);
	r->busy = false;
}

void k8s_req_free(struct k8s_req *r)
{
	k8s_req_cancel(r);
	etcd_lines_reset(&r->lines);
	free(r->path);
	free(r->body);
	free(r->resp);
	r->path = r->body = r->resp = NULL;
}

void k8s_refusal_line(const struct k8s_client *c, const struct k8s_req *r, long status,
                      const char *verbs, const char *ns, const char *rbac_file, char *line,
                      size_t len)
{
	char reason[700];

	k8s_status_reason(r, status, reason, sizeof(reason));
	if (status == 401)
		snprintf(line, len, "k8s: the API server refused our credentials (%s): check "
		         "the token or client certificate (%s)", reason,
		         c->conn.source ? c->conn.source : "configuration");
	else
		snprintf(line, len, "k8s: %s refused (%s): the identity needs the verbs %s on leases "
		         "(coordination.k8s.io) in namespace %s: see %s", r->what, reason, verbs, ns,
		         rbac_file);
}

void k8s_url_escape(const char *s, char *buf, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (; *s && n + 4 < len; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    strchr("-._~", ch)) {
			buf[n++] = (char)ch;
		} else {
			buf[n++] = '%';
			buf[n++] = hex[ch >> 4];
			buf[n++] = hex[ch & 15];
		}
	}
	buf[n] = '\0';
}
