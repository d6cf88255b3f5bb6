"""Generic process-level tests of lockd and lockctl, for every lock backend.

A backend's test file mixes these into a harness.ElectTestCase:

    import os, sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
    from harness import ElectTestCase
    from lockd_cases import LockdCases, SessionCutCases

    class EtcdLocks(LockdCases, SessionCutCases, ElectTestCase):
        lockd_ttl = '4s'                 # --ttl of every lockd the cases start
        def setUp(self):
            super().setUp()
            ...start the server (stopped by pid in cleanup)...
        def lock_url(self, proxy_port=None):
            # The --backend URL; the same prefix for every lockd of one test.
            # proxy_port: reach the server through 127.0.0.1:proxy_port.
            ...
        def backend_addr(self):          # SessionCutCases only
            return ('127.0.0.1', port)   # where a FaultProxy forwards to

LockdCases (every backend): mutual exclusion (20 clients, 3 lockd, 1,000
acquisitions, interval log + tokens), semaphore N=3, try-once and wait
timeouts, lockctl run (env, exit status, revocation on lockd SIGTERM, kill -9
of lockctl, 30 handovers by kill -9 of lockctl without overlap, kill -9 of
lockd with its commands dying), ttl-bound holds that
stop being renewed, bad requests. SessionCutCases (etcd, zk): the proxy
blackholes one lockd's link; its lockctl command must be stopped before the
other lockd is granted the lock (interval log timestamps).

Interval logs use the format of tests/leadercmd.c and tests/checker.py:
"start|stop <holder> <token> <monotonic ns> <pid>"; in-process clients write
a unique pseudo pid per acquisition. One log per lock name, so token order is
checked per name.

Helpers usable on their own: Lockd (a running bin/lockd), HoldConn (one
persistent connection for connection-bound holds), lockd_bin(), lockctl_bin().
"""

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import checker  # noqa: E402
import harness  # noqa: E402
from harness import Proc, UnixHTTPConnection, now_ns, scale, valgrind_ok, wait_for  # noqa: E402


def _bin(name):
    return os.path.join(os.path.dirname(harness.elect_bin()), name)


def lockd_bin():
    return _bin('lockd')


def lockctl_bin():
    return _bin('lockctl')


class Lockd(Proc):
    """A running bin/lockd. .socket, .request(), .acquire() and friends."""

    def __init__(self, test, id, url, ttl='10s', kill_grace='1s', args=(), socket=None):
        self.id = id
        self.url = url
        self.socket = socket or test.path('%s.sock' % id)
        argv = [lockd_bin(), '--backend', url, '--socket', self.socket, '--id', id,
                '-v', '--ttl', ttl, '--kill-grace', kill_grace] + list(args)
        super().__init__(test, test._wrap_tool(argv), id, env=test.elect_env())

    def request(self, method, path, body=None, timeout=5):
        """One request on a fresh connection: (status, parsed JSON or text)."""
        c = UnixHTTPConnection(self.socket, timeout=timeout * scale())
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            c.request(method, path, body=body,
                      headers={'Content-Type': 'application/json'} if body is not None else {})
            r = c.getresponse()
            return r.status, _decode(r.read())
        finally:
            c.close()

    def ready(self):
        try:
            return self.request('GET', '/healthz', timeout=1)[0] == 200
        except (OSError, http.client.HTTPException):
            return False

    def wait_ready(self, timeout=15):
        def ok():
            if not self.alive():
                raise AssertionError('lockd %s exited (%s):\n%s'
                                     % (self.id, self.returncode, self.log()[-3000:]))
            return self.ready()
        wait_for(ok, timeout, interval=0.02, msg='lockd %s answering' % self.id)
        return self

    def acquire(self, name, limit=1, wait='0', ttl='30s', timeout=None):
        """ttl-bound hold on a fresh connection: (status, body)."""
        body = {'name': name, 'limit': limit, 'wait': wait, 'ttl': ttl, 'bind': 'ttl'}
        return self.request('POST', '/v1/acquire', body, timeout=timeout or 60)

    def release(self, hold):
        return self.request('POST', '/v1/release', {'hold': hold})

    def renew(self, hold):
        return self.request('POST', '/v1/renew', {'hold': hold})

    def locks(self, name=None, limit=None, local=False):
        """GET /v1/locks: every node's holders and waiters as the backend
        tells, merged with this lockd's own (local: its own only)."""
        q = [('name', name), ('limit', limit), ('local', 1 if local else None)]
        q = '&'.join('%s=%s' % (k, v) for k, v in q if v is not None)
        st, body = self.request('GET', '/v1/locks' + ('?' + q if q else ''))
        assert st == 200, (st, body)
        assert 'backend_error' not in body, body
        return body['locks']

    def metrics(self):
        st, body = self.request('GET', '/metrics')
        assert st == 200, (st, body)
        out = {}
        for line in body.splitlines():
            if line and not line.startswith('#'):
                k, _, v = line.rpartition(' ')
                out[k] = float(v)
        return out


