"""A real Consul server for tests (Python 3 stdlib only), on loopback.

No Debian package ships Consul, so the tests build it from its Go modules
(tests/consul/go.mod: consul v1.13.9, MPL-2.0) once, into a cache outside the
work tree that is keyed by go.sum:

    $ELECT_CONSUL_CACHE (default ~/.cache/elect)/consul-<sha256(go.sum)[:16]>/consul

    python3 tests/consul_server.py --build   # build it if missing (~12 min cold
                                             # on 2 cores), print its path
    from consul_server import ConsulServer, consul_bin, have_consul
    srv = ConsulServer(base_dir); srv.start()   # waits for a Raft leader
    self.addCleanup(srv.stop)
    url = 'consul://%s/web' % srv.endpoint
    srv.kv_get('web/.lock') -> dict or None;  srv.consul('lock', ...) argv
    srv.kill() (SIGKILL), srv.stop() (SIGTERM, then SIGKILL)

ELECT_CONSUL_BIN names a consul binary to use instead. Every server is a
`consul agent -dev` with its own free 127.0.0.1 ports (HTTP, serf LAN/WAN,
server RPC; DNS and gRPC off), runs in its own process group and is stopped by
its pid, also when a test fails (tests/server_proc.py, shared with
etcd_server.py).

TLS: ConsulServer(base_dir, tls=dict(cert=, key=, ca=, verify_incoming=False,
client_cert=, client_key=)) serves only https (Consul 1.13's `tls` stanza,
`ports { https = P }`, plain HTTP off) on the port that would have been HTTP;
ca signed cert and is what request() and env() trust; with verify_incoming
Consul requires client certificates signed by ca, and client_cert/client_key
are what this module presents.
"""

import base64
import fcntl
import hashlib
import json
import os
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.request

from server_proc import ServerGroup, ServerProc, free_port as _free_port, go_build

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE_DIR = os.path.join(HERE, 'consul')
GO = shutil.which('go') or '/usr/local/go/bin/go'


def cache_dir():
    with open(os.path.join(MODULE_DIR, 'go.sum'), 'rb') as f:
        h = hashlib.sha256(f.read()).hexdigest()[:16]
    base = os.environ.get('ELECT_CONSUL_CACHE') or os.path.join(
        os.path.expanduser('~'), '.cache', 'elect')
    return os.path.join(base, 'consul-' + h)


def consul_bin():
    return os.environ.get('ELECT_CONSUL_BIN') or os.path.join(cache_dir(), 'consul')


def have_consul():
    return os.access(consul_bin(), os.X_OK)


def build_consul(log=sys.stderr):
    """Builds the binary when missing (one build at a time: a lock file).
    Returns its path; raises RuntimeError when it cannot be built."""
    path = consul_bin()
    if os.access(path, os.X_OK):
        return path
    if not os.access(GO, os.X_OK):
        raise RuntimeError('Consul is not built and there is no Go toolchain (looked for %s): '
                           'install Go 1.20 or later, or set ELECT_CONSUL_BIN' % GO)
    d = os.path.dirname(path)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, '.lock'), 'w') as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        if os.access(path, os.X_OK):
            return path
        print('building Consul 1.13.9 from Go modules into %s (about 12 min cold on 2 cores)' % d,
              file=log, flush=True)
        go_build(GO, MODULE_DIR, path, 'github.com/hashicorp/consul', 'Consul', log)
    return path


# Servers that take session TTLs down to 1 s (Consul's session_ttl_min,
# 10 s by default); agents say so with ?session-ttl-min=1s in the URL.
CONSUL_TTL_MIN_ARGS = ('-hcl', 'session_ttl_min = "1s"')


