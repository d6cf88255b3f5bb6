/* A small HTTP/1.1 server on the libev loop, for the local API socket (Unix)
 * and the optional TCP address. Parsing is done by http-parser (Debian's
 * libhttp-parser), not by hand. Keep-alive is supported; requests on one
 * connection are answered in order. Limits: headers 8 KiB (431), body
 * 64 KiB (413), 128 connections per listener (a new one on a full listener
 * closes that listener's longest-idle connection, see httpd_listen.c); a
 * malformed request gets 400 and the connection is closed; every 4xx is
 * logged in one line.
 *
 * A handler answers at once with httpd_respond(), or later (long-poll): it
 * calls httpd_defer() and keeps the request; if the client goes away first,
 * the abort callback runs and the request must be forgotten.
 */
#ifndef ELECT_HTTPD_H
#define ELECT_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ev_loop;
struct httpd;

struct http_request {
	const char *method;       /* "GET", "POST", ... */
	const char *path;         /* decoded path, without the query */
	const char *query;        /* raw query string without '?', "" if none */
	const char *body;         /* NUL-terminated copy of the body ("" if none) */
	size_t body_len;
	bool tcp;                 /* came in on the TCP listener */
	uint64_t conn;            /* serial of its connection (1, 2, ...) */
	pid_t peer_pid;           /* Unix socket: the client's pid when it connected
	                             (SO_PEERCRED); 0 if unknown or TCP */
	void *priv;               /* httpd's own */
};

typedef void (*httpd_handler)(struct http_request *req, void *data);
typedef void (*httpd_abort_cb)(struct http_request *req, void *data);
/* A connection closed (after the abort callbacks of its requests ran). */
typedef void (*httpd_close_cb)(uint64_t conn, void *data);

struct httpd *httpd_new(struct ev_loop *loop, httpd_handler handler, void *data);
/* Optional: told about every connection that closes (the handler's data is
 * passed), e.g. to end what was bound to the connection. */
void httpd_on_close(struct httpd *h, httpd_close_cb cb);
/* Binds a Unix socket with the given mode and group ((gid_t)-1: the
 * process's). A stale socket file (nobody listening) is replaced; a live one
 * is an error ("in use by another process"). -1 with a message in err. */
int httpd_listen_unix(struct httpd *h, const char *path, mode_t mode, gid_t group, char *err,
                      size_t errlen);
/* What a TCP listener was bound to. */
struct httpd_bound {
	char addr[80];            /* e.g. "127.0.0.1:4040", "[::]:4040" */
	bool loopback;            /* reachable from this host only */
};
/* "HOST:PORT", "[V6]:PORT", or ":PORT" for 127.0.0.1 (loopback: every
 * address must be asked for, e.g. 0.0.0.0:PORT or [::]:PORT). bound may be
 * NULL. */
int httpd_listen_tcp(struct httpd *h, const char *addr, struct httpd_bound *bound, char *err,
                     size_t errlen);

/* Answer; the request is gone afterwards. body may be NULL for an empty body. */
void httpd_respond(struct http_request *req, int status, const char *content_type,
                   const char *body, size_t len);
/* Convenience: JSON body from a string. */
void httpd_respond_json(struct http_request *req, int status, const char *json);
/* JSON body from a jansson value, compact, one line; takes the reference
 * (NULL, e.g. a failed json_pack, answers 500). */
struct json_t;
void httpd_respond_json_obj(struct http_request *req, int status, struct json_t *obj);
/* A JSON integer of v (capped at INT64_MAX: jansson's integers are signed). */
struct json_t *httpd_json_u64(uint64_t v);
/* Error answer {"error":message} (JSON-escaped); a 4xx is logged with
 * message as the reason. */
void httpd_respond_error(struct http_request *req, int status, const char *message);
/* Keep the request open; abort runs if the client disconnects first. */
void httpd_defer(struct http_request *req, httpd_abort_cb abort, void *data);
/* The request's connection carries state (e.g. a lock bound to it): never
 * close it to make room for a new connection on a full listener. */
void httpd_keep_connection(struct http_request *req);
/* Copies the (URL-decoded) value of query parameter key into buf. 0 if
 * present, -1 if absent, -2 if present but too long for buf or badly
 * encoded (a bad escape, an encoded NUL). */
int httpd_query_param(const struct http_request *req, const char *key, char *buf, size_t len);

/* The listening sockets themselves (common/httpd_listen.c): non-blocking,
 * close-on-exec, listening; -1 with a message in err. */
int httpd_unix_socket(const char *path, mode_t mode, gid_t group, char *err, size_t errlen);
int httpd_tcp_socket(const char *addr, char *err, size_t errlen);

/* Checks for option time (so that --check-config refuses what listen would):
 * 0, or -1 with a one-line message in err. */
int httpd_unix_path_check(const char *path, char *err, size_t errlen);
/* Syntax, port range, and that the host resolves. */
int httpd_tcp_addr_check(const char *addr, char *err, size_t errlen);
/* Octal permissions such as "0660" (the owner must keep rw). */
int httpd_parse_socket_mode(const char *s, mode_t *mode, char *err, size_t errlen);
/* A group name or a numeric gid. */
int httpd_parse_socket_group(const char *s, gid_t *gid, char *err, size_t errlen);

/* Closes listeners (unlinks the Unix socket it created), aborts deferred
 * requests (their abort callbacks run), closes connections, frees. */
void httpd_free(struct httpd *h);

#endif
