"""`make bench` rows for the ZooKeeper backend (picked up by tests/bench.py
for --backend zk): one standalone ZooKeeper from Debian's package on a free
loopback port (tests/zk_server.py), stopped by pid at the end.

Crash failover waits for the server to expire the dead agent's session, so
it is about the TTL (2 s here) plus up to one tick (100 ms).

Idle requests: the counted leader and follower talk to ZooKeeper through a
tests/proxy.py proxy each, which splits the client's byte stream into
ZooKeeper packets (4-byte length prefix) and counts each one by its request
type (the first packet of a connection is the session's connect request).
"""

import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
import zk_server  # noqa: E402


ZK_OPS = {0: 'notification', 1: 'create', 2: 'delete', 3: 'exists', 4: 'getData',
          5: 'setData', 6: 'getACL', 7: 'setACL', 8: 'getChildren', 9: 'sync', 11: 'ping',
          12: 'getChildren2', 13: 'check', 14: 'multi', 15: 'create2', 16: 'reconfig',
          17: 'checkWatches', 18: 'removeWatches', 19: 'createContainer', 21: 'createTTL',
          100: 'auth', 101: 'setWatches', 102: 'sasl', -11: 'closeSession'}


class ZkParser:
    """Counts ZooKeeper request packets in a client->server byte stream."""

    def __init__(self):
        self.buf = b''
        self.connected = False

    def feed(self, data):
        self.buf += data
        kinds = []
        while len(self.buf) >= 4:
            n = struct.unpack('>i', self.buf[:4])[0]
            if n < 0 or len(self.buf) < 4 + n:
                break
            pkt, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
            if not self.connected:
                self.connected = True
                kinds.append('connect')
            elif len(pkt) >= 8:
                op = struct.unpack('>ii', pkt[:8])[1]
                kinds.append(ZK_OPS.get(op, 'op%d' % op))
        return kinds


class Backend(bench.Backend):
    name = 'zk'
    agent_args = {'ttl': '2s', 'kill_grace': '500ms', 'args': ['--hook-timeout', '500ms']}

    def available(self):
        return None if zk_server.available() else 'ZooKeeper (Debian package zookeeper) not installed'

    def start(self, ctx):
        self.server = zk_server.ZkServer(ctx.tmp)
        self.server.start().wait_ready()

    def url(self, ctx, election):
        return 'zk://%s/elect/%s%s' % (self.server.hostport, election, zk_server.URL_OPTS)

    def counting_url(self, ctx, election):
        cp = bench.CountingProxy(ctx, ('127.0.0.1', self.server.port), ZkParser)
        return 'zk://%s/elect/%s%s' % (cp.hostport, election, zk_server.URL_OPTS), cp

    def stop(self, ctx):
        self.server.stop()
