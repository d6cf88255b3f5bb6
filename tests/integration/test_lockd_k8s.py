"""lockd on the Kubernetes lock backend (backends/k8s_lock*.c), against a
real kube-apiserver (tests/k8s_server.py, built once from Go modules), with
the client-go leader-election candidate (tests/k8s/candidate) as the peer.

One kube-apiserver serves the whole class (it takes seconds to start); each
test has a namespace of its own (server_mixins.K8sSharedServerMixin) where
user 'tester' has exactly the verbs deploy/kubernetes/rbac-lockd.yaml
grants. Every lockd reaches it through KUBECONFIG.

The generic cases come from tests/lockd_cases.py; Kubernetes keeps no
waiters (a waiter writes nothing), so other nodes' waiters are not listed.
The Kubernetes-only cases: a client-go candidate holding Lease PREFIX-NAME
and lockd's holders of lock NAME exclude each other, tokens in one order;
a dead client-go holder's Lease is taken over only after its duration; the
Lease layout, annotations and tokens; a limit conflict (409); a name that is
no Kubernetes name gets one clear line (the longest too); a missing RBAC verb
is named; list() reads a slot from the Lease name; a release pausing after a
failure is retried during a clean exit; an acquire of unknown outcome that
lockd released, whose re-read is refused, is dropped quietly.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from harness import ElectTestCase, now_ns, scale, valgrind_ok, wait_for  # noqa: E402
from lockd_cases import HoldConn, IntervalLog, LockdCases, SessionCutCases, lockctl_bin  # noqa: E402
from server_mixins import K8sSharedServerMixin  # noqa: E402
import checker  # noqa: E402

PREFIX = 'locks'
COORD = '/apis/coordination.k8s.io/v1'
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class K8sLocks(K8sSharedServerMixin, LockdCases, SessionCutCases, ElectTestCase):
    K8S_VERBS = ('get', 'list', 'watch', 'create', 'update')
    lockd_ttl = '3s'             # leaseDurationSeconds: whole seconds
    lockd_kill_grace = '500ms'
    cut_ttl = '3s'
    mx_total = 200               # every acquisition is a write through the API server
    sees_remote_waiters = False  # a waiter leaves nothing in Kubernetes

    def elect_env(self, extra=None):
        env = super().elect_env(extra)
        if not (extra and 'KUBECONFIG' in extra):
            env['KUBECONFIG'] = self.kubeconfig_path
        return env

    def lock_url(self, proxy_port=None):
        host = '127.0.0.1:%d' % proxy_port if proxy_port else ''
        return 'k8s://%s/%s/%s' % (host, self.K8S_NS, PREFIX)

    def backend_addr(self):
        return ('127.0.0.1', self.srv.port)

    # --- helpers
    def lease(self, name):
        return self.srv.lease(self.K8S_NS, name)

    def leases(self):
        st, body = self.srv.api('GET', '%s/namespaces/%s/leases' % (COORD, self.K8S_NS))
        self.assertEqual(st, 200, body)
        return {it['metadata']['name']: it for it in body['items']}

    def candidate(self, lock, id, log, **kw):
        return self.srv.candidate(self, self.K8S_NS, '%s-%s' % (PREFIX, lock), id, log,
                                  lease_duration='3s', renew_deadline='2s',
                                  retry_period='200ms', **kw)

    # --- Kubernetes only
    def test_client_go_candidate_and_lockd_exclude_each_other(self):
        d = self.lockd('x')
        log, gl = self.path('lockd.iv'), self.path('go.iv')
        ilog = IntervalLog(log)
        conn = HoldConn(d)
        # lockd holds: the candidate waits (lockd renews every second).
        st, held = conn.acquire('go', wait='0')
        self.assertEqual(st, 200, held)
        le = self.lease('%s-go' % PREFIX)
        self.assertEqual(held['token'], le['spec']['leaseTransitions'])
        pid = ilog.next_pid()
        ilog.line('start', 'x', held['token'], pid)
        cand = self.candidate('go', 'go-1', gl)
        wait_for(lambda: 'x' in cand.leaders(), 20, msg='client-go sees lockd hold')
        time.sleep(4)                # past its lease duration: lockd renews
        self.assertEqual(self.holders(gl), [], 'client-go ran while lockd held the lock')
        ilog.line('stop', 'x', held['token'], pid)
        t0 = now_ns()
        self.assertEqual(conn.release(held['hold'])[0], 200)
        go1 = self.wait_new_term(gl, after_ns=t0, timeout=20)
        self.assertGreater(int(go1.token), held['token'])
        # client-go holds: try-once is refused, a waiter gets it after.
        st, body = d.acquire('go', wait='0')
        self.assertEqual(st, 408, body)
        res = {}
        th = threading.Thread(target=lambda: res.setdefault('r', conn.acquire('go', wait='60s')))
        th.start()
        time.sleep(1)
        self.assertNotIn('r', res)
        cand.proc.kill(signal.SIGTERM)   # ReleaseOnCancel: free at once
        th.join(30 * scale())
        st, got = res['r']
        self.assertEqual(st, 200, got)
        self.assertGreater(got['token'], int(go1.token))
        pid = ilog.next_pid()
        ilog.line('start', 'x', got['token'], pid)
        # And back to client-go, which must wait for lockd's release.
        cand2 = self.candidate('go', 'go-2', gl)
        wait_for(lambda: 'x' in cand2.leaders(), 20, msg='client-go sees lockd hold again')
        time.sleep(0.5)
        ilog.line('stop', 'x', got['token'], pid)
        t1 = now_ns()
        self.assertEqual(conn.release(got['hold'])[0], 200)
        go2 = self.wait_new_term(gl, after_ns=t1, exclude_id='go-1', timeout=20)
        self.assertGreater(int(go2.token), got['token'])
        # lockd lists client-go's holder, with its token.
        lk = wait_for(lambda: d.locks(name='go'), 10, msg='listed')[0]
        self.assertEqual([(e['owner'], e['here'], e['token']) for e in lk['holders']],
                         [('go-2', False, int(go2.token))])
        cand2.proc.kill(signal.SIGTERM)
        cand2.proc.popen.wait(10)
        conn.close()
        ilog.close()
        rep = checker.check([log, gl])
        # client-go releases before its work has stopped (OnStoppedLeading
        # runs after the release): only such overlaps are its own doing.
        for a, b, _ in rep.overlaps:
            self.assertTrue(a.id.startswith('go-'), 'overlap not caused by client-go:\n' + rep.table())
        self.assertEqual(rep.token_violations, [], rep.table())

    def test_dead_client_go_holder_is_taken_over_after_its_duration(self):
        """A client-go holder killed with -9 leaves its Lease held: lockd's
        waiter takes it only once the record stayed unchanged for its
        leaseDurationSeconds (3 s) on lockd's clock, never by comparing
        renewTime with the wall clock; a plain Lease (no annotations) is
        listed with its holderIdentity."""
        gl = self.path('go.iv')
        cand = self.candidate('dead', 'go-9', gl)
        wait_for(lambda: self.holders(gl), 20, msg='client-go holds')
        le = self.lease('%s-dead' % PREFIX)
        self.assertNotIn('annotations', le['metadata'])
        d = self.lockd('w')
        lk = d.locks(name='dead')[0]
        self.assertEqual([(e['owner'], e['here']) for e in lk['holders']], [('go-9', False)])
        res = {}
        th = threading.Thread(target=lambda: res.setdefault('r', d.acquire('dead', wait='30s')))
        th.start()
        time.sleep(1)
        t_kill = now_ns()
        cand.kill9()
        th.join(30 * scale())
        t_got = now_ns()
        st, body = res['r']
        self.assertEqual(st, 200, body)
        self.assertGreater(t_got - t_kill, 2.5e9, 'taken before the lease duration passed')
        go_iv = checker.read_intervals([gl])
        self.assertEqual(len(go_iv), 1)
        self.assertGreater(body['token'], int(go_iv[0].token))
        le = self.lease('%s-dead' % PREFIX)
        self.assertEqual((le['spec']['holderIdentity'], le['spec']['leaseTransitions']),
                         ('w', body['token']))

    @valgrind_ok
    def test_lease_layout_annotations_and_tokens(self):
        d = self.lockd('lay')
        st, a = d.acquire('a')
        self.assertEqual(st, 200, a)
        s0 = d.acquire('pool', limit=2)
        s1 = d.acquire('pool', limit=2)
        for st, body in (s0, s1):
            self.assertEqual(st, 200, body)
        ls = self.leases()
        self.assertEqual(sorted(ls), ['%s-a' % PREFIX, '%s-pool-0' % PREFIX, '%s-pool-1' % PREFIX])
        la = ls['%s-a' % PREFIX]
        self.assertEqual(la['metadata']['annotations'], {'elect.io/lock': 'a', 'elect.io/limit': '1'})
        self.assertEqual(la['spec']['holderIdentity'], 'lay')
        self.assertEqual(la['spec']['leaseDurationSeconds'], 3)
        self.assertRegex(la['spec']['renewTime'], r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$')
        self.assertEqual(a['token'], la['spec']['leaseTransitions'])
        tokens = {}
        for k in (0, 1):
            lp = ls['%s-pool-%d' % (PREFIX, k)]
            self.assertEqual(lp['metadata']['annotations'],
                             {'elect.io/lock': 'pool', 'elect.io/limit': '2'})
            tokens[lp['spec']['leaseTransitions'] * 2 + k] = k
        self.assertEqual(sorted(tokens), sorted([s0[1]['token'], s1[1]['token']]))
        # Renewals move renewTime.
        r0 = la['spec']['renewTime']
        wait_for(lambda: self.lease('%s-a' % PREFIX)['spec']['renewTime'] != r0, 5)
        # Release: as client-go's ReleaseOnCancel.
        self.assertEqual(d.release(a['hold'])[0], 200)
        wait_for(lambda: self.lease('%s-a' % PREFIX)['spec'].get('holderIdentity', '') == '', 5)
        self.assertEqual(self.lease('%s-a' % PREFIX)['spec']['leaseDurationSeconds'], 1)
        st, again = d.acquire('a')
        self.assertEqual(st, 200, again)
        self.assertEqual(again['token'], a['token'] + 1)
        # A new slot grant reads the highest leaseTransitions of the name.
        self.assertEqual(d.release(s0[1]['hold'])[0], 200)
        st, s2 = d.acquire('pool', limit=2, wait='10s')
        self.assertEqual(st, 200, s2)
        self.assertGreater(s2['token'], max(s0[1]['token'], s1[1]['token']))
        # Deleted while held: lost at the next renewal; made again later
        # with a token above the old one.
        conn = HoldConn(d)
        st, b = conn.acquire('b', wait='0')
        self.assertEqual(st, 200, b)
        st, _ = self.srv.api('DELETE', '%s/namespaces/%s/leases/%s-b' % (COORD, self.K8S_NS, PREFIX))
        self.assertEqual(st, 200)
        st, ans = conn.wait(b['hold'], wait='20s')
        self.assertEqual((st, ans.get('state')), (200, 'revoked'), ans)
        conn.close()
        st, b2 = d.acquire('b', wait='20s')
        self.assertEqual(st, 200, b2)
        self.assertGreater(b2['token'], b['token'])

    @valgrind_ok
    def test_limit_conflict(self):
        a, b = self.lockd('a'), self.lockd('b')
        conn = HoldConn(a)
        st, held = conn.acquire('pool', limit=2, wait='0')
        self.assertEqual(st, 200, held)
        st, body = b.acquire('pool', limit=3, wait='5s')
        self.assertEqual(st, 409, body)
        self.assertIn('limit conflict', json.dumps(body))
        r = self.lockctl(b, 'run', 'pool', '-n', '3', '--', 'true')
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn('limit conflict', r.stderr)
        conn.close()
        wait_for(lambda: self.lease('%s-pool-0' % PREFIX)['spec'].get('holderIdentity', '') == '',
                 10, msg='released')
        # Released: the name may have another limit now.
        st, body = b.acquire('pool', limit=3, wait='10s')
        self.assertEqual(st, 200, body)

    @valgrind_ok
    def test_name_that_is_no_kubernetes_name_is_refused_clearly(self):
        d = self.lockd('n')
        for name, fix in (('Web_1', 'web-1'), ('a..b', None), ('x-', 'x'), ('_tmp', 'tmp')):
            st, body = d.acquire(name)
            self.assertEqual(st, 400, (name, body))
            self.assertIn('lowercase', body['error'])
            self.assertIn('%s-%s' % (PREFIX, name), body['error'])
            if fix:
                self.assertIn('"%s"' % fix, body['error'])
        r = self.lockctl(d, 'run', 'Web', '--', 'true')
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn('use e.g. "web"', r.stderr)
        r = self.lockctl(d, 'list', 'Web')
        self.assertEqual(r.returncode, 2, r.stderr)
        # The longest name: the suggestion at the end is not cut off.
        long_name = 'A' * 128
        st, body = d.acquire(long_name)
        self.assertEqual(st, 400, body)
        self.assertIn('use e.g. "%s"' % long_name.lower(), body['error'])
        st, body = d.request('GET', '/v1/locks?name=' + long_name)
        self.assertEqual(st, 400, body)
        self.assertIn('use e.g. "%s"' % long_name.lower(), body['error'])
        self.assertEqual(self.leases(), {})

    @valgrind_ok
    def test_list_reads_the_slot_from_the_lease_name(self):
        """A slot Lease's K is parsed from its name, whatever the limit
        annotation says (no loop over it); only K < N written plainly."""
        d = self.lockd('ls')
        for name, limit in (('locks-big-99999', 100000), ('locks-big-07', 100000),
                            ('locks-small-5', 5), ('locks-one', 1), ('locks-one-0', 1)):
            lock = name.split('-')[1]
            st, body = self.srv.api('POST', '%s/namespaces/%s/leases' % (COORD, self.K8S_NS), {
                'apiVersion': 'coordination.k8s.io/v1', 'kind': 'Lease',
                'metadata': {'name': name, 'annotations': {'elect.io/lock': lock,
                                                           'elect.io/limit': str(limit)}},
                'spec': {'holderIdentity': 'h-' + name, 'leaseDurationSeconds': 30,
                         'leaseTransitions': 1}})
            self.assertEqual(st, 201, body)
        got = {lk['name']: sorted((e['owner'], e['token']) for e in lk['holders'])
               for lk in d.locks()}
        self.assertEqual(got, {'big': [('h-locks-big-99999', 2 * 100000 - 1)],
                               'one': [('h-locks-one', 1)]})

    @valgrind_ok
    def test_release_retried_during_a_clean_exit(self):
        """A release that failed and waits for its retry when lockd is
        stopped is sent at once (within the close timeout), not dropped."""
        from proxy import FaultProxy
        p = FaultProxy(self.backend_addr())
        p.start()
        self.addCleanup(p.stop)
        d = self.lockd('rc', url=self.lock_url(proxy_port=p.port))
        conn = HoldConn(d)
        st, held = conn.acquire('rc', wait='0')
        self.assertEqual(st, 200, held)
        p.reset()
        self.assertEqual(conn.release(held['hold'])[0], 200)
        time.sleep(0.2)              # failed at once; the retry comes after >= 0.5 s
        self.assertEqual(self.lease('%s-rc' % PREFIX)['spec']['holderIdentity'], 'rc')
        p.pass_()
        self.assertEqual(d.stop(), 0, d.log())
        self.assertEqual(self.lease('%s-rc' % PREFIX)['spec'].get('holderIdentity', ''), '',
                         d.log())
        conn.close()

    def test_released_while_unsure_and_reread_refused(self):
        """An acquire whose answer is lost, released by lockd meanwhile
        (try-once), then the re-read refused (403): the hold is dropped
        quietly, not reported lost to lockd, which forgot it."""
        from proxy import FaultProxy
        ns, verbs = self.K8S_NS, ['get', 'list', 'watch', 'create', 'update']
        role = self.srv.grant(ns, verbs, user='norbac')
        kc = self.srv.kubeconfig(self.path('kc-uf'), user='norbac')
        p = FaultProxy(self.backend_addr())
        p.start()
        self.addCleanup(p.stop)
        d = self.lockd('uf', url=self.lock_url(proxy_port=p.port),
                       args=['--kubeconfig', kc, '--request-timeout', '1s'])
        # A waiter keeps the view (LIST, then WATCH) live through the cut.
        st, body = self.srv.api('POST', '%s/namespaces/%s/leases' % (COORD, ns), {
            'apiVersion': 'coordination.k8s.io/v1', 'kind': 'Lease',
            'metadata': {'name': '%s-w' % PREFIX},
            'spec': {'holderIdentity': 'x', 'leaseDurationSeconds': 30}})
        self.assertEqual(st, 201, body)
        res = {}
        waiter = threading.Thread(target=lambda: res.setdefault('w', d.acquire('w', wait='5s')))
        waiter.start()
        wait_for(lambda: [lk['name'] for lk in d.locks(local=True)] == ['w'], 10, msg='waiting')
        time.sleep(0.5)
        p.blackhole()                # the create goes nowhere: times out after 1 s
        t0 = time.monotonic()
        st, body = d.acquire('uf', wait='300ms')
        self.assertEqual(st, 408, body)
        st, body = self.srv.api('PUT', '/apis/rbac.authorization.k8s.io/v1/namespaces/%s/roles/%s'
                                % (ns, role), {
            'apiVersion': 'rbac.authorization.k8s.io/v1', 'kind': 'Role',
            'metadata': {'name': role},
            'rules': [{'apiGroups': ['coordination.k8s.io'], 'resources': ['leases'],
                       'verbs': [v for v in verbs if v != 'get']}]})
        self.assertEqual(st, 200, body)
        time.sleep(max(0, t0 + 1.3 * scale() - time.monotonic()))
        p.pass_()                    # the re-read (after the pause) is refused
        try:
            wait_for(lambda: 'cannot get resource "leases"' in d.log(), 15 * scale(),
                     msg='re-read refused')
        except AssertionError:
            sys.stderr.write(d.log())
            raise
        time.sleep(0.3)
        self.assertTrue(d.alive(), d.log())
        self.assertEqual([lk['name'] for lk in d.locks(local=True)], ['w'])
        waiter.join(30 * scale())
        self.assertEqual(res['w'][0], 408, res['w'])
        self.assertTrue(d.alive(), d.log())
        self.assertEqual(d.locks(local=True), [])

    @valgrind_ok
    def test_missing_permission_is_named(self):
        ns = self.K8S_NS
        self.srv.grant(ns, ['get', 'list', 'watch', 'create'], user='norbac')
        # A released Lease: taking it needs `update`.
        st, body = self.srv.api('POST', '%s/namespaces/%s/leases' % (COORD, ns), {
            'apiVersion': 'coordination.k8s.io/v1', 'kind': 'Lease',
            'metadata': {'name': '%s-perm' % PREFIX},
            'spec': {'holderIdentity': '', 'leaseDurationSeconds': 1}})
        self.assertEqual(st, 201, body)
        kc = self.srv.kubeconfig(self.path('kc-norbac'), user='norbac')
        d = self.lockd('nope', args=['--kubeconfig', kc])
        st, body = d.acquire('perm', wait='10s')
        self.assertEqual(st, 503, body)
        msg = body['error']
        self.assertIn('cannot update resource "leases"', msg)
        self.assertIn('in the namespace "%s"' % ns, msg)
        self.assertIn('needs the verbs get, list, watch, create and update on leases', msg)
        r = self.lockctl(d, 'run', 'perm', '--wait', '10s', '--', 'true')
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn('cannot update resource "leases"', r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        lines = [ln for ln in d.log().splitlines() if 'cannot update resource' in ln]
        self.assertEqual(len(lines), 1, 'one log line per change, not one per try:\n' + '\n'.join(lines))
        self.assertNotIn(self.srv.tokens['norbac'], d.log())
        # The Role that rbac-lockd.yaml grants is enough.
        with open(os.path.join(ROOT, 'deploy', 'kubernetes', 'rbac-lockd.yaml')) as f:
            text = f.read().replace('namespace: default', 'namespace: ' + ns)
        self.srv.apply_yaml(text, ns)
        tok = self.srv.service_account_token(ns, 'lockd')
        kc2 = self.srv.kubeconfig(self.path('kc-sa'), token=tok)
        d2 = self.lockd('sa', args=['--kubeconfig', kc2])
        st, body = d2.acquire('perm', wait='10s')
        self.assertEqual(st, 200, body)
        r = self.lockctl(d2, 'list')
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == '__main__':
    unittest.main()
