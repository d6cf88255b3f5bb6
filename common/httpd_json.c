/* JSON answers for httpd handlers (see httpd.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/httpd.h"

void httpd_respond_json_obj(struct http_request *req, int status, json_t *obj)
{
	char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
	char *line = NULL;

	if (!text || asprintf(&line, "%s\n", text) < 0) {
		httpd_respond_error(req, 500, "out of memory");
	} else {
		httpd_respond(req, status, "application/json", line, strlen(line));
		free(line);
	}
	free(text);
	json_decref(obj);
}

json_t *httpd_json_u64(uint64_t v)
{
	return json_integer(v > INT64_MAX ? INT64_MAX : (json_int_t)v);
}
