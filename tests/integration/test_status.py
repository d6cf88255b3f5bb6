"""Process-level tests of what the agent reports (issue 10, items 4, 5, 7):
readiness follows the elected hook and the command, status snapshots are
consistent (state and leader of one moment), backend reachability is logged
and shown, and --campaign-timeout gives up in wrapper mode.

Unreachable backends are closed loopback ports (nothing listens): no server
is needed. Bounds are generous; timing figures belong to `make bench`.
"""

import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from harness import ElectTestCase, scale, valgrind_ok, wait_for  # noqa: E402


def leads(st):
    return st['state'] in ('leader', 'suspended')


class Readiness(ElectTestCase):

    def sample(self, agent, seconds, each):
        """Calls each(readyz code, status) every few ms for seconds."""
        end = time.monotonic() + seconds * scale()
        n = 0
        while time.monotonic() < end:
            code = agent.request('GET', '/readyz')[0]
            st = agent.try_status()
            if st is not None:
                each(code, st)
                n += 1
            time.sleep(0.005)
        return n

    @valgrind_ok
    def test_readyz_waits_for_a_slow_elected_hook(self):
        out, done = self.path('hooks.out'), self.path('hook.done')
        hook = self.hook_script('elected.sh', out, 'sleep 1.5; touch %s' % done)
        a = self.agent(id='a', mode='sidecar',
                       args=['--on-elected', hook, '--hook-timeout', '4s'], ttl='15s')
        wait_for(lambda: os.path.exists(out), 10, msg='elected hook started')
        seen = {'leader_not_ready': 0}

        def each(code, st):
            if os.path.exists(done):
                return
            # The hook still runs: elected, but not ready.
            self.assertEqual(code, 503, 'readyz 200 while the elected hook runs: %r' % st)
            self.assertFalse(st['is_leader'], st)
            self.assertFalse(st['ready'], st)
            if st['state'] == 'leader':
                seen['leader_not_ready'] += 1
        # While the hook sleeps: state leader, not ready.
        self.sample(a, 1.0, each)
        self.assertGreater(seen['leader_not_ready'], 0, 'never saw the elected state')
        st = wait_for(lambda: (lambda s: s if s and s['ready'] else None)(a.try_status()), 10,
                      msg='ready after the hook')
        self.assertTrue(st['is_leader'])
        self.assertEqual(a.request('GET', '/readyz')[0], 200)
        _, _, body = a.request('GET', '/metrics')
        self.assertIn(b'\nelect_is_leader{name="e"} 1\n', body)
        r = self.run_elect(['wait-leader', '--socket', a.socket, '--timeout', '5s'])
        self.assertEqual(r.returncode, 0, r.stderr)

    @valgrind_ok
    def test_failing_elected_hook_never_ready(self):
        out = self.path('hooks.out')
        # Fails after a while, so that the old code's 200 window is wide.
        hook = self.hook_script('elected.sh', out, 'sleep 0.3; exit 1')
        a = self.agent(id='a', mode='sidecar', renew='500ms',
                       args=['--on-elected', hook, '--hook-timeout', '2s'])
        wait_for(lambda: os.path.exists(out), 10, msg='elected hook started')
        states = set()

        def each(code, st):
            states.add(st['state'])
            self.assertEqual(code, 503, 'readyz 200 with a failing elected hook: %r' % st)
            self.assertFalse(st['ready'], st)
            self.assertFalse(st['is_leader'], st)
        # A few renew intervals: the agent resigns and retries meanwhile.
        self.sample(a, 3.0, each)
        with open(out) as f:
            runs = len(f.readlines())
        self.assertGreaterEqual(runs, 2, 'the agent did not retry')
        self.assertIn('leader', states)
        _, _, body = a.request('GET', '/metrics')
        self.assertIn(b'\nelect_is_leader{name="e"} 0\n', body)
        r = self.run_elect(['wait-leader', '--socket', a.socket, '--timeout', '1s'])
        self.assertEqual(r.returncode, 1, r.stderr)


