#!/usr/bin/env python3
"""Docker images for the container tests (tests/integration/test_containers.py).

No registry may be reachable, so nothing is pulled: the base image is made
here, once, and kept in the engine.

  BASE_IMAGE (elect-test-base:bookworm): `debootstrap --variant=minbase
      bookworm` (~1-3 min, Debian's mirror; ELECT_DEBIAN_MIRROR overrides),
      trimmed as Debian's -slim images are (no docs, man pages or locales,
      also for what apt installs later; no apt caches), then `docker import`.
      Made only when missing, under a lock (/var/tmp/elect-test-base.lock),
      so concurrent runs make it once. Needs root (debootstrap).
  image_tag() (elect-test:<hash of this checkout's path>): `make image
      BASE=BASE_IMAGE` of this checkout (deploy/Dockerfile), rebuilt every
      time (the layer cache makes an unchanged tree a few seconds' work); the
      image it replaces under that tag is removed.

  ETCD_IMAGE (elect-test-etcd:3.5): the compose example's
      deploy/compose/etcd.Dockerfile (Debian 13's etcd-server 3.5) on the
      base, for the etcd members of the multi-host and compose tests; built
      every time (cached: a second).

  ZK_IMAGE (elect-test-zk:bookworm): Debian's ZooKeeper server
      (libzookeeper-java, openjdk-17-jre-headless) on the base, for the
      ZooKeeper members of the multi-host tests; built when missing.

  python3 tests/containers.py --prepare   all four, with their times and the size
  python3 tests/containers.py --remove    the image of this checkout, the etcd and zk ones, the base

Containers, networks and volumes the tests make are named NAME_PREFIX + a
random part, so they are clearly ours; the tests remove them by name
(Docker.cleanup), also when they fail.
"""

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

BASE_IMAGE = os.environ.get('ELECT_TEST_BASE', 'elect-test-base:bookworm')
SUITE = 'bookworm'
NAME_PREFIX = 'elect-test-'
LOCK = '/var/tmp/elect-test-base.lock'
PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

# As Debian's -slim images: dpkg leaves these out, also of what is
# installed later (the image's apt-get install).
DPKG_SLIM = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
"""
APT_CLEAN = """\
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
"""


def docker(*args, check=True, timeout=120, out=None):
    """Runs `docker ARGS`; returns CompletedProcess (text). out: a file for
    the output instead of capturing it."""
    kw = dict(stdout=out, stderr=subprocess.STDOUT) if out else dict(capture_output=True)
    r = subprocess.run(['docker'] + list(args), text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, **kw)
    if check and r.returncode != 0:
        raise RuntimeError('docker %s: exit %d: %s' % (' '.join(args), r.returncode,
                                                        (r.stderr or r.stdout or '').strip()))
    return r


def image_id(name):
    r = docker('image', 'inspect', '-f', '{{.Id}}', name, check=False)
    return r.stdout.strip() if r.returncode == 0 else None


def image_size(name):
    return int(docker('image', 'inspect', '-f', '{{.Size}}', name).stdout.strip())


def image_tag():
    """This checkout's test image: two checkouts testing at once on one
    engine do not overwrite each other's."""
    return 'elect-test:' + hashlib.sha1(ROOT.encode()).hexdigest()[:12]


def unique_name(role):
    return '%s%s-%s' % (NAME_PREFIX, uuid.uuid4().hex[:8], role)


@contextlib.contextmanager
def _base_lock():
    with open(LOCK, 'a') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run_logged(argv, out, **kw):
    out.write('$ %s\n' % ' '.join(argv))
    out.flush()
    r = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)
    if r.returncode != 0:
        raise RuntimeError('%s: exit %d' % (' '.join(argv), r.returncode))


