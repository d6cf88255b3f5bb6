"""Leadership that follows health checks (issue 14, first part), on the
file backend and on real etcd, ZooKeeper, Consul and Kubernetes servers
started by the tests (tests/server_mixins.py).

Each agent's --health-cmd passes while a file the test controls exists
(DIR/ok.ID). The leader turning unhealthy hands over to a healthy candidate
(never an unhealthy one); with every candidate unhealthy nobody leads and
`elect status` says why; the first to recover leads. A hanging check is
killed at its timeout with everything it started. Leader commands write
interval logs that the checker reads: no overlap, tokens increasing.
Bounds are generous; timing figures belong to `make bench`.
"""

import http.server
import json
import os
import re
import socketserver
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from harness import ElectTestCase, elect_bin, pid_alive, scale, valgrind_ok, wait_for  # noqa: E402
from etcd_server import have_etcd  # noqa: E402
from server_mixins import (ConsulServerMixin, EtcdServerMixin, K8sServerMixin,  # noqa: E402
                           ZkServerMixin)

IDS = ['h0', 'h1', 'h2']
HEALTH = ['--health-interval', '200ms', '--health-timeout', '1s', '--health-fails', '2',
          '--health-passes', '2']


class HealthHelpers:
    """Agents whose health a file decides; a subclass gives backend_url(),
    timing_args() and agent_timing()."""

    def ok_file(self, id):
        return self.path('ok.' + id)

    def set_healthy(self, id, healthy):
        if healthy:
            open(self.ok_file(id), 'w').close()
        else:
            try:
                os.unlink(self.ok_file(id))
            except FileNotFoundError:
                pass

    def health_agent(self, id, log, extra=()):
        args = list(self.timing_args()) + HEALTH + [
            '--health-cmd', 'test -f %s && echo ok-%s' % (self.ok_file(id), id)] + list(extra)
        return self.agent(id=id, name='web', backend=self.backend_url(), cmd=self.leader_cmd(log),
                          args=args, **self.agent_timing())

    def one_holder(self, log, timeout=10):
        return wait_for(lambda: len(self.holders(log)) == 1 and self.holders(log)[0], timeout,
                        msg='exactly one running leader command')

    def by_id(self, agents, id):
        return [a for a in agents if a.id == id][0]


class HealthCases(HealthHelpers):
    """The scenarios, run on every backend."""

    def test_leadership_follows_health(self):
        log = self.path('iv.log')
        for i in IDS:
            self.set_healthy(i, True)
        agents = [self.health_agent(i, log) for i in IDS]
        first = self.one_holder(log, 15)
        leader = self.by_id(agents, first.id)
        wait_for(lambda: leader.status()['health']['status'] == 'healthy', 5)

        # The leader turns unhealthy: it steps down (reason "unhealthy") and
        # a healthy candidate leads next.
        t0 = time.monotonic_ns()
        self.set_healthy(first.id, False)
        nxt = self.wait_new_term(log, after_ns=t0, exclude_id=first.id, timeout=15)
        self.assertNotEqual(nxt.id, first.id)
        self.assertTrue(os.path.exists(self.ok_file(nxt.id)))
        wait_for(lambda: leader.status()['state'] == 'follower', 5)
        st = leader.status()
        self.assertEqual(st['health']['status'], 'unhealthy')
        self.assertIn('failed in a row', st['health']['reason'])
        self.assertRegex(leader.log(), r'to=stepping-down reason=unhealthy')
        self.assertEqual(len(re.findall(r'health: unhealthy', leader.log())), 1,
                         'one log line per change, not per check')
        # It stays out: no second term of the old leader while unhealthy.
        time.sleep(1.0 * scale())
        self.assertEqual([i.id for i in self.intervals(log) if i.start > t0], [nxt.id])

        # Everyone unhealthy: nobody leads, and status says why. (Until a
        # candidate's own checks have failed --health-fails times it may
        # still be elected; from then on none may.)
        for i in IDS:
            self.set_healthy(i, False)
        wait_for(lambda: all(a.status()['health']['status'] == 'unhealthy' for a in agents), 10)
        t1 = time.monotonic_ns()
        wait_for(lambda: not self.holders(log), 15, msg='no leader command running')
        wait_for(lambda: all(a.status()['state'] == 'follower' for a in agents), 10)
        time.sleep(1.0 * scale())
        self.assertEqual(self.holders(log), [])
        self.assertEqual([i.id for i in self.intervals(log) if i.start > t1], [],
                         'an unhealthy candidate was elected')
        for a in agents:
            r = self.run_elect(['status', '--socket', a.socket])
            self.assertEqual(r.returncode, 0, r.stderr)
            st = json.loads(r.stdout)
            self.assertEqual(st['reason'], 'unhealthy')
            self.assertEqual(st['health']['status'], 'unhealthy')
            self.assertIn('exit status 1', st['health']['output'])
            self.assertIsNone(st['leader'])

        # The first to recover leads.
        back = IDS[2] if first.id != IDS[2] else IDS[1]
        t2 = time.monotonic_ns()
        self.set_healthy(back, True)
        rec = self.wait_new_term(log, after_ns=t2, timeout=15)
        self.assertEqual(rec.id, back)
        b = self.by_id(agents, back)
        wait_for(lambda: b.status()['is_leader'], 5)
        st = b.status()
        self.assertEqual(st['health']['status'], 'healthy')
        self.assertEqual(st['health']['output'], 'exit status 0: ok-%s' % back)
        _, _, metrics = b.request('GET', '/metrics')
        self.assertIn(b'elect_healthy{name="web"} 1', metrics)
        self.assertRegex(metrics.decode(), r'elect_health_checks_total\{name="web"\} [1-9]')
        self.assertIn(b'elect_health_check_duration_seconds_count', metrics)
        # The others (still unhealthy) never started a term after t1.
        self.assertEqual([i.id for i in self.intervals(log) if i.start > t1], [back])
        for a in agents:
            a.stop()
        self.check_intervals(log)


