"""elect on the Consul backend, against a real Consul (issue 11).

Consul has no Debian package: tests/consul_server.py builds Consul 1.13.9
from its Go modules (tests/consul/go.mod) once into ~/.cache/elect and reuses
it; every test starts its own `consul agent -dev` on free loopback ports and
stops it by pid. The same binary is `consul lock`, the peer we share the lock
with. Leader commands write interval logs (tests/leadercmd.c) that the
checker reads: no overlap, tokens strictly increasing. Bounds are generous;
timing figures belong to `make bench`.
"""

import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from harness import ElectTestCase, now_ns, scale, valgrind_ok, wait_for  # noqa: E402
from consul_server import CONSUL_TTL_MIN_ARGS, ConsulCluster, ConsulServer, build_consul  # noqa: E402
from proxy import FaultProxy  # noqa: E402

LOCK_FLAG = 0x2ddccbc058a50c18
# The test servers take session TTLs down to 1 s (CONSUL_TTL_MIN_ARGS; the
# URLs say so, consul_url()), so the failover tests wait a few seconds, not
# tens: Consul's own default minimum is 10 s.
TTL_MIN = '?session-ttl-min=1s'


def consul_url(hosts, prefix='web'):
    return 'consul://%s/%s%s' % (hosts, prefix, TTL_MIN)


def timing(ttl_s=3):
    """TTL ttl_s, renewals every TTL/3, kill grace 300 ms; longer by the
    harness's scale (ASan 2x; valgrind 3x here, as elect's own timing
    check needs)."""
    k = min(3, max(1, round(scale())))
    return dict(ttl='%ds' % (ttl_s * k), renew='%ds' % k, kill_grace='%dms' % (300 * k))


def ttl_ns(t):
    return int(t['ttl'][:-1]) * 1000000000


class ConsulTestCase(ElectTestCase):

    def setUp(self):
        build_consul()          # once per machine (~6 min cold), then cached; fails, never skips
        self._servers = []
        # Registered before the harness's cleanup, so it runs after it:
        # agents get to destroy their sessions before Consul goes away.
        self.addCleanup(self._stop_servers)
        super().setUp()

    def _stop_servers(self):
        for s in reversed(self._servers):
            s.stop()

    def consul(self, extra_args=(), tls=None, ttl_min=True):
        """A -dev server; ttl_min: taking TTLs down to 1 s (else Consul's
        default 10 s)."""
        extra_args = tuple(extra_args) + (CONSUL_TTL_MIN_ARGS if ttl_min else ())
        s = ConsulServer(self.tmp, 'consul%d' % len(self._servers), extra_args=extra_args, tls=tls)
        self._servers.append(s)
        s.start()
        return s

    def cluster(self, n=3):
        c = ConsulCluster(self.tmp, n, extra_args=CONSUL_TTL_MIN_ARGS)
        self._servers.append(c)
        c.start()
        return c

    def proxy(self, endpoint):
        host, port = endpoint.split(':')
        p = FaultProxy((host, int(port)))
        p.start()
        self.addCleanup(p.stop)
        return p

    def agents(self, url, log, ids, t=None, **kw):
        t = t or timing()
        return [self.agent(id=i, name='web', backend=url, cmd=self.leader_cmd(log), **t, **kw)
                for i in ids]

    def one_holder(self, log, timeout=20):
        return wait_for(lambda: len(self.holders(log)) == 1 and self.holders(log)[0], timeout,
                        msg='exactly one running leader command')

    def leaders(self, agents):
        return [a for a in agents if a.alive() and a.is_leader()]

    def consul_lock(self, srv, name, prefix='web'):
        """`consul lock PREFIX CMD` whose command touches NAME.held and runs
        until NAME.stop exists."""
        held, stop = self.path(name + '.held'), self.path(name + '.stop')
        cmd = 'touch %s; while [ ! -e %s ]; do sleep 0.1; done' % (held, stop)
        p = self.spawn(srv.consul('lock', prefix, cmd), name, env=srv.env())
        p.held = lambda: os.path.exists(held)
        p.release = lambda: open(stop, 'w').close()
        return p


