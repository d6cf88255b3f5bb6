# backends/k8s_proto.c alone: the Lease in client-go's LeaseLock format (read
# and written back with everything else kept), MicroTime, watch events,
# Status messages.
test_k8s_proto_OBJ = backends/k8s_proto.o
