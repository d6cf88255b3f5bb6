# elector/core.c with health checks (elector_set_health), with the fixture of
# test_core (tests/unit/core_fixture.h).
test_core_health_OBJ  = elector/core.o elector/lease.o common/handover.o common/clock.o common/duration.o common/log.o
test_core_health_WRAP = clock_now_ns log_msg
