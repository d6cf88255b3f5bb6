"""The Kubernetes backend (issue 12) against a real kube-apiserver that the
tests start on loopback (tests/k8s_server.py; built from Go modules once,
cached outside the work tree), with the client-go leader-election candidate
of tests/k8s/candidate as the peer.

Leader commands write interval logs (tests/leadercmd.c; the client-go
candidate writes the same lines); tests/checker.py fails on two leaders at
once and on a token that does not grow. Bounds are generous; timing figures
belong to `make bench`.
"""

import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from harness import ElectTestCase, now_ns, scale, valgrind_ok, wait_for  # noqa: E402
from proxy import FaultProxy  # noqa: E402
import checker  # noqa: E402
from server_mixins import K8sServerMixin  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NS = 'apps'


def timing():
    if scale() >= 2:
        return dict(ttl='6s', renew='2s', kill_grace='300ms')
    return dict(ttl='3s', renew='1s', kill_grace='300ms')


def ttl_ns(t):
    return int(t['ttl'][:-1]) * 1000000000


class K8sTestCase(K8sServerMixin, ElectTestCase):

    def apply_rbac(self):
        """deploy/kubernetes/rbac.yaml in NS, as its comment says to apply it."""
        with open(os.path.join(ROOT, 'deploy', 'kubernetes', 'rbac.yaml')) as f:
            text = f.read().replace('namespace: default', 'namespace: ' + NS)
        self.srv.apply_yaml(text, NS)

    def kubeconfig(self, name='kubeconfig', **kw):
        return self.srv.kubeconfig(self.path(name), **kw)

    def url(self, lease='web', host=None):
        return 'k8s://%s/%s/%s' % (host or '', NS, lease)

    def agents(self, log, ids, lease='web', kubeconfig=None, t=None, extra=()):
        kc = kubeconfig or self.kubeconfig()
        t = t or timing()
        out = []
        for i in ids:
            a = self.agent(id=i, name='web', backend=self.url(lease), cmd=self.leader_cmd(log),
                           args=['--kubeconfig', kc] + list(extra), **t)
            out.append(a)
        return out

    def one_holder(self, log, timeout=20):
        return wait_for(lambda: len(self.holders(log)) == 1 and self.holders(log)[0], timeout,
                        msg='exactly one running leader command')

    def holder_identity(self, lease='web'):
        le = self.srv.lease(NS, lease)
        return le and le['spec'].get('holderIdentity', '')


