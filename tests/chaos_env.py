"""Backends for the chaos suite (tests/chaos.py, tests/integration/test_chaos.py).

One object per backend set-up, all on loopback:

    env = make_env(case, 'etcd', cluster=False, rng=rng)   # or 'file', 'zk', 'consul', 'k8s'
    env.start()                      # servers up (blocking until ready)
    env.url(election, agent_id, i)   # backend URL for agent number i
    env.agent_args(agent_id)         # extra elect options (k8s: --kubeconfig)
    env.link(agent_id)               # that agent's FaultProxy list ([] for file)
    env.stop_member(m, hard)         # one server down (hard: SIGKILL)
    env.start_member(m)              # and up again, same ports and data
    env.stop_all(hard, pick) / env.start_all()   # stop_all returns what went
                                     # down (k8s: pick chooses kube-apiserver,
                                     # its etcd, or both; the others: all)
    env.traffic(agent_id)            # bytes sent so far through each proxy
    env.close()                      # proxies and servers gone, by pid

Every agent gets its own FaultProxy per server, so a fault on one agent's
link leaves the others alone; in a cluster agent i lists the members
starting with member i, so the agents spread over the members.

Kubernetes (K8sEnv) is one kube-apiserver on its own Debian etcd
(tests/k8s_server.py), one Lease per scenario in namespace K8S_NS, reached
as k8s://127.0.0.1:PROXY/K8S_NS/LEASE with a kubeconfig (CA and token of a
user allowed only what the backend does). A client-go style deployment has
one API server address per client, so there is no member cluster: its
backend restart stops kube-apiserver, its etcd, or both.
"""

import os
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from proxy import FaultProxy  # noqa: E402



def zk_server_url_opts():
    import zk_server
    return zk_server.URL_OPTS


class FileEnv:
    kind = 'file'
    has_link = False
    members = 0

    def __init__(self, case, rng):
        self.case = case

    def describe(self):
        return 'lock file'

    def start(self):
        pass

    def url(self, election, agent_id, i):
        return 'file://' + self.case.path(election + '.lock')

    def lock_path(self, election):
        return self.case.path(election + '.lock')

    def link(self, agent_id):
        return []

    def agent_args(self, agent_id):
        return []

    def close(self):
        pass


class NetEnv:
    """etcd, ZooKeeper or Consul: one server or a three-member cluster, with proxies."""
    has_link = True

    def __init__(self, case, kind, cluster, rng):
        self.case = case
        self.kind = kind
        self.cluster = cluster
        self.rng = rng
        self.proxies = {}           # agent id -> [FaultProxy per member]
        self.down = set()           # member indexes currently stopped
        self.closed = False
        if kind == 'etcd':
            from etcd_server import EtcdCluster, EtcdServer
            if cluster:
                self.servers = EtcdCluster(case.tmp, 3).members
            else:
                self.servers = [EtcdServer(case.tmp, 'etcd-single')]
        elif kind == 'consul':
            # Servers with data dirs (not -dev): a restart keeps the state,
            # so tokens (Raft indexes) never go back.
            # session_ttl_min 1s: TTLs of a few seconds, as for the others
            # (the agents' URLs say so: ?session-ttl-min=1s).
            from consul_server import CONSUL_TTL_MIN_ARGS, ConsulCluster
            self.servers = ConsulCluster(case.tmp, 3 if cluster else 1,
                                         extra_args=CONSUL_TTL_MIN_ARGS).members
        else:
            import zk_server
            if cluster:
                self.servers = zk_server.ZkEnsemble(case.tmp, n=3).servers
            else:
                self.servers = [zk_server.ZkServer(case.tmp, name='zk-single')]
        self.members = len(self.servers)

    def describe(self):
        return ('%d-member %s cluster' % (self.members, self.kind) if self.cluster
                else 'single %s server' % self.kind)

    def port(self, m):
        s = self.servers[m]
        if self.kind == 'consul':
            return s.http_port
        return s.client_port if self.kind == 'etcd' else s.port

    # --- servers
    def _launch(self, ms):
        for m in ms:
            if self.kind in ('etcd', 'consul'):
                self.servers[m].start(wait=False)
            else:
                self.servers[m].start()
        for m in ms:
            if self.kind == 'etcd':
                self.servers[m].wait_healthy(60)
            elif self.kind == 'consul':
                self.servers[m].wait_ready(90)
            else:
                self.servers[m].wait_ready(90)
            self.down.discard(m)

    def start(self):
        self._launch(range(self.members))

    def stop_member(self, m, hard=True):
        s = self.servers[m]
        self.down.add(m)
        if self.kind in ('etcd', 'consul'):
            if hard:
                s.kill(signal.SIGKILL)
            else:
                s.stop()
        else:
            s.stop(signal.SIGKILL if hard else signal.SIGTERM)

    def start_member(self, m):
        self._launch([m])

    def stop_all(self, hard=True, pick=None):
        for m in range(self.members):
            self.stop_member(m, hard)
        return 'all %d' % self.members if self.members > 1 else self.kind

    def start_all(self):
        self._launch(sorted(self.down))

    # --- links
    def link(self, agent_id):
        if agent_id not in self.proxies:
            ps = []
            for m in range(self.members):
                p = FaultProxy(('127.0.0.1', self.port(m)), seed=self.rng.randrange(1 << 30))
                p.start()
                ps.append(p)
            self.proxies[agent_id] = ps
        return self.proxies[agent_id]

    def url(self, election, agent_id, i):
        ps = self.link(agent_id)
        k = i % len(ps)
        hosts = ','.join('127.0.0.1:%d' % p.port for p in ps[k:] + ps[:k])
        # consul: the servers take 1s TTLs; zk: the servers' tickTime for
        # elect's alive proof.
        query = '?session-ttl-min=1s' if self.kind == 'consul' else ''
        if self.kind == 'zk':
            query = zk_server_url_opts()
        return '%s://%s/chaos/%s%s' % (self.kind, hosts, election, query)

    def agent_args(self, agent_id):
        return []

    def traffic(self, agent_id):
        return [p.stats()['bytes_up'] for p in self.link(agent_id)]

    def close(self):
        if self.closed:
            return
        self.closed = True
        for ps in self.proxies.values():
            for p in ps:
                p.stop()
        for s in self.servers:
            try:
                s.stop()
            except Exception as e:  # noqa: BLE001 - keep stopping the others
                sys.stderr.write('chaos: stopping %s: %r\n' % (getattr(s, 'name', s), e))


