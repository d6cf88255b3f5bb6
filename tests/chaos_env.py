"""Backends for the chaos suite (tests/chaos.py, tests/integration/test_chaos.py).

One object per backend set-up, all on loopback:

    env = make_env(case, 'etcd', cluster=False, rng=rng)   # or 'file', 'zk', 'consul'
    env.start()                      # servers up (blocking until ready)
    env.url(election, agent_id, i)   # backend URL for agent number i
    env.link(agent_id)               # that agent's FaultProxy list ([] for file)
    env.stop_member(m, hard)         # one server down (hard: SIGKILL)
    env.start_member(m)              # and up again, same ports and data
    env.stop_all(hard) / env.start_all()
    env.traffic(agent_id)            # bytes sent so far through each proxy
    env.close()                      # proxies and servers gone, by pid

Every agent gets its own FaultProxy per server, so a fault on one agent's
link leaves the others alone; in a cluster agent i lists the members
starting with member i, so the agents spread over the members.
"""

import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from proxy import FaultProxy  # noqa: E402


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
            from consul_server import ConsulCluster
            self.servers = ConsulCluster(case.tmp, 3 if cluster else 1).members
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

    def stop_all(self, hard=True):
        for m in range(self.members):
            self.stop_member(m, hard)

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
        return '%s://%s/chaos/%s' % (self.kind, hosts, election)

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


def make_env(case, kind, cluster, rng):
    if kind == 'file':
        return FileEnv(case, rng)
    return NetEnv(case, kind, cluster, rng)
