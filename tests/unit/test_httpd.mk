# common/httpd.c (+ httpd_listen.c) on a real loop and a temporary Unix
# socket; the test is its own client. log_msg is captured by the test.
test_httpd_OBJ  = common/httpd.o common/httpd_listen.o
test_httpd_WRAP = log_msg
