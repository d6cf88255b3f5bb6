# common/options.c and common/duration.c: flags, environment, config file.
test_options_OBJ = common/options.o common/duration.o
