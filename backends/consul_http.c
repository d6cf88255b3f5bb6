/* The Consul client: HTTP requests to Consul agents through libcurl multi
 * on the backend's loop (common/curl_ev.c): agent list and rotation, request
 * timeouts, TLS, the ACL token as the X-Consul-Token header.
 *
 * A connection error, a timeout or a 5xx moves to the next agent, so one
 * dead or slow agent costs one request timeout. Failures are logged once
 * when the client goes from working to failing, and once when it recovers.
 * A 403 (a wrong or too weak ACL token) is an answer, not a failure of the
 * agent: the request slot backs off (consul_req_retry_ns) so that a
 * misconfigured agent does not ask every second forever. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/consul.h"
#include "common/clock.h"
#include "common/curl_ev.h"
#include "common/duration.h"
#include "common/log.h"

#define CONSUL_MAX_ANSWER (1024 * 1024)
#define CONSUL_MAX_TOKEN  512

int consul_check_timing(const struct backend_params *p, char *err, size_t errlen)
{
	const char *q = p->url ? strchr(p->url, '?') : NULL;
	struct consul_opts o;
	char min[32];

	if (p->ttl_ns % NS_PER_SEC != 0) {
		snprintf(err, errlen, "Consul session TTLs have whole seconds: use a TTL like 10s or 15s");
		return -1;
	}
	if (consul_parse_options(q ? q + 1 : NULL, p->ttl_ns, &o, err, errlen) < 0)
		return -1;
	if (p->ttl_ns < o.ttl_min_ns) {
		duration_format(o.ttl_min_ns, min, sizeof(min));
		snprintf(err, errlen, "Consul refuses session TTLs under %s (its session_ttl_min, 10s by "
		         "default): use a TTL of at least %s, or give the servers' lower session_ttl_min "
		         "in the URL (?session-ttl-min=2s)", min, min);
		return -1;
	}
	if (p->request_timeout_ns < 0 || p->request_timeout_ns >= p->ttl_ns) {
		snprintf(err, errlen, "consul: the request timeout must be positive and shorter than the TTL");
		return -1;
	}
	return 0;
}

/* The token: --auth, else CONSUL_HTTP_TOKEN, else CONSUL_HTTP_TOKEN_FILE. */
static int read_token(struct consul_client *c, const char *auth, char *err, size_t errlen)
{
	const char *env = getenv("CONSUL_HTTP_TOKEN"), *file = getenv("CONSUL_HTTP_TOKEN_FILE");
	char buf[CONSUL_MAX_TOKEN + 2];

	if (auth == NULL && env != NULL && *env != '\0')
		auth = env;
	if (auth == NULL && file != NULL && *file != '\0') {
		FILE *f = fopen(file, "r");
		size_t n;
		if (f == NULL) {
			snprintf(err, errlen, "consul: CONSUL_HTTP_TOKEN_FILE '%s' is not readable", file);
			return -1;
		}
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		buf[strcspn(buf, "\r\n")] = '\0';
		auth = buf;
	}
	if (auth == NULL || *auth == '\0')
		return 0;
	if (strlen(auth) > CONSUL_MAX_TOKEN || strpbrk(auth, "\r\n") != NULL) {
		snprintf(err, errlen, "consul: the ACL token is not one line of at most %d characters",
		         CONSUL_MAX_TOKEN);
		return -1;
	}
	if ((c->token = strdup(auth)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

int consul_client_init(struct consul_client *c, const struct backend_params *p, char **path,
                       char **query, char *err, size_t errlen)
{
	char *hosts = NULL, *q;
	const char *env_ca = getenv("CONSUL_CACERT");
	int rc = -1;

	memset(c, 0, sizeof(*c));
	*path = *query = NULL;
	c->loop = p->loop;
	c->tls_ca = p->tls_ca ? p->tls_ca : (env_ca && *env_ca ? env_ca : NULL);
	c->tls_cert = p->tls_cert;
	c->tls_key = p->tls_key;
	c->scheme = (c->tls_ca || c->tls_cert || c->tls_key) ? "https" : "http";
	c->ep.owner_logs = true;   /* the owner reports reachability (the core does) */
	http_default_timing(p->request_timeout_ns, p->renew_ns, &c->req_timeout_ns, &c->retry_ns);
	if (consul_check_timing(p, err, errlen) < 0 ||
	    http_check_tls_files("consul", c->tls_ca, c->tls_cert, c->tls_key, err, errlen) < 0 ||
	    backend_split_url(p->url, &hosts, path, err, errlen) < 0)
		goto out;
	if ((q = strchr(*path, '?')) != NULL) {
		*q = '\0';
		if ((*query = strdup(q + 1)) == NULL) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
	}
	if (*hosts == '\0') {
		/* consul:///PREFIX: the agent of CONSUL_HTTP_ADDR, else the local one. */
		const char *addr = getenv("CONSUL_HTTP_ADDR");
		free(hosts);
		if (addr == NULL || *addr == '\0')
			addr = "127.0.0.1:8500";
		if (strncmp(addr, "http://", 7) == 0) {
			addr += 7;
		} else if (strncmp(addr, "https://", 8) == 0) {
			addr += 8;
			c->scheme = "https";
		}
		if ((hosts = strdup(addr)) == NULL) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		hosts[strcspn(hosts, "/")] = '\0';
	}
	if (http_endpoints_parse(&c->ep, "consul", "agent address", hosts, "8500", err, errlen) < 0 ||
	    read_token(c, p->auth, err, errlen) < 0)
		goto out;
	if ((c->cev = curl_ev_new(c->loop)) == NULL) {
		snprintf(err, errlen, "consul: cannot set up libcurl");
		goto out;
	}
	rc = 0;
out:
	free(hosts);
	if (rc < 0) {
		free(*path);
		free(*query);
		*path = *query = NULL;
	}
	return rc;
}

void consul_note_failure(struct consul_req *r, const char *err)
{
	http_endpoints_failed(&r->c->ep, r->endpoint, r->what, err);
}

const char *consul_req_agent(const struct consul_req *r)
{
	return r->c->ep.list[r->endpoint];
}

void consul_req_init(struct consul_client *c, struct consul_req *r, void *owner)
{
	memset(r, 0, sizeof(*r));
	r->c = c;
	r->owner = owner;
}

/* Runs inside libcurl: only collect. */
static size_t write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	struct consul_req *r = arg;
	size_t n = size * nmemb;

	return http_collect(&r->resp, &r->resp_len, &r->resp_cap, data, n, CONSUL_MAX_ANSWER) == 0 ? n : 0;
}

static size_t header_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	struct consul_req *r = arg;
	size_t n = size * nmemb;
	static const char name[] = "x-consul-index:";
	char val[32];

	if (n > sizeof(name) - 1 && n - (sizeof(name) - 1) < sizeof(val) &&
	    strncasecmp(data, name, sizeof(name) - 1) == 0) {
		size_t l = n - (sizeof(name) - 1);
		memcpy(val, data + sizeof(name) - 1, l);
		val[l] = '\0';
		r->index = consul_parse_index(val + strspn(val, " "));
	}
	return n;
}

static void drop_easy(struct consul_req *r)
{
	/* r->c only with a transfer: a slot never used (r_auth) has none. */
	http_drop_transfer(r->easy ? r->c->cev : NULL, &r->easy, &r->hdrs);
}

static void note_refusal(struct consul_req *r, long status)
{
	if (status == 403) {
		if (!backoff_active(&r->refused))
			backoff_init(&r->refused, r->c->retry_ns, CONSUL_REFUSED_BACKOFF_MAX_NS,
			             (uint64_t)clock_now_ns() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)r);
		r->refused_wait_ns = backoff_next(&r->refused);
		log_debug("consul: %s refused (HTTP status 403): next try in %lldms", r->what,
		          (long long)(r->refused_wait_ns / NS_PER_MS));
	} else if ((status >= 200 && status < 300) || status == 404) {
		backoff_reset(&r->refused);
	}
}