class Consistency(ElectTestCase):

    def follow(self, agent, snaps, stop):
        """Long-polls agent's status from index to index into snaps."""
        idx = agent.status()['index']
        while not stop.is_set():
            try:
                code, _, body = agent.request('GET', '/v1/status?wait=2s&index=%d' % idx,
                                              timeout=10)
            except OSError:
                return
            if code != 200:
                return
            st = json.loads(body)
            snaps.append(st)
            idx = st['index']

    def check_snapshot(self, st):
        if leads(st):
            self.assertEqual(st['leader'], st['id'], 'leading but another leader: %r' % st)
        else:
            self.assertNotEqual(st['leader'], st['id'], 'not leading but own id: %r' % st)
        if st['ready']:
            self.assertTrue(leads(st), st)

    def alternate(self, agents, rounds, check_direct):
        """Resigns the leader rounds times; the other takes over each time."""
        for _ in range(rounds):
            leader = wait_for(lambda: ([x for x in agents if x.is_leader()] or [None])[0],
                              10, msg='a leader')
            other = [x for x in agents if x is not leader][0]
            r = self.run_elect(['resign', '--socket', leader.socket])
            self.assertEqual(r.returncode, 0, r.stderr)
            # Right after resigning and until the other leads: never
            # "follower, leader = me" (the old code showed that for up to one
            # renew interval).
            end = time.monotonic() + 1.5 * scale()
            while check_direct and time.monotonic() < end:
                st = leader.try_status()
                if st:
                    self.check_snapshot(st)
                if other.is_leader():
                    break
                time.sleep(0.005)
            wait_for(other.is_leader, 10, msg='%s leads after the resign' % other.id)

    @valgrind_ok
    def test_resigned_node_never_reports_itself_as_leader(self):
        port = self.port()
        a = self.agent(id='a', mode='sidecar', renew='1s', args=['--http', '127.0.0.1:%d' % port])
        a.wait_state('leader', 10)
        agents = [a, self.agent(id='b', mode='sidecar', renew='1s')]
        self.alternate(agents, 1, check_direct=True)
        # a follows b now; GET / (TCP) names b, never a.
        import http.client
        hc = http.client.HTTPConnection('127.0.0.1', port, timeout=5 * scale())
        hc.request('GET', '/')
        self.assertNotEqual(json.loads(hc.getresponse().read())['name'], 'a')
        hc.close()
        self.alternate(agents, 3, check_direct=True)

    @valgrind_ok
    def test_long_poll_snapshots_are_consistent(self):
        agents = [self.agent(id=i, mode='sidecar', renew='1s') for i in ('a', 'b')]
        wait_for(lambda: sum(x.is_leader() for x in agents) == 1, 10, msg='one leader')
        # Both answering before the long-polls start: under valgrind the
        # second may not have made its socket yet when the first leads.
        wait_for(lambda: all(x.try_status() for x in agents), 10, msg='both agents answering')
        snaps = {x.id: [] for x in agents}
        stop = threading.Event()
        threads = [threading.Thread(target=self.follow, args=(x, snaps[x.id], stop))
                   for x in agents]
        for t in threads:
            t.start()
        try:
            self.alternate(agents, 4, check_direct=False)
        finally:
            stop.set()
            for t in threads:
                t.join(15 * scale())
        for x in agents:
            self.assertGreater(len(snaps[x.id]), 3, 'the long-poll saw too few changes')
            for st in snaps[x.id]:
                self.check_snapshot(st)
            # Non-decreasing (a long-poll that timed out repeats its index).
            indices = [st['index'] for st in snaps[x.id]]
            self.assertEqual(indices, sorted(indices), 'index went back')


