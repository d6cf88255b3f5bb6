# elector/api.c and elector/client.c over a real Unix socket (common/httpd).
# The elector is faked by wrapping the three core functions api.c calls, so
# elector/core.o is not linked. log_msg is captured by the test.
test_api_OBJ  = elector/api.o elector/client.o elector/health_conf.o common/httpd.o common/httpd_listen.o \
                common/duration.o common/clock.o common/curl_dl.o \
                common/httpd_json.o common/uclient.o
test_api_WRAP = log_msg elector_status elector_resign elector_resign_to elector_state_name
