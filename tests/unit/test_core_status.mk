# elector/core.c, what it publishes (readiness, snapshots, reachability),
# with the fixture of test_core (tests/unit/core_fixture.h).
test_core_status_OBJ  = elector/core.o elector/lease.o common/handover.o common/clock.o common/duration.o common/log.o
test_core_status_WRAP = clock_now_ns log_msg
