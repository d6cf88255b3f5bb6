/* JSON answers for httpd handlers (see httpd.h). */
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