class ConsulElection(ConsulTestCase):

    @valgrind_ok
    def test_one_leader_among_three_and_graceful_handover(self):
        srv = self.consul()
        log = self.path('iv.log')
        agents = self.agents(consul_url(srv.endpoint), log, ['n0', 'n1', 'n2'])
        first = self.one_holder(log)
        wait_for(lambda: len(self.leaders(agents)) == 1, 10)
        leader = [a for a in agents if a.id == first.id][0]
        wait_for(lambda: all(a.status()['leader'] == first.id for a in agents), 10)
        # consul lock's layout: PREFIX/.lock, its flag, value = our id,
        # held by our session; the token is the acquire's Raft index.
        kv = srv.kv_get('web/.lock')
        self.assertEqual(kv['Flags'], LOCK_FLAG)
        self.assertEqual(kv['Value'], first.id)
        self.assertTrue(kv['Session'])
        self.assertEqual(int(first.token), kv['ModifyIndex'])
        self.assertEqual(leader.status()['token'], int(first.token))
        # Sessions without health checks, one per agent.
        mine = [s for s in srv.sessions() if s['Name'].startswith('elect ')]
        self.assertEqual(len(mine), 3)
        for s in mine:
            self.assertEqual(s.get('NodeChecks') or [], [])
            self.assertEqual(s.get('Checks') or [], [])
            self.assertEqual(s['TTL'], timing()['ttl'])

        # Graceful: SIGTERM releases the key and destroys the session; a
        # waiter leads at once (well before a TTL).
        t0 = now_ns()
        self.assertIsNotNone(leader.stop())
        nxt = self.wait_new_term(log, after_ns=t0, exclude_id=first.id, timeout=10)
        self.assertLess(nxt.start - t0, 3e9 * scale(), 'handover took a TTL: key not released?')
        self.assertGreater(int(nxt.token), int(first.token))
        self.assertEqual(len([s for s in srv.sessions() if s['Name'].startswith('elect ')]), 2)
        rest = [a for a in agents if a is not leader]
        wait_for(lambda: all(a.status()['leader'] == nxt.id for a in rest), 10)
        self.check_intervals(log)

    def test_kill9_of_leader_fails_over_after_session_invalidation(self):
        srv = self.consul()
        log = self.path('iv.log')
        t = timing()
        agents = self.agents(consul_url(srv.endpoint), log, ['k0', 'k1', 'k2'], t)
        first = self.one_holder(log)
        leader = [a for a in agents if a.id == first.id][0]
        t0 = now_ns()
        leader.kill(signal.SIGKILL)
        # Its command dies with it at once, long before anyone else leads.
        wait_for(lambda: [i for i in self.intervals(log) if i.pid == first.pid and i.end], 5)
        # Consul may keep a session up to 2 x TTL after its last renewal;
        # then the key is free after the session's lock-delay (the TTL).
        nxt = self.wait_new_term(log, after_ns=t0, exclude_id=first.id,
                                 timeout=3 * ttl_ns(t) / 1e9 + 10)
        self.assertGreater(int(nxt.token), int(first.token))
        self.check_intervals(log, t_end=now_ns())

    @valgrind_ok
    def test_bad_config_and_name_as_prefix(self):
        srv = self.consul()
        r = self.run_elect(['--name', 'x', '--backend', 'consul://%s/web' % srv.endpoint,
                            '--ttl', '5s', '--check-config', '--', 'true'])
        self.assertEqual(r.returncode, 2)
        self.assertIn('under 10s', r.stderr)
        r = self.run_elect(['--name', 'x', '--backend', 'consul://a:1,,b/web', '--ttl', '10s',
                            '--check-config', '--', 'true'])
        self.assertEqual(r.returncode, 2)
        r = self.run_elect(['--name', 'x', '--backend', 'consul://%s/web?lock-delay=99s' % srv.endpoint,
                            '--ttl', '10s', '--check-config', '--', 'true'])
        self.assertEqual(r.returncode, 2)
        self.assertIn('lock-delay', r.stderr)
        # No host: CONSUL_HTTP_ADDR; no path: the election name.
        a = self.agent(mode='sidecar', id='p0', name='byname', backend='consul://',
                       env={'CONSUL_HTTP_ADDR': srv.http_addr}, ttl='10s', renew='2s',
                       kill_grace='500ms')
        a.wait_state('leader', 20)
        self.assertEqual(srv.kv_get('byname/.lock')['Value'], 'p0')

    @valgrind_ok
    def test_session_ttl_min_below_ten_seconds(self):
        # Servers that take short TTLs (session_ttl_min 1s), and the URL that
        # says so: a 3 s TTL, with crash failover in 2-3 TTLs (the session's
        # expiry, Consul's grace and the lock-delay).
        srv = self.consul()
        log = self.path('iv.log')
        t = timing()
        k = int(t['ttl'][:-1]) // 3
        url = consul_url(srv.endpoint)
        agents = self.agents(url, log, ['s0', 's1'], t=t)
        first = self.one_holder(log)
        self.assertIn('(TTL %ds, lock delay %dms' % (3 * k, 3000 * k), ''.join(a.log() for a in agents))
        leader = [a for a in agents if a.id == first.id][0]
        t0 = now_ns()
        leader.kill(signal.SIGKILL)
        nxt = self.wait_new_term(log, after_ns=t0, exclude_id=first.id, timeout=3 * 3 * k + 10)
        self.assertGreater(int(nxt.token), int(first.token))
        self.check_intervals(log, t_end=now_ns())
        # Servers at Consul's default (10s): they refuse the session, and the
        # agent says why and what to change (it does not lead, and retries).
        plain = self.consul(ttl_min=False)
        a = self.agent(mode='sidecar', id='p0', name='short',
                       backend='consul://%s/web2?session-ttl-min=2s' % plain.endpoint, ttl='2s',
                       renew='500ms', kill_grace='300ms')
        # The refusal's line, then the core's with what to change.
        wait_for(lambda: "the servers' session_ttl_min is above --ttl" in a.log(), 20,
                 msg='the servers\' refusal logged with what to change')
        self.assertIn('Invalid Session TTL', a.log())
        self.assertNotEqual(a.status()['state'], 'leader')

    @valgrind_ok
    def test_foreign_key_is_a_conflict(self):
        srv = self.consul()
        # A key with other flags (here: a semaphore's, above 2^63) is not taken.
        st, _, _ = srv.request('PUT', '/v1/kv/web/.lock?flags=16210313421097356768', '{"Limit":2}')
        self.assertEqual(st, 200)
        log = self.path('iv.log')
        a = self.agents(consul_url(srv.endpoint), log, ['c0'])[0]
        wait_for(lambda: 'not a lock' in a.log(), 20, msg='conflict logged')
        time.sleep(1)
        self.assertEqual(self.holders(log), [])
        self.assertEqual(srv.kv_get('web/.lock')['Flags'], 16210313421097356768)
        # Once the key is gone the agent takes it.
        srv.request('DELETE', '/v1/kv/web/.lock')
        a.wait_state('leader', 20)
        self.assertEqual(a.log().count('not a lock'), 1)


