# elector/core.c handing over to a named candidate (elector_resign_to) and
# standing aside for one, with the fixture of test_core (core_fixture.h).
test_core_handover_OBJ  = elector/core.o elector/lease.o common/handover.o common/clock.o common/duration.o common/log.o
test_core_handover_WRAP = clock_now_ns log_msg
