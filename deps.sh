#!/bin/sh
# Installs the Debian packages elect needs to build and test, when run as
# root; otherwise prints the exact apt-get line to run.
#   ./deps.sh          install what is missing (root) or say what to run
#   ./deps.sh --list   print the package names
#   ./deps.sh --build  print only those that building elect needs (the image's
#                      build stage, deploy/Dockerfile, installs these)
# The container tests (test_containers) also need a running Docker engine;
# debootstrap makes their base image, since no registry may be reachable.
set -eu
BUILD_PACKAGES="gcc libc6-dev make pkg-config libev-dev libcurl4-openssl-dev libjansson-dev
libzookeeper-st-dev libhttp-parser-dev libyaml-dev"
PACKAGES="build-essential $BUILD_PACKAGES libcmocka-dev valgrind curl python3 procps
iproute2 netcat-openbsd openssl etcd-server etcd-client zookeeper debootstrap systemd"

case "${1:-}" in
--list) echo $PACKAGES; exit 0 ;;
--build) echo $BUILD_PACKAGES; exit 0 ;;
esac
missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq $missing
else
	echo "elect: missing Debian packages; run:" >&2
	echo "  sudo apt-get update && sudo apt-get install -y$missing" >&2
	exit 1
fi
