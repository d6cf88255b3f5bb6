# elector/core.c with an injected clock, a scripted backend and fake actions.
test_core_OBJ  = elector/core.o elector/lease.o common/handover.o common/clock.o common/duration.o common/log.o
test_core_WRAP = clock_now_ns log_msg