class K8sElection(K8sTestCase):

    @valgrind_ok
    def test_three_agents_one_leader_handover_and_crash(self):
        log = self.path('iv.log')
        t = timing()
        agents = self.agents(log, ['k0', 'k1', 'k2'])
        first = self.one_holder(log)
        wait_for(lambda: self.holder_identity() == first.id, 10)
        le = self.srv.lease(NS, 'web')
        self.assertEqual(le['spec']['leaseDurationSeconds'], ttl_ns(t) // 10**9)
        self.assertRegex(le['spec']['renewTime'], r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$')
        self.assertEqual(int(first.token), le['spec']['leaseTransitions'])
        byid = {a.id: a for a in agents}
        for a in agents:
            wait_for(lambda a=a: a.status()['leader'] == first.id, 10)
        # Every renewal changes renewTime (client-go judges liveness by it).
        r0 = le['spec']['renewTime']
        wait_for(lambda: self.srv.lease(NS, 'web')['spec']['renewTime'] != r0, 5)
        # Graceful: SIGTERM hands over at once (release, then the watch).
        t0 = now_ns()
        byid[first.id].stop()
        nxt = self.wait_new_term(log, after_ns=t0, exclude_id=first.id, timeout=10)
        self.assertLess(nxt.start - t0, ttl_ns(t), 'handover waited for the lease to expire')
        wait_for(lambda: self.holder_identity() == nxt.id, 5)
        self.assertGreater(int(nxt.token), int(first.token))
        # kill -9: the command dies with the agent at once; another leads
        # after the lease duration, not before.
        t1 = now_ns()
        byid[nxt.id].kill()
        wait_for(lambda: not self.holders(log), 5, msg='the killed agent\'s command is gone')
        third = self.wait_new_term(log, after_ns=t1, exclude_id=nxt.id, timeout=30)
        self.assertGreater(third.start - t1, ttl_ns(t) * 0.9,
                           'a candidate took a held Lease before its duration passed')
        self.assertGreater(int(third.token), int(nxt.token))
        for a in agents:
            if a.alive():
                a.stop()
        self.check_intervals(log)
        # Released on exit: holderIdentity empty, leaseDurationSeconds 1.
        le = self.srv.lease(NS, 'web')
        self.assertEqual(le['spec'].get('holderIdentity', ''), '')
        self.assertEqual(le['spec']['leaseDurationSeconds'], 1)

    def test_partition_of_leader_steps_down_before_anyone_leads(self):
        log = self.path('iv.log')
        t = timing()
        p = FaultProxy(('127.0.0.1', self.srv.port))
        p.start()
        self.addCleanup(p.stop)
        kc = self.kubeconfig()
        cut = self.agent(id='cut', name='web', backend=self.url(host='127.0.0.1:%d' % p.port),
                         cmd=self.leader_cmd(log), args=['--kubeconfig', kc], **t)
        first = self.one_holder(log)
        self.assertEqual(first.id, 'cut')
        other = self.agents(log, ['other'], kubeconfig=kc)[0]
        wait_for(lambda: other.status()['leader'] == 'cut', 10)
        t_cut = now_ns()
        p.blackhole()
        nxt = self.wait_new_term(log, after_ns=t_cut, exclude_id='cut', timeout=30)
        cut_iv = [i for i in self.intervals(log) if i.id == 'cut'][0]
        self.assertIsNotNone(cut_iv.end, 'the cut-off leader\'s command still runs')
        self.assertLess(cut_iv.end, t_cut + ttl_ns(t), 'command stopped after the lease could end')
        self.assertLess(cut_iv.end, nxt.start)
        self.assertEqual(nxt.id, 'other')
        p.pass_()
        wait_for(lambda: cut.status()['leader'] == 'other', 30)
        self.check_intervals(log)

    def test_deleted_lease_is_not_made_again_at_once(self):
        """Someone deletes the held Lease: its holder may lead until its next
        renewal finds it gone, so a follower waits a lease duration before it
        makes it again, and tokens do not start over."""
        log = self.path('iv.log')
        t = timing()
        agents = self.agents(log, ['d0', 'd1'])
        first = self.one_holder(log)
        other = [a for a in agents if a.id != first.id][0]
        wait_for(lambda: other.status()['leader'] == first.id, 10)
        t0 = now_ns()
        st, body = self.srv.api('DELETE', '/apis/coordination.k8s.io/v1/namespaces/%s/leases/web' % NS)
        self.assertEqual(st, 200, body)
        nxt = self.wait_new_term(log, after_ns=t0, timeout=30)
        self.assertGreater(int(nxt.token), int(first.token), 'the token started over')
        first_iv = [i for i in self.intervals(log) if i.id == first.id][0]
        self.assertIsNotNone(first_iv.end)
        if nxt.id == other.id:
            self.assertGreater(nxt.start - t0, ttl_ns(t) * 0.9,
                               'the deleted Lease was made again before its holder could stop')
        self.assertLess(first_iv.end, nxt.start)
        for a in agents:
            a.stop()
        self.check_intervals(log)

    def test_bad_input(self):
        kc = self.kubeconfig()
        cases = [
            (['--backend', 'k8s:///apps/Web'], 'lowercase'),
            (['--backend', 'k8s:///apps/web', '--ttl', '2500ms', '--kill-grace', '100ms'],
             'whole seconds'),
            (['--backend', 'k8s:///apps/web', '--ttl', '3s', '--renew', '500ms', '--kill-grace', '100ms'],
             'renewTime in whole seconds'),
            (['--backend', 'k8s:///apps/web', '--kubeconfig', self.path('nope')], 'nope'),
        ]
        for args, msg in cases:
            r = self.run_elect(['--check-config', '--kubeconfig', kc] + args + ['--', 'true']
                               if '--kubeconfig' not in args else
                               ['--check-config'] + args + ['--', 'true'])
            self.assertNotEqual(r.returncode, 0, (args, r.stdout, r.stderr))
            self.assertIn(msg, r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)


class K8sInterop(K8sTestCase):
    """elect agents and a client-go candidate (tools/leaderelection,
    LeaseLock) on one Lease."""

    def test_client_go_and_elect_share_one_lease(self):
        log = self.path('iv.log')
        gl = self.path('go.log')
        t = timing()
        cand = self.srv.candidate(self, NS, 'web', 'go-1', gl, lease_duration='2s',
                                  renew_deadline='1500ms', retry_period='200ms')
        wait_for(lambda: self.holder_identity() == 'go-1', 20, msg='client-go leads')
        e1 = self.agents(log, ['e1'])[0]
        wait_for(lambda: e1.status()['leader'] == 'go-1', 10, msg='elect sees client-go lead')
        # client-go releases on SIGTERM (ReleaseOnCancel): elect leads next,
        # at once (the watch), with a greater leaseTransitions.
        t0 = now_ns()
        cand.proc.kill(15)
        nxt = self.wait_new_term(log, after_ns=t0, timeout=10)
        self.assertEqual(nxt.id, 'e1')
        self.assertLess(nxt.start - t0, ttl_ns(t), 'elect waited for the released Lease to expire')
        go_iv = checker.read_intervals([gl])
        self.assertEqual(len(go_iv), 1)
        self.assertGreater(int(nxt.token), int(go_iv[0].token))
        # client-go releases the Lease before its work has stopped
        # (OnStoppedLeading runs after the release): measured, not failed.
        gap_ms = (nxt.start - (go_iv[0].end or nxt.start)) / 1e6
        sys.stderr.write('\n[client-go work stopped %.1f ms before elect started]\n' % gap_ms)
        # Back: a new client-go candidate sees elect lead, takes over when
        # elect hands over (SIGTERM), and elect's release is immediate.
        cand2 = self.srv.candidate(self, NS, 'web', 'go-2', gl, lease_duration='2s',
                                   renew_deadline='1500ms', retry_period='200ms')
        wait_for(lambda: 'e1' in cand2.leaders(), 10, msg='client-go sees elect lead')
        t1 = now_ns()
        e1.stop()
        wait_for(lambda: self.holder_identity() == 'go-2', 10, msg='client-go takes over')
        go2 = wait_for(lambda: [i for i in checker.read_intervals([gl]) if i.id == 'go-2'], 10,
                       msg='the client-go candidate\'s work started')
        self.assertGreater(go2[0].start, t1)
        e_iv = [i for i in self.intervals(log) if i.id == 'e1'][0]
        self.assertLess(e_iv.end, go2[0].start, 'client-go led before elect\'s command ended')
        self.assertGreater(int(go2[0].token), int(nxt.token))
        cand2.proc.kill(15)
        cand2.proc.popen.wait(10)
        rep = checker.check([log, gl])
        # Overlaps can only come from client-go's own release order.
        for a, b, _ in rep.overlaps:
            self.assertTrue(a.id.startswith('go-') and b.id.startswith('e'),
                            'overlap not caused by client-go\'s release:\n' + rep.table())
        self.assertEqual(rep.token_violations, [], rep.table())


class K8sAccess(K8sTestCase):

    def test_in_cluster_configuration(self):
        log = self.path('iv.log')
        self.apply_rbac()
        tok = self.srv.service_account_token(NS, 'elect')
        sa = self.path('sa')
        env = self.srv.in_cluster_dir(sa, tok, NS)
        env['ELECT_K8S_SA_DIR'] = sa
        a = self.agent(id='pod-0', name='web', backend='k8s:///web', cmd=self.leader_cmd(log),
                       env=env, **timing())
        self.one_holder(log)
        wait_for(lambda: self.holder_identity() == 'pod-0', 10)
        a.stop()
        self.check_intervals(log)

    def test_missing_permission_is_named(self):
        log = self.path('iv.log')
        self.srv.grant(NS, ['get', 'watch', 'create'], user='norbac')
        # Someone else holds it: taking it over needs `update`.
        self.srv.api('POST', '/apis/coordination.k8s.io/v1/namespaces/%s/leases' % NS, {
            'apiVersion': 'coordination.k8s.io/v1', 'kind': 'Lease',
            'metadata': {'name': 'web'}, 'spec': {'holderIdentity': '', 'leaseDurationSeconds': 1}})
        kc = self.kubeconfig(user='norbac')
        a = self.agents(log, ['nope'], kubeconfig=kc)[0]
        wait_for(lambda: 'cannot update resource "leases"' in a.log(), 20,
                 msg='the refusal names the verb and resource')
        self.assertIn('needs the verbs get, create, update and watch on leases', a.log())
        self.assertNotIn(self.srv.tokens['norbac'], a.log())
        self.assertEqual(a.status()['state'], 'candidate')
        self.assertFalse(a.status()['backend_ok'])
        time.sleep(1)
        errors = [ln for ln in a.log().splitlines() if ' error ' in ln and 'cannot update' in ln]
        self.assertEqual(len(errors), 1, 'one line, not one per try')
        self.assertEqual(self.holders(log), [])

    def bound_token(self, secret):
        """A service-account token bound to a Secret of its own: deleting
        the Secret revokes the token (what expiry does to a rotated one)."""
        st, sec = self.srv.api('POST', '/api/v1/namespaces/%s/secrets' % NS, {
            'apiVersion': 'v1', 'kind': 'Secret', 'metadata': {'name': secret}})
        self.assertEqual(st, 201, sec)
        st, tr = self.srv.api('POST', '/api/v1/namespaces/%s/serviceaccounts/elect/token' % NS, {
            'apiVersion': 'authentication.k8s.io/v1', 'kind': 'TokenRequest',
            'spec': {'expirationSeconds': 600, 'boundObjectRef': {
                'kind': 'Secret', 'apiVersion': 'v1', 'name': secret,
                'uid': sec['metadata']['uid']}}})
        self.assertEqual(st, 201, tr)
        return tr['status']['token']

    def test_token_rotation_keeps_leading(self):
        log = self.path('iv.log')
        t = timing()
        self.apply_rbac()
        tokens = [self.bound_token('t0'), self.bound_token('t1')]
        kc = self.kubeconfig(token=tokens[0], token_file=True)
        a = self.agents(log, ['rot'], kubeconfig=kc)[0]
        self.one_holder(log)
        # The kubelet's way: a new token in the file, the old one revoked.
        with open(kc + '.token.new', 'w') as f:
            f.write(tokens[1] + '\n')
        os.rename(kc + '.token.new', kc + '.token')
        st, body = self.srv.api('DELETE', '/api/v1/namespaces/%s/secrets/t0' % NS)
        self.assertEqual(st, 200, body)
        st, _ = self.srv.api('GET', '/apis/coordination.k8s.io/v1/namespaces/%s/leases/web' % NS,
                             token=tokens[0])
        wait_for(lambda: self.srv.api('GET', '/api/v1/namespaces/%s' % NS, token=tokens[0])[0] == 401,
                 10, msg='the old token revoked')
        time.sleep(3 * int(t['ttl'][:-1]))
        self.assertTrue(a.status()['is_leader'])
        self.assertEqual(len(self.intervals(log)), 1, 'the leader stepped down')
        self.assertIn('read a new token', a.log())
        for tok in tokens:
            self.assertNotIn(tok, a.log())
        a.stop()
        self.check_intervals(log)

if __name__ == '__main__':
    unittest.main()
