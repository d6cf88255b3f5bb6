# backends/k8s_conn.c and k8s_kubeconfig.c (base64 from etcd_proto.c): the
# Kubernetes API server's address and credentials from kubeconfigs, the
# in-cluster files, the URL and the flags, in a temporary directory.
test_k8s_conn_OBJ = backends/k8s_conn.o backends/k8s_kubeconfig.o backends/etcd_proto.o
