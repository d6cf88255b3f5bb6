"""The Kubernetes test server (tests/k8s_server.py) and its client-go peer,
before elect's Kubernetes backend uses them (issue 12), and the
deploy/kubernetes manifests against it.

One kube-apiserver v1.34.3 (built from Go modules into ~/.cache/elect by
`make k8s`, or here when missing) with its own etcd serves every test of this
module; each test works in a namespace of its own. The client-go candidates
(tests/k8s/candidate: tools/leaderelection on a LeaseLock) write interval
logs that the checker reads. Never skipped: when the server cannot be built,
every test fails with the reason.

client-go's own release (ReleaseOnCancel), measured here with a watch on the
Lease: on SIGTERM the election context is cancelled, which stops the work at
once (its context is a child of it: "stop" 0.3-1 ms after the signal), while
renew() writes the release (holderIdentity "", leaseDurationSeconds 1: seen
by a watch 5-13 ms after the signal); OnStoppedLeading runs only after that
write has returned (within a millisecond of the watch seeing it). So work
that stops in OnStoppedLeading, or on a context of its own, still runs when
the Lease is already free. When the lease is lost instead (renew fails), the
work's context is cancelled only after release() returns (Run's deferred
cancel), so even work on that context outlives the release.
"""

import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from harness import ROOT, ElectTestCase, now_ns, wait_for  # noqa: E402
from k8s_server import CERT_USER, COORD, KubeApiServer, require_k8s  # noqa: E402

LEASE_S = 2                     # the candidates' LeaseDuration
DEPLOY = os.path.join(ROOT, 'deploy', 'kubernetes')


def holder(lease):
    return (lease or {}).get('spec', {}).get('holderIdentity', '')


