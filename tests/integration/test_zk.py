"""Integration tests of the ZooKeeper backend (issue 4) against real ZooKeeper.

Servers come from Debian's `zookeeper` package, started by tests/zk_server.py
on free loopback ports with their own data dirs (tickTime 100 ms) and
stopped by pid, also when a test fails. Agents are real bin/elect processes;
leader commands (tests/leadercmd.c) write interval logs that the checker
reads (no overlap, increasing tokens). Bounds are generous; timing figures
belong to `make bench`.
"""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from harness import ElectTestCase, now_ns, scale, valgrind_ok, wait_for  # noqa: E402
from proxy import FaultProxy  # noqa: E402
import zk_server  # noqa: E402

TTL = '2s'
TTL_S = 2.0
TIMING = ['--renew', '300ms', '--hook-timeout', '500ms']


class ZkTestCase(ElectTestCase):

    def setUp(self):
        # Registered before the harness's cleanup, so it runs after it: agents
        # first (they close their sessions), then the servers.
        self._zk = []
        self.addCleanup(self._stop_servers)
        super().setUp()
        if not zk_server.available():
            self.fail('ZooKeeper is not installed (Debian package zookeeper)')

    def _stop_servers(self):
        for s in self._zk:
            s.stop()

    def zk(self):
        s = zk_server.ZkServer(self.tmp)
        self._zk.append(s)
        return s.start().wait_ready()

    def ensemble(self, n=3):
        e = zk_server.ZkEnsemble(self.tmp, n=n)
        self._zk.extend(e.servers)
        return e.start().wait_ready()

    def zk_agent(self, hosts, id, log=None, path='/elect/t', sidecar=False, **kw):
        args = list(kw.pop('args', TIMING))
        ttl = kw.pop('ttl', TTL)
        url = 'zk://%s%s%s' % (hosts, path, zk_server.URL_OPTS)
        if sidecar:
            return self.agent(mode='sidecar', id=id, backend=url, ttl=ttl, args=args, **kw)
        return self.agent(id=id, backend=url, ttl=ttl, cmd=self.leader_cmd(log), args=args,
                          kill_grace=kw.pop('kill_grace', '300ms'), **kw)

    def one_holder(self, log, timeout=10):
        return wait_for(lambda: len(self.holders(log)) == 1 and self.holders(log)[0], timeout,
                        msg='exactly one running leader command')

    def by_id(self, agents, id):
        return [a for a in agents if a.id == id][0]

    def connected_port(self, agent):
        """The ZooKeeper port the agent's session last connected to (its log)."""
        ports = re.findall(r'zk: (?:session 0x[0-9a-f]+ with|reconnected to) 127\.0\.0\.1:(\d+)',
                           agent.log())
        return int(ports[-1]) if ports else None