class LeaderScopeCases(HealthHelpers):
    """--health-scope leader: the check looks at the leader command itself
    (here: the file its wrapper writes while it runs, and no sick.ID), so it
    can only pass on the leader. Candidates campaign without a pass; a
    leader whose command turns sick steps down and holds off
    (grace + fails x interval) while another leads."""

    def scoped_agent(self, id, log):
        alive = self.path('alive.' + id)
        cmd = ['sh', '-c', 'touch %s; trap "rm -f %s" EXIT; "$@"' % (alive, alive), 'sh'] + \
            self.leader_cmd(log)
        check = 'test -f %s && ! test -f %s' % (alive, self.path('sick.' + id))
        args = list(self.timing_args()) + HEALTH + [
            '--health-scope', 'leader', '--health-grace', '300ms', '--health-cmd', check]
        return self.agent(id=id, name='web', backend=self.backend_url(), cmd=cmd, args=args,
                          **self.agent_timing())

    def test_leader_scope_checks_the_leader_command(self):
        log = self.path('iv.log')
        agents = [self.scoped_agent(i, log) for i in IDS]
        first = self.one_holder(log, 15)      # nobody had to pass a check first
        leader = self.by_id(agents, first.id)
        wait_for(lambda: leader.status()['health']['checks'] >= 3, 10, msg='checks on the leader')
        self.assertEqual(leader.status()['health']['status'], 'healthy')
        for a in agents:
            if a is not leader:
                self.assertEqual(a.status()['health']['checks'], 0, 'a follower ran checks')
        # The leader's command turns sick: a clean handover to another.
        t0 = time.monotonic_ns()
        open(self.path('sick.' + first.id), 'w').close()
        nxt = self.wait_new_term(log, after_ns=t0, exclude_id=first.id, timeout=15)
        self.assertNotEqual(nxt.id, first.id)
        self.assertRegex(leader.log(), r'to=stepping-down reason=unhealthy')
        # It holds off, then is a candidate again (healthy assumed).
        wait_for(lambda: leader.status()['health']['status'] == 'healthy', 15,
                 msg='the old leader back as a candidate after its hold-off')
        self.assertEqual(leader.status()['state'], 'candidate')
        self.check_intervals(log, t_end=time.monotonic_ns())


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        mode = self.server.modes.get(self.path.strip('/'), 'down')
        if mode == 'hang':
            time.sleep(3)
        code = 200 if mode == 'up' else 503
        body = ('%s %s' % (self.path, mode)).encode()
        try:
            self.send_response(code)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass        # the check gave up (timeout)

    def log_message(self, *args):
        pass


