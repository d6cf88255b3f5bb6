# lockd/lockd.c (the hold table and deadline rule) with an injected clock, a
# scripted lock backend and fake actions.
test_lockd_OBJ  = lockd/lockd.o elector/lease.o common/clock.o common/duration.o common/log.o
test_lockd_WRAP = clock_now_ns
$(BUILD)/tests/test_lockd: $(BUILD)/lockd/lockd.o
