# The etcd members of the compose example (docker-compose.yml builds it on
# first `up`): etcd-server 3.5 from Debian 13 (trixie) on a Debian 12 image,
# run as the package's user. Not Debian 12's own etcd-server 3.4.23: after
# its raft leader stalls (a slow disk, a paused VM) it can revoke leases that
# are alive (etcd issue #15247; 3.5.11 and later check leadership first,
# which covers the slow disk, not the paused VM), and a lock or leadership
# goes to a second holder early (README, Safety 6). Only etcd-server
# comes from trixie (pinned low, so nothing else is upgraded from it later);
# its dependencies are Debian 12's. Alone, from this directory:
#   docker build -f etcd.Dockerfile -t elect-etcd:3.5 .
#   docker build -f etcd.Dockerfile --build-arg BASE=IMAGE -t elect-etcd:3.5 .
# (BASE: any local Debian 12 image where no registry can be reached.)
# Configured by ETCD_* variables (etcd's flags, upper case), or flags after
# the image name.
ARG BASE=debian:12-slim
FROM ${BASE}
# The trixie source on the mirror the image already uses (a classic
# sources.list, as debootstrap writes, or deb.debian.org).
RUN set -e; \
    mirror=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true); \
    echo "deb ${mirror:-http://deb.debian.org/debian} trixie main" > /etc/apt/sources.list.d/trixie.list; \
    printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' > /etc/apt/preferences.d/trixie; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends etcd-server/trixie; \
    rm -rf /var/lib/apt/lists/*; \
    etcd --version | grep -q '^etcd Version: 3\.5\.'
# /var/lib/etcd (the package's, owned by user etcd): the data directory's
# parent, where a volume goes.
USER etcd
ENV ETCD_DATA_DIR=/var/lib/etcd/data
EXPOSE 2379 2380
ENTRYPOINT ["/usr/bin/etcd"]
