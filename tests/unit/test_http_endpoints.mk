# common/http_endpoints.c: host lists of the etcd and Consul URLs, rotation,
# answers up to a limit, default timing (log.c for its lines; curl_dl.c and
# curl_ev.c for http_set_tls and http_drop_transfer, never called here).
test_http_endpoints_OBJ = common/http_endpoints.o common/log.o common/clock.o common/curl_dl.o \
                          common/curl_ev.o
