"""lockd on the Consul lock backend (backends/consul_lock*.c), against a real
Consul (issue 11).

Every test starts its own `consul agent -dev` (tests/consul_server.py, the
binary built once from Go modules) on free loopback ports and stops it by
pid, after the lockds (they destroy their sessions first).

The generic cases come from tests/lockd_cases.py. The Consul-only cases here:
`consul lock P/NAME` and lockd exclude each other on one name, with tokens in
one order (the Raft index of each acquire); `consul lock -n 3 P/NAME` and
lockd share one semaphore of 3; the key layout (consul lock's: P/NAME/.lock,
contenders P/NAME/<session>, one session per lockd and one more for each
further concurrent hold of a name); a limit conflict with `consul lock -n`;
a SIGTERM destroys the sessions (and so every key) at once; a deleted .lock
is a lost hold.
"""

import base64
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from harness import ElectTestCase, scale, wait_for  # noqa: E402
from consul_server import ConsulServer, build_consul  # noqa: E402
from lockd_cases import HoldConn, IntervalLog, LockdCases, SessionCutCases  # noqa: E402

PREFIX = 'locks'
LOCK_FLAG = 0x2ddccbc058a50c18
SEM_FLAG = 0xe0f69a2baa414de0


class ConsulLocks(LockdCases, SessionCutCases, ElectTestCase):
    lockd_ttl = '10s'            # Consul's smallest session TTL
    lockd_kill_grace = '500ms'
    cut_ttl = '10s'
    mx_total = 300
    waiter_tokens_known = False  # a waiter's token is the index of a later write

    def setUp(self):
        self.consul = None
        # Registered before the harness's cleanup, so it runs after it:
        # lockds get to destroy their sessions before Consul goes away.
        self.addCleanup(self._stop_consul)
        super().setUp()
        build_consul()          # once per machine, then cached; fails, never skips
        self.consul = ConsulServer(self.tmp, 'consul0')
        self.consul.start()

    def _stop_consul(self):
        if self.consul is not None:
            self.consul.stop()

    def lock_url(self, proxy_port=None):
        ep = '127.0.0.1:%d' % proxy_port if proxy_port else self.consul.endpoint
        return 'consul://%s/%s' % (ep, PREFIX)

    def backend_addr(self):
        return ('127.0.0.1', self.consul.http_port)

    # --- helpers
    def kvs(self, prefix):
        """{key: entry} under prefix (Value decoded)."""
        st, data, _ = self.consul.request('GET', '/v1/kv/%s?recurse' % prefix)
        if st == 404:
            return {}
        self.assertEqual(st, 200, data)
        out = {}
        for e in data:
            if e.get('Value') is not None:
                e['Value'] = base64.b64decode(e['Value']).decode('utf-8', 'replace')
            out[e['Key']] = e
        return out

    def consul_lock(self, name, log, holder, hold_s, n=None):
        """`consul lock [-n N] PREFIX/NAME leadercmd`, the token the Raft
        index of the lock's last write (the acquire, or the semaphore's cas),
        as lockd's."""
        key = '%s/%s/.lock' % (PREFIX, name)
        token = ('"$(%s kv get -detailed %s | sed -n \'s/^ModifyIndex  *//p\')"'
                 % (self.consul.consul()[0], key))
        cmd = self.leader_cmd(log, '--exit-after', str(int(hold_s * 1000)))
        # consul lock runs its command as one shell script.
        script = 'ELECT_TOKEN=%s ELECT_ID=%s; export ELECT_TOKEN ELECT_ID; exec %s' % (
            token, holder, ' '.join(shlex.quote(a) for a in cmd))
        argv = self.consul.consul('lock') + (['-n', str(n)] if n else []) + \
            ['%s/%s' % (PREFIX, name), script]
        p = subprocess.Popen(argv, env=self.consul.env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, start_new_session=True)
        self.addCleanup(lambda: p.poll() is None and os.killpg(p.pid, signal.SIGKILL))
        return p

    # --- Consul only
    def test_consul_lock_and_lockd_exclude_each_other(self):
        self.native_cli_exclusion('ex', self.consul_lock, 'k')
        wait_for(lambda: self.kvs(PREFIX + '/ex/') == {}, 10, msg='every key gone')

    def test_consul_lock_n_and_lockd_share_a_semaphore(self):
        a, b = self.lockd('a'), self.lockd('b')
        log = self.path('sem.iv')
        ilog = IntervalLog(log)
        errors = []

        def lockd_client(d, holder):
            conn = HoldConn(d)
            try:
                for _ in range(5):
                    st, body = conn.acquire('pool', limit=3, wait='60s')
                    if st != 200:
                        errors.append((holder, st, body))
                        return
                    pid = ilog.next_pid()
                    ilog.line('start', holder, body['token'], pid)
                    time.sleep(0.2)
                    ilog.line('stop', holder, body['token'], pid)
                    conn.release(body['hold'])
            finally:
                conn.close()

        # Three consul lock -n 3 fill the semaphore: lockd must wait.
        procs = [self.consul_lock('pool', log, 'k%d' % i, 2.0, n=3) for i in range(3)]
        wait_for(lambda: len(self.holders(log)) == 3, 20, msg='three consul lock -n 3 holding')
        lk = self.kvs(PREFIX + '/pool/')['%s/pool/.lock' % PREFIX]
        self.assertEqual(lk['Flags'], SEM_FLAG)
        self.assertEqual(json.loads(lk['Value'])['Limit'], 3)
        st, body = a.acquire('pool', limit=3, wait='0')
        self.assertEqual(st, 408, body)
        # lockd with another limit: a clear refusal (a conflict), not a wait.
        st, body = b.acquire('pool', limit=2, wait='5s')
        self.assertEqual(st, 409, body)
        self.assertIn('limit conflict', json.dumps(body))
        # Mixed: lockd clients on two lockds and more consul lock -n 3.
        threads = [threading.Thread(target=lockd_client, args=(d, 'c%d' % i), daemon=True)
                   for i, d in enumerate([a, a, b, b])]
        for t in threads:
            t.start()
        procs += [self.consul_lock('pool', log, 'k%d' % (i + 3), 0.2, n=3) for i in range(4)]
        for t in threads:
            t.join(120 * scale())
        for q in procs:
            self.assertEqual(q.wait(120 * scale()), 0, q.stderr.read())
        ilog.close()
        self.assertEqual(errors, [])
        ivs = self.intervals(log)
        events = sorted([(i.start, 1) for i in ivs] + [(i.end, -1) for i in ivs],
                        key=lambda e: (e[0], e[1]))
        now = peak = 0
        for _, step in events:
            now += step
            peak = max(peak, now)
        self.assertLessEqual(peak, 3, 'more than 3 holders at once by the interval log')
        ids = {i.id for i in ivs}
        self.assertEqual(len([i for i in ids if i.startswith('k')]), 7, ids)
        self.assertEqual(len([i for i in ivs if i.id.startswith('c')]), 20)
        # Every slot given back: no holder left in the lock's value.
        wait_for(lambda: json.loads(self.kvs(PREFIX + '/pool/').get(
            '%s/pool/.lock' % PREFIX, {'Value': '{"Holders":{}}'})['Value'])['Holders'] in ({}, None),
            10, msg='no holders left')

    def test_key_layout_sessions_and_tokens(self):
        d = self.lockd('lay')
        holds = [d.acquire(n, limit=lim) for n, lim in (('a', 2), ('b', 1), ('a', 2))]
        for st, body in holds:
            self.assertEqual(st, 200, body)
        kvs = self.kvs(PREFIX + '/')
        sessions = {e['Session'] for e in kvs.values() if e.get('Session')}
        # Two sessions: a second concurrent hold of 'a' needs its own.
        self.assertEqual(len(sessions), 2, kvs)
        own = [s for s in self.consul.sessions() if s['ID'] in sessions]
        self.assertEqual(len(own), 2)
        for s in own:
            self.assertEqual((s['TTL'], s['Behavior'], s['NodeChecks'] or []), ('10s', 'delete', []))
        a_keys = sorted(k for k in kvs if k.startswith(PREFIX + '/a/'))
        self.assertEqual(a_keys, sorted(['%s/a/.lock' % PREFIX] + ['%s/a/%s' % (PREFIX, s) for s in sessions]))
        sem = json.loads(kvs['%s/a/.lock' % PREFIX]['Value'])
        self.assertEqual((sem['Limit'], sorted(sem['Holders'])), (2, sorted(sessions)))
        lock = kvs['%s/b/.lock' % PREFIX]
        self.assertEqual((lock['Flags'], lock['Value']), (LOCK_FLAG, 'lay'))
        self.assertEqual(holds[1][1]['token'], lock['ModifyIndex'])
        # The semaphore's tokens: the Raft index of each cas, increasing.
        self.assertLess(holds[0][1]['token'], holds[2][1]['token'])
        self.assertEqual(holds[2][1]['token'], kvs['%s/a/.lock' % PREFIX]['ModifyIndex'])
        # Releasing the second hold of 'a' retires its session at a renewal.
        self.assertEqual(d.release(holds[2][1]['hold'])[0], 200)
        wait_for(lambda: len([s for s in self.consul.sessions() if s['Name'] == 'lockd lay']) == 1,
                 20, msg='the second session destroyed')
        # A second concurrent hold of 'a' again: a new second session.
        st, again = d.acquire('a', limit=2)
        self.assertEqual(st, 200, again)
        self.assertGreater(again['token'], holds[2][1]['token'])
        self.assertEqual(len([s for s in self.consul.sessions() if s['Name'] == 'lockd lay']), 2)

    def test_sigterm_destroys_the_sessions_at_once(self):
        d = self.lockd('t')
        for n in ('a', 'b', 'c'):
            self.assertEqual(d.acquire(n)[0], 200)
        self.assertEqual(d.acquire('a', limit=1, wait='0')[0], 408)
        # Three .lock keys and three contenders (the refused one's goes).
        wait_for(lambda: len(self.kvs(PREFIX + '/')) == 6, 10, msg='6 keys')
        t0 = time.monotonic()
        d.kill(signal.SIGTERM)
        self.assertEqual(d.wait_exit(10 * scale()), 0, d.log()[-2000:])
        self.assertLess(time.monotonic() - t0, 5 * scale())
        self.assertEqual(self.kvs(PREFIX + '/'), {}, 'keys left after the sessions were destroyed')
        self.assertEqual([s for s in self.consul.sessions() if s['Name'].startswith('lockd')], [])

    def test_deleted_lock_key_is_a_lost_hold(self):
        d = self.lockd('del')
        conn = HoldConn(d)
        st, body = conn.acquire('gone', wait='0')
        self.assertEqual(st, 200, body)
        st, _, _ = self.consul.request('DELETE', '/v1/kv/%s/gone/.lock' % PREFIX)
        self.assertEqual(st, 200)
        st, ans = conn.wait(body['hold'], wait='30s')
        self.assertEqual(st, 200, ans)
        self.assertEqual(ans.get('state'), 'revoked', ans)
        conn.close()
        # The name is free again for everyone.
        st, again = d.acquire('gone')
        self.assertEqual(st, 200, again)
        self.assertGreater(again['token'], body['token'])

    def test_left_behind_lock_is_taken_over_after_its_lock_delay(self):
        # A consul lock holder whose session ended (kill -9, TTL) leaves
        # P/NAME/.lock unheld, under its session's lock-delay. A semaphore on
        # that name takes the key over, but not before the delay is over:
        # consul lock relies on it to stop its command.
        st, sess, _ = self.consul.request('PUT', '/v1/session/create',
                                          json.dumps({'TTL': '10s', 'LockDelay': '3s'}))
        self.assertEqual(st, 200, sess)
        key = '%s/old/.lock' % PREFIX
        st, ok, _ = self.consul.request('PUT', '/v1/kv/%s?acquire=%s&flags=%d' % (key, sess['ID'], LOCK_FLAG),
                                        'k9')
        self.assertEqual((st, ok), (200, True))
        d = self.lockd('over')
        st, _, _ = self.consul.request('PUT', '/v1/session/destroy/' + sess['ID'])
        self.assertEqual(st, 200)
        t0 = time.monotonic()
        st, body = d.acquire('old', limit=2, wait='30s')
        waited = time.monotonic() - t0
        self.assertEqual(st, 200, body)
        self.assertGreaterEqual(waited, 2.5, 'granted inside the lock-delay')
        lk = self.kvs(PREFIX + '/old/')[key]
        self.assertEqual(lk['Flags'], SEM_FLAG)
        self.assertEqual(json.loads(lk['Value'])['Limit'], 2)
        # And back: once the semaphore is released (its last holder deletes
        # it), the name may be a lock again.
        self.assertEqual(d.release(body['hold'])[0], 200)
        st, body = d.acquire('old', limit=1, wait='10s')
        self.assertEqual(st, 200, body)

    def test_slot_taken_out_of_the_semaphore_is_a_lost_hold(self):
        d = self.lockd('slot')
        conn = HoldConn(d)
        st, body = conn.acquire('sem', limit=2, wait='0')
        self.assertEqual(st, 200, body)
        key = '%s/sem/.lock' % PREFIX
        lk = self.kvs(PREFIX + '/sem/')[key]
        self.assertEqual(len(json.loads(lk['Value'])['Holders']), 1)
        # Someone rewrites the holders without us (a check-and-set, as
        # consul lock -n does): lockd finds out at a renewal.
        st, ok, _ = self.consul.request('PUT', '/v1/kv/%s?cas=%d&flags=%d' % (key, lk['ModifyIndex'], SEM_FLAG),
                                        json.dumps({'Limit': 2, 'Holders': {}}))
        self.assertEqual((st, ok), (200, True))
        st, ans = conn.wait(body['hold'], wait='30s')
        self.assertEqual(st, 200, ans)
        self.assertEqual(ans.get('state'), 'revoked', ans)
        self.assertIn('slot', json.dumps(ans))
        conn.close()


if __name__ == '__main__':
    unittest.main()
