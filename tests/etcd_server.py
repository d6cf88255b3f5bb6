"""Real etcd servers for tests (Python 3 stdlib only), on loopback.

    from etcd_server import EtcdServer, EtcdCluster, etcdctl, have_etcd
    srv = EtcdServer(base_dir)          # free ports, data dir under base_dir
    srv.start()                         # waits until /health says true
    self.addCleanup(srv.stop)
    url = 'etcd://%s/web' % srv.endpoint
    srv.stop(); srv.start()             # restart, same data dir and ports
    srv.kill()                          # SIGKILL

    c = EtcdCluster(base_dir, 3); c.start(); self.addCleanup(c.stop)
    c.endpoints -> ['127.0.0.1:p1', ...]; c.members[i].kill()

    etcdctl(endpoints, 'get', '--prefix', 'web') -> CompletedProcess (text)

    TLS: EtcdServer(base_dir, tls=dict(cert=, key=, ca=, client_cert_auth=False,
    client_cert=, client_key=)) serves https with cert/key; ca is the CA
    that signed them, which health checks and srv.ctl() trust; with
    client_cert_auth etcd also requires client certificates signed by ca
    (etcd 3.4 does that whenever it gets --trusted-ca-file, so ca alone is
    not passed to it) and client_cert/client_key are what this module presents.
    srv.ctl('user', 'add', ...) runs etcdctl against it with the TLS flags;
    srv.auth = 'root:pw' (set after `auth enable`) adds --user to srv.ctl().

Every server gets its own data dir and free 127.0.0.1 ports, runs in its
own process group, and is stopped by its pid (never by name). base_dir None
makes a temp dir that stop() removes. The process handling is
tests/server_proc.py's, shared with consul_server.py.
"""

import json
import os
import shutil
import ssl
import subprocess
import urllib.request

from server_proc import ServerGroup, ServerProc, free_port as _free_port

ETCD = shutil.which('etcd') or '/usr/bin/etcd'
ETCDCTL = shutil.which('etcdctl') or '/usr/bin/etcdctl'


def have_etcd():
    return os.access(ETCD, os.X_OK) and os.access(ETCDCTL, os.X_OK)


def etcdctl(endpoints, *args, timeout=15, input=None):
    if isinstance(endpoints, (list, tuple)):
        endpoints = ','.join(endpoints)
    env = dict(os.environ, ETCDCTL_API='3')
    return subprocess.run([ETCDCTL, '--endpoints=' + endpoints] + list(args), env=env,
                          capture_output=True, text=True, timeout=timeout, input=input)


class EtcdServer(ServerProc):
    """One etcd member. Several share a cluster through `initial_cluster`."""

    kind = 'etcd'

    def __init__(self, base_dir=None, name='etcd0', client_port=None, peer_port=None,
                 initial_cluster=None, extra_args=(), cluster_token=None, tls=None):
        super().__init__(base_dir, name, 'etcd-test-')
        self.client_port = client_port or _free_port()
        self.peer_port = peer_port or _free_port()
        self.data_dir = os.path.join(self.base_dir, name + '.data')
        self.initial_cluster = initial_cluster or '%s=%s' % (name, self.peer_url)
        self.extra_args = list(extra_args)
        self.cluster_token = cluster_token or 'elect-test-%d' % self.peer_port
        self.tls = dict(tls) if tls else None
        self.auth = None            # 'user:password' for ctl(), once auth is enabled

    @property
    def endpoint(self):
        return '127.0.0.1:%d' % self.client_port

    @property
    def client_url(self):
        return ('https://' if self.tls else 'http://') + self.endpoint

    @property
    def peer_url(self):
        return 'http://127.0.0.1:%d' % self.peer_port

    def argv(self):
        return [ETCD, '--name', self.name, '--data-dir', self.data_dir,
                '--listen-client-urls', self.client_url,
                '--advertise-client-urls', self.client_url,
                '--listen-peer-urls', self.peer_url,
                '--initial-advertise-peer-urls', self.peer_url,
                '--initial-cluster', self.initial_cluster,
                '--initial-cluster-state', 'new',
                '--initial-cluster-token', self.cluster_token,
                '--listen-metrics-urls', 'http://127.0.0.1:%d' % _free_port(),
                '--log-outputs', 'stderr'] + self._tls_args() + self.extra_args

    def _tls_args(self):
        t = self.tls
        if not t:
            return []
        out = ['--cert-file', t['cert'], '--key-file', t['key']]
        if t.get('client_cert_auth'):
            out += ['--client-cert-auth', '--trusted-ca-file', t['ca']]
        return out

    def ctl_args(self):
        """etcdctl flags for this server's TLS and auth settings."""
        out = []
        t = self.tls or {}
        if t.get('ca'):
            out.append('--cacert=' + t['ca'])
        if t.get('client_cert'):
            out += ['--cert=' + t['client_cert'], '--key=' + t['client_key']]
        if self.auth:
            out.append('--user=' + self.auth)
        return out

    def ctl(self, *args, timeout=15, input=None):
        return etcdctl(self.client_url, *(self.ctl_args() + list(args)), timeout=timeout,
                       input=input)

    def _ssl_context(self):
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=self.tls.get('ca'))
        if self.tls.get('client_cert'):
            ctx.load_cert_chain(self.tls['client_cert'], self.tls['client_key'])
        return ctx

    def start(self, wait=True, timeout=20):
        """Starts (or restarts with the same data dir and ports)."""
        if self.alive():
            return
        self.spawn()
        if wait:
            self.wait_healthy(timeout)

    def healthy(self):
        try:
            with urllib.request.urlopen(self.client_url + '/health', timeout=1,
                                        context=self._ssl_context()) as r:
                return json.loads(r.read().decode()).get('health') == 'true'
        except (OSError, ValueError):
            return False

    def wait_healthy(self, timeout=20):
        self.wait_until(self.healthy, timeout, 'not healthy', interval=0.05)


class EtcdCluster(ServerGroup):
    """n members on loopback, started together."""

    def __init__(self, base_dir=None, n=3):
        super().__init__(base_dir, 'etcd-cluster-')
        ports = [(_free_port(), _free_port()) for _ in range(n)]
        initial = ','.join('m%d=http://127.0.0.1:%d' % (i, pp) for i, (_, pp) in enumerate(ports))
        token = 'elect-cluster-%d' % ports[0][1]
        self.members = [EtcdServer(self.base_dir, 'm%d' % i, cp, pp, initial, cluster_token=token)
                        for i, (cp, pp) in enumerate(ports)]

    def start(self, timeout=30):
        for m in self.members:
            m.start(wait=False)
        for m in self.members:
            m.wait_healthy(timeout)


if __name__ == '__main__':
    # Smoke test: one server and a cluster, up and down.
    s = EtcdServer()
    s.start()
    print('etcd at', s.endpoint, etcdctl(s.endpoint, 'endpoint', 'health').stderr.strip())
    s.stop()
    c = EtcdCluster()
    c.start()
    print('cluster', c.endpoints, etcdctl(c.endpoints, 'member', 'list').stdout.count('\n'), 'members')
    c.stop()
