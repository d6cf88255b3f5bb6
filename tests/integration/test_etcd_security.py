"""elect's etcd backend against an etcd with TLS and user/password auth.

Every test starts its own etcd (Debian's etcd-server) on free loopback ports
and stops it by pid. Certificates (a throwaway CA, a server certificate for
IP:127.0.0.1, a client certificate, and a second unrelated CA) are made with
the `openssl` command in the test's temp dir; nothing is committed.

Covered: https with --tls-ca; a wrong CA is refused with one clear log line
while the agent keeps retrying; client certificates (--client-cert-auth);
--auth USER:PASSWORD with a user limited to the election prefix; a wrong
password is one error line and never leadership; an auth token that expires
between requests is renewed without losing leadership; neither the logs nor
`elect status` ever show the password.
"""

import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from harness import ElectTestCase, scale, valgrind_ok, wait_for  # noqa: E402
from certs import OPENSSL, make_certs, warn_lines  # noqa: E402
from etcd_server import EtcdServer, have_etcd  # noqa: E402


def timing():
    """Agent timing; valgrind gets a longer TTL."""
    if scale() >= 5:
        return dict(ttl='10s', renew='2s', kill_grace='500ms')
    return dict(ttl='4s', renew='1s', kill_grace='300ms')


PASSWORD = 'Pw-7c1e9d-secret'
WRONG_PASSWORD = 'Pw-wrong-44b0aa'


@unittest.skipUnless(have_etcd(), 'etcd-server and etcd-client are not installed')
@unittest.skipUnless(OPENSSL, 'the openssl command is not installed (Debian package openssl)')
class EtcdSecurityCase(ElectTestCase):

    def setUp(self):
        self._etcds = []
        self.addCleanup(self._stop_etcds)     # runs after the agents are stopped
        super().setUp()

    def _stop_etcds(self):
        for s in reversed(self._etcds):
            s.stop()

    def etcd(self, tls=None, extra_args=()):
        s = EtcdServer(self.tmp, 'etcd%d' % len(self._etcds), tls=tls, extra_args=extra_args)
        self._etcds.append(s)
        s.start()
        return s

    def certs(self):
        return make_certs(self.path('pki'))

    def sidecar(self, id, srv, args=(), env=None, **t):
        kw = timing()
        kw.update(t)
        # Under valgrind an OpenSSL handshake alone can take seconds: give
        # requests time in proportion to the longer TTL (the default is
        # min(renew, 2s)), as every other duration here is scaled.
        extra = ['--request-timeout', '6s'] if scale() >= 5 else []
        return self.agent(mode='sidecar', id=id, name='web', backend='etcd://%s/web' % srv.endpoint,
                          args=extra + list(args), env=env, **kw)

    def keys(self, srv, prefix='web/'):
        r = srv.ctl('get', '--prefix', prefix)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        return dict(zip(lines[0::2], lines[1::2]))


