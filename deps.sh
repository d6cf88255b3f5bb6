#!/bin/sh
# Installs the Debian packages elect needs to build and test, when run as
# root; otherwise prints the exact apt-get line to run.
#   ./deps.sh          install what is missing (root) or say what to run
#   ./deps.sh --list   print the package names
set -eu
PACKAGES="build-essential pkg-config libev-dev libcurl4-openssl-dev libjansson-dev
libzookeeper-st-dev libcmocka-dev libhttp-parser-dev libyaml-dev valgrind curl python3 procps
iproute2 netcat-openbsd openssl etcd-server etcd-client zookeeper"

if [ "${1:-}" = "--list" ]; then
	echo $PACKAGES
	exit 0
fi
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