class ConsulFaults(ConsulTestCase):

    def test_partition_of_leader_steps_down_before_anyone_leads(self):
        srv = self.consul()
        # A TTL that leaves room for the demoted hook's 500 ms (elect's
        # timing check counts each of the hooks that may run).
        t = timing(4)
        p = self.proxy(srv.endpoint)
        log = self.path('iv.log')
        demoted = self.path('demoted.ts')
        hook = self.script('demoted.sh', 'python3 -c "import time; print(time.monotonic_ns())" >> %s\n'
                           % demoted)
        extra = ('--on-demoted', hook, '--hook-timeout', '500ms')
        a = self.agent(id='cut', name='web', backend=consul_url('127.0.0.1:%d' % p.port),
                       cmd=self.leader_cmd(log), args=extra, **t)
        first = self.one_holder(log)
        self.assertEqual(first.id, 'cut')
        b = self.agents(consul_url(srv.endpoint), log, ['other'], t)[0]
        wait_for(lambda: b.status()['leader'] == 'cut', 10)

        t_cut = now_ns()
        p.blackhole()
        # Consul ends the session between TTL and 2 x TTL after the last
        # renewal; the key is free after its lock-delay (the TTL) more.
        nxt = self.wait_new_term(log, after_ns=t_cut, exclude_id='cut',
                                 timeout=3 * ttl_ns(t) / 1e9 + 10)
        with open(demoted) as f:
            t_demoted = int(f.read().split()[0])
        cut_iv = [i for i in self.intervals(log) if i.id == 'cut'][0]
        self.assertIsNotNone(cut_iv.end, 'leader command of the cut-off agent still runs')
        self.assertLess(cut_iv.end, t_cut + ttl_ns(t), 'command stopped after the session could end')
        self.assertLess(t_demoted, t_cut + ttl_ns(t), 'demoted ran after the session could end')
        self.assertLess(cut_iv.end, nxt.start)
        self.assertLess(t_demoted, nxt.start, 'the other agent led before demoted ran')
        self.assertEqual(nxt.id, 'other')
        self.assertTrue(a.alive())
        # Healed: the cut-off agent finds its session gone and follows.
        p.pass_()
        wait_for(lambda: a.status()['leader'] == 'other' and a.status()['state'] == 'candidate', 30)
        self.check_intervals(log)


    def test_cluster_server_of_the_leader_killed(self):
        c = self.cluster(3)
        log = self.path('iv.log')
        t = timing()
        eps = c.endpoints
        # Each agent talks to its own server first, the others after it.
        agents = [self.agent(id='c%d' % i, name='web', cmd=self.leader_cmd(log),
                             backend=consul_url(','.join(eps[i:] + eps[:i])), **t)
                  for i in range(3)]
        first = self.one_holder(log, 60)
        i = int(first.id[1:])
        victim = c.members[i]
        victim.kill()
        # The agent moves on to the next server. Sessions carry no serfHealth
        # check, but a session belongs to the node it was made on: when
        # autopilot reaps the dead server, Consul ends the sessions made
        # through it and the key is released. Either way: never two leaders
        # at once, every agent lives on, and one leads again.
        time.sleep(2 * ttl_ns(t) / 1e9)
        wait_for(lambda: len(self.holders(log)) == 1, 30, msg='one holder after the kill')
        wait_for(lambda: len(self.leaders(agents)) == 1, 30)
        self.assertTrue(all(a.alive() for a in agents))
        self.assertIn('now using', agents[i].log())
        self.check_intervals(log, t_end=now_ns())


    def test_consul_restarted(self):
        # A server with a data dir (not -dev), so the restart keeps the state.
        srv = self.cluster(1).members[0]
        log = self.path('iv.log')
        t = timing()
        agents = self.agents(consul_url(srv.endpoint), log, ['r0', 'r1'], t)
        self.one_holder(log, 30)
        srv.stop()
        time.sleep(1)
        srv.start()
        # Either the leader kept its session through the restart or there was
        # a clean new term; never two holders at once, and the agents live on.
        wait_for(lambda: len(self.leaders(agents)) == 1, 40)
        self.one_holder(log, 40)
        self.assertTrue(all(a.alive() for a in agents))
        # Consul gone for longer than the TTL: the leader steps down, both
        # wait, and the election resumes when Consul is back.
        srv.stop()
        wait_for(lambda: self.holders(log) == [], ttl_ns(t) / 1e9 + 3)
        time.sleep(1)
        self.assertTrue(all(a.alive() for a in agents))
        srv.start()
        wait_for(lambda: len(self.leaders(agents)) == 1, 2 * ttl_ns(t) / 1e9 + 30)
        self.one_holder(log, 30)
        self.check_intervals(log, t_end=now_ns())


