# common/options.c, common/duration.c and common/which.c: flags, environment,
# config file, command lookup.
test_options_OBJ = common/options.o common/duration.o common/which.o
