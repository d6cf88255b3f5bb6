"""elect's Consul backend against a Consul with TLS and with ACLs (issue 11).

Every test starts its own `consul agent -dev` (tests/consul_server.py) on
free loopback ports and stops it by pid. Certificates (a throwaway CA, a
server certificate for IP:127.0.0.1, a client certificate, and a second
unrelated CA) are made with the `openssl` command in the test's temp dir
(tests/certs.py, shared with the etcd tests); nothing is committed.

Covered: https only (plain HTTP off) with --tls-ca, with CONSUL_CACERT and with
CONSUL_HTTP_ADDR=https://... for consul:///PREFIX; a
wrong CA, and plain http to the https port, are refused with one clear log
line while the agent keeps retrying; client certificates when Consul verifies
incoming connections (--tls-cert/--tls-key). ACLs on with default deny and a
token whose policy allows only the election prefix (key_prefix write) and
sessions (session_prefix write): it leads, and can write nothing else; a
wrong token is one clear line, never logged, never leadership, and is
retried with a back-off (counted in Consul's own log of refused requests),
until the token becomes valid and the agent leads without a restart.
"""

import json
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from harness import scale, valgrind_ok, wait_for  # noqa: E402
from certs import OPENSSL, make_certs, warn_lines  # noqa: E402
from test_consul import ConsulTestCase  # noqa: E402

ROOT_TOKEN = 'b1a2c3d4-0000-4000-8000-000000000001'
WRONG_TOKEN = 'deadbeef-dead-4bad-beef-00000000bad0'
FAIL_RE = r'consul: .*fail|backend unreachable'


def timing():
    if scale() >= 5:
        return dict(ttl='15s', renew='3s', kill_grace='1s')
    return dict(ttl='10s', renew='2s', kill_grace='500ms')


@unittest.skipUnless(OPENSSL, 'the openssl command is not installed (Debian package openssl)')
class ConsulSecurityCase(ConsulTestCase):

    def certs(self):
        return make_certs(self.path('pki'))

    def tls_consul(self, c, verify_incoming=False):
        tls = dict(cert=c['server.crt'], key=c['server.key'], ca=c['ca.crt'],
                   verify_incoming=verify_incoming)
        if verify_incoming:
            tls.update(client_cert=c['client.crt'], client_key=c['client.key'])
        return self.consul(tls=tls)

    def sidecar(self, id, srv, args=(), env=None, backend=None, **t):
        kw = timing()
        kw.update(t)
        # Under valgrind a TLS handshake alone can take seconds: give
        # requests time in proportion to the longer TTL.
        extra = ['--request-timeout', '6s'] if scale() >= 5 else []
        return self.agent(mode='sidecar', id=id, name='web',
                          backend=backend or 'consul://%s/web' % srv.endpoint,
                          args=extra + list(args), env=env, **kw)

    def assert_one_failure_line(self, a, want=None):
        errs = warn_lines(a.log(), FAIL_RE)
        self.assertEqual(len(errs), 1, 'want one error line, got:\n' + a.log()[-3000:])
        if want:
            self.assertRegex(errs[0], want)
        return errs[0]


