/* libcurl, loaded when first used.
 *
 * Only the etcd backend and the socket clients speak HTTP through libcurl.
 * Linking it would load libcurl's whole dependency tree (OpenSSL, GnuTLS,
 * Kerberos, LDAP, ...) into every agent, including the file and ZooKeeper
 * ones: about 5 MB of resident pages and constructors run at start for
 * nothing. So the program defines the few curl functions it calls, and each
 * forwards to libcurl opened with dlopen() on first use. The calling code is
 * plain libcurl code. If libcurl cannot be loaded, every call fails the way
 * libcurl reports failure (NULL, CURLE_FAILED_INIT, CURLM_INTERNAL_ERROR).
 */
#define CURL_DISABLE_TYPECHECK  /* the type-checking macros would rename our definitions */
#include <curl/curl.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/log.h"

#define CURL_SONAME "libcurl.so.4"

static struct {
	bool tried, ok;
	CURLcode (*global_init)(long);
	void (*global_cleanup)(void);
	CURL *(*easy_init)(void);
	void (*easy_cleanup)(CURL *);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	CURLcode (*easy_perform)(CURL *);
	const char *(*easy_strerror)(CURLcode);
	struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
	void (*slist_free_all)(struct curl_slist *);
	CURLM *(*multi_init)(void);
	CURLMcode (*multi_cleanup)(CURLM *);
	CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
	CURLMcode (*multi_add_handle)(CURLM *, CURL *);
	CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
	CURLMcode (*multi_assign)(CURLM *, curl_socket_t, void *);
	CURLMcode (*multi_socket_action)(CURLM *, curl_socket_t, int, int *);
	CURLMsg *(*multi_info_read)(CURLM *, int *);
} fn;

#define RESOLVE(lib, field, symbol) \
	((*(void **)&fn.field = dlsym(lib, symbol)) != NULL)

static bool load(void)
{
	void *lib;

	if (fn.tried)
		return fn.ok;
	fn.tried = true;
	lib = dlopen(CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (lib == NULL) {
		log_error("cannot load %s: %s (install Debian's libcurl4)", CURL_SONAME, dlerror());
		return false;
	}
	fn.ok = RESOLVE(lib, global_init, "curl_global_init") &&
	        RESOLVE(lib, global_cleanup, "curl_global_cleanup") &&
	        RESOLVE(lib, easy_init, "curl_easy_init") &&
	        RESOLVE(lib, easy_cleanup, "curl_easy_cleanup") &&
	        RESOLVE(lib, easy_setopt, "curl_easy_setopt") &&
	        RESOLVE(lib, easy_getinfo, "curl_easy_getinfo") &&
	        RESOLVE(lib, easy_perform, "curl_easy_perform") &&
	        RESOLVE(lib, easy_strerror, "curl_easy_strerror") &&
	        RESOLVE(lib, slist_append, "curl_slist_append") &&
	        RESOLVE(lib, slist_free_all, "curl_slist_free_all") &&
	        RESOLVE(lib, multi_init, "curl_multi_init") &&
	        RESOLVE(lib, multi_cleanup, "curl_multi_cleanup") &&
	        RESOLVE(lib, multi_setopt, "curl_multi_setopt") &&
	        RESOLVE(lib, multi_add_handle, "curl_multi_add_handle") &&
	        RESOLVE(lib, multi_remove_handle, "curl_multi_remove_handle") &&
	        RESOLVE(lib, multi_assign, "curl_multi_assign") &&
	        RESOLVE(lib, multi_socket_action, "curl_multi_socket_action") &&
	        RESOLVE(lib, multi_info_read, "curl_multi_info_read");
	if (!fn.ok)
		log_error("%s lacks a function elect needs: %s", CURL_SONAME, dlerror());
	return fn.ok;
}

CURLcode curl_global_init(long flags)
{
	return load() ? fn.global_init(flags) : CURLE_FAILED_INIT;
}

void curl_global_cleanup(void)
{
	if (fn.ok)
		fn.global_cleanup();
}

CURL *curl_easy_init(void)
{
	return load() ? fn.easy_init() : NULL;
}

void curl_easy_cleanup(CURL *h)
{
	if (fn.ok)
		fn.easy_cleanup(h);
}

/* The one argument after the option has the type the option's number range
 * says (this is how libcurl itself reads it). */
#define FORWARD_OPTION(call, handle, option, ap)                                       \
	do {                                                                           \
		if ((option) < CURLOPTTYPE_OBJECTPOINT)                                \
			rc = call(handle, option, va_arg(ap, long));                   \
		else if ((option) >= CURLOPTTYPE_BLOB)                                 \
			rc = call(handle, option, va_arg(ap, void *));                 \
		else if ((option) < CURLOPTTYPE_FUNCTIONPOINT)                         \
			rc = call(handle, option, va_arg(ap, void *));                 \
		else if ((option) < CURLOPTTYPE_OFF_T)                                 \
			rc = call(handle, option, va_arg(ap, void (*)(void)));         \
		else                                                                   \
			rc = call(handle, option, va_arg(ap, curl_off_t));             \
	} while (0)

CURLcode curl_easy_setopt(CURL *h, CURLoption option, ...)
{
	CURLcode rc;
	va_list ap;

	if (!load())
		return CURLE_FAILED_INIT;
	va_start(ap, option);
	FORWARD_OPTION(fn.easy_setopt, h, option, ap);
	va_end(ap);
	return rc;
}

CURLMcode curl_multi_setopt(CURLM *m, CURLMoption option, ...)
{
	CURLMcode rc;
	va_list ap;

	if (!load())
		return CURLM_INTERNAL_ERROR;
	va_start(ap, option);
	FORWARD_OPTION(fn.multi_setopt, m, option, ap);
	va_end(ap);
	return rc;
}

/* Every CURLINFO result is written through one pointer argument. */
CURLcode curl_easy_getinfo(CURL *h, CURLINFO info, ...)
{
	void *out;
	va_list ap;

	if (!load())
		return CURLE_FAILED_INIT;
	va_start(ap, info);
	out = va_arg(ap, void *);
	va_end(ap);
	return fn.easy_getinfo(h, info, out);
}

CURLcode curl_easy_perform(CURL *h)
{
	return load() ? fn.easy_perform(h) : CURLE_FAILED_INIT;
}

const char *curl_easy_strerror(CURLcode code)
{
	return load() ? fn.easy_strerror(code) : "libcurl could not be loaded";
}

struct curl_slist *curl_slist_append(struct curl_slist *list, const char *s)
{
	return load() ? fn.slist_append(list, s) : NULL;
}

void curl_slist_free_all(struct curl_slist *list)
{
	if (fn.ok)
		fn.slist_free_all(list);
}

CURLM *curl_multi_init(void)
{
	return load() ? fn.multi_init() : NULL;
}

CURLMcode curl_multi_cleanup(CURLM *m)
{
	return fn.ok ? fn.multi_cleanup(m) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_add_handle(CURLM *m, CURL *h)
{
	return load() ? fn.multi_add_handle(m, h) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_remove_handle(CURLM *m, CURL *h)
{
	return fn.ok ? fn.multi_remove_handle(m, h) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_assign(CURLM *m, curl_socket_t s, void *p)
{
	return fn.ok ? fn.multi_assign(m, s, p) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_socket_action(CURLM *m, curl_socket_t s, int ev, int *running)
{
	return fn.ok ? fn.multi_socket_action(m, s, ev, running) : CURLM_INTERNAL_ERROR;
}

CURLMsg *curl_multi_info_read(CURLM *m, int *left)
{
	return fn.ok ? fn.multi_info_read(m, left) : NULL;
}