class EtcdTLS(EtcdSecurityCase):

    @valgrind_ok
    def test_https_with_ca_leads(self):
        c = self.certs()
        srv = self.etcd(tls=dict(cert=c['server.crt'], key=c['server.key'], ca=c['ca.crt']))
        a = self.sidecar('t0', srv, ['--tls-ca', c['ca.crt']])
        st = a.wait_state('leader', 10)
        self.assertEqual(list(self.keys(srv).values()), ['t0'])
        self.assertGreater(st['token'], 0)
        b = self.sidecar('t1', srv, ['--tls-ca', c['ca.crt']])
        wait_for(lambda: b.status()['leader'] == 't0', 10)
        # Clean exit revokes the lease over https: t1 leads at once.
        self.assertEqual(a.stop(), 0)
        b.wait_state('leader', 3)
        self.assertNotIn('failed', a.log())

    def test_wrong_ca_is_refused_and_retried(self):
        c = self.certs()
        srv = self.etcd(tls=dict(cert=c['server.crt'], key=c['server.key'], ca=c['ca.crt']))
        a = self.sidecar('w0', srv, ['--tls-ca', c['other-ca.crt']])
        self.assert_never_leads(a, 4)
        log = a.log()
        # One warning: the agent's "backend unreachable" line (issue 10.7);
        # the etcd client's own line is info, as the agent reports it.
        errs = warn_lines(log, r'etcd: .*fail|backend unreachable')
        self.assertEqual(len(errs), 1, 'want one error line, got:\n' + log[-3000:])
        self.assertRegex(errs[0], r'(?i)certificate', errs[0])
        # Still retrying (debug lines, -v), and still alive.
        retries = [ln for ln in log.splitlines() if re.search(r'etcd: .* failed', ln)]
        self.assertGreaterEqual(len(retries), 3, log[-3000:])
        # Plain http to the https port is refused too, without a crash.
        h = self.sidecar('w1', srv)
        self.assert_never_leads(h, 1.5)
        self.assertEqual(len(warn_lines(h.log(), r'etcd: .*fail|backend unreachable')), 1,
                         h.log()[-3000:])
        # The right CA works next to them.
        ok = self.sidecar('w2', srv, ['--tls-ca', c['ca.crt']])
        ok.wait_state('leader', 10)
        self.assertTrue(a.alive() and h.alive())

    def test_client_certificate_auth(self):
        c = self.certs()
        srv = self.etcd(tls=dict(cert=c['server.crt'], key=c['server.key'], ca=c['ca.crt'],
                                 client_cert_auth=True, client_cert=c['client.crt'],
                                 client_key=c['client.key']))
        # Without a client certificate: refused, keeps trying.
        n = self.sidecar('c0', srv, ['--tls-ca', c['ca.crt']])
        self.assert_never_leads(n, 2)
        self.assertEqual(len(warn_lines(n.log(), r'etcd: .*fail|backend unreachable')), 1,
                         n.log()[-3000:])
        a = self.sidecar('c1', srv, ['--tls-ca', c['ca.crt'], '--tls-cert', c['client.crt'],
                                     '--tls-key', c['client.key']])
        a.wait_state('leader', 10)
        self.assertEqual(list(self.keys(srv).values()), ['c1'])
        self.assertTrue(n.alive())
        self.assertFalse(n.is_leader())