class _TcpServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        conn, _ = super().get_request()
        return conn, ('local', 0)      # BaseHTTPRequestHandler wants a host pair


class HealthUrl(ElectTestCase):
    """--health-url over TCP and over a Unix socket: 2xx passes, anything
    else fails, a hanging answer is cut at the timeout."""

    def serve(self, server):
        server.modes = self.modes
        t = threading.Thread(target=server.serve_forever, daemon=True)
        t.start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)

    @valgrind_ok
    def test_url_checks_decide_leadership(self):
        log = self.path('iv.log')
        self.modes = {'u0': 'up', 'u1': 'up'}
        tcp = _TcpServer(('127.0.0.1', 0), _Handler)
        sock = self.path('app.sock')
        unix = _UnixServer(sock, _Handler)
        self.serve(tcp)
        self.serve(unix)
        urls = {'u0': 'http://127.0.0.1:%d/u0' % tcp.server_address[1],
                'u1': 'unix:%s:/u1' % sock}
        agents = {}
        for i in ('u0', 'u1'):
            agents[i] = self.agent(id=i, name='web', cmd=self.leader_cmd(log), kill_grace='300ms',
                                   args=['--health-url', urls[i], '--health-interval', '200ms',
                                         '--health-timeout', '500ms', '--health-fails', '2',
                                         '--health-passes', '1'])
        first = wait_for(lambda: len(self.holders(log)) == 1 and self.holders(log)[0], 10)
        other = 'u1' if first.id == 'u0' else 'u0'
        wait_for(lambda: agents[other].status()['health']['status'] == 'healthy', 5)
        t0 = time.monotonic_ns()
        self.modes[first.id] = 'down'
        nxt = self.wait_new_term(log, after_ns=t0, exclude_id=first.id, timeout=10)
        self.assertEqual(nxt.id, other)
        st = agents[first.id].status()['health']
        self.assertEqual(st['status'], 'unhealthy')
        self.assertEqual(st['output'], 'HTTP 503: /%s down' % first.id)
        # The new leader's endpoint hangs: cut at the timeout, unhealthy;
        # the first is still down, so nobody leads.
        self.modes[other] = 'hang'
        wait_for(lambda: agents[other].status()['health']['status'] == 'unhealthy', 10)
        st = agents[other].status()['health']
        self.assertIn('timed out after 500ms', st['output'])
        self.assertGreaterEqual(st['timeouts'], 1)
        wait_for(lambda: not self.holders(log), 10)
        t1 = time.monotonic_ns()
        time.sleep(0.8 * scale())
        self.assertEqual([i.id for i in self.intervals(log) if i.start > t1], [])
        # The first recovers and leads again.
        self.modes[first.id] = 'up'
        back = self.wait_new_term(log, after_ns=t1, timeout=10)
        self.assertEqual(back.id, first.id)
        for a in agents.values():
            a.stop()
        self.check_intervals(log)