def _slim(root):
    with open(os.path.join(root, 'etc/dpkg/dpkg.cfg.d/elect-test-slim'), 'w') as f:
        f.write(DPKG_SLIM)
    with open(os.path.join(root, 'etc/apt/apt.conf.d/elect-test-clean'), 'w') as f:
        f.write(APT_CLEAN)
    for d in ('usr/share/man', 'usr/share/groff', 'usr/share/info', 'usr/share/lintian',
              'usr/share/linda', 'usr/share/locale', 'var/lib/apt/lists', 'var/cache/apt',
              'var/log'):
        full = os.path.join(root, d)
        if os.path.isdir(full):
            for e in os.listdir(full):
                p = os.path.join(full, e)
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p)
                else:
                    os.unlink(p)
    doc = os.path.join(root, 'usr/share/doc')
    for pkg in os.listdir(doc):
        p = os.path.join(doc, pkg)
        if not os.path.isdir(p) or os.path.islink(p):
            continue
        for e in os.listdir(p):
            if e != 'copyright':
                q = os.path.join(p, e)
                shutil.rmtree(q) if os.path.isdir(q) and not os.path.islink(q) else os.unlink(q)
    os.makedirs(os.path.join(root, 'var/lib/apt/lists/partial'), exist_ok=True)
    # The host's, copied by debootstrap; Docker mounts its own.
    for f in ('etc/resolv.conf', 'etc/hostname'):
        with open(os.path.join(root, f), 'w'):
            pass


def make_base(out=sys.stdout):
    """Makes BASE_IMAGE unless the engine has it. Returns the seconds it took
    (0 when it was there)."""
    if image_id(BASE_IMAGE):
        return 0.0
    if os.geteuid() != 0:
        raise RuntimeError('making %s needs root (debootstrap); as root: python3 %s --prepare'
                           % (BASE_IMAGE, os.path.relpath(__file__, ROOT)))
    if not shutil.which('debootstrap') and not os.path.exists('/usr/sbin/debootstrap'):
        raise RuntimeError('debootstrap is not installed (./deps.sh installs it)')
    with _base_lock():
        if image_id(BASE_IMAGE):         # made meanwhile by another run
            return 0.0
        t0 = time.monotonic()
        tmp = tempfile.mkdtemp(prefix='elect-test-base-', dir='/var/tmp')
        root = os.path.join(tmp, 'root')
        try:
            argv = ['debootstrap', '--variant=minbase', SUITE, root]
            if os.environ.get('ELECT_DEBIAN_MIRROR'):
                argv.append(os.environ['ELECT_DEBIAN_MIRROR'])
            _run_logged(argv, out, env=dict(os.environ, PATH=PATH_ENV[5:] + ':' + os.environ.get('PATH', '')))
            _slim(root)
            out.write('$ tar -C %s -c . | docker import - %s\n' % (root, BASE_IMAGE))
            out.flush()
            tar = subprocess.Popen(['tar', '--numeric-owner', '--xattrs', '-C', root, '-c',
                                    '--exclude=./dev/*', '--exclude=./proc/*',
                                    '--exclude=./sys/*', '.'], stdout=subprocess.PIPE)
            imp = subprocess.run(['docker', 'import', '--change', 'ENV ' + PATH_ENV,
                                  '--change', 'CMD ["bash"]', '-', BASE_IMAGE],
                                 stdin=tar.stdout, stdout=out, stderr=subprocess.STDOUT)
            tar.stdout.close()
            if tar.wait() != 0 or imp.returncode != 0:
                raise RuntimeError('tar | docker import %s failed (tar %d, import %d)'
                                   % (BASE_IMAGE, tar.returncode, imp.returncode))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return time.monotonic() - t0


def build_image(out=sys.stdout, nice=None):
    """`make image` of this checkout on BASE_IMAGE, tagged image_tag();
    removes the image the tag named before when it was replaced. Returns
    the seconds it took. nice: priority of the compile inside the build."""
    tag = image_tag()
    old = image_id(tag)
    t0 = time.monotonic()
    argv = ['make', '--no-print-directory', '-C', ROOT, 'image', 'BASE=' + BASE_IMAGE,
            'IMAGE=' + tag]
    if nice is not None:
        argv.append('NICE=%d' % nice)
    _run_logged(argv, out, timeout=3600)
    new = image_id(tag)
    if old and new != old:
        docker('image', 'rm', old, check=False)
    prune_build_stages()
    return time.monotonic() - t0


