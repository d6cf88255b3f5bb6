/* The Consul session of a backend: create (TTL, LockDelay, no health
 * checks), renew, destroy with a bounded wait. Every successful create or
 * renewal reports the time its request was SENT (the deadline rule). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/consul.h"
#include "common/clock.h"
#include "common/log.h"

static void create_done(struct consul_req *r, long status, const char *err)
{
	struct consul_session *s = r->owner;
	char perr[200];
	char *id = NULL;

	if (err == NULL && status != 200) {
		consul_status_reason(r, status, perr, sizeof(perr));
		err = perr;
	} else if (err == NULL && consul_parse_session(r->resp, r->resp_len, &id, perr, sizeof(perr)) < 0) {
		consul_note_failure(r, perr);
		err = perr;
	}
	if (err != NULL && strstr(err, "Invalid Session TTL") != NULL) {
		/* The servers' session_ttl_min is above our TTL (a URL's
		 * ?session-ttl-min= that is not theirs): say what to change. */
		char hint[sizeof(perr) + 100];

		snprintf(hint, sizeof(hint), "%s; the servers' session_ttl_min is above --ttl: raise --ttl "
		         "or their session_ttl_min", err);
		s->ev->create_failed(s->owner, hint);
		return;
	}
	if (err != NULL) {
		s->ev->create_failed(s->owner, err);
		return;
	}
	s->id = id;
	log_info("consul: session %s created by %s (TTL %llds, lock delay %lldms, no health checks)", id,
	         consul_req_agent(r), (long long)(s->ttl_ns / NS_PER_SEC),
	         (long long)(s->lock_delay_ns / NS_PER_MS));
	s->ev->created(s->owner, r->sent_ns);
}

static void renew_done(struct consul_req *r, long status, const char *err)
{
	struct consul_session *s = r->owner;
	char perr[200];
	int alive = -1;

	if (s->id == NULL)
		return;
	if (err == NULL && status == 404) {
		alive = 0;
	} else if (err == NULL && status != 200) {
		consul_status_reason(r, status, perr, sizeof(perr));
		err = perr;
	} else if (err == NULL && (alive = consul_parse_renew(r->resp, r->resp_len, perr, sizeof(perr))) < 0) {
		consul_note_failure(r, perr);
		err = perr;
	}
	if (err != NULL) {
		s->ev->failed(s->owner, err);
		return;
	}
	if (alive == 0) {
		free(s->id);
		s->id = NULL;
		s->ev->gone(s->owner, "session invalidated (Consul does not know it any more)");
		return;
	}
	s->ev->alive(s->owner, r->sent_ns);
}

static void finish_close(struct consul_session *s)
{
	if (s->closed_sent)
		return;
	s->closed_sent = true;
	ev_timer_stop(s->c->loop, &s->close_timer);
	consul_req_cancel(&s->r);
	free(s->id);
	s->id = NULL;
	s->ev->closed(s->owner);
}

static void destroy_done(struct consul_req *r, long status, const char *err)
{
	struct consul_session *s = r->owner;

	if (err == NULL && status != 200 && status != 404)
		err = "refused";
	if (err != NULL)
		log_warnx("consul: destroying session %s failed (%s); it ends by its TTL", s->id, err);
	finish_close(s);
}

static void close_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct consul_session *s = w->data;

	(void)loop;
	(void)revents;
	if (s->id)
		log_warnx("consul: no answer in time to destroy session %s; it ends by its TTL", s->id);
	finish_close(s);
}

void consul_session_init(struct consul_session *s, struct consul_client *c, const char *name,
                         int64_t ttl_ns, int64_t lock_delay_ns,
                         const struct consul_session_events *ev, void *owner)
{
	memset(s, 0, sizeof(*s));
	s->c = c;
	s->name = (char *)name;
	s->ttl_ns = ttl_ns;
	s->lock_delay_ns = lock_delay_ns;
	s->ev = ev;
	s->owner = owner;
	consul_req_init(c, &s->r, s);
	ev_init(&s->close_timer, close_timer_cb);
	s->close_timer.data = s;
}

void consul_session_create(struct consul_session *s)
{
	char *body;

	if (s->r.busy || s->id != NULL || s->closing)
		return;
	body = consul_body_session(s->name, s->ttl_ns / NS_PER_SEC, s->lock_delay_ns / NS_PER_MS,
	                           s->behavior ? s->behavior : "release");
	if (body == NULL) {
		s->ev->create_failed(s->owner, "out of memory");
		return;
	}
	consul_req_send(&s->r, "session create", create_done, "PUT", body, 0, "/v1/session/create");
	free(body);
}

void consul_session_renew(struct consul_session *s)
{
	if (!s->r.busy && s->id != NULL && !s->closing)
		consul_req_send(&s->r, "session renew", renew_done, "PUT", NULL, 0, "/v1/session/renew/%s", s->id);
}

void consul_session_begin_close(struct consul_session *s)
{
	if (s->closing)
		return;
	s->closing = true;
	consul_req_cancel(&s->r);
	ev_timer_set(&s->close_timer, clock_ns_to_ev(s->c->req_timeout_ns), 0.0);
	ev_timer_start(s->c->loop, &s->close_timer);
}

void consul_session_destroy(struct consul_session *s)
{
	consul_session_begin_close(s);
	if (s->closed_sent)
		return;
	if (s->id == NULL) {
		finish_close(s);
		return;
	}
	consul_req_send(&s->r, "session destroy", destroy_done, "PUT", NULL, 0, "/v1/session/destroy/%s", s->id);
}

void consul_session_free(struct consul_session *s)
{
	if (s->c == NULL)
		return;
	ev_timer_stop(s->c->loop, &s->close_timer);
	consul_req_free(&s->r);
	free(s->id);
	s->id = NULL;
}