class HangingCheck(ElectTestCase):
    """A check that hangs is killed at its timeout, with what it started."""

    @valgrind_ok
    def test_hanging_check_is_killed_and_fails(self):
        log = self.path('iv.log')
        pids = self.path('hang.pids')
        hang = self.path('hang')
        check = self.script('check.sh', (
            'if [ -f %s ]; then\n'
            '  sleep 1000 & echo $! >> %s\n'
            '  echo $$ >> %s\n'
            '  wait\n'
            'fi\n'
            'exit 0\n') % (hang, pids, pids))
        a = self.agent(id='g0', name='web', cmd=self.leader_cmd(log),
                       args=['--health-cmd', check, '--health-interval', '200ms',
                             '--health-timeout', '500ms', '--health-fails', '2',
                             '--health-passes', '1'])
        self.one_holder_of(log)
        open(hang, 'w').close()
        t0 = time.monotonic()
        # While checks hang the loop still answers at once.
        for _ in range(5):
            s0 = time.monotonic()
            a.status(timeout=1)
            self.assertLess(time.monotonic() - s0, 0.5 * scale())
            time.sleep(0.1)
        wait_for(lambda: a.status()['state'] == 'follower', 10)
        self.assertGreater(time.monotonic() - t0, 0.9, 'two timeouts of 500ms make it unhealthy')
        st = a.status()
        self.assertEqual(st['health']['status'], 'unhealthy')
        self.assertGreaterEqual(st['health']['timeouts'], 2)
        self.assertIn('timed out after 500ms', st['health']['output'])
        self.assertEqual(self.holders(log), [])
        # Nothing the killed checks started is left (the group was killed);
        # at most the round running now is alive.
        os.unlink(hang)
        wait_for(lambda: a.status()['health']['status'] == 'healthy', 10)
        with open(pids) as f:
            started = [int(x) for x in f.read().split()]
        self.assertGreaterEqual(len(started), 4)
        wait_for(lambda: not any(pid_alive(p) for p in started), 3,
                 msg='every process of the killed checks is gone')
        self.one_holder_of(log)
        a.stop()
        self.check_intervals(log)

    def one_holder_of(self, log):
        return wait_for(lambda: len(self.holders(log)) == 1 and self.holders(log)[0], 10,
                        msg='exactly one running leader command')

    def test_bad_health_options(self):
        cases = [
            (['--health-url', 'ftp://x/'], 'http://'),
            (['--health-url', 'unix:relative.sock:/x'], 'absolute'),
            (['--health-fails', '0', '--health-cmd', 'true'], '1 to 1000000'),
            (['--health-interval', '1s'], 'need a check'),
            (['--health-passes', 'x', '--health-cmd', 'true'], 'whole number'),
        ]
        for args, msg in cases:
            r = self.run_elect(['--check-config'] + args + ['--', 'true'])
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(msg, r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        # The environment and the config file feed the same options.
        cfg = self.path('c.json')
        with open(cfg, 'w') as f:
            json.dump({'health_cmd': 'true', 'health_fails': 3, 'health_interval': '1s'}, f)
        r = self.run_elect(['--check-config', '--config', cfg, '--', 'true'],
                           env={'ELECT_HEALTH_PASSES': '0'})
        self.assertEqual(r.returncode, 2)
        self.assertIn('ELECT_HEALTH_PASSES', r.stderr)
        r = self.run_elect(['--check-config', '--config', cfg, '--', 'true'],
                           env={'ELECT_HEALTH_URL': 'unix:/run/x.sock:/healthz'})
        self.assertEqual(r.returncode, 0, r.stderr)


class HealthFile(HealthCases, LeaderScopeCases, ElectTestCase):

    def backend_url(self):
        return self.file_backend('web')

    def timing_args(self):
        return []

    def agent_timing(self):
        return dict(ttl='10s', kill_grace='300ms')

    @valgrind_ok
    def test_leadership_follows_health(self):
        super().test_leadership_follows_health()

    def test_demoted_hook_gets_reason_unhealthy_and_grace(self):
        log = self.path('iv.log')
        out = self.path('hooks.out')
        hook = self.hook_script('hook.sh', out)
        self.set_healthy('g1', True)
        a = self.health_agent('g1', log, ['--on-demoted', hook, '--health-grace', '1500ms'])
        self.one_holder(log)
        # Within the grace of a new leader failures do not count.
        t0 = time.monotonic()
        self.set_healthy('g1', False)
        time.sleep(0.9)
        if time.monotonic() - t0 < 1.2:
            self.assertTrue(a.status()['is_leader'], 'a failure counted during the grace')
        wait_for(lambda: a.status()['state'] == 'follower', 10)
        wait_for(lambda: os.path.exists(out), 5)
        with open(out) as f:
            lines = [ln.split('|') for ln in f.read().splitlines()]
        self.assertEqual([(x[3], x[9]) for x in lines], [('demoted', 'unhealthy')])
        a.stop()
        self.check_intervals(log)


class Watch(HealthHelpers, ElectTestCase):
    """`elect watch`: one JSON line per leader change, in order, from the
    long-poll of one agent (here one that stays healthy)."""

    def backend_url(self):
        return self.file_backend('web')

    def timing_args(self):
        return []

    def agent_timing(self):
        return dict(ttl='10s', kill_grace='300ms')

    @valgrind_ok
    def test_watch_prints_each_leader_change_once_in_order(self):
        log = self.path('iv.log')
        for i in IDS[:2]:
            self.set_healthy(i, True)
        a0 = self.health_agent(IDS[0], log)
        self.one_holder(log)
        a1 = self.health_agent(IDS[1], log)
        wait_for(lambda: a1.status()['leader'] == IDS[0], 10)
        out = self.path('watch.out')
        argv = self._wrap_tool([elect_bin(), 'watch',
                                '--socket', a1.socket])
        with open(out, 'w') as f:
            w = subprocess.Popen(argv, stdout=f, stderr=subprocess.PIPE,
                                 env=self.elect_env(), start_new_session=True)
        self.add_cleanup_pid(w.pid)
        self.addCleanup(lambda: w.poll() is None and w.kill())
        wait_for(lambda: os.path.getsize(out) > 0, 5)
        # h0 unhealthy -> h1 leads; h0 healthy again, h1 resigns (and
        # backs off) -> h0 leads.
        self.set_healthy(IDS[0], False)
        wait_for(lambda: a1.status()['is_leader'], 10)
        self.set_healthy(IDS[0], True)
        wait_for(lambda: a0.status()['state'] == 'candidate', 10)
        self.assertEqual(self.run_elect(['resign', '--socket', a1.socket]).returncode, 0)
        wait_for(lambda: a0.status()['is_leader'], 10)
        wait_for(lambda: a1.status()['leader'] == IDS[0], 10)
        time.sleep(0.3)
        # The agent goes away: watch ends with 2 and says why.
        a1.stop()
        self.assertEqual(w.wait(10 * scale()), 2)
        self.assertIn('cannot reach the agent', w.stderr.read().decode())
        with open(out) as f:
            lines = [json.loads(ln) for ln in f.read().splitlines()]
        leaders = [ln['leader'] for ln in lines]
        # Each change once, in order; "none" may show between two leaders.
        self.assertEqual([x for x in leaders if x is not None], [IDS[0], IDS[1], IDS[0]], lines)
        for x, y in zip(leaders, leaders[1:]):
            self.assertNotEqual(x, y, 'a line without a change: %r' % lines)
        idx = [ln['index'] for ln in lines]
        self.assertEqual(idx, sorted(idx))
        self.assertEqual(set(lines[0]), {'leader', 'token', 'state', 'reason', 'since', 'index'})
        # --timeout ends it with 0, after the current leader's line.
        r = self.run_elect(['watch', '--socket', a0.socket, '--timeout', '300ms'])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([json.loads(x)['leader'] for x in r.stdout.splitlines()], [IDS[0]])
        a0.stop()
        self.check_intervals(log)


@unittest.skipUnless(have_etcd(), 'etcd-server and etcd-client are not installed')
class HealthEtcd(EtcdServerMixin, HealthCases, LeaderScopeCases, ElectTestCase):

    def timing_args(self):
        return []

    def agent_timing(self):
        if scale() >= 2:
            return dict(ttl='4s', renew='1s', kill_grace='300ms')
        return dict(ttl='2s', renew='500ms', kill_grace='300ms')


class HealthZk(ZkServerMixin, HealthCases, LeaderScopeCases, ElectTestCase):

    def timing_args(self):
        return ['--renew', '300ms', '--hook-timeout', '500ms']

    def agent_timing(self):
        return dict(ttl='2s', kill_grace='300ms')


class HealthConsul(ConsulServerMixin, HealthCases, LeaderScopeCases, ElectTestCase):
    """Consul refuses session TTLs under 10 s; a step-down releases the
    key, so handovers still take no TTL."""

    def timing_args(self):
        return []

    def agent_timing(self):
        if scale() >= 5:
            return dict(ttl='15s', renew='3s', kill_grace='1s')
        return dict(ttl='10s', renew='2s', kill_grace='500ms')


class HealthK8s(K8sServerMixin, HealthCases, LeaderScopeCases, ElectTestCase):

    def timing_args(self):
        return ['--kubeconfig', self.kubeconfig_path]

    def agent_timing(self):
        if scale() >= 2:
            return dict(ttl='6s', renew='1s', kill_grace='300ms')
        return dict(ttl='3s', renew='1s', kill_grace='300ms')


if __name__ == '__main__':
    unittest.main()
