# hooks/proc.c: real children on libev's default loop. The log is captured by
# the test (log_msg, log_child_line); waitpid is wrapped to see exec failures.
test_proc_OBJ  = hooks/proc.o hooks/guard.o common/clock.o
test_proc_WRAP = log_msg log_child_line waitpid
