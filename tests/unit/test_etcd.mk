# backends/etcd_proto.c and etcd_proto_list.c alone: base64, gateway answers,
# watch lines, bodies, lock listings.
test_etcd_OBJ = backends/etcd_proto.o backends/etcd_proto_list.o