def prune_build_stages():
    """The untagged last images of earlier build stages (LABEL elect.stage=
    build in deploy/Dockerfile), but the newest: the layer cache for the
    next build. Each holds a copy of the sources and objects."""
    r = docker('images', '--filter', 'dangling=true', '--filter', 'label=elect.stage=build',
               '--format', '{{.CreatedAt}}\t{{.ID}}', check=False)
    stale = sorted(r.stdout.split('\n'), reverse=True)[1:]
    for line in stale:
        if line.strip():
            docker('image', 'rm', line.split('\t')[1], check=False)


# The etcd members of the multi-host tests and of the compose example: the
# user's recipe (deploy/compose/etcd.Dockerfile: Debian 13's etcd-server
# 3.5 on the Debian 12 base; see README, Safety 6 for why not Debian 12's
# 3.4.23), built every time, as the elect image (the layer cache makes it a
# second's work), so that the tests run the Dockerfile of this checkout.
COMPOSE_DIR = os.path.join(ROOT, 'deploy', 'compose')
ETCD_IMAGE = 'elect-test-etcd:3.5'


def build_etcd_image(out=sys.stdout):
    """ETCD_IMAGE; returns the seconds it took."""
    t0 = time.monotonic()
    _run_logged(['docker', 'build', '--force-rm', '-f', os.path.join(COMPOSE_DIR, 'etcd.Dockerfile'),
                 '--build-arg', 'BASE=' + BASE_IMAGE, '-t', ETCD_IMAGE, COMPOSE_DIR],
                out, timeout=3600)
    return time.monotonic() - t0


# The ZooKeeper members of the multi-host tests: Debian's ZooKeeper (the
# Java server, libzookeeper-java) on the base (openjdk's postinst needs the
# man1 folder that the slim base leaves out). The entry point writes zoo.cfg
# from the environment (ZK_MYID, ZK_SERVERS = "1=host1,2=host2,3=host3",
# ZK_TICK_MS, ZK_SYNC_LIMIT) and runs QuorumPeerMain in the foreground.
ZK_IMAGE = 'elect-test-zk:bookworm'
ZK_CLASSPATH = ':'.join('/usr/share/java/%s.jar' % j for j in (
    'zookeeper', 'zookeeper-jute', 'slf4j-api', 'slf4j-simple', 'netty-handler', 'netty-common',
    'netty-buffer', 'netty-transport', 'netty-codec', 'netty-resolver',
    'netty-transport-native-epoll', 'netty-transport-native-unix-common', 'commons-cli',
    'commons-io', 'metrics-core', 'snappy-java'))
ZK_ENTRY = r"""#!/bin/sh
set -e
d=/var/lib/zookeeper
mkdir -p $d
echo "$ZK_MYID" > $d/myid
{
  echo "tickTime=${ZK_TICK_MS:-200}"
  echo "initLimit=${ZK_INIT_LIMIT:-50}"
  echo "syncLimit=${ZK_SYNC_LIMIT:-10}"
  echo "dataDir=$d"
  echo "clientPort=2181"
  echo "maxClientCnxns=0"
  echo "admin.enableServer=false"
  echo "4lw.commands.whitelist=ruok,srvr,stat"
  echo "autopurge.purgeInterval=0"
  # A member reconnected to the network may get another address.
  echo "quorumListenOnAllIPs=true"
  for s in $(echo "$ZK_SERVERS" | tr , ' '); do
    echo "server.${s%%=*}=${s#*=}:2888:3888"
  done
} > /etc/zk.cfg
exec java -Xms32m -Xmx160m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k \
  -Djava.net.preferIPv4Stack=true -Dzookeeper.jmx.log4j.disable=true \
  -Dorg.slf4j.simpleLogger.defaultLogLevel=info -Dzookeeper.admin.enableServer=false \
  -cp %s org.apache.zookeeper.server.quorum.QuorumPeerMain /etc/zk.cfg
"""
ZK_DOCKERFILE = """\
FROM %s
RUN mkdir -p /usr/share/man/man1 && apt-get update && \\
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      libzookeeper-java libslf4j-java openjdk-17-jre-headless && rm -rf /var/lib/apt/lists/*
COPY zk-member /usr/local/bin/zk-member
ENTRYPOINT ["/usr/local/bin/zk-member"]
"""