class ConsulTLS(ConsulSecurityCase):

    @valgrind_ok
    def test_https_with_ca_leads(self):
        c = self.certs()
        srv = self.tls_consul(c)
        self.assertTrue(srv.http_addr.startswith('https://'))
        a = self.sidecar('t0', srv, ['--tls-ca', c['ca.crt']])
        st = a.wait_state('leader', 20)
        kv = srv.kv_get('web/.lock')
        self.assertEqual(kv['Value'], 't0')
        self.assertEqual(st['token'], kv['ModifyIndex'])
        # Consul's own variable names the CA as well (and means https).
        b = self.sidecar('t1', srv, env={'CONSUL_CACERT': c['ca.crt']})
        # And CONSUL_HTTP_ADDR=https://... for consul:///PREFIX.
        h = self.sidecar('t2', srv, backend='consul:///web',
                         env={'CONSUL_HTTP_ADDR': srv.http_addr, 'CONSUL_CACERT': c['ca.crt']})
        wait_for(lambda: b.status()['leader'] == 't0' and h.status()['leader'] == 't0', 20)
        # Clean exit releases the key and destroys the session over https:
        # a waiter leads at once.
        self.assertEqual(a.stop(), 0)
        nxt = wait_for(lambda: ([x for x in (b, h) if x.is_leader()] or [None])[0], 5,
                       msg='t1 or t2 leads')
        self.assertEqual(srv.kv_get('web/.lock')['Value'], nxt.id)
        wait_for(lambda: all(x.status()['leader'] == nxt.id for x in (b, h)), 10)
        for x in (a, b, h):
            self.assertEqual(warn_lines(x.log(), FAIL_RE), [], x.log()[-3000:])

    def test_wrong_ca_is_refused_and_retried(self):
        c = self.certs()
        srv = self.tls_consul(c)
        a = self.sidecar('w0', srv, ['--tls-ca', c['other-ca.crt']])
        self.assert_never_leads(a, 4)
        self.assert_one_failure_line(a, r'(?i)certificate')
        # Still retrying (debug lines, -v), and still alive.
        retries = [ln for ln in a.log().splitlines() if re.search(r'consul: .* failed', ln)]
        self.assertGreaterEqual(len(retries), 3, a.log()[-3000:])
        # The same through CONSUL_CACERT.
        e = self.sidecar('w1', srv, env={'CONSUL_CACERT': c['other-ca.crt']})
        # Plain http to the https port is refused too, without a crash.
        h = self.sidecar('w2', srv)
        self.assert_never_leads(h, 2)
        self.assertFalse(e.is_leader())
        self.assert_one_failure_line(e, r'(?i)certificate')
        self.assert_one_failure_line(h)
        # The right CA works next to them.
        ok = self.sidecar('w3', srv, ['--tls-ca', c['ca.crt']])
        ok.wait_state('leader', 20)
        self.assertTrue(a.alive() and e.alive() and h.alive())
        self.assertEqual(srv.kv_get('web/.lock')['Value'], 'w3')

    def test_client_certificate_required(self):
        c = self.certs()
        srv = self.tls_consul(c, verify_incoming=True)
        # Without a client certificate: refused, keeps trying.
        n = self.sidecar('c0', srv, ['--tls-ca', c['ca.crt']])
        self.assert_never_leads(n, 3)
        self.assert_one_failure_line(n)
        a = self.sidecar('c1', srv, ['--tls-ca', c['ca.crt'], '--tls-cert', c['client.crt'],
                                     '--tls-key', c['client.key']])
        a.wait_state('leader', 20)
        self.assertEqual(srv.kv_get('web/.lock')['Value'], 'c1')
        self.assertTrue(n.alive())
        self.assertFalse(n.is_leader())

    def test_unreadable_tls_file_is_refused_at_start(self):
        c = self.certs()
        srv = self.tls_consul(c)
        r = self.run_elect(['--name', 'x', '--backend', 'consul://%s/web' % srv.endpoint,
                            '--tls-ca', self.path('nope.crt'), '--ttl', '10s',
                            '--check-config', '--', 'true'])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn('TLS CA file', r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)


