"""Process-level tests of elect on the file backend (issue 2).

Real elect processes, one election file in the test's temp dir, the test
leader command (tests/leadercmd.c) writing an interval log that the checker
reads. Bounds are generous; timing figures belong to `make bench`.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from harness import ElectTestCase, now_ns, scale, valgrind_ok, wait_for  # noqa: E402

STATUS_KEYS = {'name', 'id', 'state', 'leader', 'token', 'is_leader', 'ready', 'since',
               'since_unix_ms', 'deadline_left_ms', 'index', 'reason', 'backend', 'backend_ok',
               'last_error', 'health'}
STATES = {'follower', 'candidate', 'leader', 'suspended', 'stepping-down'}


class FileBackend(ElectTestCase):

    def three(self, log, **kw):
        return [self.agent(id='n%d' % i, cmd=self.leader_cmd(log), **kw) for i in range(3)]

    def one_holder(self, log, timeout=10):
        """Wait until exactly one leader command runs; return its Interval."""
        return wait_for(lambda: len(self.holders(log)) == 1 and self.holders(log)[0], timeout,
                        msg='exactly one running leader command')

    def by_id(self, agents, id):
        return [a for a in agents if a.id == id][0]

    @valgrind_ok
    def test_exactly_one_leader_among_three(self):
        log = self.path('iv.log')
        agents = self.three(log)
        holder = self.one_holder(log)
        leader = self.by_id(agents, holder.id)
        leader.wait_state('leader', 10)
        for a in agents:
            if a is not leader:
                st = wait_for(lambda a=a: (lambda s: s if s and s['leader'] == holder.id else None)
                              (a.try_status()), 10, msg='%s sees leader %s' % (a.id, holder.id))
                self.assertIn(st['state'], ('follower', 'candidate'))
                self.assertFalse(st['is_leader'])
        # Stays that way for a while: one leader, one command.
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            self.assertEqual(len(self.holders(log)), 1)
            self.assertLessEqual(sum(a.is_leader() for a in agents), 1)
            time.sleep(0.05)
        self.assertEqual(len(self.intervals(log)), 1)
        self.check_intervals(log)

    @valgrind_ok
    def test_sigterm_hands_over(self):
        log = self.path('iv.log')
        agents = self.three(log)
        holder = self.one_holder(log)
        leader = self.by_id(agents, holder.id)
        t0 = now_ns()
        leader.kill(signal.SIGTERM)
        nxt = self.wait_new_term(log, after_ns=t0, exclude_id=holder.id, timeout=10)
        sys.stderr.write('[graceful handover gap %.3f ms] ' % ((nxt.start - t0) / 1e6))
        leader.wait_exit(10)
        old = [i for i in self.intervals(log) if i.pid == holder.pid][0]
        self.assertIsNotNone(old.stop, 'old leader command got no SIGTERM (no stop line)')
        rep = self.check_intervals(log)
        self.assertEqual(rep.terms, 2)
        self.assertGreater(int(nxt.token), int(holder.token))
        self.by_id(agents, nxt.id).wait_state('leader', 10)

    @valgrind_ok
    def test_kill9_agent_kills_command_and_hands_over(self):
        log = self.path('iv.log')
        agents = self.three(log)
        holder = self.one_holder(log)
        leader = self.by_id(agents, holder.id)
        t0 = now_ns()
        leader.kill(signal.SIGKILL)

        def dead():
            iv = [i for i in self.intervals(log) if i.pid == holder.pid][0]
            return iv.dead
        t_dead = wait_for(dead, 5, msg='leader command death')
        self.assertLess(t_dead - t0, 1e9, 'leader command outlived its agent by %.0f ms'
                        % ((t_dead - t0) / 1e6))
        nxt = self.wait_new_term(log, after_ns=t0, exclude_id=holder.id, timeout=10)
        sys.stderr.write('[crash failover gap %.3f ms] ' % ((nxt.start - t0) / 1e6))
        self.check_intervals(log)

    @valgrind_ok
    def test_kill9_agent_kills_the_whole_tree_before_handover(self):
        """Issue 10.3: descendants of the leader command that left its process
        group or session die within a second of kill -9 of the agent, and
        the next leader starts only once all of them are gone (the guard
        holds the lock descriptor until then)."""
        log, wlog = self.path('iv.log'), self.path('workers.iv')
        leader = self.agent(id='a', cmd=self.tree_cmd(log, wlog))
        self.one_holder(log)
        wait_for(lambda: len(self.intervals(wlog)) == 3, 10, msg='three workers started')
        self.agent(id='b', cmd=self.leader_cmd(log))
        time.sleep(0.2)
        t0 = now_ns()
        leader.kill(signal.SIGKILL)
        self.tree_died_before_next_term(log, wlog, t0, exclude_id='a')
        self.check_intervals(log)

    @valgrind_ok
    def test_removed_lock_file_never_gives_two_leaders(self):
        """Issue 10.1/10.2: rm of the lock file while a leader runs. A
        follower that had the old file open, and a candidate started after the
        removal, must not lead while the old command (slow to stop) still
        runs; tokens go on from the counter, never back to 1."""
        log = self.path('iv.log')
        lock = self.path('e.lock')
        a = self.agent(id='a', cmd=self.leader_cmd(log, '--ignore-term'), ttl='3s',
                       kill_grace='1500ms')
        first = self.one_holder(log)
        self.agent(id='b', cmd=self.leader_cmd(log), ttl='3s', kill_grace='500ms')
        time.sleep(0.3)
        os.unlink(lock)
        self.agent(id='c', cmd=self.leader_cmd(log), ttl='3s', kill_grace='500ms')
        nxt = self.wait_new_term(log, after_ns=first.start, exclude_id='a', timeout=20)
        self.assertGreater(int(nxt.token), int(first.token))
        rep = self.check_intervals(log, t_end=now_ns())
        self.assertGreaterEqual(rep.terms, 2)
        self.assertIn('removed or replaced', a.log())
        with open(self.path('e.token')) as f:
            self.assertIn('token=%s\n' % nxt.token, f.read())

    def test_candidate_quitting_while_waiting_on_a_replaced_file(self):
        """A candidate that waits on a new lock file and quits must not make
        the file look safe to the next candidate while the old leader's
        command still runs."""
        log = self.path('iv.log')
        a = self.agent(id='a', cmd=self.leader_cmd(log, '--ignore-term'), ttl='3s',
                       kill_grace='1500ms')
        first = self.one_holder(log)
        os.unlink(self.path('e.lock'))
        c = self.agent(id='c', cmd=self.leader_cmd(log), ttl='3s', kill_grace='500ms')
        wait_for(lambda: 'not leading for' in c.log(), 10, msg='c waits on the new file')
        c.stop()
        self.agent(id='d', cmd=self.leader_cmd(log), ttl='3s', kill_grace='500ms')
        nxt = self.wait_new_term(log, after_ns=first.start, exclude_id='a', timeout=20)
        self.assertGreater(int(nxt.token), int(first.token))
        self.check_intervals(log, t_end=now_ns())
        self.assertIn('removed or replaced', a.log())

    @valgrind_ok
    def test_replaced_lock_file_and_token_file_removed_too(self):
        """The lock file replaced by a copy (sed -i) while leading: the copy
        is not the file the holder locked; and with the token file gone as
        well, a follower that saw token N never hands out a lower one."""
        log = self.path('iv.log')
        lock = self.path('e.lock')
        self.agent(id='a', cmd=self.leader_cmd(log), ttl='3s', kill_grace='500ms')
        first = self.one_holder(log)
        b = self.agent(id='b', cmd=self.leader_cmd(log), ttl='3s', kill_grace='500ms')
        wait_for(lambda: b.try_status() and b.try_status()['leader'] == 'a', 10)
        with open(lock) as f:
            content = f.read()
        os.unlink(self.path('e.token'))
        tmp = lock + '.new'
        with open(tmp, 'w') as f:
            f.write(content)
        os.rename(tmp, lock)
        nxt = self.wait_new_term(log, after_ns=first.start, exclude_id=None, timeout=20)
        self.assertGreater(int(nxt.token), int(first.token))
        self.check_intervals(log, t_end=now_ns())

    def test_token_file_without_counter_is_refused(self):
        """A token file that holds no counter cannot be trusted not to go
        backwards: the candidate says so and does not lead."""
        with open(self.path('e.token'), 'w') as f:
            f.write('garbage\n')
        a = self.agent(id='a', mode='sidecar')
        wait_for(lambda: 'holds no counter' in a.log(), 10, msg='the refusal in the log')
        self.assertFalse(a.is_leader())
        self.assertEqual(len([l for l in a.log().splitlines() if 'holds no counter' in l]), 1,
                         'logged once, not per retry')

    def test_default_lock_file_is_on_persistent_storage(self):
        """Issue 10.2: the default lock file (and its token counter) lives in
        the state directory, not in the runtime directory (a tmpfs)."""
        st = self.path('state')
        r = self.run_elect(['--check-config', '--name', 'web', '--', 'true'],
                           env={'XDG_STATE_HOME': st, 'XDG_RUNTIME_DIR': self.path('run')})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('backend file://%s/elect/web.lock' % st, r.stdout)

    def test_lock_file_on_tmpfs_warns_that_tokens_restart(self):
        d = tempfile.mkdtemp(dir='/dev/shm', prefix='elect-test-')
        self.addCleanup(shutil.rmtree, d, True)
        a = self.agent(id='a', mode='sidecar', backend='file://%s/e.lock' % d)
        a.wait_state('leader', 10)
        wait_for(lambda: 'restarts after a reboot' in a.log(), 5, msg='the tmpfs warning')

    @valgrind_ok
    def test_command_exit_kills_what_it_left_behind(self):
        """When the command exits on its own, its escaped descendants die too
        before elect hands over."""
        log, wlog = self.path('iv.log'), self.path('workers.iv')
        a = self.agent(id='a', cmd=self.tree_cmd(log, wlog))
        holder = self.one_holder(log)
        wait_for(lambda: len(self.intervals(wlog)) == 3, 10, msg='three workers started')
        os.kill(holder.pid, signal.SIGTERM)
        self.assertEqual(a.wait_exit(10), 128 + signal.SIGTERM)
        wait_for(lambda: all(i.dead is not None for i in self.intervals(wlog)), 5,
                 msg='every worker died with the command')

    @valgrind_ok
    def test_kill9_command_exits_137_and_hands_over(self):
        log = self.path('iv.log')
        agents = self.three(log)
        holder = self.one_holder(log)
        leader = self.by_id(agents, holder.id)
        t0 = now_ns()
        os.kill(holder.pid, signal.SIGKILL)
        self.assertEqual(leader.wait_exit(10), 137)
        self.wait_new_term(log, after_ns=t0, exclude_id=holder.id, timeout=10)
        self.check_intervals(log)

    @valgrind_ok
    def test_command_exit_status_is_elects(self):
        log = self.path('iv.log')
        a = self.agent(id='a', cmd=self.leader_cmd(log, '--exit-after', 300, '--exit-code', 3))
        self.assertEqual(a.wait_exit(10), 3)
        # It released: a new candidate leads at once.
        b = self.agent(id='b', cmd=self.leader_cmd(log))
        b.wait_state('leader', 10)
        self.check_intervals(log)

    @valgrind_ok
    def test_tokens_increase_across_handovers(self):
        log = self.path('iv.log')
        agents = {('n%d' % i): self.agent(id='n%d' % i, cmd=self.leader_cmd(log))
                  for i in range(3)}
        gen = 3
        for _ in range(6):
            holder = self.one_holder(log)
            a = agents.pop(holder.id)
            t0 = now_ns()
            a.kill(signal.SIGTERM if gen % 2 else signal.SIGKILL)
            a.wait_exit(10)
            nid = 'n%d' % gen
            gen += 1
            agents[nid] = self.agent(id=nid, cmd=self.leader_cmd(log))
            self.wait_new_term(log, after_ns=t0, exclude_id=holder.id, timeout=10)
        rep = self.check_intervals(log)
        self.assertGreaterEqual(rep.terms, 7)
        toks = [int(i.token) for i in rep.intervals]
        self.assertEqual(toks, sorted(set(toks)))

    @valgrind_ok
    def test_signals_forwarded_and_kill_grace(self):
        log = self.path('iv.log')
        a = self.agent(id='a', cmd=self.leader_cmd(log, '--ignore-term'), kill_grace='700ms')
        holder = self.one_holder(log)
        a.wait_state('leader', 10)
        a.kill(signal.SIGUSR1)
        wait_for(lambda: ' %d 10' % holder.pid in open(log).read(), 5,
                 msg='SIGUSR1 forwarded to the command')
        # Lost leadership (resign): SIGTERM (ignored), then SIGKILL after the grace.
        t0 = now_ns()
        st, _, body = a.request('POST', '/v1/resign')
        self.assertEqual(st, 200, body)
        iv = wait_for(lambda: [i for i in self.intervals(log) if i.pid == holder.pid
                               and i.dead][0], 10, msg='command killed')
        self.assertIn(' %d 15' % holder.pid, open(log).read(), 'no SIGTERM before SIGKILL')
        self.assertIsNone(iv.stop)
        took = (iv.dead - t0) / 1e6
        self.assertGreaterEqual(took, 500, 'SIGKILL came before the kill grace')
        self.assertLess(took, 5000 * scale())
        self.assertTrue(a.alive(), 'agent must keep running after a resign')

    @valgrind_ok
    def test_hooks_order_arguments_environment(self):
        backend = self.file_backend('e')
        outs, agents = {}, {}
        for id in ('a', 'b'):
            outs[id] = self.path('hooks-%s.out' % id)
            hook = self.hook_script('hook-' + id, outs[id],
                                    extra='sleep 0.1; echo "end|$1" >> %s' % outs[id])
            agents[id] = self.agent(id=id, mode='sidecar', args=[
                '--on-elected', hook, '--on-demoted', hook, '--on-leader', hook,
                '--hook-timeout', '2s'])
            if id == 'a':
                agents['a'].wait_state('leader', 10)
                wait_for(lambda: 'end|elected' in open(outs['a']).read(), 10,
                         msg='elected hook of a done')
        b = agents['b']
        wait_for(lambda: (b.try_status() or {}).get('leader') == 'a', 10, msg='b sees a')
        st, _, _ = agents['a'].request('POST', '/v1/resign')
        self.assertEqual(st, 200)
        b.wait_state('leader', 15)
        wait_for(lambda: 'demoted' in open(outs['a']).read(), 10, msg='demoted hook of a')
        wait_for(lambda: 'elected' in open(outs['b']).read(), 10, msg='elected hook of b')
        time.sleep(0.5)     # let any trailing hook finish
        for id in ('a', 'b'):
            lines = [ln.rstrip('\n').split('|') for ln in open(outs[id])]
            # Strictly one at a time: each run's line is followed by its end.
            events = []
            for n in range(0, len(lines), 2):
                run, end = lines[n], lines[n + 1] if n + 1 < len(lines) else None
                self.assertEqual(end, ['end', run[0]], 'hooks of %s overlapped: %r' % (id, lines))
                events.append(run)
            for ev in events:
                arg_ev, name, aid, e_ev, e_name, e_id, e_leader, e_tok, e_be = ev[:9]
                self.assertIn(arg_ev, ('elected', 'demoted', 'leader'))
                self.assertEqual((name, aid), ('e', id))
                self.assertEqual((e_ev, e_name, e_id, e_be), (arg_ev, 'e', id, backend))
                if arg_ev == 'elected':
                    self.assertEqual(e_leader, id)
                    self.assertGreater(int(e_tok), 0)
            kinds = [e[0] for e in events]
            self.assertIn('elected', kinds, '%s: %r' % (id, kinds))
            if id == 'a':
                self.assertIn('demoted', kinds)
                self.assertLess(kinds.index('elected'), kinds.index('demoted'))
            else:
                self.assertIn('leader', kinds)
                first_leader = [e for e in events if e[0] == 'leader'][0]
                self.assertEqual(first_leader[6], 'a', 'b\'s first leader hook: %r' % first_leader)
                self.assertLess(kinds.index('leader'), kinds.index('elected'))
        tok_a = [int(e[7]) for e in (ln.split('|') for ln in open(outs['a']))
                 if e[0] == 'elected'][0]
        tok_b = [int(e[7]) for e in (ln.split('|') for ln in open(outs['b']))
                 if e[0] == 'elected'][0]
        self.assertGreater(tok_b, tok_a)

    @valgrind_ok
    def test_hanging_hook_is_killed_at_timeout(self):
        pidf = self.path('hook.pids')
        # Ignores SIGTERM (and so does its sleep child): needs the SIGKILL.
        hook = self.script('hang', "trap '' TERM\nsleep 60 &\necho \"$$ $!\" > %s\nwait\n"
                           "wait\n" % pidf)
        a = self.agent(id='a', mode='sidecar', args=['--on-elected', hook,
                                                     '--hook-timeout', '500ms'])
        pids = wait_for(lambda: open(pidf).read().split() if os.path.exists(pidf)
                        and open(pidf).read().endswith('\n') else None, 10, msg='hook started')
        t0 = time.monotonic()
        pids = [int(p) for p in pids]
        self.add_cleanup_pid(pids[0])
        self.add_cleanup_pid(pids[1])

        def gone():
            return not any(os.path.exists('/proc/%d' % p) and
                           not open('/proc/%d/stat' % p).read().split(')')[1].split()[0] == 'Z'
                           for p in pids)
        wait_for(gone, 5, msg='hung hook killed')
        self.assertLess(time.monotonic() - t0, 4 * scale())
        # A failed elected hook: the agent does not stay leader, and lives on.
        self.assertTrue(a.alive())
        wait_for(lambda: a.try_status() is not None, 5)

    @valgrind_ok
    def test_status_json_socket_and_http(self):
        port = self.port()
        a = self.agent(id='a', mode='sidecar', args=['--http', '127.0.0.1:%d' % port])
        st = a.wait_state('leader', 10)
        self.assertEqual(set(st) - STATUS_KEYS, set(), 'unexpected keys')
        self.assertEqual(STATUS_KEYS - set(st), set(), 'missing keys')
        self.assertEqual((st['name'], st['id'], st['leader'], st['is_leader']),
                         ('e', 'a', 'a', True))
        self.assertEqual(st['backend'], self.file_backend('e'))
        self.assertIsNone(st['health'])             # no health checks configured
        self.assertIsInstance(st['token'], int)
        self.assertGreater(st['token'], 0)
        self.assertIsInstance(st['since'], str)
        self.assertRegex(st['since'], r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$')
        self.assertIsInstance(st['since_unix_ms'], int)
        self.assertLess(abs(st['since_unix_ms'] - time.time() * 1000), 600000)
        self.assertIsInstance(st['deadline_left_ms'], int)
        self.assertGreater(st['deadline_left_ms'], 0)
        self.assertLessEqual(st['deadline_left_ms'], 10000)
        self.assertIsInstance(st['index'], int)

        # The client command prints the same document.
        r = self.run_elect(['status', '--socket', a.socket])
        self.assertEqual(r.returncode, 0, r.stderr)
        cst = json.loads(r.stdout)
        self.assertEqual(set(cst), STATUS_KEYS)
        self.assertEqual((cst['id'], cst['state'], cst['token']), ('a', 'leader', st['token']))
        # And curl on the socket.
        c = subprocess.run(['curl', '-sS', '--max-time', str(10 * scale()), '--unix-socket',
                            a.socket, 'http://localhost/v1/status'],
                           capture_output=True, text=True)
        self.assertEqual(c.returncode, 0, c.stderr)
        self.assertEqual(json.loads(c.stdout)['state'], 'leader')

        for path, code in (('/healthz', 200), ('/readyz', 200)):
            s, _, _ = a.request('GET', path)
            self.assertEqual(s, code, path)
        s, h, body = a.request('GET', '/metrics')
        self.assertEqual(s, 200)
        self.assertIn('text/plain', h.get('content-type', ''))
        self.assertIn(b'is_leader', body)
        # TCP: k8s leader-elector style.
        import http.client
        hc = http.client.HTTPConnection('127.0.0.1', port, timeout=5 * scale())
        hc.request('GET', '/')
        r2 = hc.getresponse()
        self.assertEqual(r2.status, 200)
        self.assertEqual(json.loads(r2.read()), {'name': 'a'})
        hc.close()

        # A follower: not ready, no deadline, resign refused.
        b = self.agent(id='b', mode='sidecar')
        bst = wait_for(lambda: (lambda s: s if s and s['leader'] == 'a' else None)
                       (b.try_status()), 10, msg='b sees leader a')
        self.assertIn(bst['state'], ('follower', 'candidate'))
        self.assertIsNone(bst['deadline_left_ms'])
        self.assertFalse(bst['is_leader'])
        self.assertEqual(b.request('GET', '/readyz')[0], 503)
        self.assertEqual(b.request('POST', '/v1/resign')[0], 409)
        r = self.run_elect(['wait-leader', '--socket', b.socket, '--timeout', '300ms'])
        self.assertEqual(r.returncode, 1, r.stderr)

        # Long poll: returns on the next change (a resigns), well before 20s.
        idx = bst['index']
        t0 = time.monotonic()
        res = {}

        def poll():
            res['r'] = b.request('GET', '/v1/status?wait=20s&index=%d' % idx, timeout=30)
        import threading
        th = threading.Thread(target=poll)
        th.start()
        time.sleep(0.3)
        self.assertTrue(th.is_alive(), 'long poll returned before any change')
        r = self.run_elect(['resign', '--socket', a.socket])
        self.assertEqual(r.returncode, 0, r.stderr)
        th.join(15 * scale())
        self.assertFalse(th.is_alive())
        self.assertLess(time.monotonic() - t0, 15 * scale())
        code, _, body = res['r']
        self.assertEqual(code, 200)
        self.assertNotEqual(json.loads(body)['index'], idx)
        b.wait_state('leader', 10)
        r = self.run_elect(['wait-leader', '--socket', b.socket, '--timeout', '5s'])
        self.assertEqual(r.returncode, 0, r.stderr)

    @valgrind_ok
    def test_malformed_and_oversized_requests(self):
        a = self.agent(id='a', mode='sidecar')
        a.wait_state('leader', 10)

        def code(reply):
            self.assertTrue(reply.startswith(b'HTTP/1.'), reply[:100])
            return int(reply.split()[1])
        cases = [
            ('garbage', b'\x00\x01 NOT HTTP AT ALL\r\n\r\n', None),
            ('bad request line', b'GET\r\n\r\n', None),
            ('bad header', b'GET /v1/status HTTP/1.1\r\nHost localhost\r\n\r\n', None),
            ('bad version', b'GET /v1/status HTTP/9.9x\r\nHost: x\r\n\r\n', None),
            ('huge header', b'GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: ' + b'a' * 9000
             + b'\r\n\r\n', 431),
            ('many headers', b'GET /v1/status HTTP/1.1\r\nHost: x\r\n'
             + b''.join(b'X-H%d: %s\r\n' % (i, b'b' * 100) for i in range(100)) + b'\r\n', 431),
            ('huge body', b'POST /v1/resign HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n'
             + b'c' * 70000, 413),
            ('bad content-length', b'POST /v1/resign HTTP/1.1\r\nHost: x\r\n'
             b'Content-Length: -5\r\n\r\n', None),
            ('bad wait', b'GET /v1/status?wait=forever&index=1 HTTP/1.1\r\nHost: x\r\n\r\n', 400),
        ]
        for what, data, want in cases:
            reply = a.raw(data)
            c = code(reply)
            if want:
                self.assertEqual(c, want, what)
            else:
                self.assertTrue(400 <= c < 500, '%s: %d' % (what, c))
            self.assertTrue(a.alive(), 'agent died after %s' % what)
            self.assertEqual(a.status()['state'], 'leader', what)
        self.assertEqual(a.request('GET', '/no/such/path')[0], 404)
        # A client that connects and goes away, or sends half a request.
        import socket as so
        for part in (b'', b'GET /v1/sta'):
            s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
            s.connect(a.socket)
            s.sendall(part)
            s.close()
        self.assertTrue(a.alive())
        self.assertEqual(a.status()['state'], 'leader')
