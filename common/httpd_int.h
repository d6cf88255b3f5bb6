/* httpd's insides, shared by common/httpd.c (connections and requests) and
 * common/httpd_listen.c (listening sockets, accepting, connection limits).
 * Not for users of httpd: see httpd.h. */
#ifndef ELECT_HTTPD_INT_H
#define ELECT_HTTPD_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <ev.h>
#include <http_parser.h>

#include "common/httpd.h"

#define HTTPD_IDLE_SECS    60.0

struct listener {
	struct httpd *h;
	ev_io io;
	int fd;
	bool tcp;
	char *unix_path;        /* unlinked on free if it is still ours */
	dev_t dev;
	ino_t ino;
	char name[96];          /* for logs: "unix socket PATH", "TCP ADDR" */
	int nconns, max_conns;  /* each listener has its own slots */
	bool full_logged;
	struct listener *next;
};

struct buf {
	char *data;
	size_t len, cap;
};

struct conn {
	struct httpd *h;
	struct listener *l;     /* the listener it came in on */
	struct conn *prev, *next;
	uint64_t serial;
	uint64_t last_active;   /* h->activity at its last request or answer */
	int fd;
	bool tcp;
	bool keep;              /* carries state: never evicted (httpd_keep_connection) */
	pid_t peer_pid;
	char peer[80];
	ev_io rio, wio;
	ev_timer timer;         /* idle timeout, then linger timeout */
	http_parser parser;
	struct buf in;          /* received, not yet parsed */
	struct buf out;         /* answers not yet sent */
	size_t out_pos;
	/* The request being collected, then handled. */
	struct buf url, body;
	size_t header_bytes;
	int reject_status;      /* set by a parser callback that refused */
	char reject_reason[96];
	bool message_done;      /* parser paused at the end of a message */
	bool keep_alive;
	struct http_request req;
	bool req_active;        /* handed to the handler, not answered yet */
	bool deferred;
	bool in_handler;
	httpd_abort_cb abort_cb;
	void *abort_data;
	bool close_after;       /* close once the output is flushed */
	bool dead;              /* write failed: close at the next safe point */
	bool lingering;
};

struct httpd {
	struct ev_loop *loop;
	httpd_handler handler;
	httpd_close_cb on_close;
	void *data;
	uint64_t conn_serial;
	uint64_t activity;      /* ticks on every request and answer */
	struct listener *listeners;
	struct conn *conns;
	ev_timer accept_pause;
};

/* httpd.c */
void httpd_conn_new(struct listener *l, int fd, const struct sockaddr_storage *sa,
                    socklen_t salen);
void httpd_conn_close(struct conn *c);
/* httpd_listen.c */
void httpd_listeners_init(struct httpd *h);
void httpd_listeners_free(struct httpd *h);

#endif