class ConsulAcl(ConsulTestCase):

    def acl_consul(self):
        srv = self.consul(['-hcl', 'acl { enabled = true default_policy = "deny" '
                           'tokens { initial_management = "%s" } }' % ROOT_TOKEN])
        srv.token = ROOT_TOKEN
        return srv

    def prefix_token(self, srv, secret=None, prefix='web'):
        """A token allowed only the prefix PREFIX/ (key_prefix write) and
        sessions (session_prefix write); secret: its SecretID, else Consul's."""
        rules = 'key_prefix "%s/" { policy = "write" } session_prefix "" { policy = "write" }' % prefix
        st, _, _ = srv.request('GET', '/v1/acl/policy/name/' + prefix)
        if st != 200:
            st, pol, _ = srv.request('PUT', '/v1/acl/policy', json.dumps({'Name': prefix, 'Rules': rules}))
            self.assertEqual(st, 200, pol)
        tok = {'Policies': [{'Name': prefix}]}
        if secret:
            tok['SecretID'] = secret
        st, tok, _ = srv.request('PUT', '/v1/acl/token', json.dumps(tok))
        self.assertEqual(st, 200, tok)
        return tok['SecretID']

    def refused_requests(self, srv, why='ACL not found'):
        """Requests Consul refused (why: for an unknown token), from its own log."""
        return [ln for ln in srv.log().splitlines() if 'Request error' in ln and why in ln]

    def test_acl_token_from_env_and_a_wrong_one(self):
        srv = self.acl_consul()
        secret = self.prefix_token(srv)
        # Default deny: the token may write its prefix and nothing else.
        srv.token = secret
        self.assertEqual(srv.request('PUT', '/v1/kv/web/probe', 'x')[0], 200)
        self.assertEqual(srv.request('PUT', '/v1/kv/elsewhere/probe', 'x')[0], 403)
        self.assertEqual(srv.request('GET', '/v1/acl/tokens')[0], 403)
        srv.token = ROOT_TOKEN
        log = self.path('iv.log')
        url = 'consul://%s/web' % srv.endpoint
        # Consul's own variable; elect removes it from its children's environment.
        good = self.agents(url, log, ['g0'], t=timing(), env={'CONSUL_HTTP_TOKEN': secret})[0]
        good.wait_state('leader', 20)
        self.assertEqual(srv.kv_get('web/.lock')['Value'], 'g0')
        # A wrong token: refused, said once and clearly, never logged.
        bad = self.agent(mode='sidecar', id='w0', name='web', backend=url, args=('--auth', WRONG_TOKEN),
                         **timing())
        wait_for(lambda: '403' in bad.log() or 'ACL' in bad.log(), 20, msg='refusal logged')
        time.sleep(3)
        self.assertTrue(bad.alive())
        self.assertNotEqual(bad.status()['state'], 'leader')
        for a in (good, bad):
            self.assertNotIn(secret, a.log())
            self.assertNotIn(WRONG_TOKEN, a.log())
        refusals = [ln for ln in bad.log().splitlines()
                    if ('403' in ln or 'ACL' in ln) and ' debug ' not in ln]
        self.assertEqual(len(refusals), 1, refusals)
        self.assertIn('ACL not found', refusals[0])
        self.assertIn('check the ACL token', refusals[0])
        self.assertTrue(good.is_leader())

    def test_refused_token_backs_off_and_recovers(self):
        srv = self.acl_consul()
        self.prefix_token(srv)          # the policy exists; WRONG_TOKEN is no token yet
        t = timing()
        bad = self.agent(mode='sidecar', id='b0', name='web', backend='consul://%s/web' % srv.endpoint,
                         env={'CONSUL_HTTP_TOKEN': WRONG_TOKEN}, **t)
        wait_for(lambda: self.refused_requests(srv), 20, msg='first refusal')
        t0 = time.monotonic()
        time.sleep(20)          # not scaled: a bound on a count, slower only means fewer
        n = len(self.refused_requests(srv))
        # Retrying every second (and on every renew tick) would be 20 and
        # more; doubling from 1 s, with jitter, is at most 6 in 20 s.
        self.assertLessEqual(n, 7, 'the agent hammers Consul with a refused token: %d requests '
                             'in %.0fs:\n%s' % (n, time.monotonic() - t0, bad.log()[-3000:]))
        self.assertGreaterEqual(n, 3, 'the agent stopped retrying:\n' + bad.log()[-3000:])
        self.assertTrue(bad.alive())
        self.assertEqual(len([ln for ln in bad.log().splitlines()
                              if 'ACL not found' in ln and ' debug ' not in ln]), 1, bad.log()[-3000:])
        # The token becomes valid: the agent leads without a restart, by the
        # next try (at most 30 s away, the back-off's cap).
        self.prefix_token(srv, secret=WRONG_TOKEN)
        bad.wait_state('leader', 40 * scale())
        self.assertEqual(srv.kv_get('web/.lock')['Value'], 'b0')
        self.assertIn('backend reachable again', bad.log())
        self.assertNotIn(WRONG_TOKEN, bad.log())

    def test_token_without_the_prefix_is_refused_and_backs_off(self):
        # A valid token whose policy names another prefix: its session is
        # made and renewed, but reading the lock key is "Permission denied".
        srv = self.acl_consul()
        secret = self.prefix_token(srv, prefix='other')
        a = self.agent(mode='sidecar', id='p0', name='web', backend='consul://%s/web' % srv.endpoint,
                       env={'CONSUL_HTTP_TOKEN': secret}, **timing())
        wait_for(lambda: self.refused_requests(srv, 'Permission denied'), 20, msg='first refusal')
        time.sleep(12)          # not scaled: a bound on a count
        n = len(self.refused_requests(srv, 'Permission denied'))
        # Successful renewals of the session must not reset the back-off of
        # the key's reads: every second would be 12 and more.
        self.assertLessEqual(n, 6, '%d refused reads in 12s:\n%s' % (n, a.log()[-3000:]))
        self.assertTrue(a.alive())
        self.assertFalse(a.is_leader())
        lines = [ln for ln in a.log().splitlines() if 'Permission denied' in ln and ' debug ' not in ln]
        self.assertEqual(len(lines), 1, a.log()[-3000:])
        self.assertIn('check the ACL token', lines[0])
        self.assertNotIn(secret, a.log())
        self.assertIsNone(srv.kv_get('web/.lock'))


if __name__ == '__main__':
    unittest.main()
