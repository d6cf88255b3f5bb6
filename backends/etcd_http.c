/* The etcd client: requests to etcd's v3 JSON gateway through libcurl multi
 * on the backend's loop: endpoint list and rotation, per-request timeouts,
 * TLS, auth tokens. Shared by the election (etcd.c) and locks (etcd_lock.c).
 *
 * A connection error, a timeout, a malformed answer or an "unavailable"
 * server error moves the backend to the next endpoint, so one dead or slow
 * member costs at most one request timeout. Failures are logged once when
 * the backend goes from working to failing, and once when it recovers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/etcd.h"
#include "common/clock.h"
#include "common/curl_ev.h"
#include "common/log.h"

#define ETCD_MAX_ANSWER  (1024 * 1024)  /* bigger is not an answer we asked for */
#define ETCD_MAX_LINE    (256 * 1024)
#define GRPC_DEADLINE_EXCEEDED 4
#define GRPC_UNAVAILABLE       14
#define GRPC_UNAUTHENTICATED   16
#define AUTH_BACKOFF_MAX_NS (4 * NS_PER_SEC)
#define ETCD_MIN_TTL_S 2        /* etcd's minimum lease TTL with default timing */

static void req_start(struct etcd_req *r);

static int parse_auth(struct etcd_client *b, const char *auth, char *err, size_t errlen)
{
	const char *colon = auth ? strchr(auth, ':') : NULL;

	if (auth == NULL)
		return 0;
	if (colon == NULL || colon == auth) {
		snprintf(err, errlen, "etcd: auth must be USER:PASSWORD");
		return -1;
	}
	if ((b->user = strndup(auth, (size_t)(colon - auth))) == NULL ||
	    (b->password = strdup(colon + 1)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

int etcd_check_timing(const struct backend_params *p, char *err, size_t errlen)
{
	if (p->ttl_ns % NS_PER_SEC != 0) {
		snprintf(err, errlen, "etcd leases have whole seconds: use a TTL like 2s or 10s");
		return -1;
	}
	if (p->ttl_ns < ETCD_MIN_TTL_S * NS_PER_SEC) {
		snprintf(err, errlen, "etcd's smallest lease TTL is %ds (shorter ones are raised by the "
		         "server): use a TTL of at least %ds", ETCD_MIN_TTL_S, ETCD_MIN_TTL_S);
		return -1;
	}
	if (p->request_timeout_ns < 0 || p->request_timeout_ns >= p->ttl_ns) {
		snprintf(err, errlen, "etcd: the request timeout must be positive and shorter than the TTL");
		return -1;
	}
	return 0;
}

static void start_auth(struct etcd_client *b);

static void auth_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	start_auth(w->data);
}

int etcd_client_init(struct etcd_client *b, const struct backend_params *p, char **path,
                     char *err, size_t errlen)
{
	char *hosts = NULL;
	int rc = -1;

	memset(b, 0, sizeof(*b));
	*path = NULL;
	b->loop = p->loop;
	ev_init(&b->auth_timer, auth_timer_cb);
	b->auth_timer.data = b;
	b->tls_ca = p->tls_ca;
	b->tls_cert = p->tls_cert;
	b->tls_key = p->tls_key;
	b->scheme = (p->tls_ca || p->tls_cert || p->tls_key) ? "https" : "http";
	http_default_timing(p->request_timeout_ns, p->renew_ns, &b->req_timeout_ns, &b->retry_ns);
	if (etcd_check_timing(p, err, errlen) < 0 ||
	    http_check_tls_files("etcd", p->tls_ca, p->tls_cert, p->tls_key, err, errlen) < 0 ||
	    backend_split_url(p->url, &hosts, path, err, errlen) < 0 ||
	    http_endpoints_parse(&b->ep, "etcd", "endpoint", hosts, "2379", err, errlen) < 0 ||
	    parse_auth(b, p->auth, err, errlen) < 0)
		goto out;
	if ((b->cev = curl_ev_new(b->loop)) == NULL) {
		snprintf(err, errlen, "etcd: cannot set up libcurl");
		goto out;
	}
	rc = 0;
out:
	free(hosts);
	if (rc < 0) {
		free(*path);
		*path = NULL;
	}
	return rc;
}

void etcd_note_failure(struct etcd_req *r, const char *err)
{
	http_endpoints_failed(&r->c->ep, r->endpoint, r->what, err);
}

static void auth_done(struct etcd_req *r, const json_t *ans, const char *err)
{
	struct etcd_client *b = r->c;
	const json_t *tok = ans ? json_object_get(ans, "token") : NULL;
	struct etcd_req *waiting = b->auth_waiters;

	free(b->token);
	b->token = json_is_string(tok) ? strdup(json_string_value(tok)) : NULL;
	if (err == NULL && b->token == NULL)
		err = "authentication answer has no token";
	/* Refused credentials: one line until they work (etcd_note_failure
	 * already logged a connection failure). */
	if (err != NULL && !r->transport_error && !b->auth_failing)
		log_msg(b->ep.owner_logs ? LOG_LVL_INFO : LOG_LVL_WARN,
		        "etcd: authentication as '%s' failed: %s", b->user, err);
	else if (err != NULL)
		log_debug("etcd: authentication as '%s' failed: %s", b->user, err);
	else if (b->auth_failing)
		log_info("etcd: authenticated as '%s'", b->user);
	b->auth_failing = err != NULL && !r->transport_error;
	if (b->auth_failing) {
		b->auth_backoff_ns = b->auth_backoff_ns ? b->auth_backoff_ns * 2 : b->retry_ns;
		if (b->auth_backoff_ns > AUTH_BACKOFF_MAX_NS)
			b->auth_backoff_ns = AUTH_BACKOFF_MAX_NS;
		b->auth_next_ns = clock_now_ns() + b->auth_backoff_ns;
	} else {
		b->auth_backoff_ns = 0;
	}
	/* Take the whole list first: a done() below may queue new waiters. */
	b->auth_waiters = NULL;
	while (waiting != NULL) {
		struct etcd_req *s = waiting;
		waiting = s->auth_next;
		s->auth_next = NULL;
		s->waiting_auth = false;
		if (err == NULL) {
			req_start(s);
		} else {
			s->busy = false;
			s->transport_error = true;
			s->done(s, NULL, err);
		}
	}
}

void etcd_req_init(struct etcd_client *c, struct etcd_req *r, void *owner, const char *what,
                   etcd_req_done_fn done)
{
	memset(r, 0, sizeof(*r));
	r->c = c;
	r->owner = owner;
	r->what = what;
	r->done = done;
	r->lines.max = ETCD_MAX_LINE;
}

static int stream_line(const char *line, size_t len, void *arg)
{
	struct etcd_req *r = arg;

	return r->on_line(line, len, r->owner);
}

/* Runs inside libcurl: only collect, never call libcurl or the backend's
 * events. Returning less than n aborts the transfer. */
static size_t write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
	struct etcd_req *r = arg;
	size_t n = size * nmemb;

	if (r->stream)
		return etcd_lines_feed(&r->lines, data, n, stream_line, r) == 0 ? n : 0;
	return http_collect(&r->resp, &r->resp_len, &r->resp_cap, data, n, ETCD_MAX_ANSWER) == 0 ? n : 0;
}

static void drop_easy(struct etcd_req *r)
{
	/* r->c only with a transfer: a slot never used (r_auth) has none. */
	http_drop_transfer(r->easy ? r->c->cev : NULL, &r->easy, &r->hdrs);
}

/* A finished unary request: the answer, a server error or garbage. */
static void finish_unary(struct etcd_req *r, long http)
{
	struct etcd_client *b = r->c;
	char err[256];
	json_t *ans = NULL;
	enum etcd_answer a = etcd_parse_answer(r->resp ? r->resp : "", r->resp_len, &ans, &r->grpc_code,
	                                       err, sizeof(err));

	if (a == ETCD_OK && http != 200) {
		snprintf(err, sizeof(err), "HTTP status %ld", http);
		a = ETCD_MALFORMED;
	}
	if (a == ETCD_SERVER_ERROR && r->grpc_code == GRPC_UNAUTHENTICATED && b->user &&
	    !r->auth_retried && r != &b->r_auth) {
		/* The token expired or the member restarted: log in again, once. */
		free(b->token);
		b->token = NULL;
		r->auth_retried = true;
		r->tries--;
		req_start(r);
		return;
	}
	if (a == ETCD_MALFORMED || (a == ETCD_SERVER_ERROR &&
	    (r->grpc_code == GRPC_UNAVAILABLE || r->grpc_code == GRPC_DEADLINE_EXCEEDED || http >= 500))) {
		r->transport_error = true;
		etcd_note_failure(r, err);
	} else {
		http_endpoints_ok(&b->ep, r->endpoint, r->what);
	}
	r->done(r, a == ETCD_OK ? ans : NULL, a == ETCD_OK ? NULL : err);
	json_decref(ans);
}

static void req_done(CURL *easy, CURLcode rc, void *arg)
{
	struct etcd_req *r = arg;
	long http = 0;
	/* libcurl's own line says why ("SSL certificate problem: ..."); a
	 * copy, as done() may start r again, which clears errbuf. */
	char cerr[CURL_ERROR_SIZE];

	snprintf(cerr, sizeof(cerr), "%s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &http);
	drop_easy(r);
	r->busy = false;
	r->transport_error = false;
	r->grpc_code = 0;
	if (r->stream) {
		/* Ends only on error, an abort by on_line, or the server going away. */
		etcd_lines_reset(&r->lines);
		if (rc != CURLE_OK && rc != CURLE_WRITE_ERROR) {
			r->transport_error = true;
			etcd_note_failure(r, cerr);
		}
		r->done(r, NULL, rc == CURLE_OK ? "watch stream ended" : cerr);
		return;
	}
	if (rc != CURLE_OK) {
		r->transport_error = true;
		etcd_note_failure(r, cerr);
		r->done(r, NULL, cerr);
		return;
	}
	finish_unary(r, http);
}

static int setup_easy(struct etcd_req *r)
{
	struct etcd_client *b = r->c;
	char url[512], authz[1024];
	int64_t timeout_ns = r->timeout_ns > 0 ? r->timeout_ns : b->req_timeout_ns;
	long timeout_ms = (long)(timeout_ns / NS_PER_MS);

	if ((r->easy = curl_easy_init()) == NULL)
		return -1;
	snprintf(url, sizeof(url), "%s://%s%s", b->scheme, b->ep.list[b->ep.cur], r->path);
	r->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	r->hdrs = curl_slist_append(r->hdrs, "Expect:");
	if (b->token && r != &b->r_auth) {
		snprintf(authz, sizeof(authz), "Authorization: %s", b->token);
		r->hdrs = curl_slist_append(r->hdrs, authz);
	}
	curl_easy_setopt(r->easy, CURLOPT_URL, url);
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->hdrs);
	curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	r->errbuf[0] = '\0';
	curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 1L);
	/* A watch stays open; a stalled one is caught by the periodic check. */
	if (!r->stream) {
		curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 1L);
	} else {
		curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPALIVE, 1L);
		/* A connection of its own, closed with it: the idle one stays in
		 * the cache for the check that a watch event triggers, which
		 * would otherwise wait for a new connection (the handover's
		 * critical path). */
		curl_easy_setopt(r->easy, CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(r->easy, CURLOPT_FORBID_REUSE, 1L);
	}
	http_set_tls(r->easy, b->tls_ca, b->tls_cert, b->tls_key);
	return 0;
}

