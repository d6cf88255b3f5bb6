"""elect on the etcd v3 backend, against a real etcd (issue 3).

Every test starts its own etcd (Debian's etcd-server) on free loopback ports
with its data dir in the test's temp dir, and stops it by pid at the end.
Leader commands write interval logs (tests/leadercmd.c) that the checker
reads: no overlap between holders, tokens strictly increasing. Bounds are
generous; timing figures belong to `make bench`.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from harness import ElectTestCase, now_ns, scale, valgrind_ok, wait_for  # noqa: E402
from etcd_server import EtcdCluster, EtcdServer, etcdctl, have_etcd, ETCDCTL  # noqa: E402
from proxy import FaultProxy  # noqa: E402

TTL_S = 2                       # etcd's smallest lease TTL
FAST = dict(ttl='%ds' % TTL_S, renew='500ms', kill_grace='300ms')


def timing():
    """Agent timing; slower tools (valgrind, ASan) get longer TTLs."""
    if scale() >= 5:
        return dict(ttl='10s', renew='2s', kill_grace='500ms')
    if scale() >= 2:
        return dict(ttl='4s', renew='1s', kill_grace='300ms')
    return dict(FAST)


def ttl_ns(t):
    return int(t['ttl'][:-1]) * 1000000000


@unittest.skipUnless(have_etcd(), 'etcd-server and etcd-client are not installed')
class EtcdTestCase(ElectTestCase):

    def setUp(self):
        self._etcds = []
        # Registered before the harness's cleanup, so it runs after it:
        # agents get to revoke their leases before etcd goes away.
        self.addCleanup(self._stop_etcds)
        super().setUp()

    def _stop_etcds(self):
        for s in reversed(self._etcds):
            s.stop()

    def etcd(self):
        s = EtcdServer(self.tmp, 'etcd%d' % len(self._etcds))
        self._etcds.append(s)
        s.start()
        return s

    def cluster(self, n=3):
        c = EtcdCluster(self.tmp, n)
        self._etcds.append(c)
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
        out = []
        for i in ids:
            out.append(self.agent(id=i, name='web', backend=url, cmd=self.leader_cmd(log), **t, **kw))
        return out

    def one_holder(self, log, timeout=10):
        return wait_for(lambda: len(self.holders(log)) == 1 and self.holders(log)[0], timeout,
                        msg='exactly one running leader command')

    def leaders(self, agents):
        return [a for a in agents if a.alive() and a.is_leader()]

    def keys(self, endpoint, prefix):
        r = etcdctl(endpoint, 'get', '--prefix', prefix + '/')
        lines = r.stdout.splitlines()
        return dict(zip(lines[0::2], lines[1::2]))


class EtcdElection(EtcdTestCase):

    @valgrind_ok
    def test_one_leader_among_three_and_graceful_handover(self):
        srv = self.etcd()
        log = self.path('iv.log')
        agents = self.agents('etcd://%s/web' % srv.endpoint, log, ['n0', 'n1', 'n2'])
        first = self.one_holder(log)
        wait_for(lambda: len(self.leaders(agents)) == 1, 5)
        leader = [a for a in agents if a.id == first.id][0]
        # Everyone sees the same leader; the layout is etcd's Election one.
        wait_for(lambda: all(a.status()['leader'] == first.id for a in agents), 10)
        keys = self.keys(srv.endpoint, 'web')
        self.assertEqual(sorted(keys.values()), ['n0', 'n1', 'n2'])
        for k in keys:
            int(k.split('/', 1)[1], 16)          # web/<lease id in hex>
        self.assertEqual(leader.status()['token'], int(first.token))
        # The member's version (etcd's own Maintenance Status, as the agent
        # asks it): versions whose stalled raft leader revokes live leases
        # (before 3.4.28 and 3.5.11: Debian 12's 3.4.23) are warned of once
        # (README, Safety 6); test_containers' etcd 3.5 is not.
        ver = json.loads(urllib.request.urlopen(urllib.request.Request(
            'http://%s/v3/maintenance/status' % srv.endpoint, data=b'{}'), timeout=5).read())['version']
        major, minor, patch = (int(x) for x in ver.split('.')[:3])
        early = (major, minor) < (3, 4) or (minor == 4 and patch < 28) or (minor == 5 and patch < 11)
        warning = 'runs etcd %s, which can revoke live leases' % ver
        if early:
            wait_for(lambda: all(a.log().count(warning) == 1 for a in agents), 10,
                     msg='the warning of etcd %s in every agent\'s log' % ver)
        else:
            self.assertFalse(any(warning in a.log() for a in agents))

        # Graceful: SIGTERM revokes the lease, the next one leads at once
        # (well before a TTL would have passed).
        t0 = now_ns()
        self.assertIsNotNone(leader.stop())
        nxt = self.wait_new_term(log, after_ns=t0, exclude_id=first.id, timeout=10)
        self.assertLess(nxt.start - t0, 1.5e9 * scale(), 'handover took a TTL: lease not revoked?')
        self.assertGreater(int(nxt.token), int(first.token))
        self.assertNotIn(first.id, self.keys(srv.endpoint, 'web').values())
        rest = [a for a in agents if a is not leader]
        wait_for(lambda: all(a.status()['leader'] == nxt.id for a in rest), 10)
        self.check_intervals(log)

    def test_kill9_of_leader_fails_over_within_ttl(self):
        srv = self.etcd()
        log = self.path('iv.log')
        t = timing()
        agents = self.agents('etcd://%s/web' % srv.endpoint, log, ['k0', 'k1', 'k2'], t)
        first = self.one_holder(log)
        leader = [a for a in agents if a.id == first.id][0]
        t0 = now_ns()
        leader.kill(signal.SIGKILL)
        # Its command dies with it (PDEATHSIG), long before anyone else leads.
        wait_for(lambda: [i for i in self.intervals(log) if i.pid == first.pid and i.end], 5)
        nxt = self.wait_new_term(log, after_ns=t0, exclude_id=first.id, timeout=10)
        self.assertLess(nxt.start - t0, ttl_ns(t) + 2e9 * scale(), 'failover slower than TTL + margin')
        self.check_intervals(log)

    def test_election_prefix_from_name_and_bad_urls(self):
        srv = self.etcd()
        r = self.run_elect(['--name', 'x', '--backend', 'etcd://%s/web' % srv.endpoint,
                            '--ttl', '2500ms', '--renew', '500ms', '--kill-grace', '0s',
                            '--check-config', '--', 'true'])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('whole seconds', r.stderr)
        r = self.run_elect(['--name', 'x', '--backend', 'etcd://%s/web' % srv.endpoint,
                            '--ttl', '1s', '--renew', '200ms', '--kill-grace', '0s',
                            '--check-config', '--', 'true'])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('2s', r.stderr)
        r = self.run_elect(['--name', 'x', '--backend', 'etcd://a/b,,c/web', '--ttl', '3s',
                            '--check-config', '--', 'true'])
        self.assertNotEqual(r.returncode, 0)
        # Empty path: the election name is the prefix (as `etcdctl elect NAME`).
        a = self.agent(mode='sidecar', id='p0', name='byname', backend='etcd://%s' % srv.endpoint,
                       **timing())
        a.wait_state('leader', 10)
        self.assertEqual(list(self.keys(srv.endpoint, 'byname').values()), ['p0'])


class EtcdInterop(EtcdTestCase):

    def test_with_etcdctl_elect_both_ways(self):
        srv = self.etcd()
        url = 'etcd://%s/web' % srv.endpoint
        env = dict(os.environ, ETCDCTL_API='3')
        ctl = lambda name, *a: self.spawn([ETCDCTL, '--endpoints=' + srv.endpoint, 'elect'] + list(a),
                                          name, env=env)
        observer = ctl('observe', '-l', 'web')

        def observed():
            lines = [ln for ln in observer.log().splitlines() if ln and not ln.startswith('web/')]
            return lines[-1] if lines else None

        def views(expect, agents):
            """Exactly one leader, and everyone (agents, etcdctl) agrees on it."""
            st = [a.status() for a in agents if a.alive()]
            if any(s['leader'] != expect for s in st) or observed() != expect:
                return False
            return sum(s['is_leader'] for s in st) == (1 if expect.startswith('a') else 0)

        e1 = ctl('etcdctl1', 'web', 'ctl1')
        wait_for(lambda: 'ctl1' in e1.log(), 10, msg='etcdctl elected')
        log = self.path('iv.log')
        a0 = self.agents(url, log, ['a0'])[0]
        wait_for(lambda: a0.status()['state'] == 'candidate', 10)
        a1 = self.agents(url, log, ['a1'])[0]
        agents = [a0, a1]
        wait_for(lambda: views('ctl1', agents), 10, msg='all see etcdctl lead')
        self.assertEqual(self.holders(log), [])

        # etcdctl -> elect: SIGINT makes etcdctl resign; the oldest waiter leads.
        e1.kill(signal.SIGINT)
        e1.wait_exit(10)
        wait_for(lambda: views('a0', agents), 10, msg='all see a0 lead')
        e2 = ctl('etcdctl2', 'web', 'ctl2')
        time.sleep(0.5)
        self.assertNotIn('ctl2', e2.log(), 'etcdctl elected while a0 leads')
        self.assertEqual(len(self.holders(log)), 1)

        # elect -> elect -> etcdctl, in key order.
        a0.stop()
        wait_for(lambda: views('a1', agents), 10, msg='all see a1 lead')
        self.assertNotIn('ctl2', e2.log())
        a1.stop()
        wait_for(lambda: 'ctl2' in e2.log(), 10, msg='etcdctl elected after the agents left')
        wait_for(lambda: observed() == 'ctl2', 10)
        self.check_intervals(log)


    def test_leader_id_with_control_characters_cannot_forge_log_lines(self):
        """A leader id is backend data: a newline and an escape sequence in
        it are escaped in text logs and stay inside their string in JSON."""
        srv = self.etcd()
        url = 'etcd://%s/web' % srv.endpoint
        forged = ('evil\n2026-01-01T00:00:00.000Z elect[1] info name=web state=leader '
                  'forged \x1b[2J\x9b\u2028end')
        r = etcdctl(srv.endpoint, 'put', 'web/1', input=forged)
        self.assertEqual(r.returncode, 0, r.stderr)
        text = self.agent(mode='sidecar', id='t0', name='web', backend=url, **timing())
        js = self.agent(mode='sidecar', id='j0', name='web', backend=url, log_format='json',
                        **timing())
        for a in (text, js):
            wait_for(lambda: (a.try_status() or {}).get('leader') == forged, 10,
                     msg='the forged id is seen as the leader')
            wait_for(lambda: 'leader is now' in a.log(), 10)
            a.stop()
        with open(text.log_path, 'rb') as f:
            raw = f.read()
        self.assertIn(b'leader is now evil\\n2026-01-01T00:00:00.000Z elect[1] info name=web '
                      b'state=leader forged \\x1b[2J\\u009b\\u2028end', raw)
        for line in raw.split(b'\n'):
            self.assertFalse(line.startswith(b'2026-01-01'), line)
            self.assertNotRegex(line.decode('utf-8'), '[\x00-\x1f\x7f-\x9f\u2028]')
        seen = []
        for line in js.log().splitlines():
            doc = json.loads(line)
            if doc['msg'].startswith('leader is now '):
                seen.append(doc['msg'][len('leader is now '):])
        self.assertIn(forged, seen)


class EtcdFaults(EtcdTestCase):

    def test_lease_loss_while_leading_steps_down_before_expiry(self):
        srv = self.etcd()
        t = timing()
        t.update(ttl='%ds' % (2 * int(t['ttl'][:-1])))      # room for a demoted hook
        p = self.proxy(srv.endpoint)
        log = self.path('iv.log')
        demoted = self.path('demoted.ts')
        hook = self.script('demoted.sh', 'python3 -c "import time; print(time.monotonic_ns())" >> %s\n'
                           % demoted)
        extra = ('--on-demoted', hook, '--hook-timeout', '500ms')
        a = self.agent(id='cut', name='web', backend='etcd://127.0.0.1:%d/web' % p.port,
                       cmd=self.leader_cmd(log), args=extra, **t)
        first = self.one_holder(log)
        self.assertEqual(first.id, 'cut')
        b = self.agents('etcd://%s/web' % srv.endpoint, log, ['other'], t)[0]
        wait_for(lambda: b.status()['leader'] == 'cut', 10)

        t_cut = now_ns()
        p.blackhole()
        nxt = self.wait_new_term(log, after_ns=t_cut, exclude_id='cut', timeout=20)
        with open(demoted) as f:
            t_demoted = int(f.read().split()[0])
        cut_iv = [i for i in self.intervals(log) if i.id == 'cut'][0]
        # The last renewal that got through was sent before the cut: the
        # lease cannot expire before t_cut + TTL - (a renew interval) at worst.
        self.assertIsNotNone(cut_iv.end, 'leader command of the cut-off agent still runs')
        self.assertLess(cut_iv.end, t_cut + ttl_ns(t), 'command stopped after the lease could expire')
        self.assertLess(t_demoted, t_cut + ttl_ns(t), 'demoted ran after the lease could expire')
        self.assertLess(cut_iv.end, nxt.start)
        self.assertLess(t_demoted, nxt.start, 'the other agent led before demoted ran')
        self.assertEqual(nxt.id, 'other')
        self.assertTrue(a.alive())
        # Healed: the cut-off agent comes back as a follower of the new leader.
        p.pass_()
        wait_for(lambda: a.status()['leader'] == 'other' and a.status()['state'] == 'candidate', 20)
        self.check_intervals(log)

    def test_etcd_restart_while_leading(self):
        srv = self.etcd()
        t = dict(ttl='6s', renew='1s', kill_grace='300ms')
        log = self.path('iv.log')
        agents = self.agents('etcd://%s/web' % srv.endpoint, log, ['r0', 'r1'], t)
        self.one_holder(log)
        srv.stop()
        time.sleep(0.5)
        srv.start()
        # Either the leader kept its lease through the restart or there was a
        # clean new term; never two holders at once, and the agents live on.
        wait_for(lambda: len(self.leaders(agents)) == 1, 20)
        self.one_holder(log, 20)
        self.assertTrue(all(a.alive() for a in agents))
        # etcd gone for longer than the TTL: the leader steps down, both wait,
        # and the election resumes when etcd is back.
        srv.stop()
        wait_for(lambda: self.holders(log) == [], ttl_ns(t) / 1e9 + 3)
        self.assertTrue(all(a.alive() for a in agents))
        srv.start()
        self.one_holder(log, 25)
        self.check_intervals(log)

    def test_cluster_member_the_agent_talks_to_is_killed(self):
        c = self.cluster(3)
        eps = c.endpoints
        log = self.path('iv.log')
        t = dict(ttl='4s', renew='500ms', kill_grace='300ms')
        a = self.agent(id='m0first', name='web', backend='etcd://%s/web' % ','.join(eps),
                       cmd=self.leader_cmd(log), **t)
        first = self.one_holder(log)
        b = self.agent(id='m1first', name='web', backend='etcd://%s/web' % ','.join(eps[1:] + eps[:1]),
                       cmd=self.leader_cmd(log), **t)
        wait_for(lambda: b.status()['leader'] == first.id, 10)
        c.members[0].kill()
        # The leader's renewals move to another member; it keeps leading (or,
        # at worst, hands over cleanly). The election keeps working.
        time.sleep(3)
        wait_for(lambda: len(self.leaders([a, b])) == 1, 10)
        self.one_holder(log, 10)
        self.assertTrue(a.alive() and b.alive())
        leader = self.leaders([a, b])[0]
        t0 = now_ns()
        leader.stop()
        self.wait_new_term(log, after_ns=t0, exclude_id=leader.id, timeout=10)
        self.check_intervals(log)

    def test_malformed_answers_do_not_crash_the_agent(self):
        srv = self.etcd()
        p = self.proxy(srv.endpoint)
        log = self.path('iv.log')
        a = self.agent(id='mal', name='web', backend='etcd://127.0.0.1:%d/web' % p.port,
                       cmd=self.leader_cmd(log), **timing())
        self.one_holder(log)
        corruptions = [
            lambda b: b.replace(b'"', b"'"),                       # not JSON
            lambda b: b.replace(b'"result"', b'"resulT"').replace(b'"kvs"', b'"kvX"')
                       .replace(b'"header"', b'"headeR"').replace(b'"TTL"', b'"TTl"'),
            lambda b: re.sub(rb'"revision":"\d', b'"revision":"x', b),  # int64 that is not
            lambda b: b.replace(b'{', b'[', 1),                    # wrong shape
        ]
        for fn in corruptions:
            p.set_response_hook(fn)
            time.sleep(1.5)
            self.assertTrue(a.alive(), 'agent died on a malformed answer:\n' + a.log()[-3000:])
        p.set_response_hook(None)
        a.wait_state('leader', 20)
        self.one_holder(log, 10)
        self.check_intervals(log)


if __name__ == '__main__':
    unittest.main()
