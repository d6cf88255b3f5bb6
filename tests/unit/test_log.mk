# common/log.c: escaping of text and JSON lines, structured fields. The test
# captures stderr (fd 2) in a temporary file.
test_log_OBJ = common/log.o common/clock.o