/* Logs in for the waiting requests; after refused credentials not before
 * the backoff has passed (the waiters wait with it). */
static void start_auth(struct etcd_client *b)
{
	int64_t wait = b->auth_failing ? b->auth_next_ns - clock_now_ns() : 0;

	if (b->r_auth.busy || ev_is_active(&b->auth_timer))
		return;
	if (wait > 0) {
		ev_timer_set(&b->auth_timer, clock_ns_to_ev(wait), 0.);
		ev_timer_start(b->loop, &b->auth_timer);
		return;
	}
	if (b->r_auth.done == NULL)
		etcd_req_init(b, &b->r_auth, b, "authenticate", auth_done);
	etcd_req_send(&b->r_auth, "/v3/auth/authenticate", etcd_body_auth(b->user, b->password));
}

static void req_start(struct etcd_req *r)
{
	struct etcd_client *b = r->c;

	r->busy = true;
	if (b->user && b->token == NULL && r != &b->r_auth) {
		r->waiting_auth = true;
		r->auth_next = b->auth_waiters;
		b->auth_waiters = r;
		start_auth(b);
		return;
	}
	r->resp_len = 0;
	etcd_lines_reset(&r->lines);
	if (r->body == NULL || setup_easy(r) < 0) {
		drop_easy(r);
		r->busy = false;
		log_warnx("etcd: %s: out of memory", r->what);
		return;   /* the caller's next trigger (timer, renew) tries again */
	}
	r->endpoint = b->ep.cur;
	r->tries++;
	r->sent_ns = clock_now_ns();
	if (curl_ev_add(b->cev, r->easy, req_done, r) < 0) {
		drop_easy(r);
		r->busy = false;
		log_warnx("etcd: %s: libcurl refused the request", r->what);
	}
}

