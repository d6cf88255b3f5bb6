# The etcd members of the compose example (docker-compose.yml builds it on
# first `up`): Debian's etcd-server (3.4) on a Debian 12 image, run as the
# package's user. Alone, from this directory:
#   docker build -f etcd.Dockerfile -t elect-etcd:3.4 .
#   docker build -f etcd.Dockerfile --build-arg BASE=IMAGE -t elect-etcd:3.4 .
# (BASE: any local Debian 12 image where no registry can be reached.)
# Configured by ETCD_* variables (etcd's flags, upper case), or flags after
# the image name.
ARG BASE=debian:12-slim
FROM ${BASE}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      etcd-server && rm -rf /var/lib/apt/lists/*
# /var/lib/etcd (the package's, owned by user etcd): the data directory's
# parent, where a volume goes.
USER etcd
ENV ETCD_DATA_DIR=/var/lib/etcd/data
EXPOSE 2379 2380
ENTRYPOINT ["/usr/bin/etcd"]