class EtcdAuth(EtcdSecurityCase):

    def enable_auth(self, srv):
        """root (needed by `auth enable`) and a user 'elect' that may only
        read and write the election prefix."""
        for args in (['user', 'add', 'root:root-pw-1'],
                     ['role', 'add', 'elect-role'],
                     ['role', 'grant-permission', 'elect-role', '--prefix=true', 'readwrite', 'web/'],
                     ['user', 'add', 'elect:' + PASSWORD],
                     ['user', 'grant-role', 'elect', 'elect-role'],
                     ['auth', 'enable']):
            r = srv.ctl(*args)
            self.assertEqual(r.returncode, 0, '%s: %s' % (args, r.stderr))
        srv.auth = 'root:root-pw-1'

    def assert_no_password(self, agents):
        for a in agents:
            for pw in (PASSWORD, WRONG_PASSWORD):
                self.assertNotIn(pw, a.log(), 'password in the log of ' + a.id)
            r = self.run_elect(['status', '--socket', a.socket])
            self.assertEqual(r.returncode in (0, 1), True, r.stderr)
            self.assertIn('"state"', r.stdout)
            for pw in (PASSWORD, WRONG_PASSWORD):
                self.assertNotIn(pw, r.stdout + r.stderr, 'password in elect status of ' + a.id)

    @valgrind_ok
    def test_password_right_and_wrong(self):
        srv = self.etcd()
        self.enable_auth(srv)
        t_bad = time.monotonic()
        bad = self.sidecar('p0', srv, ['--auth', 'elect:' + WRONG_PASSWORD])
        # ELECT_AUTH keeps the password off the command line.
        good = self.sidecar('p1', srv, env={'ELECT_AUTH': 'elect:' + PASSWORD})
        good.wait_state('leader', 10)
        self.assertEqual(list(self.keys(srv).values()), ['p1'])
        self.assert_never_leads(bad, 2)
        # One warning: the agent's "backend unreachable" line with etcd's
        # reason (issue 10.7); the client's line naming the user is info.
        errs = warn_lines(bad.log(), r'(?i)authenticat|etcd: .*fail|backend unreachable')
        self.assertEqual(len(errs), 1, 'want one error line, got:\n' + bad.log()[-3000:])
        self.assertIn('authentication failed', errs[0])
        self.assertIn("authentication as 'elect' failed", bad.log())
        # It keeps trying, but backs off (1 s doubling up to 4 s): every
        # login costs etcd a bcrypt.
        wait_for(lambda: bad.log().count("authentication as 'elect' failed") >= 3, 15,
                 msg='not retrying:\n' + bad.log()[-3000:])
        tries = bad.log().count("authentication as 'elect' failed")
        self.assertLessEqual(tries, 2 + (time.monotonic() - t_bad) / 1.0,
                             'no backoff between logins:\n' + bad.log()[-3000:])
        self.assertNotIn('p0', self.keys(srv).values())
        self.assert_no_password([good, bad])
        r = self.run_elect(['--name', 'web', '--backend', 'etcd://%s/web' % srv.endpoint,
                            '--auth', 'elect:' + PASSWORD, '--check-config'] +
                           sum((['--' + k.replace('_', '-'), v] for k, v in timing().items()), []) + ['--', 'true'])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(PASSWORD, r.stdout + r.stderr)
        # Nobody leads after p1 leaves; once the password p0 has becomes
        # the right one, p0 logs in and leads without a restart.
        self.assertEqual(good.stop(), 0)
        self.assert_never_leads(bad, 1)
        self.assertEqual(self.keys(srv), {})
        r = srv.ctl('user', 'passwd', 'elect', '--interactive=false', input=WRONG_PASSWORD + '\n')
        self.assertEqual(r.returncode, 0, r.stderr)
        bad.wait_state('leader', 10)
        self.assertIn("authenticated as 'elect'", bad.log())
        self.assertEqual(len(warn_lines(bad.log(), r'(?i)authenticat|etcd: .*fail')), 1,
                         bad.log()[-3000:])
        self.assert_no_password([bad])

    def test_token_expiry_keeps_leadership(self):
        # Simple tokens expire after --auth-token-ttl seconds without use;
        # with 1 s and a renew interval of 2 s every request after a pause
        # meets an expired token, and the agent has to log in again.
        srv = self.etcd(extra_args=['--auth-token-ttl', '1'])
        self.enable_auth(srv)
        a = self.sidecar('x0', srv, ['--auth', 'elect:' + PASSWORD], ttl='6s', renew='2s')
        st = a.wait_state('leader', 10)
        since = st.get('since')
        # A follower waits on a watch of x0's key, opened with a token that
        # expires under it.
        f = self.sidecar('x1', srv, ['--auth', 'elect:' + PASSWORD], ttl='6s', renew='2s')
        wait_for(lambda: f.status()['leader'] == 'x0', 10)
        end = time.monotonic() + 7 * scale()
        states = set()
        while time.monotonic() < end:
            s = a.status()
            states.add(s['state'])
            self.assertEqual(s.get('since'), since, 'leadership changed:\n' + a.log()[-3000:])
            time.sleep(0.05)
        self.assertEqual(states, {'leader'}, a.log()[-3000:])
        # The tokens did expire under it (etcd says so), and it logged in again.
        self.assertGreaterEqual(srv.log().count('invalid auth token'), 2, srv.log()[-3000:])
        self.assertEqual(f.state(), 'candidate')
        self.assert_no_password([a, f])
        # Clean exit of x0 (its lease revoke also meets an expired token):
        # the follower's watch sees the key go and it leads well before a
        # renew interval would have told it.
        t0 = time.monotonic()
        self.assertEqual(a.stop(), 0)
        f.wait_state('leader', 5)
        self.assertLess(time.monotonic() - t0, 1.5 * scale(), f.log()[-3000:])
        for x in (a, f):
            self.assertEqual(warn_lines(x.log(), r'(?i)authenticat|etcd: .*fail'), [], x.log()[-3000:])
            for pw in (PASSWORD, WRONG_PASSWORD):
                self.assertNotIn(pw, x.log())


if __name__ == '__main__':
    unittest.main()