int64_t consul_req_retry_ns(const struct consul_req *r)
{
	return backoff_active(&r->refused) ? r->refused_wait_ns : r->c->retry_ns;
}

void consul_status_reason(const struct consul_req *r, long status, char *buf, size_t len)
{
	const char *body = r->resp ? r->resp : "";
	int n = (int)strcspn(body, "\r\n");

	snprintf(buf, len, "HTTP status %ld: %.*s%s", status, n < 120 ? n : 120, body,
	         status == 403 ? " (check the ACL token)" : "");
}

static void req_done(CURL *easy, CURLcode rc, void *arg)
{
	struct consul_req *r = arg;
	struct consul_client *c = r->c;
	long status = 0;
	char err[CURL_ERROR_SIZE + 64];

	snprintf(err, sizeof(err), "%s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	drop_easy(r);
	r->busy = false;
	if (rc == CURLE_OK && status >= 500) {
		snprintf(err, sizeof(err), "HTTP status %ld: %.100s", status, r->resp ? r->resp : "");
		err[strcspn(err, "\n")] = '\0';
		rc = CURLE_HTTP_RETURNED_ERROR;
	}
	if (rc != CURLE_OK) {
		consul_note_failure(r, err);
		r->done(r, 0, err);
		return;
	}
	http_endpoints_ok(&c->ep, r->endpoint, r->what);
	note_refusal(r, status);
	if (r->resp == NULL && (r->resp = malloc(1)) != NULL)
		r->resp[0] = '\0';
	r->done(r, status, r->resp ? NULL : "out of memory");
}

static int setup_easy(struct consul_req *r, long timeout_ms)
{
	struct consul_client *c = r->c;
	char url[1024], tok[CONSUL_MAX_TOKEN + 32];

	if ((r->easy = curl_easy_init()) == NULL)
		return -1;
	snprintf(url, sizeof(url), "%s://%s%s", c->scheme, c->ep.list[c->ep.cur], r->path);
	r->hdrs = curl_slist_append(NULL, "Expect:");
	if (c->token) {
		snprintf(tok, sizeof(tok), "X-Consul-Token: %s", c->token);
		r->hdrs = curl_slist_append(r->hdrs, tok);
		memset(tok, 0, sizeof(tok));
	}
	curl_easy_setopt(r->easy, CURLOPT_URL, url);
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->hdrs);
	curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, r->method);
	if (strcmp(r->method, "GET") != 0)
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body ? r->body : "");
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(r->easy, CURLOPT_HEADERDATA, r);
	r->errbuf[0] = '\0';
	curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
	http_set_tls(r->easy, c->tls_ca, c->tls_cert, c->tls_key);
	return 0;
}

