# backends/zk_names.c: the ZooKeeper backend's URL parsing and node-name
# arithmetic (no server). The whole library is linked because registry.o
# (backend_split_url) lists every backend.
test_zk_OBJ = $(LIB_SRC:%.c=%.o)
