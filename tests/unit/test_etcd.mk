# backends/etcd_proto.c alone: base64, gateway answers, watch lines, bodies.
test_etcd_OBJ = backends/etcd_proto.o
