# backends/file_common.c: token counter files in a temp directory.
test_file_common_OBJ = backends/file_common.o
test_file_common_WRAP =