class ZkBackend(ZkTestCase):

    @valgrind_ok
    def test_one_leader_followers_know_it_and_graceful_handover(self):
        zk = self.zk()
        log = self.path('iv.log')
        agents = [self.zk_agent(zk.hostport, 'n%d' % i, log) for i in range(3)]
        first = self.one_holder(log)
        leader = self.by_id(agents, first.id)
        st = leader.wait_state('leader', 5)
        self.assertGreater(st['token'], 0)
        for a in agents:
            wait_for(lambda a=a: (a.try_status() or {}).get('leader') == first.id, 5,
                     msg='%s knows the leader' % a.id)
        # Clean exit deletes the node: the next one leads without waiting a TTL.
        t0 = now_ns()
        leader.stop()
        nxt = self.wait_new_term(log, after_ns=first.start, exclude_id=first.id, timeout=5)
        self.assertLess(nxt.start - t0, 1.5e9 * scale(), 'handover took a session timeout')
        for a in agents:
            if a is not leader:
                wait_for(lambda a=a: (a.try_status() or {}).get('leader') == nxt.id, 5,
                         msg='%s learns the new leader' % a.id)
        rep = self.check_intervals(log)
        self.assertEqual(rep.terms, 2)

    @valgrind_ok
    def test_kill9_of_leader_agent(self):
        zk = self.zk()
        log = self.path('iv.log')
        agents = [self.zk_agent(zk.hostport, 'n%d' % i, log) for i in range(3)]
        first = self.one_holder(log)
        leader = self.by_id(agents, first.id)
        t0 = now_ns()
        leader.kill(signal.SIGKILL)
        wait_for(lambda: self.intervals(log)[0].dead is not None, 3,
                 msg='the leader command dies with its agent')
        nxt = self.wait_new_term(log, after_ns=first.start, exclude_id=first.id,
                                 timeout=TTL_S + 3)
        # The node goes when the server expires the session (TTL + one tick).
        self.assertLess(nxt.start - t0, (TTL_S + 1.5) * 1e9 * scale())
        self.assertGreater(nxt.start - t0, (TTL_S - 0.5) * 1e9, 'took over before the session expired')
        self.check_intervals(log)

    def test_disconnect_while_leading_steps_down_before_expiry(self):
        zk = self.zk()
        log = self.path('iv.log')
        marks = self.path('marks.log')
        demoted = self.path('demoted.py')
        with open(demoted, 'w') as f:
            f.write('#!/usr/bin/env python3\nimport sys, time\n'
                    'open(%r, "a").write("demoted %%s %%d\\n" %% (sys.argv[3], time.monotonic_ns()))\n'
                    % marks)
        os.chmod(demoted, 0o755)
        proxies, agents = {}, []
        for i in range(3):
            p = FaultProxy(('127.0.0.1', zk.port))
            p.start()
            self.addCleanup(p.stop)
            proxies['n%d' % i] = p
            agents.append(self.zk_agent('127.0.0.1:%d' % p.port, 'n%d' % i, log, ttl='5s',
                                        args=TIMING + ['--on-demoted', demoted]))
        first = self.one_holder(log)
        leader = self.by_id(agents, first.id)
        leader.wait_state('leader', 5)
        time.sleep(0.5)
        t_cut = now_ns()
        proxies[first.id].blackhole()
        nxt = self.wait_new_term(log, after_ns=first.start, exclude_id=first.id, timeout=15)
        iv = self.intervals(log)[0]
        self.assertIsNotNone(iv.end, 'old leader command still running')
        self.assertIn('to=suspended', leader.log(), 'the leader never went suspended')
        with open(marks) as f:
            dem = [int(line.split()[2]) for line in f if line.split()[1] == first.id]
        self.assertTrue(dem, 'demoted hook did not run')
        # Order: command dead, demoted hook run, and only then the next leader,
        # who can start only after the server expired the old session.
        self.assertLess(iv.end, dem[0])
        self.assertLess(dem[0], nxt.start)
        self.assertLess(dem[0] - t_cut, 5e9, 'stepped down only after the session timeout')
        self.check_intervals(log)
        # The link heals: the old session is expired; the agent starts over as
        # a follower and learns the new leader.
        proxies[first.id].pass_()
        wait_for(lambda: (leader.try_status() or {}).get('leader') == nxt.id, 15,
                 msg='old leader rejoins and sees the new leader')
        self.assertIn('session expired', leader.log())
        self.check_intervals(log)

    @valgrind_ok
    def test_zookeeper_restart(self):
        zk = self.zk()
        log = self.path('iv.log')
        agents = [self.zk_agent(zk.hostport, 'n%d' % i, log, ttl='4s') for i in range(3)]
        self.one_holder(log)
        zk.stop()
        time.sleep(0.3)
        zk.start().wait_ready()
        # Sessions survive a restart (they are in the snapshot/log); whoever
        # leads afterwards, there is exactly one leader and no overlap.
        wait_for(lambda: sum(a.is_leader() for a in agents) == 1 and len(self.holders(log)) == 1,
                 20, msg='one leader after the restart')
        time.sleep(1)
        wait_for(lambda: sum(a.is_leader() for a in agents) == 1, 5)
        self.check_intervals(log)

    def test_ensemble_server_of_leader_killed(self):
        ens = self.ensemble(3)
        log = self.path('iv.log')
        agents = [self.zk_agent(ens.connect_string, 'n%d' % i, log, ttl='4s') for i in range(3)]
        first = self.one_holder(log, timeout=20)
        leader = self.by_id(agents, first.id)
        port = wait_for(lambda: self.connected_port(leader), 5)
        victim = [s for s in ens.servers if s.port == port][0]
        victim.stop()
        # The client moves to another server within the session; leadership
        # either continues or passes on, never twice at once.
        wait_for(lambda: self.connected_port(leader) not in (None, port), 20,
                 msg='the leader reconnects to another server')
        wait_for(lambda: sum(a.is_leader() for a in agents) == 1 and len(self.holders(log)) == 1,
                 20, msg='one leader after the server was killed')
        self.check_intervals(log)
        # Leaving still hands over at once through the remaining servers.
        holder = self.holders(log)[0]
        self.by_id(agents, holder.id).stop()
        self.wait_new_term(log, after_ns=holder.start, exclude_id=holder.id, timeout=5)
        self.check_intervals(log)

    @valgrind_ok
    def test_digest_auth(self):
        zk = self.zk()
        log = self.path('iv.log')
        agents = [self.zk_agent(zk.hostport, 'n%d' % i, log, path='/secure/e',
                                args=TIMING + ['--auth', 'elect:s3cret']) for i in range(2)]
        first = self.one_holder(log)
        self.by_id(agents, first.id).stop()
        self.wait_new_term(log, after_ns=first.start, exclude_id=first.id, timeout=5)
        self.check_intervals(log)

    @valgrind_ok
    def test_auth_from_environment_not_inherited(self):
        """ELECT_AUTH is read, then scrubbed: the command and hooks do not see it."""
        zk = self.zk()
        cmd_env, hook_env = self.path('cmd.env'), self.path('hook.env')
        hook = self.script('dump-env', 'env > %s\n' % hook_env)
        # TTL 3s: the hooks' allowance and ZooKeeper's lag do not fit into 2s.
        a = self.agent(id='n0', backend='zk://%s/secure/env%s' % (zk.hostport, zk_server.URL_OPTS), ttl='3s',
                       kill_grace='300ms',
                       args=TIMING + ['--on-elected', hook, '--once'],
                       cmd=['sh', '-c', 'env > %s' % cmd_env],
                       env={'ELECT_AUTH': 'elect:s3cret-env', 'CONSUL_HTTP_TOKEN': 'tok-consul'})
        self.assertEqual(a.wait_exit(15), 0, a.log())
        for path in (cmd_env, hook_env):
            with open(path) as f:
                text = f.read()
            self.assertIn('ELECT_NAME=', text, path)
            for secret in ('ELECT_AUTH', 's3cret-env', 'CONSUL_HTTP_TOKEN', 'tok-consul'):
                self.assertNotIn(secret, text, path)
        self.assertNotIn('s3cret-env', a.log())

    def test_bad_url_is_refused(self):
        for url in ('zk:///x', 'zk://127.0.0.1/x', 'zk://127.0.0.1:99999/x', 'zk://127.0.0.1:1/a//b',
                    'zk://127.0.0.1:1/zookeeper/x'):
            r = self.run_elect(['--check-config', '--backend', url, '--', 'true'])
            self.assertNotEqual(r.returncode, 0, url)
            self.assertIn('zk', r.stderr, url)
            self.assertLess(len(r.stderr.strip().splitlines()), 3, r.stderr)

    def test_session_timeout_below_ttl_is_refused(self):
        # maxSessionTimeout 1s < --ttl 2s: the server would expire us before
        # the core's deadline; the agent must not lead on such a session.
        s = zk_server.ZkServer(self.tmp, max_session_ms=1000)
        self._zk.append(s)
        s.start().wait_ready()
        log = self.path('iv.log')
        a = self.zk_agent(s.hostport, 'n0', log)
        wait_for(lambda: 'shorter than --ttl' in a.log(), 10, msg='refusal logged')
        time.sleep(1)
        self.assertEqual(self.intervals(log), [])
        self.assertNotEqual(a.state(), 'leader')