def build_zk_image(out=sys.stdout):
    """ZK_IMAGE unless the engine has it; returns the seconds it took."""
    if image_id(ZK_IMAGE):
        return 0.0
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix='elect-zk-image-') as ctx:
        with open(os.path.join(ctx, 'Dockerfile'), 'w') as f:
            f.write(ZK_DOCKERFILE % BASE_IMAGE)
        with open(os.path.join(ctx, 'zk-member'), 'w') as f:
            f.write(ZK_ENTRY % ZK_CLASSPATH)
        os.chmod(os.path.join(ctx, 'zk-member'), 0o755)
        _run_logged(['docker', 'build', '--force-rm', '-t', ZK_IMAGE, ctx], out, timeout=3600)
    return time.monotonic() - t0


# The compile's priority in the tests' builds, background or not (the same
# value everywhere, so that they share the layer cache).
TEST_NICE = 19


def prepare(out=sys.stdout, nice=TEST_NICE):
    t_base = make_base(out)
    t_image = build_image(out, nice)
    size = image_size(image_tag())
    t_etcd = build_etcd_image(out)
    t_zk = build_zk_image(out)
    out.write('containers: base %s %s; image %s built in %.0fs, %.1f MB; %s built in %.0fs; %s %s\n'
              % (BASE_IMAGE, 'made in %.0fs' % t_base if t_base else 'was there',
                 image_tag(), t_image, size / 1e6, ETCD_IMAGE, t_etcd, ZK_IMAGE,
                 'built in %.0fs' % t_zk if t_zk else 'was there'))
    out.flush()
    return t_base, t_image, size


class Docker:
    """What one test made in the engine, removed by name in cleanup()
    (register it with addCleanup before making anything)."""

    def __init__(self):
        self.containers, self.networks, self.volumes = [], [], []

    def name(self, role):
        return unique_name(role)

    def run(self, name, image, args=(), opts=(), detach=True):
        self.containers.append(name)
        return docker('run', *(['-d'] if detach else []), '--name', name, *opts, image, *args)

    def network(self, name, *opts):
        self.networks.append(name)
        docker('network', 'create', *opts, name)
        return name

    def volume(self, name):
        self.volumes.append(name)
        docker('volume', 'create', name)
        return name

    def cleanup(self):
        errors = []
        for c in reversed(self.containers):
            r = docker('rm', '-f', '-v', c, check=False, timeout=60)
            if r.returncode != 0 and 'No such container' not in r.stderr:
                errors.append(r.stderr.strip())
        for n in reversed(self.networks):
            r = docker('network', 'rm', n, check=False)
            if r.returncode != 0 and 'No such network' not in r.stderr and 'not found' not in r.stderr:
                errors.append(r.stderr.strip())
        for v in reversed(self.volumes):
            r = docker('volume', 'rm', '-f', v, check=False)
            if r.returncode != 0:
                errors.append(r.stderr.strip())
        self.containers, self.networks, self.volumes = [], [], []
        if errors:
            raise RuntimeError('cleanup: ' + '; '.join(errors))


def main():
    ap = argparse.ArgumentParser(description='images for the container tests')
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument('--prepare', action='store_true', help='make the base if missing, build the image')
    g.add_argument('--remove', action='store_true', help="remove this checkout's image and the base")
    ap.add_argument('--nice', type=int, default=TEST_NICE,
                    help='priority of the compile inside the image build (default %(default)s)')
    a = ap.parse_args()
    if a.remove:
        for name in (image_tag(), ETCD_IMAGE, ZK_IMAGE, BASE_IMAGE):
            if image_id(name):
                docker('image', 'rm', name)
        return 0
    try:
        prepare(nice=a.nice)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        print('containers: %s' % e, flush=True)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