class K8sServerTest(ElectTestCase):

    @classmethod
    def setUpClass(cls):
        require_k8s()           # builds when missing; fails (never skips) when it cannot
        cls.srv = KubeApiServer()
        cls.addClassCleanup(cls.srv.stop)
        cls.srv.start()
        cls._ns = 0

    def namespace(self):
        K8sServerTest._ns += 1
        ns = 't%d-%s' % (K8sServerTest._ns, self._testMethodName[5:20].replace('_', '-').strip('-'))
        self.srv.create_namespace(ns)
        return ns

    def whoami(self, **kw):
        st, body = self.srv.api('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews',
                                {'apiVersion': 'authentication.k8s.io/v1',
                                 'kind': 'SelfSubjectReview'}, **kw)
        self.assertEqual(st, 201, body)
        return body['status']['userInfo']

    def test_server_up_with_its_users(self):
        srv = self.srv
        self.assertTrue(srv.ready())
        st, body = srv.api('GET', COORD)
        self.assertEqual(st, 200, body)
        leases = [r for r in body['resources'] if r['name'] == 'leases']
        self.assertEqual(len(leases), 1, body)
        self.assertTrue(leases[0]['namespaced'])
        self.assertIn('system:masters', self.whoami()['groups'])
        for user in ('tester', 'norbac'):
            info = self.whoami(token=srv.tokens[user])
            self.assertEqual(info['username'], user)
            self.assertEqual(info['groups'], ['system:authenticated'])
        self.assertEqual(self.whoami(client_cert=True)['username'], CERT_USER)
        st, body = srv.api('GET', '/api/v1/namespaces', token='not-a-token')
        self.assertEqual(st, 401, body)
        st, body = srv.api('GET', '/api/v1/namespaces', token=srv.tokens['tester'])
        self.assertEqual(st, 403, body)
        # A pod's service-account directory, as in_cluster_dir() writes it.
        ns = self.namespace()
        # The certificate user in a kubeconfig, read by client-go.
        srv.grant(ns, ['get', 'create', 'update'], user=CERT_USER)
        kc = srv.kubeconfig(self.path('kubeconfig'), namespace=ns, client_cert=True)
        log = self.path('iv.log')
        srv.candidate(self, ns, 'web', 'c1', log, kubeconfig=kc)
        wait_for(lambda: self.holders(log), 20, msg='the candidate leads')
        self.assertEqual(holder(srv.lease(ns, 'web')), 'c1')
        env = srv.in_cluster_dir(self.path('sa'), srv.tokens['tester'], ns)
        self.assertEqual(env['KUBERNETES_SERVICE_PORT'], str(srv.port))
        self.assertEqual(sorted(os.listdir(self.path('sa'))), ['ca.crt', 'namespace', 'token'])

    def test_candidates_one_leads_kill9_fails_over_after_lease(self):
        ns = self.namespace()
        log = self.path('iv.log')
        cands = {i: self.srv.candidate(self, ns, 'web', i, log) for i in ('a', 'b')}
        first = wait_for(lambda: [i.id for i in self.intervals(log)], 20, msg='a leader')
        self.assertEqual(len(first), 1, first)
        leader, other = cands[first[0]], cands[({'a', 'b'} - {first[0]}).pop()]
        self.assertEqual(holder(self.srv.lease(ns, 'web')), leader.id)
        wait_for(lambda: leader.id in other.leaders(), 10, msg='the follower reports the leader')

        w = self.srv.watch_lease(ns, 'web')
        self.addCleanup(w.close)
        w.wait(lambda o: True, 5)           # the current state: ADDED
        t_kill = now_ns()
        leader.kill9()
        nxt = self.wait_new_term(log, after_ns=t_kill, exclude_id=leader.id, timeout=20)
        self.assertEqual(nxt.id, other.id)
        take = w.wait(lambda o: holder(o) == other.id, 5)
        self.assertIsNotNone(take, w.holders())
        # A dead holder is never released: the follower took the Lease over
        # LEASE_S after the last renewal it can have seen.
        before = [e for e in w.events if e[0] < take[0]]
        self.assertEqual({holder(e[2]) for e in before}, {leader.id}, w.holders())
        self.assertGreater(take[0] - before[-1][0], (LEASE_S - 0.5) * 1e9, w.holders())
        self.assertEqual(take[2]['spec']['leaseTransitions'], 1)
        rep = self.check_intervals(log)
        self.assertEqual([(i.id, i.token) for i in rep.intervals],
                         [(leader.id, '0'), (other.id, '1')], rep.table())
        self.assertEqual([i.id for i in rep.open], [other.id], rep.table())

    def test_sigterm_releases_the_lease(self):
        ns = self.namespace()
        log = self.path('iv.log')
        a = self.srv.candidate(self, ns, 'web', 'a', log)
        wait_for(lambda: self.holders(log), 20, msg='a leads')
        b = self.srv.candidate(self, ns, 'web', 'b', log)
        wait_for(lambda: 'a' in b.leaders(), 10, msg='b reports a')
        w = self.srv.watch_lease(ns, 'web')
        self.addCleanup(w.close)
        w.wait(lambda o: True, 5)
        a.proc.kill(signal.SIGTERM)
        rel = w.wait(lambda o: holder(o) == '', 10)
        self.assertIsNotNone(rel, 'no release seen: %r' % w.holders())
        self.assertEqual(rel[2]['spec']['leaseDurationSeconds'], 1)
        self.assertEqual(a.proc.wait_exit(10), 0)
        self.assertEqual(a.lines()[-1], 'stopped')      # OnStoppedLeading
        nxt = self.wait_new_term(log, exclude_id='a', timeout=10)
        self.assertEqual(nxt.id, 'b')
        stop = [i for i in self.intervals(log) if i.id == 'a'][0].stop
        self.assertIsNotNone(stop, 'a wrote no stop line')
        self.check_intervals(log)

    def test_deploy_manifests_and_their_role(self):
        srv = self.srv
        ns = 'default'          # where rbac.yaml's RoleBinding names its subject
        with open(os.path.join(DEPLOY, 'rbac.yaml')) as f:
            kinds = [o['kind'] for o in srv.apply_yaml(f.read(), ns)]
        self.assertEqual(kinds, ['ServiceAccount', 'Role', 'RoleBinding'])
        for name in ('sidecar.yaml', 'wrapper.yaml'):
            with open(os.path.join(DEPLOY, name)) as f:
                self.assertTrue(srv.apply_yaml(f.read(), ns, dry_run=True), name)
        token = srv.service_account_token(ns, 'elect')
        self.assertEqual(self.whoami(token=token)['username'],
                         'system:serviceaccount:default:elect')

        # What the backend does, with that token: get (missing), create,
        # watch from the created version, update with the version read.
        base = '%s/namespaces/%s/leases' % (COORD, ns)
        st, body = srv.api('GET', base + '/scheduler', token=token)
        self.assertEqual(st, 404, body)
        st, body = srv.api('POST', base, {
            'apiVersion': 'coordination.k8s.io/v1', 'kind': 'Lease',
            'metadata': {'name': 'scheduler'},
            'spec': {'holderIdentity': 'p1', 'leaseDurationSeconds': 15,
                     'acquireTime': '2025-01-02T03:04:05.000000Z',
                     'renewTime': '2025-01-02T03:04:05.000000Z', 'leaseTransitions': 0}},
            token=token)
        self.assertEqual(st, 201, body)
        w = srv.watch_lease(ns, 'scheduler', token=token,
                            resource_version=body['metadata']['resourceVersion'])
        self.addCleanup(w.close)
        st, cur = srv.api('GET', base + '/scheduler', token=token)
        self.assertEqual(st, 200, cur)
        cur['spec']['renewTime'] = '2025-01-02T03:04:06.000000Z'
        st, body = srv.api('PUT', base + '/scheduler', cur, token=token)
        self.assertEqual(st, 200, body)
        st, body = srv.api('PUT', base + '/scheduler', cur, token=token)
        self.assertEqual(st, 409, body)     # the version read is stale now
        ev = w.wait(lambda o: o['spec']['renewTime'].startswith('2025-01-02T03:04:06'), 10)
        self.assertIsNotNone(ev, w.events)
        self.assertEqual(ev[1], 'MODIFIED')
        # Nothing more than that.
        for method, path, body in (('GET', base, None),
                                   ('PATCH', base + '/scheduler', '{}'),
                                   ('DELETE', base + '/scheduler', None),
                                   ('GET', '%s/namespaces/kube-system/leases/x' % COORD, None)):
            st, resp = srv.api(method, path, body, token=token,
                               content_type='application/merge-patch+json')
            self.assertEqual(st, 403, (method, path, resp))
        # A client-go candidate with the same token in a kubeconfig's tokenFile.
        kc = srv.kubeconfig(self.path('kubeconfig'), token=token, token_file=True)
        log = self.path('iv.log')
        self.srv.candidate(self, ns, 'migrator', 'pod-0', log, kubeconfig=kc)
        wait_for(lambda: self.holders(log), 20, msg='the candidate leads')
        self.assertEqual(holder(srv.lease(ns, 'migrator')), 'pod-0')

        # Someone without the Role: 403 naming the verb, the resource, the namespace.
        ns2 = self.namespace()
        base2 = '%s/namespaces/%s/leases' % (COORD, ns2)
        for method, path, body, verb in (('GET', base2 + '/web', None, 'get'),
                                         ('POST', base2, {'metadata': {'name': 'web'}}, 'create'),
                                         ('PUT', base2 + '/web', {'metadata': {'name': 'web'}},
                                          'update')):
            st, resp = srv.api(method, path, body, token=srv.tokens['norbac'])
            self.assertEqual(st, 403, resp)
            self.assertIn('User "norbac" cannot %s resource "leases" in API group '
                          '"coordination.k8s.io" in the namespace "%s"' % (verb, ns2),
                          resp['message'])
        with self.assertRaisesRegex(RuntimeError, r'403 .*cannot watch resource "leases"'):
            srv.watch_lease(ns2, 'web', token=srv.tokens['norbac'])
        # ... and with it (the same Role, granted in that namespace), allowed.
        srv.grant(ns2, ['get', 'create', 'update', 'watch'], user='norbac')
        st, resp = srv.api('GET', base2 + '/web', token=srv.tokens['norbac'])
        self.assertEqual(st, 404, resp)


if __name__ == '__main__':
    unittest.main()
