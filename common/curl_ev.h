/* libcurl's multi interface driven by a libev loop (the evhiperfifo pattern).
 *
 * One curl_ev per user (a backend); it owns a CURLM and the watchers for the
 * sockets and the timeout libcurl asks for. Users hand in ready easy handles;
 * when a transfer ends, its done callback runs from a libev watcher callback
 * (never from inside curl_ev_add), after the handle was taken out of the
 * multi handle, so the callback may clean it up, add new transfers or remove
 * other ones. Nothing here blocks.
 */
#ifndef ELECT_CURL_EV_H
#define ELECT_CURL_EV_H

#include <curl/curl.h>

struct ev_loop;
struct curl_ev;

/* The transfer ended: rc is CURLE_OK or the error (timeout, connect, write
 * aborted by the write callback, ...). The easy handle belongs to the caller
 * again. */
typedef void (*curl_ev_done_fn)(CURL *easy, CURLcode rc, void *arg);

/* NULL if libcurl could not be set up. */
struct curl_ev *curl_ev_new(struct ev_loop *loop);
/* Sets CURLOPT_NOSIGNAL and CURLOPT_PRIVATE on easy and starts the transfer.
 * Returns -1 if libcurl refused it (then done is never called). */
int curl_ev_add(struct curl_ev *c, CURL *easy, curl_ev_done_fn done, void *arg);
/* Stops a running transfer; its done callback is not called. The caller
 * still owns (and cleans up) easy. Harmless if easy is not running. Must not
 * be called from inside a libcurl callback (write, header, ...). */
void curl_ev_remove(struct curl_ev *c, CURL *easy);
/* Cleans up the multi handle and stops all watchers. Remove (and clean up)
 * your transfers first. Call it before the loop is destroyed. */
void curl_ev_free(struct curl_ev *c);

#endif
