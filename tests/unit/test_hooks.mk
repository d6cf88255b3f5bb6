# hooks/hooks.c with the real hooks/proc.c: real hook scripts on libev's
# default loop. The log is captured by the test (log_msg, log_child_line).
test_hooks_OBJ  = hooks/hooks.o hooks/proc.o hooks/guard.o common/clock.o
test_hooks_WRAP = log_msg log_child_line