def _halt(proc, hard, timeout=10):
    """SIGKILL, or SIGTERM and SIGKILL after timeout s; by pid."""
    if proc.alive() and not hard:
        os.kill(proc.popen.pid, signal.SIGTERM)
        try:
            proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    proc.kill(signal.SIGKILL)       # also closes its log when it is gone


class K8sEnv(NetEnv):
    """kube-apiserver on Debian's etcd; each agent through its own proxy."""

    K8S_NS = 'chaos'
    VERBS = ['get', 'create', 'update', 'watch']     # what the backend needs
    DRAIN_S = 3

    def __init__(self, case, rng):
        from k8s_server import KubeApiServer
        self.case = case
        self.kind = 'k8s'
        self.cluster = False
        self.rng = rng
        self.proxies = {}
        self.down = set()           # 'kube-apiserver', 'etcd'
        self.closed = False
        self.srv = KubeApiServer(case.tmp, 'kube-chaos')
        self.servers = [self.srv]   # srv.stop() stops its etcd too
        self.members = 1
        self.kubeconfig = case.path('kubeconfig-chaos')

    def describe(self):
        return 'kube-apiserver on a single etcd'

    def port(self, m):
        return self.srv.port

    def start(self):
        self.srv.start(timeout=90)
        self.srv.create_namespace(self.K8S_NS)
        self.srv.grant(self.K8S_NS, self.VERBS, user='tester')
        self.srv.kubeconfig(self.kubeconfig, user='tester')

    def url(self, election, agent_id, i):
        # A Lease name is a DNS subdomain: no '_'.
        return 'k8s://127.0.0.1:%d/%s/%s' % (self.link(agent_id)[0].port, self.K8S_NS,
                                             election.replace('_', '-'))

    def agent_args(self, agent_id):
        # The URL's host wins over the kubeconfig's server; the kubeconfig
        # gives the CA and the token.
        return ['--kubeconfig', self.kubeconfig]

    def stop_member(self, m, hard=True):
        self.stop_all(hard)

    def start_member(self, m):
        self.start_all()

    def stop_all(self, hard=True, pick=None):
        """kube-apiserver (pick < 0.5), its etcd (pick < 0.75) or both
        (pick None: both); returns what went down. On SIGTERM kube-apiserver
        stops listening at once but stays up while watches are open (tens
        of seconds): SIGKILL after DRAIN_S of that."""
        pick = 1.0 if pick is None else pick
        if pick < 0.5 or pick >= 0.75:
            _halt(self.srv, hard, self.DRAIN_S)
            self.down.add('kube-apiserver')
        if pick >= 0.5:
            _halt(self.srv.etcd, hard)
            self.down.add('etcd')
        return ' and '.join(sorted(self.down))

    def start_all(self):
        """Up again on the same ports with the same data; waits for /readyz."""
        if 'etcd' in self.down:
            self.srv.etcd.start(wait=False)
            self.srv.etcd.wait_healthy(60)
            self.down.discard('etcd')
        if 'kube-apiserver' in self.down:
            port = self.srv.port
            self.srv.start(timeout=90)
            if self.srv.port != port:       # its port was taken meanwhile
                for ps in self.proxies.values():
                    for p in ps:
                        p.target = ('127.0.0.1', self.srv.port)
            self.down.discard('kube-apiserver')
        self.srv.wait_until(self.srv.ready, 60, 'not ready (/readyz) after its etcd restarted')


def make_env(case, kind, cluster, rng):
    if kind == 'file':
        return FileEnv(case, rng)
    if kind == 'k8s':
        return K8sEnv(case, rng)
    return NetEnv(case, kind, cluster, rng)