class ZkHerd(ZkTestCase):
    N = 200

    def test_200_agents_leader_change_wakes_one(self):
        zk = self.zk()
        agents = []
        for i in range(self.N):
            agents.append(self.zk_agent(zk.hostport, 'h%03d' % i, sidecar=True, ttl='6s',
                                        args=['--renew', '2s'], socket=self.path('h%03d.sock' % i)))
            if i % 20 == 19:
                time.sleep(0.2)
        # Every candidate has its node and watches exactly one predecessor.
        def watches():
            m = re.search(r'Total watches:\s*(\d+)', zk.four('wchs'))
            return int(m.group(1)) if m else -1
        wait_for(lambda: watches() == self.N - 1, 60 * scale(), interval=0.5,
                 msg='%d predecessor watches (have %s)' % (self.N - 1, watches()))
        leaders = [a for a in agents if a.is_leader()]
        self.assertEqual(len(leaders), 1)
        leader = leaders[0]
        fires_before = sum(a.log().count('predecessor watch fired') for a in agents)
        t0 = now_ns()
        leader.stop()

        def new_leader():
            for a in agents:
                if a is not leader and a.is_leader():
                    return a
            return None
        # Candidates are numbered in creation order; the leader's successor
        # is the only one woken.
        nxt = wait_for(new_leader, 10, interval=0.02, msg='a new leader')
        elapsed = (now_ns() - t0) / 1e9
        self.assertLess(elapsed, 3 * scale(), 'new leader took %.2fs' % elapsed)
        time.sleep(1)
        fires = sum(a.log().count('predecessor watch fired') for a in agents) - fires_before
        self.assertEqual(fires, 1, 'a leader change woke %d candidates' % fires)
        self.assertIn('predecessor watch fired', nxt.log())
        self.assertEqual(sum(a.is_leader() for a in agents), 1)