class ConsulServer(ServerProc):
    """One `consul agent -dev` server on loopback."""

    kind = 'consul'

    def __init__(self, base_dir=None, name='consul0', extra_args=(), cluster=None, tls=None):
        super().__init__(base_dir, name, 'consul-test-')
        self.http_port = _free_port()
        self.ports = [_free_port() for _ in range(3)]   # serf LAN, serf WAN, server RPC
        self.extra_args = list(extra_args)
        self.cluster = cluster      # None: -dev; else the ConsulCluster it is in
        self.data_dir = os.path.join(self.base_dir, name + '.data')
        self.tls = dict(tls) if tls else None
        self.token = None

    @property
    def endpoint(self):
        return '127.0.0.1:%d' % self.http_port

    @property
    def http_addr(self):
        return ('https://' if self.tls else 'http://') + self.endpoint

    def argv(self):
        if self.cluster is None:
            mode = ['-dev']
        else:
            mode = ['-server', '-bootstrap-expect', str(len(self.cluster.members)),
                    '-data-dir', self.data_dir, '-hcl', 'performance { raft_multiplier = 1 }']
            for m in self.cluster.members:
                if m is not self:
                    mode += ['-retry-join', '127.0.0.1:%d' % m.ports[0]]
        return [consul_bin(), 'agent'] + mode + ['-node', self.name, '-bind', '127.0.0.1',
                '-client', '127.0.0.1', '-http-port', str(-1 if self.tls else self.http_port),
                '-dns-port', '-1',
                '-grpc-port', '-1', '-serf-lan-port', str(self.ports[0]),
                '-serf-wan-port', str(self.ports[1]), '-server-port', str(self.ports[2]),
                # No lookup of checkpoint-api.hashicorp.com: loopback only.
                '-hcl', 'disable_update_check = true',
                '-log-level', 'info'] + self._tls_args() + self.extra_args

    def _tls_args(self):
        t = self.tls
        if not t:
            return []
        hcl = ('ports { https = %d } tls { defaults { ca_file = %s cert_file = %s key_file = %s } '
               'https { verify_incoming = %s } }'
               % (self.http_port, json.dumps(t['ca']), json.dumps(t['cert']), json.dumps(t['key']),
                  'true' if t.get('verify_incoming') else 'false'))
        return ['-hcl', hcl]     # with -http-port -1: the test port speaks only TLS

    def _ssl_context(self):
        if not self.tls:
            return None
        ctx = ssl.create_default_context(cafile=self.tls['ca'])
        if self.tls.get('client_cert'):
            ctx.load_cert_chain(self.tls['client_cert'], self.tls['client_key'])
        return ctx

    def env(self, extra=None):
        """Environment for the consul CLI against this server."""
        e = {k: v for k, v in os.environ.items() if not k.startswith('CONSUL_')}
        e['CONSUL_HTTP_ADDR'] = self.http_addr
        if self.token:
            e['CONSUL_HTTP_TOKEN'] = self.token
        t = self.tls or {}
        for var, key in (('CONSUL_CACERT', 'ca'), ('CONSUL_CLIENT_CERT', 'client_cert'),
                         ('CONSUL_CLIENT_KEY', 'client_key')):
            if t.get(key):
                e[var] = t[key]
        e.update(extra or {})
        return e

    def consul(self, *args):
        """argv of a consul CLI command (run it with env=self.env())."""
        return [consul_bin()] + list(args)

    def start(self, timeout=60, wait=True):
        if self.alive():
            return
        build_consul()
        self.spawn()
        if not wait:
            return
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def request(self, method, path, body=None, timeout=5):
        """(status, parsed JSON or text, headers)."""
        req = urllib.request.Request(self.http_addr + path, method=method,
                                     data=body.encode() if isinstance(body, str) else body)
        if self.token:
            req.add_header('X-Consul-Token', self.token)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl_context()) as r:
                data, status, hdrs = r.read().decode(), r.status, r.headers
        except urllib.error.HTTPError as e:
            data, status, hdrs = e.read().decode(), e.code, e.headers
        try:
            return status, json.loads(data), hdrs
        except ValueError:
            return status, data, hdrs

    def ready(self):
        """A Raft leader, and this node in the catalog: before that, a
        session made through this agent is refused ("Missing node
        registration"). With ACLs on, default deny, the anonymous catalog
        read sees no node: the leader alone then."""
        try:
            status, leader, _ = self.request('GET', '/v1/status/leader', timeout=1)
            if status != 200 or not isinstance(leader, str) or leader == '':
                return False
            if any('default_policy = "deny"' in str(a) for a in self.extra_args):
                return True
            status, node, _ = self.request('GET', '/v1/catalog/node/' + self.name, timeout=1)
            return status == 200 and isinstance(node, dict) and node.get('Node') is not None
        except OSError:
            return False

    def wait_ready(self, timeout=60):
        self.wait_until(self.ready, timeout, 'has no leader')

    def kv_get(self, key):
        """The entry as a dict (Value decoded to str, Flags from the raw text), or None."""
        status, data, _ = self.request('GET', '/v1/kv/' + key)
        if status == 404:
            return None
        if status != 200 or not isinstance(data, list) or not data:
            raise RuntimeError('GET %s: %s %r' % (key, status, data))
        e = data[0]
        if e.get('Value') is not None:
            e['Value'] = base64.b64decode(e['Value']).decode('utf-8', 'replace')
        return e

    def sessions(self):
        status, data, _ = self.request('GET', '/v1/session/list')
        return data if status == 200 and isinstance(data, list) else []


class ConsulCluster(ServerGroup):
    """n servers on loopback (-server -bootstrap-expect n, data dirs under
    base_dir), started together; ready when each sees a Raft leader."""

    def __init__(self, base_dir=None, n=3, extra_args=()):
        super().__init__(base_dir, 'consul-cluster-')
        for i in range(n):
            self.members.append(ConsulServer(self.base_dir, 's%d' % i, extra_args=extra_args,
                                             cluster=self))

    def start(self, timeout=90):
        try:
            for m in self.members:
                m.start(wait=False)
            end = time.monotonic() + timeout
            restarts = 0
            while True:
                for m in self.members:
                    if m.alive():
                        continue
                    # Exited at start: a port taken between picking it and
                    # binding it (serf needs UDP too). New ports, again; it
                    # joins the others through its own -retry-join.
                    if restarts >= 3:
                        raise RuntimeError('consul %s exited (%s); log:\n%s'
                                           % (m.name, m.popen.returncode, m.log()[-3000:]))
                    restarts += 1
                    m._close_log()
                    m.http_port = _free_port()
                    m.ports = [_free_port() for _ in range(3)]
                    m.start(wait=False)
                if all(m.ready() for m in self.members):
                    return
                if time.monotonic() > end:
                    raise RuntimeError('consul cluster has no leader after %.0fs; logs:\n%s' % (
                        timeout, '\n'.join('== %s\n%s' % (m.name, m.log()[-1500:]) for m in self.members)))
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise


if __name__ == '__main__':
    if sys.argv[1:] == ['--build']:
        try:
            print(build_consul())
        except RuntimeError as e:
            print('consul_server: %s' % e, file=sys.stderr)
            sys.exit(1)
        sys.exit(0)
    # Smoke test: one server up and down.
    s = ConsulServer()
    s.start()
    print('consul at', s.endpoint, 'leader', s.request('GET', '/v1/status/leader')[1])
    s.stop()