def _decode(data):
    text = data.decode('utf-8', 'replace')
    try:
        return json.loads(text)
    except ValueError:
        return text


class HoldConn:
    """One persistent connection to a lockd: connection-bound holds live as
    long as it stays open."""

    def __init__(self, lockd, timeout=60):
        self.c = UnixHTTPConnection(lockd.socket, timeout=timeout * scale())

    def call(self, method, path, body=None):
        if isinstance(body, dict):
            body = json.dumps(body)
        self.c.request(method, path, body=body,
                       headers={'Content-Type': 'application/json'} if body else {})
        r = self.c.getresponse()
        return r.status, _decode(r.read())

    def acquire(self, name, limit=1, wait='30s'):
        return self.call('POST', '/v1/acquire', {'name': name, 'limit': limit, 'wait': wait,
                                                 'bind': 'connection'})

    def release(self, hold):
        return self.call('POST', '/v1/release', {'hold': hold})

    def wait(self, hold, wait='5m'):
        return self.call('GET', '/v1/wait?hold=%s&wait=%s' % (hold, wait))

    def close(self):
        self.c.close()


class IntervalLog:
    """Appends checker.py lines for in-process clients (one write per line)."""

    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.n = 0
        self.lock = threading.Lock()

    def next_pid(self):
        with self.lock:
            self.n += 1
            return 10000000 + self.n

    def line(self, what, holder, token, pid):
        os.write(self.fd, ('%s %s %s %d %d\n' % (what, holder, token, now_ns(), pid)).encode())

    def close(self):
        os.close(self.fd)