class Reachability(ElectTestCase):

    def closed_port(self):
        return self.port()      # free: nothing listens on it

    def check_unreachable(self, backend, pattern, ttl='3s'):
        port = self.port()
        a = self.agent(id='a', mode='sidecar', backend=backend, ttl=ttl, renew='1s',
                       verbose=False, args=['--http', '127.0.0.1:%d' % port])
        line = wait_for(lambda: re.search(r'backend unreachable: .*', a.log()), 5,
                        msg='a reachability line in the log').group(0)
        self.assertRegex(line, pattern)
        st = wait_for(lambda: (lambda s: s if s and s['backend_ok'] is False else None)
                      (a.try_status()), 5, msg='backend_ok false')
        self.assertRegex(st['last_error'], pattern)
        self.assertEqual(st['state'], 'candidate')
        # One line per change, not per retry.
        time.sleep(2.5)
        self.assertEqual(a.log().count('backend unreachable'), 1, a.log())
        # Liveness stays 200 (restarting would not bring the backend back).
        self.assertEqual(a.request('GET', '/healthz')[0], 200)
        _, _, body = a.request('GET', '/metrics')
        self.assertIn(b'\nelect_backend_up{name="e"} 0\n', body)
        return a

    @valgrind_ok
    def test_zk_closed_port_is_logged_and_shown(self):
        self.check_unreachable('zk://127.0.0.1:%d/x?tick=100ms' % self.closed_port(), r'Connection refused')

    def test_etcd_closed_port_is_logged_and_shown(self):
        self.check_unreachable('etcd://127.0.0.1:%d/x' % self.closed_port(),
                               r"[Cc]ouldn't connect|[Cc]onnection refused")

    @valgrind_ok
    def test_reachable_backend_is_up(self):
        a = self.agent(id='a', mode='sidecar')
        st = wait_for(lambda: (lambda s: s if s and s['backend_ok'] else None)(a.try_status()),
                      10, msg='backend_ok true')
        self.assertIsNone(st['last_error'])
        _, _, body = a.request('GET', '/metrics')
        self.assertIn(b'\nelect_backend_up{name="e"} 1\n', body)


class CampaignTimeout(ElectTestCase):

    @valgrind_ok
    def test_unreachable_backend_exits_75_in_time(self):
        url = 'zk://127.0.0.1:%d/x?tick=100ms' % self.port()
        t0 = time.monotonic()
        r = self.run_elect(['--campaign-timeout', '2s', '--backend', url, '--ttl', '3s',
                            '--kill-grace', '500ms', '--socket', 'none', '--', 'true'],
                           timeout=30)
        took = time.monotonic() - t0
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertGreaterEqual(took, 1.9)
        self.assertLess(took, 10 * scale(), 'exited late')
        self.assertIn('campaign timeout: could not reach the backend within 2s', r.stderr)

    @valgrind_ok
    def test_other_leader_keeps_the_lead_env_and_config(self):
        holder = self.agent(id='h', mode='sidecar')
        holder.wait_state('leader', 10)
        base = ['--backend', self.file_backend('e'), '--name', 'e', '--socket', 'none']
        r = self.run_elect(['--id', 'x'] + base + ['--campaign-timeout', '1s', '--', 'true'])
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn('campaign timeout: not leading after 1s (leader: h)', r.stderr)
        # ELECT_CAMPAIGN_TIMEOUT and the config key campaign_timeout.
        r = self.run_elect(['--id', 'y'] + base + ['--', 'true'],
                           env={'ELECT_CAMPAIGN_TIMEOUT': '500ms'})
        self.assertEqual(r.returncode, 75, r.stderr)
        cfg = self.path('c.json')
        with open(cfg, 'w') as f:
            json.dump({'campaign_timeout': '500ms'}, f)
        r = self.run_elect(['--id', 'z', '--config', cfg] + base + ['--', 'true'])
        self.assertEqual(r.returncode, 75, r.stderr)
        # Once the holder goes, the command runs and its status is elect's.
        holder.stop()
        r = self.run_elect(['--id', 'x'] + base + ['--campaign-timeout', '5s', '--',
                                                   'sh', '-c', 'exit 3'])
        self.assertEqual(r.returncode, 3, r.stderr)

    def test_sidecar_refuses_it(self):
        r = self.run_elect(['run', '--campaign-timeout', '1s', '--socket', 'none',
                            '--backend', self.file_backend('e')])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn('--campaign-timeout is for wrapper mode', r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
