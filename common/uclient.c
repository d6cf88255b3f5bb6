/* Blocking requests to a local daemon over its Unix socket (see uclient.h). */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/uclient.h"

#define UCLIENT_CONNECT_MS 5000L
#define UCLIENT_MAX_BODY   (1024 * 1024)

static size_t collect(char *ptr, size_t size, size_t nmemb, void *data)
{
	struct uclient_reply *r = data;
	size_t n = size * nmemb;
	char *p;

	if (r->len + n > UCLIENT_MAX_BODY)
		return 0;               /* makes curl fail the transfer */
	p = realloc(r->body, r->len + n + 1);
	if (!p)
		return 0;
	memcpy(p + r->len, ptr, n);
	r->body = p;
	r->len += n;
	r->body[r->len] = '\0';
	return n;
}

void uclient_setup(struct uclient *c, CURL *easy, const char *method, const char *target,
                   const char *body, long timeout_ms, struct uclient_reply *r)
{
	char url[512];

	memset(r, 0, sizeof *r);
	c->errbuf[0] = '\0';
	snprintf(url, sizeof url, "http://localhost%s", target);
	curl_easy_setopt(easy, CURLOPT_UNIX_SOCKET_PATH, c->socket_path);
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, UCLIENT_CONNECT_MS);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, r);
	if (strcmp(method, "POST") == 0) {
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body ? body : "");
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long)(body ? strlen(body) : 0));
	} else {
		curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
	}
}

int uclient_finish(struct uclient *c, CURL *easy, CURLcode rc, struct uclient_reply *r)
{
	long os_errno = 0;

	if (rc == CURLE_OK) {
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r->code);
		return 0;
	}
	/* The OS error says more than curl's "localhost port 80" text. */
	curl_easy_getinfo(easy, CURLINFO_OS_ERRNO, &os_errno);
	fprintf(stderr, "%s: cannot reach %s at %s: %s (is it running? use --socket PATH)\n",
	        c->prog, c->peer, c->socket_path,
	        os_errno ? strerror((int)os_errno) : curl_easy_strerror(rc));
	uclient_reply_free(r);
	return -1;
}

int uclient_request(struct uclient *c, const char *method, const char *target,
                    const char *body, long timeout_ms, struct uclient_reply *r)
{
	CURL *easy = curl_easy_init();
	int rc;

	memset(r, 0, sizeof *r);
	if (!easy) {
		fprintf(stderr, "%s: cannot start libcurl\n", c->prog);
		return -1;
	}
	uclient_setup(c, easy, method, target, body, timeout_ms, r);
	rc = uclient_finish(c, easy, curl_easy_perform(easy), r);
	curl_easy_cleanup(easy);
	return rc;
}

void uclient_reply_free(struct uclient_reply *r)
{
	free(r->body);
	memset(r, 0, sizeof *r);
}

void uclient_print_body(FILE *f, const struct uclient_reply *r)
{
	json_t *doc = r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;

	if (doc) {
		json_dumpf(doc, f, JSON_INDENT(2));
		fputc('\n', f);
		json_decref(doc);
	} else if (r->len > 0) {
		fwrite(r->body, 1, r->len, f);
		if (r->body[r->len - 1] != '\n')
			fputc('\n', f);
	}
}

void uclient_print_unexpected(const struct uclient *c, const struct uclient_reply *r)
{
	fprintf(stderr, "%s: %s answered HTTP %ld: %.200s%s", c->prog, c->peer, r->code,
	        r->body ? r->body : "", r->len && r->body[r->len - 1] == '\n' ? "" : "\n");
}
