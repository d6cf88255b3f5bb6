# backends/consul_proto.c alone (base64 from etcd_proto.c): session bodies,
# Consul's answers (well-formed, surprising, broken), Flags above 2^63, the
# URL's options.
test_consul_OBJ = backends/consul_proto.o backends/etcd_proto.o common/duration.o