class LockdCases:
    """Mixin: the generic cases. See the module docstring."""

    lockd_ttl = '10s'
    lockd_kill_grace = '1s'
    mx_total = 1000          # acquisitions in the mutual exclusion test
    mx_clients = 20
    sees_remote_waiters = True   # file: a waiter shows only in its own lockd
    waiter_tokens_known = True   # Consul: a waiter's token is the index of a later write

    # --- to be provided by the backend's test class
    def lock_url(self, proxy_port=None):
        raise NotImplementedError

    # --- helpers
    def lockd(self, id, url=None, ttl=None, kill_grace=None, args=()):
        d = Lockd(self, id, url or self.lock_url(), ttl=ttl or self.lockd_ttl,
                  kill_grace=kill_grace or self.lockd_kill_grace, args=args)
        return d.wait_ready()

    def lockctl(self, lockd, *args, env=None, timeout=30):
        """Runs lockctl to completion: CompletedProcess (text)."""
        argv = self._wrap_tool([lockctl_bin(), '--socket', lockd.socket] + list(args))
        r = subprocess.run(argv, env=self.elect_env(env), capture_output=True, text=True,
                           timeout=timeout * scale(), start_new_session=True)
        if harness.VALGRIND or harness.ASAN:
            self.assertNotEqual(r.returncode, 99, 'sanitizer error in lockctl %r:\n%s'
                                % (args, r.stderr))
        return r

    def holder_cmd(self, log, *extra):
        """argv running tests/leadercmd.c with ELECT_TOKEN=$LOCK_TOKEN."""
        return ['sh', '-c', 'ELECT_TOKEN=$LOCK_TOKEN; export ELECT_TOKEN; exec "$@"', 'sh'] + \
            self.leader_cmd(log, *extra)

    def lockctl_run(self, lockd, name, holder, log, args=(), extra=()):
        """Starts `lockctl run NAME -- leadercmd LOG` in the background (Proc)."""
        argv = [lockctl_bin(), '--socket', lockd.socket, 'run', name] + list(args) + \
            ['--'] + self.holder_cmd(log, *extra)
        return Proc(self, self._wrap_tool(argv), 'lockctl-%s' % holder,
                    env=self.elect_env({'ELECT_ID': holder}))

    def holder_and_waiter(self, name):
        """lockd a and b; `lockctl run NAME` holding through a (holder h1)
        and one waiting through b (h2), both running leadercmd on one
        interval log. Returns (a, b, log, p1, first interval, p2)."""
        a, b = self.lockd('a'), self.lockd('b')
        log = self.path('%s.iv' % name)
        p1 = self.lockctl_run(a, name, 'h1', log)
        first = self.one_holder(log)
        p2 = self.lockctl_run(b, name, 'h2', log, args=['--wait', '60s'])
        time.sleep(0.3)
        return a, b, log, p1, first, p2

    def one_holder(self, log, timeout=15):
        return wait_for(lambda: len(self.holders(log)) == 1 and self.holders(log)[0], timeout,
                        msg='exactly one running holder command in ' + log)

    def native_cli_exclusion(self, name, spawn, tag):
        """lockd and the backend's own lock CLI exclude each other on `name`,
        their tokens in one order. spawn(name, log, holder, hold_s) starts the
        CLI holding the lock for hold_s running leadercmd on log (holder ids
        start with `tag`); the caller checks what is left in the backend."""
        d = self.lockd('x')
        log = self.path('%s.iv' % name)
        ilog = IntervalLog(log)
        errors = []

        def lockd_client(holder):
            conn = HoldConn(d)
            try:
                for _ in range(4):
                    st, body = conn.acquire(name, wait='60s')
                    if st != 200:
                        errors.append((holder, st, body))
                        return
                    pid = ilog.next_pid()
                    ilog.line('start', holder, body['token'], pid)
                    time.sleep(0.15)
                    ilog.line('stop', holder, body['token'], pid)
                    conn.release(body['hold'])
            finally:
                conn.close()

        def native(holder, hold_s):
            p = spawn(name, log, holder, hold_s)
            self.addCleanup(lambda: p.poll() is None and os.killpg(p.pid, signal.SIGKILL))
            return p

        # lockd holds: the CLI must wait until lockd releases.
        first = HoldConn(d)
        st, held = first.acquire(name, wait='0')
        self.assertEqual(st, 200, held)
        p = native(tag + '0', 0.1)
        time.sleep(1.5)
        self.assertIsNone(p.poll(), 'the lock CLI ran while lockd held the lock')
        self.assertEqual(self.holders(log), [])
        first.release(held['hold'])
        first.close()
        self.assertEqual(p.wait(30 * scale()), 0, p.stderr.read())
        # The CLI holds: lockd's try-once is refused, its waiter gets it after.
        p = native(tag + '1', 1.5)
        wait_for(lambda: len(self.holders(log)) == 1, 15, msg='the lock CLI holding')
        st, body = d.acquire(name, wait='0')
        self.assertEqual(st, 408, body)
        # Both kinds of clients at once, several rounds.
        threads = [threading.Thread(target=lockd_client, args=('c%d' % i,), daemon=True)
                   for i in range(3)]
        for t in threads:
            t.start()
        procs = [p] + [native('%s%d' % (tag, i + 2), 0.15) for i in range(4)]
        for t in threads:
            t.join(90 * scale())
        for q in procs:
            self.assertEqual(q.wait(90 * scale()), 0, q.stderr.read())
        ilog.close()
        self.assertEqual(errors, [])
        self.check_intervals(log)
        ids = {i.id for i in self.intervals(log)}
        self.assertEqual(len([i for i in ids if i.startswith(tag)]), 6, ids)
        self.assertEqual(len([i for i in ids if i.startswith('c')]), 3, ids)

    # --- mutual exclusion
    def _client_loop(self, lockd, name, limit, ilog, holder, quota, errors, counter):
        conn = HoldConn(lockd)
        try:
            while True:
                with counter['lock']:
                    if counter['left'] <= 0:
                        return
                    counter['left'] -= 1
                st, body = conn.acquire(name, limit=limit, wait='60s')
                if st != 200:
                    errors.append('%s: acquire %d %r' % (holder, st, body))
                    return
                pid = ilog.next_pid()
                ilog.line('start', holder, body['token'], pid)
                with counter['lock']:
                    counter['now'] += 1
                    counter['max'] = max(counter['max'], counter['now'])
                    counter['tokens'].append(body['token'])
                time.sleep(quota)
                with counter['lock']:
                    counter['now'] -= 1
                ilog.line('stop', holder, body['token'], pid)
                st, body = conn.release(body['hold'])
                if st != 200:
                    errors.append('%s: release %d %r' % (holder, st, body))
                    return
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append('%s: %r' % (holder, e))
        finally:
            conn.close()

    def _contend(self, name, limit, total, clients, hold_s=0.0):
        ds = [self.lockd('d%d' % i) for i in range(3)]
        log = self.path('%s.iv' % name)
        ilog = IntervalLog(log)
        counter = {'lock': threading.Lock(), 'left': total, 'now': 0, 'max': 0, 'tokens': []}
        errors = []
        threads = [threading.Thread(target=self._client_loop, daemon=True,
                                    args=(ds[i % 3], name, limit, ilog, 'c%d' % i, hold_s,
                                          errors, counter)) for i in range(clients)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120 * scale())
        ilog.close()
        self.assertFalse(any(t.is_alive() for t in threads), 'clients still running')
        self.assertEqual(errors, [])
        sys.stderr.write('[%d acquisitions in %.2fs] ' % (total, time.monotonic() - t0))
        self.assertEqual(len(counter['tokens']), total)
        self.assertEqual(len(set(counter['tokens'])), total, 'a token was handed out twice')
        return log, counter, ds

    def test_mutual_exclusion_many_clients(self):
        log, counter, _ = self._contend('mx', 1, self.mx_total, self.mx_clients)
        self.assertEqual(counter['max'], 1)
        rep = self.check_intervals(log)
        self.assertEqual(rep.terms, self.mx_total)

    def test_semaphore_never_more_than_limit(self):
        log, counter, _ = self._contend('sem', 3, 300, 10, hold_s=0.002)
        self.assertLessEqual(counter['max'], 3)
        ivs = self.intervals(log)
        events = sorted([(i.start, 1) for i in ivs] + [(i.end, -1) for i in ivs],
                        key=lambda e: (e[0], e[1]))
        now = peak = 0
        for _, d in events:
            now += d
            peak = max(peak, now)
        self.assertLessEqual(peak, 3, 'more than 3 holders at once by the interval log')
        self.assertGreaterEqual(peak, 2, 'the semaphore never had two holders')

    # --- simple semantics
    @valgrind_ok
    def test_try_once_and_wait_timeout(self):
        a, b = self.lockd('a'), self.lockd('b')
        conn = HoldConn(a)
        st, held = conn.acquire('t1', wait='0')
        self.assertEqual(st, 200, held)
        self.assertGreater(held['token'], 0)
        self.assertEqual(len(held['hold']), 32)
        for d in (a, b):
            t0 = time.monotonic()
            st, body = d.acquire('t1', wait='0')
            self.assertEqual(st, 408, body)
            self.assertIn('timed out waiting for t1', body['error'])
            self.assertLess(time.monotonic() - t0, 3 * scale())
        t0 = time.monotonic()
        st, body = b.acquire('t1', wait='400ms')
        self.assertEqual(st, 408, body)
        self.assertGreaterEqual(time.monotonic() - t0, 0.39)
        # A waiter is granted once the holder releases, with a larger token.
        res = {}
        th = threading.Thread(target=lambda: res.setdefault('r', b.acquire('t1', wait='30s')))
        th.start()
        time.sleep(0.3)
        self.assertEqual(conn.release(held['hold'])[0], 200)
        th.join(30 * scale())
        st, body = res['r']
        self.assertEqual(st, 200, body)
        self.assertGreater(body['token'], held['token'])
        self.assertEqual(b.release(body['hold'])[0], 200)
        conn.close()

    @valgrind_ok
    def test_connection_bound_hold_ends_with_connection(self):
        a, b = self.lockd('a'), self.lockd('b')
        conn = HoldConn(a)
        st, held = conn.acquire('cb', wait='0')
        self.assertEqual(st, 200, held)
        names = [lk['name'] for lk in a.locks()]
        self.assertIn('cb', names)
        self.assertNotIn(held['hold'], json.dumps(a.locks()))
        conn.close()
        st, body = b.acquire('cb', wait='20s')
        self.assertEqual(st, 200, body)
        self.assertGreater(body['token'], held['token'])
        wait_for(lambda: 'cb' not in [lk['name'] for lk in a.locks(local=True)], 5,
                 msg='hold forgotten by lockd a')

    @valgrind_ok
    def test_wait_answers_revocation_on_same_connection(self):
        a = self.lockd('a')
        conn = HoldConn(a)
        st, held = conn.acquire('w1', wait='0')
        self.assertEqual(st, 200, held)
        st, body = conn.wait(held['hold'], wait='200ms')
        self.assertEqual(st, 200, body)
        self.assertEqual(body['state'], 'held')
        self.assertEqual(body.get('conn'), held.get('conn'), 'not the same connection')
        # Another connection cannot use the hold id for a long-poll of its
        # own connection-bound hold, but release works with the secret.
        st, body = a.renew(held['hold'])
        self.assertIn(st, (200, 409))
        self.assertEqual(a.release(held['hold'])[0], 200)
        st, body = conn.wait(held['hold'], wait='1s')
        self.assertEqual(st, 404, body)
        conn.close()

    def test_ttl_hold_expires_without_renewal(self):
        a, b = self.lockd('a'), self.lockd('b')
        r = self.lockctl(a, 'acquire', 'tt', '--ttl', '1500ms')
        self.assertEqual(r.returncode, 0, r.stderr)
        held = json.loads(r.stdout)
        self.assertEqual(held['name'], 'tt')
        # Renewals keep it.
        for _ in range(3):
            time.sleep(0.6)
            r = self.lockctl(a, 'renew', held['hold'])
            self.assertEqual(r.returncode, 0, r.stderr)
        st, body = b.acquire('tt', wait='0')
        self.assertEqual(st, 408, body)
        # Then the client "crashes": nobody renews.
        t0 = time.monotonic()
        st, body = b.acquire('tt', wait='30s')
        self.assertEqual(st, 200, body)
        self.assertGreater(time.monotonic() - t0, 0.5)
        self.assertGreater(body['token'], held['token'])
        r = self.lockctl(a, 'renew', held['hold'])
        self.assertNotEqual(r.returncode, 0)
        r = self.lockctl(a, 'release', held['hold'])
        self.assertIn(r.returncode, (0, 1))
        self.assertEqual(self.lockctl(b, 'release', body['hold']).returncode, 0)

    def test_limit_mismatch_is_409(self):
        a = self.lockd('a')
        conn = HoldConn(a)
        st, held = conn.acquire('sm', limit=2, wait='0')
        self.assertEqual(st, 200, held)
        self.assertEqual(held['limit'], 2)
        st, body = a.acquire('sm', limit=3, wait='0')
        self.assertEqual(st, 409, body)
        st, body = a.acquire('sm', limit=2, wait='0')
        self.assertEqual(st, 200, body)
        st, body = a.acquire('sm', limit=2, wait='0')
        self.assertEqual(st, 408, body)
        conn.close()

    @valgrind_ok
    def test_bad_requests_get_4xx_and_lockd_keeps_serving(self):
        a = self.lockd('a')
        bad = [
            ('POST', '/v1/acquire', '{"name": "x"', 400),
            ('POST', '/v1/acquire', '[1,2]', 400),
            ('POST', '/v1/acquire', {'limit': 1}, 400),
            ('POST', '/v1/acquire', {'name': ''}, 400),
            ('POST', '/v1/acquire', {'name': '.hidden'}, 400),
            ('POST', '/v1/acquire', {'name': 'a/b'}, 400),
            ('POST', '/v1/acquire', {'name': '../x'}, 400),
            ('POST', '/v1/acquire', {'name': 'x' * 129}, 400),
            ('POST', '/v1/acquire', {'name': 7}, 400),
            ('POST', '/v1/acquire', {'name': 'ok', 'limit': 0}, 400),
            ('POST', '/v1/acquire', {'name': 'ok', 'limit': -1}, 400),
            ('POST', '/v1/acquire', {'name': 'ok', 'limit': 'x'}, 400),
            ('POST', '/v1/acquire', {'name': 'ok', 'wait': 'soon'}, 400),
            ('POST', '/v1/acquire', {'name': 'ok', 'ttl': '-1s'}, 400),
            ('POST', '/v1/acquire', {'name': 'ok', 'bind': 'forever'}, 400),
            ('POST', '/v1/release', {'hold': 'f' * 32}, 404),
            ('POST', '/v1/release', {'hold': 'nothex'}, 404),
            ('POST', '/v1/release', {}, 400),
            ('POST', '/v1/renew', {'hold': '0' * 32}, 404),
            ('GET', '/v1/wait?hold=%s' % ('a' * 32), None, 404),
            ('GET', '/v1/wait?hold=%s&wait=x' % ('a' * 32), None, 400),
            ('GET', '/v1/nothing', None, 404),
            ('GET', '/v1/acquire', None, 405),
        ]
        for method, path, body, want in bad:
            st, got = a.request(method, path, body)
            self.assertEqual(st, want, '%s %s %r -> %d %r' % (method, path, body, st, got))
            self.assertIsInstance(got, dict, got)
            self.assertIn('error', got)
        st, got = a.request('POST', '/v1/acquire', '{"name":"%s"}' % ('y' * 70000))
        self.assertEqual(st, 413, got)
        # Releasing another client's hold needs its secret id: a guess fails.
        conn = HoldConn(a)
        st, held = conn.acquire('mine', wait='0')
        self.assertEqual(st, 200, held)
        guess = held['hold'][:-1] + ('0' if held['hold'][-1] != '0' else '1')
        self.assertEqual(a.release(guess)[0], 404)
        self.assertTrue(a.ready())
        self.assertTrue(a.alive())
        self.assertIn('lockd_holds', a.metrics())
        conn.close()

    # --- lockctl
    @valgrind_ok
    def test_lockctl_run_env_and_exit_status(self):
        a = self.lockd('a')
        out = self.path('env.out')
        r = self.lockctl(a, 'run', 'job', '--', 'sh', '-c',
                         'echo "$LOCK_NAME $LOCK_TOKEN" > %s; exit 7' % out)
        self.assertEqual(r.returncode, 7, r.stderr)
        with open(out) as f:
            name, token = f.read().split()
        self.assertEqual(name, 'job')
        self.assertGreater(int(token), 0)
        wait_for(lambda: a.locks() == [], 5, msg='released after the command')
        r = self.lockctl(a, 'run', 'job', '--', 'sh', '-c', 'kill -TERM $$')
        self.assertEqual(r.returncode, 128 + signal.SIGTERM, r.stderr)
        r = self.lockctl(a, 'run', 'job', '--', self.path('no-such-command'))
        self.assertEqual(r.returncode, 127, r.stderr)
        r = self.lockctl(a, 'run', 'job', '-n', '2', '--', 'true')
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_lockctl_run_timeout_exits_75(self):
        a = self.lockd('a')
        conn = HoldConn(a)
        self.assertEqual(conn.acquire('busy', wait='0')[0], 200)
        t0 = time.monotonic()
        r = self.lockctl(a, 'run', 'busy', '--wait', '300ms', '--', 'true')
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn('timed out waiting for busy', r.stderr)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        conn.close()

    # --- listings
    def listed(self, lockd, name, **kw):
        """[lock] of lockd's GET /v1/locks?name=NAME: ([holder], [waiter]) as
        (owner, here) pairs, and the lock itself; ([], [], None) if absent."""
        locks = lockd.locks(name=name, **kw)
        self.assertLessEqual(len(locks), 1, locks)
        if not locks:
            return [], [], None
        lk = locks[0]
        self.assertEqual(lk['name'], name)
        pairs = [[(e['owner'], e['here']) for e in lk[k]] for k in ('holders', 'waiting')]
        return pairs[0], pairs[1], lk

    @valgrind_ok
    def test_list_shows_every_nodes_holders_and_waiters(self):
        a, b = self.lockd('a'), self.lockd('b')
        ca, cb = HoldConn(a), HoldConn(b)
        st, held = ca.acquire('shared', wait='0')
        self.assertEqual(st, 200, held)
        res = {}
        th = threading.Thread(target=lambda: res.setdefault('r', cb.acquire('shared', wait='60s')))
        th.start()
        if self.sees_remote_waiters:
            wait_for(lambda: self.listed(a, 'shared')[1] == [('b', False)], 10,
                     msg="b's waiter visible in a's listing")
        else:
            wait_for(lambda: self.listed(b, 'shared')[1] == [('b', True)], 10,
                     msg="b's waiter queued")
        # b: a's holder (not here), its own waiter.
        holders, waiting, lk = self.listed(b, 'shared')
        self.assertEqual(holders, [('a', False)])
        self.assertEqual(lk['holders'][0]['token'], held['token'])
        self.assertEqual(waiting, [('b', True)])
        self.assertEqual((lk['holders_here'], lk['waiting_here'], lk['tokens']), (0, 1, []))
        # a: its own hold; b's waiter where the backend shows waiters, with
        # the token it will get.
        holders, waiting, lk = self.listed(a, 'shared')
        self.assertEqual(holders, [('a', True)])
        self.assertEqual(lk['tokens'], [held['token']])
        if self.sees_remote_waiters:
            self.assertEqual(waiting, [('b', False)])
            if self.waiter_tokens_known:
                self.assertGreater(lk['waiting'][0]['token'], held['token'])
        else:
            self.assertEqual(waiting, [])
        # Every name, without a name given, and never a hold id.
        self.assertIn('shared', [lk['name'] for lk in b.locks()])
        self.assertNotIn(held['hold'], json.dumps(a.locks()) + json.dumps(b.locks()))
        # lockctl list: a table, or the JSON.
        r = self.lockctl(b, 'list')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r'(?m)^NAME\s+STATE\s+TOKEN\s+OWNER\s+HERE\s+KEY$')
        self.assertRegex(r.stdout, r'(?m)^shared\s+held\s+%d\s+a\s+no\s' % held['token'])
        self.assertRegex(r.stdout, r'(?m)^shared\s+waiting\s+\S+\s+b\s+yes\b')
        r = self.lockctl(a, 'list', 'shared', '--json')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([lk['name'] for lk in json.loads(r.stdout)['locks']], ['shared'])
        # A name nobody holds; bad queries.
        self.assertEqual(a.locks(name='free'), [])
        for q in ('name=../x', 'name=', 'name=%00', 'name=' + 'x' * 129, 'name=' + 'x' * 5000,
                  'limit=0', 'limit=x', 'limit=1001'):
            st, body = a.request('GET', '/v1/locks?' + q)
            self.assertEqual(st, 400, (q, body))
        r = self.lockctl(a, 'list', 'bad/name')
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn('name', r.stderr)
        # Handover: a sees b holding, then nobody.
        self.assertEqual(ca.release(held['hold'])[0], 200)
        th.join(60 * scale())
        st, got = res['r']
        self.assertEqual(st, 200, got)
        wait_for(lambda: self.listed(a, 'shared')[:2] == ([('b', False)], []), 10,
                 msg="a sees b's hold")
        self.assertEqual(self.listed(a, 'shared')[2]['holders'][0]['token'], got['token'])
        self.assertEqual(cb.release(got['hold'])[0], 200)
        wait_for(lambda: a.locks(name='shared') == [] and b.locks() == [], 10,
                 msg='released everywhere')
        ca.close()
        cb.close()

    def test_list_semaphore_holders(self):
        a, b, c = self.lockd('a'), self.lockd('b'), self.lockd('c')
        conns = [HoldConn(a), HoldConn(a), HoldConn(b), HoldConn(b)]
        for conn in conns[:3]:
            st, body = conn.acquire('pool', limit=3, wait='0')
            self.assertEqual(st, 200, body)
        res = {}
        th = threading.Thread(
            target=lambda: res.setdefault('r', conns[3].acquire('pool', limit=3, wait='60s')))
        th.start()
        wait_for(lambda: self.listed(b, 'pool')[1] == [('b', True)], 10, msg="b's waiter queued")
        if self.sees_remote_waiters:
            wait_for(lambda: self.listed(a, 'pool')[1] == [('b', False)], 10,
                     msg="b's waiter visible in a's listing")
        holders, waiting, lk = self.listed(a, 'pool')
        self.assertEqual(sorted(holders), [('a', True), ('a', True), ('b', False)])
        self.assertEqual(lk['limit'], 3)
        holders, waiting, lk = self.listed(b, 'pool')
        self.assertEqual(sorted(holders), [('a', False), ('a', False), ('b', True)])
        self.assertEqual(waiting, [('b', True)])
        # c uses no slot: it learns the size from the query.
        holders, waiting, lk = self.listed(c, 'pool', limit=3)
        self.assertEqual(sorted(holders), [('a', False), ('a', False), ('b', False)])
        self.assertEqual(waiting, [('b', False)] if self.sees_remote_waiters else [])
        tokens = [e['token'] for e in lk['holders']]
        self.assertEqual(len(set(tokens)), 3, lk)
        for conn in conns[:3]:
            conn.close()
        th.join(60 * scale())
        self.assertEqual(res['r'][0], 200, res['r'])
        conns[3].close()

    def test_lockctl_list_and_errors(self):
        a = self.lockd('a')
        conn = HoldConn(a)
        st, held = conn.acquire('listed', wait='0')
        r = self.lockctl(a, 'list')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('listed', r.stdout)
        self.assertNotIn(held['hold'], r.stdout)
        r = self.lockctl(a, 'release', '0' * 32)
        self.assertNotEqual(r.returncode, 0)
        self.assertTrue(r.stderr.strip())
        r = self.lockctl(a, 'run', 'bad/name', '--', 'true')
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('name', r.stderr)
        conn.close()
        r = subprocess.run([lockctl_bin(), '--socket', self.path('none.sock'), 'list'],
                           capture_output=True, text=True, timeout=10)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('none.sock', r.stderr)

    @valgrind_ok
    def test_lockd_sigterm_stops_commands_and_hands_over(self):
        a, b, log, p1, first, p2 = self.holder_and_waiter('st')
        a.kill(signal.SIGTERM)
        self.assertEqual(p1.wait_exit(15), 75, p1.log())
        self.assertIn('revoked', p1.log())
        a.wait_exit(15)
        nxt = self.wait_new_term(log, after_ns=first.start, exclude_id='h1', timeout=20)
        self.assertGreater(int(nxt.token), int(first.token))
        self.check_intervals(log)
        p2.kill(signal.SIGTERM)
        p2.wait_exit(15)

    def test_kill9_lockctl_releases_hold(self):
        a, b, log, p1, first, p2 = self.holder_and_waiter('k9')
        self.assertEqual(len(self.holders(log)), 1)
        p1.kill(signal.SIGKILL)
        nxt = self.wait_new_term(log, after_ns=first.start, exclude_id='h1', timeout=20)
        self.assertGreater(int(nxt.token), int(first.token))
        self.check_intervals(log)
        p2.kill(signal.SIGTERM)
        self.assertEqual(p2.wait_exit(15), 128 + signal.SIGTERM)

    def test_kill9_lockctl_kills_the_whole_tree_before_handover(self):
        """Issue 10.3: kill -9 of `lockctl run`: descendants of its command
        that left the group or session die within a second, and the next
        holder is granted only once all of them are gone."""
        a, b = self.lockd('a'), self.lockd('b')
        log, wlog = self.path('tree.iv'), self.path('tree-workers.iv')
        argv = [lockctl_bin(), '--socket', a.socket, 'run', 'tree', '--'] + \
            self.tree_cmd(log, wlog)
        p1 = Proc(self, self._wrap_tool(argv), 'lockctl-h1', env=self.elect_env({'ELECT_ID': 'h1'}))
        self.one_holder(log)
        wait_for(lambda: len(self.intervals(wlog)) == 3, 10, msg='three workers started')
        p2 = self.lockctl_run(b, 'tree', 'h2', log, args=['--wait', '60s'])
        time.sleep(0.3)
        t0 = now_ns()
        p1.kill(signal.SIGKILL)
        self.tree_died_before_next_term(log, wlog, t0, exclude_id='h1')
        self.check_intervals(log)
        p2.kill(signal.SIGTERM)
        p2.wait_exit(15)

    kill9_rounds = 30
    kill9_mem_mb = 256

    def test_kill9_lockctl_handover_never_overlaps(self):
        """kill -9 of `lockctl run`: the kernel closes lockctl's socket (lockd
        sees EOF) before it sends PDEATHSIG to the command, so lockd must not
        free the lock until the command is dead. Each round a waiter queues
        through the other lockd (every third round through the holder's own)
        and the holder's lockctl is killed; no handover may overlap. The
        command holds memory (leadercmd --mem), as a real one would, so its
        death takes longer than a backend handover (a few ms)."""
        ds = [self.lockd('a'), self.lockd('b')]
        log = self.path('k9r.iv')
        mem = ['--mem', str(self.kill9_mem_mb)]
        cur = self.lockctl_run(ds[0], 'k9r', 'r0', log, extra=mem)
        self.one_holder(log)
        t0 = time.monotonic()
        at = 0
        for i in range(1, self.kill9_rounds + 1):
            at = at if i % 3 == 0 else 1 - at
            d = ds[at]
            nxt = self.lockctl_run(d, 'k9r', 'r%d' % i, log, args=['--wait', '60s'], extra=mem)
            wait_for(lambda: [lk['waiting_here'] for lk in d.locks(local=True)] == [1], 10,
                     msg='round %d: the waiter queued in lockd %s' % (i, d.id))
            time.sleep(0.05)              # and in the backend
            t_kill = now_ns()
            cur.kill(signal.SIGKILL)
            self.wait_new_term(log, after_ns=t_kill, exclude_id='r%d' % (i - 1), timeout=20)
            self.assertEqual(cur.wait_exit(10), -signal.SIGKILL)
            cur = nxt
        ivs = self.intervals(log)
        gaps = [(b.start - a.end) / 1e6 for a, b in zip(ivs, ivs[1:]) if a.end is not None]
        rep = checker.check([log])
        sys.stderr.write('[%d handovers in %.1fs: %d overlaps%s; gap dead->start min %.3f ms, '
                         'median %.3f ms] ' % (
                             self.kill9_rounds, time.monotonic() - t0, len(rep.overlaps),
                             ' (max %.3f ms)' % (max(o[2] for o in rep.overlaps) / 1e6)
                             if rep.overlaps else '', min(gaps), sorted(gaps)[len(gaps) // 2]))
        self.assertEqual(len(ivs), self.kill9_rounds + 1)
        self.check_intervals(log)
        cur.kill(signal.SIGTERM)
        cur.wait_exit(15)

    def test_kill9_lockd_kills_its_commands_and_frees_locks(self):
        a, b, log, p1, first, p2 = self.holder_and_waiter('kd')
        a.kill(signal.SIGKILL)
        self.assertEqual(p1.wait_exit(10), 75, p1.log())
        wait_for(lambda: self.intervals(log)[0].end is not None, 5,
                 msg='the command under the dead lockd died')
        nxt = self.wait_new_term(log, after_ns=first.start, exclude_id='h1', timeout=60)
        self.assertGreater(int(nxt.token), int(first.token))
        self.check_intervals(log)
        p2.kill(signal.SIGTERM)
        p2.wait_exit(15)


class SessionCutCases:
    """Mixin for backends with a network session (etcd, zk): needs
    lock_url(proxy_port) and backend_addr()."""

    cut_ttl = '3s'
    cut_kill_grace = '500ms'

    def backend_addr(self):
        raise NotImplementedError

    def test_list_answers_own_holds_when_the_backend_is_unreachable(self):
        from proxy import FaultProxy
        p = FaultProxy(self.backend_addr())
        p.start()
        self.addCleanup(p.stop)
        a = self.lockd('a', url=self.lock_url(proxy_port=p.port),
                       args=['--request-timeout', '1s'])
        conn = HoldConn(a)
        st, held = conn.acquire('off', wait='0')
        self.assertEqual(st, 200, held)
        self.assertEqual([(e['owner'], e['here']) for e in a.locks()[0]['holders']], [('a', True)])
        p.blackhole()
        # lockctl list and a plain request at once: both within the request
        # timeout (+ lockd's slack), before the session may be lost.
        res = {}
        th = threading.Thread(target=lambda: res.setdefault('r', self.lockctl(a, 'list')))
        th.start()
        t0 = time.monotonic()
        st, body = a.request('GET', '/v1/locks', timeout=20)
        took = time.monotonic() - t0
        th.join(30 * scale())
        self.assertEqual(st, 200, body)
        self.assertIn('backend_error', body)
        self.assertLess(took, 5 * scale())
        self.assertEqual([(lk['name'], [(e['owner'], e['here'], e['token']) for e in lk['holders']])
                          for lk in body['locks']], [('off', [('a', True, held['token'])])])
        r = res['r']
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("only this lockd's own holds are shown", r.stderr)
        self.assertRegex(r.stdout, r'(?m)^off\s+held\s+%d\s+a\s+yes' % held['token'])
        p.pass_()
        conn.close()
        wait_for(lambda: a.locks() == [], 30, msg='listing works again after the cut')

    def test_session_cut_stops_holder_before_other_lockd_is_granted(self):
        from proxy import FaultProxy
        p = FaultProxy(self.backend_addr())
        p.start()
        self.addCleanup(p.stop)
        a = self.lockd('a', url=self.lock_url(proxy_port=p.port), ttl=self.cut_ttl,
                       kill_grace=self.cut_kill_grace)
        b = self.lockd('b', ttl=self.cut_ttl, kill_grace=self.cut_kill_grace)
        log = self.path('cut.iv')
        p1 = self.lockctl_run(a, 'cut', 'h1', log, extra=['--ignore-term'])
        first = self.one_holder(log)
        p2 = self.lockctl_run(b, 'cut', 'h2', log, args=['--wait', '120s'])
        time.sleep(0.5)
        self.assertEqual(len(self.holders(log)), 1)
        t_cut = now_ns()
        p.blackhole()
        self.assertEqual(p1.wait_exit(30), 75, p1.log())
        self.assertIn('session may be lost', p1.log())
        nxt = self.wait_new_term(log, after_ns=t_cut, exclude_id='h1', timeout=60)
        old = [i for i in self.intervals(log) if i.pid == first.pid][0]
        self.assertIsNotNone(old.end)
        sys.stderr.write('[holder stopped %.0f ms after the cut, next granted %.0f ms after]'
                         % ((old.end - t_cut) / 1e6, (nxt.start - t_cut) / 1e6))
        self.assertLess(old.end, nxt.start)
        self.check_intervals(log)
        p.pass_()
        p2.kill(signal.SIGTERM)
        p2.wait_exit(15)
