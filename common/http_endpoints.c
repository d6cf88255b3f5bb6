/* The servers of an HTTP backend client: parsing, rotation, reachability
 * lines, TLS files, default timing, answers (see http_endpoints.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/curl_ev.h"
#include "common/http_endpoints.h"
#include "common/log.h"

/* HOST, HOST:PORT, [V6] or [V6]:PORT with a port from 1 to 65535; nothing
 * that would change the URL's meaning ('/', '@', '?', a space). */
static bool valid_endpoint(const char *h, size_t n, bool *has_port)
{
	const char *colon;
	long port = 0;

	*has_port = false;
	if (n == 0 || memchr(h, '/', n) || memchr(h, '@', n) || memchr(h, '?', n) || memchr(h, ' ', n))
		return false;
	if (h[0] == '[') {
		const char *rb = memchr(h, ']', n);
		if (rb == NULL)
			return false;
		colon = (size_t)(rb - h) + 1 < n ? rb + 1 : NULL;
		if (colon && *colon != ':')
			return false;
	} else {
		colon = memchr(h, ':', n);
		if (colon && memchr(colon + 1, ':', n - (size_t)(colon + 1 - h)))
			return false;
	}
	if (colon == NULL)
		return true;
	if (colon == h || colon + 1 == h + n)
		return false;
	for (const char *p = colon + 1; p < h + n; p++) {
		if (*p < '0' || *p > '9' || port > 65535)
			return false;
		port = port * 10 + (*p - '0');
	}
	*has_port = true;
	return port >= 1 && port <= 65535;
}

int http_endpoints_parse(struct http_endpoints *e, const char *who, const char *noun,
                         const char *hosts, const char *default_port, char *err, size_t errlen)
{
	const char *h = hosts;

	e->who = who;
	for (;;) {
		const char *comma = strchr(h, ',');
		size_t n = comma ? (size_t)(comma - h) : strlen(h);
		bool has_port;
		char *ep, **nv;

		if (!valid_endpoint(h, n, &has_port)) {
			snprintf(err, errlen, "%s: bad %s '%.*s' in the backend URL: write "
			         "HOST[:PORT][,HOST[:PORT]...] with a port from 1 to 65535", who, noun, (int)n, h);
			return -1;
		}
		if (asprintf(&ep, "%.*s%s%s", (int)n, h, has_port ? "" : ":", has_port ? "" : default_port) < 0) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		if ((nv = realloc(e->list, sizeof(*nv) * (size_t)(e->n + 1))) == NULL) {
			free(ep);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		e->list = nv;
		e->list[e->n++] = ep;
		if (comma == NULL)
			return 0;
		h = comma + 1;
	}
}

void http_endpoints_free(struct http_endpoints *e)
{
	for (int i = 0; i < e->n; i++)
		free(e->list[i]);
	free(e->list);
	e->list = NULL;
	e->n = e->cur = 0;
}

void http_endpoints_failed(struct http_endpoints *e, int used, const char *what, const char *err)
{
	if (e->n > 1 && used == e->cur)
		e->cur = (e->cur + 1) % e->n;
	if (!e->failing)
		log_msg(e->owner_logs ? LOG_LVL_INFO : LOG_LVL_WARN, "%s: %s to %s failed: %s%s%s", e->who,
		        what, e->list[used], err, e->n > 1 ? "; now using " : "", e->n > 1 ? e->list[e->cur] : "");
	else
		log_debug("%s: %s to %s failed: %s", e->who, what, e->list[used], err);
	e->failing = true;
}

void http_endpoints_ok(struct http_endpoints *e, int used, const char *what)
{
	if (e->failing)
		log_info("%s: reachable again (%s answered the %s request)", e->who, e->list[used], what);
	e->failing = false;
}

int http_check_tls_files(const char *who, const char *ca, const char *cert, const char *key,
                         char *err, size_t errlen)
{
	const char *files[] = { ca, cert, key };
	static const char *const what[] = { "CA", "certificate", "key" };

	for (size_t i = 0; i < 3; i++) {
		if (files[i] && access(files[i], R_OK) < 0) {
			snprintf(err, errlen, "%s: TLS %s file '%s' is not readable", who, what[i], files[i]);
			return -1;
		}
	}
	return 0;
}

void http_set_tls(CURL *easy, const char *ca, const char *cert, const char *key)
{
	if (ca)
		curl_easy_setopt(easy, CURLOPT_CAINFO, ca);
	if (cert)
		curl_easy_setopt(easy, CURLOPT_SSLCERT, cert);
	if (key)
		curl_easy_setopt(easy, CURLOPT_SSLKEY, key);
}

void http_drop_transfer(struct curl_ev *cev, CURL **easy, struct curl_slist **hdrs)
{
	if (*easy) {
		curl_ev_remove(cev, *easy);
		curl_easy_cleanup(*easy);
	}
	curl_slist_free_all(*hdrs);
	*easy = NULL;
	*hdrs = NULL;
}

void http_default_timing(int64_t request_timeout_ns, int64_t renew_ns, int64_t *req_timeout_ns,
                         int64_t *retry_ns)
{
	*req_timeout_ns = request_timeout_ns > 0 ? request_timeout_ns
	                : (renew_ns < 2 * NS_PER_SEC ? renew_ns : 2 * NS_PER_SEC);
	*retry_ns = renew_ns < NS_PER_SEC ? renew_ns : NS_PER_SEC;
	if (*retry_ns < 100 * NS_PER_MS)
		*retry_ns = 100 * NS_PER_MS;
}

int http_collect(char **buf, size_t *len, size_t *cap, const char *data, size_t n, size_t max)
{
	if (*len + n > max)
		return -1;
	if (*len + n + 1 > *cap) {
		size_t ncap = (*len + n + 1) * 2;
		char *nb = realloc(*buf, ncap);
		if (nb == NULL)
			return -1;
		*buf = nb;
		*cap = ncap;
	}
	memcpy(*buf + *len, data, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}
