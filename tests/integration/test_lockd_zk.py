"""lockd on the ZooKeeper lock backend (backends/zk_lock.c), against a real
ZooKeeper (Debian's package, tests/zk_server.py: free loopback port, own data
dir, stopped by pid after the lockds).

The generic cases come from tests/lockd_cases.py (mutual exclusion across
three lockds, semaphore, timeouts, lockctl, crashes, bad requests, session cut
through tests/proxy.py). The ZooKeeper-only cases here: the node layout (the
lock recipe's ephemeral sequential "_c_<guid>-lock-" nodes, one session for
all holds, token = sequence + 1), SIGTERM deletes every node at once
(closeSession), a release wakes only the next waiter, a semaphore slot freed
by any holder reaches the first waiter (no missed wake-up), a deleted node is
a lost hold, an expired session revokes and lockd goes on with a new one, and
a create whose answer was lost is found again by its guid.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from harness import ElectTestCase, scale, valgrind_ok, wait_for  # noqa: E402
from lockd_cases import HoldConn, LockdCases, SessionCutCases  # noqa: E402
from proxy import FaultProxy  # noqa: E402
import zk_server  # noqa: E402

ROOT = '/locks'
NODE_RE = re.compile(r'^/locks/([^/]+)/_c_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-'
                     r'[0-9a-f]{12}-lock-(\d{10})$')
ZKCLI = '/usr/share/zookeeper/bin/zkCli.sh'


@unittest.skipUnless(zk_server.available(), 'ZooKeeper (Debian package zookeeper) not installed')
class ZkLocks(LockdCases, SessionCutCases, ElectTestCase):
    lockd_ttl = '4s'
    lockd_kill_grace = '500ms'

    def setUp(self):
        self.zk = None
        # Registered before the harness's cleanup, so it runs after it:
        # lockds close their sessions before ZooKeeper goes away.
        self.addCleanup(self._stop_zk)
        super().setUp()
        self.zk = zk_server.ZkServer(self.tmp)
        self.zk.start().wait_ready()

    def _stop_zk(self):
        if self.zk is not None:
            self.zk.stop()

    def lock_url(self, proxy_port=None):
        hp = '127.0.0.1:%d' % proxy_port if proxy_port else self.zk.hostport
        return 'zk://%s%s%s' % (hp, ROOT, zk_server.URL_OPTS)

    def backend_addr(self):
        return ('127.0.0.1', self.zk.port)

    # --- helpers
    def ephemerals(self):
        """{session: [path]} from the server's `dump` (ephemeral nodes)."""
        out, sess = {}, None
        for line in self.zk.four('dump').splitlines():
            m = re.match(r'^(0x[0-9a-f]+):$', line.strip())
            if m:
                sess = m.group(1)
                out.setdefault(sess, [])
            elif sess and line.strip().startswith('/'):
                out[sess].append(line.strip())
        return {k: v for k, v in out.items() if v}

    def nodes(self, name=None):
        return sorted(p for ps in self.ephemerals().values() for p in ps
                      if name is None or p.startswith('%s/%s/' % (ROOT, name)))

    def fires(self, lockd):
        return lockd.log().count('watch fired')

    def waiters(self, lockd, name, n, limit=1):
        """n connections queued on name, in order; returns (conns, results)."""
        conns, results = [], {}

        def waiter(i, c):
            results[i] = c.acquire(name, limit=limit, wait='60s')

        for i in range(n):
            c = HoldConn(lockd)
            conns.append(c)
            before = len(self.nodes(name))
            threading.Thread(target=waiter, args=(i, c), daemon=True).start()
            wait_for(lambda: len(self.nodes(name)) == before + 1, 15, msg='waiter %d queued' % i)
        self.addCleanup(lambda: [c.close() for c in conns])
        return conns, results

    # --- ZooKeeper only
    @valgrind_ok
    def test_node_layout_one_session_tokens_are_sequence_plus_one(self):
        d = self.lockd('lay')
        holds = [d.acquire(n, limit=2) for n in ('a', 'b', 'a')]
        for st, body in holds:
            self.assertEqual(st, 200, body)
        eph = self.ephemerals()
        self.assertEqual(len(eph), 1, 'one session for all holds: %r' % eph)
        paths = sorted(list(eph.values())[0])
        self.assertEqual(len(paths), 3, paths)
        got = []
        for p in paths:
            m = NODE_RE.match(p)
            self.assertIsNotNone(m, p)
            got.append((m.group(1), int(m.group(2)) + 1))
        self.assertEqual(sorted(got), sorted((b['name'], b['token']) for _, b in holds))
        # A later holder of a name gets a higher token.
        st, body = d.release(holds[1][1]['hold'])
        self.assertEqual(st, 200, body)
        st, again = d.acquire('b')
        self.assertEqual(st, 200, again)
        self.assertGreater(again['token'], holds[1][1]['token'])

    @valgrind_ok
    def test_sigterm_deletes_every_node_at_once(self):
        d = self.lockd('t')
        for n in ('a', 'b', 'c'):
            self.assertEqual(d.acquire(n)[0], 200)
        self.assertEqual(len(self.nodes()), 3)
        t0 = time.monotonic()
        d.kill(signal.SIGTERM)
        self.assertEqual(d.wait_exit(10 * scale()), 0, d.log()[-2000:])
        self.assertLess(time.monotonic() - t0, 5 * scale())
        self.assertEqual(self.nodes(), [], 'nodes left after the session was closed')

    @valgrind_ok
    def test_release_wakes_only_the_next_waiter(self):
        a, w = self.lockd('a'), self.lockd('w')
        st, held = a.acquire('herd')
        self.assertEqual(st, 200, held)
        _, results = self.waiters(w, 'herd', 8)
        time.sleep(0.5)
        before = self.fires(w)
        a.release(held['hold'])
        wait_for(lambda: len(results) == 1, 15, msg='one waiter granted')
        time.sleep(1.0)
        woken = self.fires(w) - before
        sys.stderr.write('[%d watches fired after the release] ' % woken)
        self.assertEqual(woken, 1)
        self.assertEqual(list(results), [0], 'the first in line is granted')
        self.assertEqual(results[0][0], 200, results[0])

    @valgrind_ok
    def test_semaphore_slot_freed_by_any_holder_reaches_the_first_waiter(self):
        a, w = self.lockd('a'), self.lockd('w')
        h1, h2 = a.acquire('sem', limit=2), a.acquire('sem', limit=2)
        self.assertEqual((h1[0], h2[0]), (200, 200), (h1, h2))
        _, results = self.waiters(w, 'sem', 3, limit=2)
        time.sleep(0.3)
        # The newer holder leaves first: the first waiter watches both.
        a.release(h2[1]['hold'])
        wait_for(lambda: 0 in results, 10, msg='first waiter granted after the second holder left')
        time.sleep(0.5)
        self.assertEqual(list(results), [0])
        # The first waiter's grant moved the second one up: it now watches
        # every holder, so the oldest holder's release reaches it.
        a.release(h1[1]['hold'])
        wait_for(lambda: 1 in results, 10, msg='second waiter granted')
        time.sleep(0.5)
        self.assertEqual(sorted(results), [0, 1])
        tokens = [results[i][1]['token'] for i in (0, 1)]
        self.assertEqual(tokens, sorted(tokens))
        self.assertGreater(tokens[0], h2[1]['token'])

    @unittest.skipUnless(os.path.exists(ZKCLI), 'zkCli.sh not installed')
    def test_deleted_node_is_a_lost_hold(self):
        d = self.lockd('del')
        st, body = d.acquire('gone', wait='0')
        self.assertEqual(st, 200, body)
        node = self.nodes('gone')[0]
        r = subprocess.run([ZKCLI, '-server', self.zk.hostport, 'delete', node],
                           capture_output=True, text=True, timeout=60 * scale())
        self.assertEqual(self.nodes('gone'), [], r.stdout + r.stderr)
        st, ans = d.request('GET', '/v1/wait?hold=%s&wait=20s' % body['hold'], timeout=30)
        self.assertEqual(st, 200, ans)
        self.assertEqual(ans.get('state'), 'revoked', ans)
        # The name is free again.
        self.assertEqual(d.acquire('gone')[0], 200)

    def test_expired_session_revokes_and_lockd_goes_on(self):
        p = FaultProxy(self.backend_addr())
        p.start()
        self.addCleanup(p.stop)
        a = self.lockd('a', url=self.lock_url(proxy_port=p.port), ttl='2s', kill_grace='300ms')
        b = self.lockd('b', ttl='2s', kill_grace='300ms')
        conn = HoldConn(a)
        self.addCleanup(conn.close)
        st, body = conn.acquire('exp', wait='0')
        self.assertEqual(st, 200, body)
        p.blackhole()
        st, ans = conn.wait(body['hold'], wait='30s')
        self.assertEqual(ans.get('state'), 'revoked', ans)
        # The server expires the session: b gets the lock.
        st, other = b.acquire('exp', wait='20s')
        self.assertEqual(st, 200, other)
        self.assertGreater(other['token'], body['token'])
        self.assertEqual(b.release(other['hold'])[0], 200)
        p.pass_()
        wait_for(lambda: 'session expired' in a.log(), 20, msg='a sees its session expired')
        st, again = a.acquire('exp', wait='20s')
        self.assertEqual(st, 200, again)
        self.assertGreater(again['token'], other['token'])

    @valgrind_ok
    def test_lost_create_answer_is_found_by_guid(self):
        p = FaultProxy(self.backend_addr())
        p.start()
        self.addCleanup(p.stop)
        d = self.lockd('lost', url=self.lock_url(proxy_port=p.port))
        self.assertEqual(d.acquire('warm')[0], 200)   # path created, session up
        dropped = []

        def drop_create_answer(data):
            # The create's answer carries the new node's path; lose it and
            # reset the connection, so the client resends nothing and must
            # look for its node after reconnecting to the same session.
            if not dropped and b'/locks/lc/_c_' in data:
                dropped.append(data)
                threading.Thread(target=self._reset_then_pass, args=(p,), daemon=True).start()
                return b''
            return data
        p.set_response_hook(drop_create_answer)
        st, body = d.acquire('lc', wait='20s')
        self.assertEqual(st, 200, body)
        self.assertTrue(dropped, 'no create answer went through the proxy')
        wait_for(lambda: 'found our node' in d.log(), 10, msg='node found again by its guid')
        self.assertEqual(len(self.nodes('lc')), 1, self.nodes('lc'))
        m = NODE_RE.match(self.nodes('lc')[0])
        self.assertEqual(int(m.group(2)) + 1, body['token'])

    @staticmethod
    def _reset_then_pass(p):
        p.reset()
        time.sleep(0.3)
        p.pass_()


if __name__ == '__main__':
    unittest.main()