void etcd_req_send(struct etcd_req *r, const char *path, char *body)
{
	etcd_req_cancel(r);
	free(r->body);
	r->path = (char *)path;
	r->body = body;
	r->tries = 0;
	r->auth_retried = false;
	req_start(r);
}

void etcd_req_call(struct etcd_req *r, const char *what, etcd_req_done_fn done, const char *path,
                   char *body)
{
	r->what = what;
	r->done = done;
	r->stream = false;
	etcd_req_send(r, path, body);
}

void etcd_req_resend(struct etcd_req *r)
{
	etcd_req_cancel(r);
	req_start(r);
}

void etcd_req_cancel(struct etcd_req *r)
{
	if (r->waiting_auth) {
		struct etcd_req **pp = &r->c->auth_waiters;
		while (*pp != NULL && *pp != r)
			pp = &(*pp)->auth_next;
		if (*pp == r)
			*pp = r->auth_next;
		r->auth_next = NULL;
	}
	drop_easy(r);
	etcd_lines_reset(&r->lines);
	r->busy = false;
	r->waiting_auth = false;
}

void etcd_req_free(struct etcd_req *r)
{
	etcd_req_cancel(r);
	free(r->body);
	free(r->resp);
	r->body = r->resp = NULL;
}

void etcd_client_free(struct etcd_client *b)
{
	if (b->loop)
		ev_timer_stop(b->loop, &b->auth_timer);
	etcd_req_free(&b->r_auth);
	curl_ev_free(b->cev);
	http_endpoints_free(&b->ep);
	free(b->user);
	free(b->password);
	free(b->token);
}