void consul_req_send(struct consul_req *r, const char *what, consul_req_done_fn done,
                     const char *method, const char *body, int64_t timeout_ns, const char *fmt, ...)
{
	struct consul_client *c = r->c;
	int64_t t = timeout_ns > 0 ? timeout_ns : c->req_timeout_ns;
	long timeout_ms = (long)(t / NS_PER_MS);
	va_list ap;
	int n;

	consul_req_cancel(r);
	free(r->path);
	free(r->body);
	r->path = r->body = NULL;
	r->what = what;
	r->done = done;
	r->method = method;
	r->resp_len = 0;
	r->index = 0;
	if (r->resp)
		r->resp[0] = '\0';
	va_start(ap, fmt);
	n = vasprintf(&r->path, fmt, ap);
	va_end(ap);
	if (n < 0 || (body && (r->body = strdup(body)) == NULL) ||
	    setup_easy(r, timeout_ms > 0 ? timeout_ms : 1L) < 0) {
		if (n < 0)
			r->path = NULL;
		drop_easy(r);
		log_warnx("consul: %s: out of memory", what);
		return;    /* the caller's next trigger (timer, renew) tries again */
	}
	r->endpoint = c->ep.cur;
	r->busy = true;
	r->sent_ns = clock_now_ns();
	if (curl_ev_add(c->cev, r->easy, req_done, r) < 0) {
		drop_easy(r);
		r->busy = false;
		log_warnx("consul: %s: libcurl refused the request", what);
	}
}

void consul_req_cancel(struct consul_req *r)
{
	drop_easy(r);
	r->busy = false;
}

void consul_req_free(struct consul_req *r)
{
	consul_req_cancel(r);
	free(r->path);
	free(r->body);
	free(r->resp);
	r->path = r->body = r->resp = NULL;
}

void consul_client_free(struct consul_client *c)
{
	curl_ev_free(c->cev);
	c->cev = NULL;
	http_endpoints_free(&c->ep);
	if (c->token) {
		memset(c->token, 0, strlen(c->token));
		free(c->token);
	}
	c->token = NULL;
}