class ConsulInterop(ConsulTestCase):

    @valgrind_ok
    def test_with_consul_lock_both_ways(self):
        srv = self.consul()
        url = consul_url(srv.endpoint)
        log = self.path('iv.log')
        cl1 = self.consul_lock(srv, 'lock1')
        wait_for(cl1.held, 20, msg='consul lock holds')
        agents = self.agents(url, log, ['a0', 'a1'])
        holder = srv.kv_get('web/.lock')['Session']
        # While consul lock holds: nobody leads, everyone sees its session lead.
        wait_for(lambda: all(a.status()['leader'] == holder for a in agents), 20,
                 msg='agents report consul lock as leader')
        time.sleep(1)
        self.assertEqual(self.holders(log), [])
        self.assertEqual(self.leaders(agents), [])

        # consul lock -> elect: its command ends, it releases; an agent leads.
        cl1.release()
        cl1.wait_exit(20)
        first = self.one_holder(log)
        leader = [a for a in agents if a.id == first.id][0]

        # elect -> consul lock: a waiting consul lock gets it after elect
        # releases it (graceful), and not before.
        other = [a for a in agents if a is not leader][0]
        other.stop()
        cl2 = self.consul_lock(srv, 'lock2')
        time.sleep(2)
        self.assertFalse(cl2.held(), 'consul lock holds while elect leads')
        t0 = now_ns()
        leader.stop()
        wait_for(cl2.held, 10, msg='consul lock took over after elect released')
        self.assertLess(now_ns() - t0, 8e9 * scale())
        self.assertTrue(all(i.end for i in self.intervals(log)))
        cl2.release()
        cl2.wait_exit(20)
        self.check_intervals(log)

    def test_consul_lock_takes_over_after_elect_is_killed(self):
        srv = self.consul()
        log = self.path('iv.log')
        t = timing()
        a = self.agents(consul_url(srv.endpoint), log, ['z0'], t)[0]
        first = self.one_holder(log)
        cl = self.consul_lock(srv, 'lock1')
        time.sleep(1)
        self.assertFalse(cl.held())
        a.kill(signal.SIGKILL)
        wait_for(lambda: [i for i in self.intervals(log) if i.pid == first.pid and i.end], 5)
        # Consul invalidates the session TTL to 2 x TTL after its last
        # renewal; the key is free after its lock-delay (the TTL) more, and
        # consul lock retries a refused acquire every 5 s.
        wait_for(cl.held, 3 * ttl_ns(t) / 1e9 + 15, msg='consul lock took over after kill -9')
        self.check_intervals(log, t_end=now_ns())
        cl.release()
        cl.wait_exit(20)


if __name__ == '__main__':
    unittest.main()
