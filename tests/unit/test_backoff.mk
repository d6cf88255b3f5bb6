# common/backoff.c alone: doubling, the cap, jitter, reset.
test_backoff_OBJ = common/backoff.o
