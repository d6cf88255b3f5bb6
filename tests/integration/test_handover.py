"""`elect resign --to ID` (issue 14): hand leadership to a named candidate,
on the file backend and on real etcd, ZooKeeper and Consul servers started
by the tests.

Three agents in wrapper mode, their leader commands writing one interval
log. Ten rounds: the leader hands over to each other candidate in turn
(including one queued behind another candidate, who must stand aside); the
named one is the next to lead, every time, and `elect resign --to` exits 0.
An id that is no candidate: the command exits 1 after the timeout and says
so, and the others lead again. No overlap in any of it (tests/checker.py).
Bounds are generous; timing figures belong to `make bench`.
"""

import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from harness import ElectTestCase, scale, valgrind_ok, wait_for  # noqa: E402
from server_mixins import (ConsulServerMixin, EtcdServerMixin, K8sServerMixin,  # noqa: E402
                           ZkServerMixin)

IDS = ['c0', 'c1', 'c2']
ROUNDS = 10


class HandoverCases:
    """The scenarios, run on every backend; a subclass gives backend_url()
    and agent_timing(), and may give agent_args()."""

    def agent_args(self):
        return []

    def candidates(self, log):
        agents = {}
        for i in IDS:
            agents[i] = self.agent(id=i, name='web', backend=self.backend_url(),
                                   cmd=self.leader_cmd(log), args=self.agent_args(),
                                   **self.agent_timing())
            # One after the other (it knows the leader once it is in the
            # election), so that the queue (etcd, ZooKeeper) is c0 c1 c2.
            wait_for(lambda: agents[i].status()['leader'] is not None, 15)
        return agents

    def one_holder(self, log, timeout=15):
        return wait_for(lambda: len(self.holders(log)) == 1 and self.holders(log)[0], timeout,
                        msg='exactly one running leader command')

    def resign_to(self, agent, to, timeout='10s'):
        return self.run_elect(['resign', '--socket', agent.socket, '--to', to,
                               '--handover-timeout', timeout], timeout=40)

    def test_resign_to_each_candidate_in_turn(self):
        log = self.path('iv.log')
        agents = self.candidates(log)
        cur = self.one_holder(log).id
        named = []
        for rnd in range(ROUNDS):
            others = [i for i in IDS if i != cur]
            # Alternate: the next in line, then the one behind it (the
            # other candidate stands aside for it).
            to = others[rnd % 2]
            # The named one must be a candidate again after its last term.
            wait_for(lambda: agents[to].status()['state'] == 'candidate', 10,
                     msg='%s campaigning' % to)
            t0 = time.monotonic_ns()
            r = self.resign_to(agents[cur], to)
            self.assertEqual(r.returncode, 0, 'round %d, %s -> %s: %s\n%s' % (
                rnd, cur, to, r.stderr, agents[cur].log()[-2000:]))
            out = json.loads(r.stdout)
            self.assertTrue(out['handed_over'])
            self.assertEqual((out['to'], out['leader']), (to, to))
            nxt = self.wait_new_term(log, after_ns=t0, timeout=15)
            self.assertEqual(nxt.id, to, 'round %d: %s led, not %s' % (rnd, nxt.id, to))
            self.one_holder(log)
            self.assertEqual([i.id for i in self.intervals(log) if i.start > t0], [to])
            named.append(to)
            cur = to
        self.assertEqual(set(named), set(IDS))
        self.assertRegex(agents[named[-1]].log(), r'took over from c\d by handover')
        for a in agents.values():
            a.stop()
        self.check_intervals(log)

    def test_unknown_id_times_out_and_a_leader_follows(self):
        log = self.path('iv.log')
        agents = self.candidates(log)
        first = self.one_holder(log)
        t0 = time.monotonic()
        t0_ns = time.monotonic_ns()
        r = self.resign_to(agents[first.id], 'nobody', '1500ms')
        took = time.monotonic() - t0
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn('nobody did not take over within 1500 ms', r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertGreaterEqual(took, 1.5)
        out = json.loads(r.stdout)
        self.assertFalse(out['handed_over'])
        # It names who leads next, and someone does.
        nxt = self.wait_new_term(log, after_ns=t0_ns, timeout=15)
        self.assertIn(nxt.id, IDS)
        self.assertEqual(out['leader'], nxt.id)
        # Nobody led while the others stood aside for "nobody".
        self.assertGreater(nxt.start - t0_ns, 1.2e9, 'a candidate did not stand aside')
        self.one_holder(log)
        self.assertTrue(any('standing aside: %s hands over to nobody' % first.id in a.log()
                            for a in agents.values()))
        for a in agents.values():
            a.stop()
        self.check_intervals(log)


class HandoverFile(HandoverCases, ElectTestCase):

    def backend_url(self):
        return self.file_backend('web')

    def agent_timing(self):
        return dict(ttl='10s', kill_grace='300ms')

    @valgrind_ok
    def test_resign_to_each_candidate_in_turn(self):
        super().test_resign_to_each_candidate_in_turn()

    def test_bad_input(self):
        log = self.path('iv.log')
        a = self.agent(id='x0', name='web', backend=self.backend_url(), cmd=self.leader_cmd(log),
                       **self.agent_timing())
        wait_for(lambda: a.status()['is_leader'], 10)
        b = self.agent(id='x1', name='web', backend=self.backend_url(), cmd=self.leader_cmd(log),
                       **self.agent_timing())
        wait_for(lambda: b.status()['state'] == 'candidate', 10)
        cases = [
            (['status', '--socket', a.socket, '--to', 'x1'], 2, "use it with 'elect resign --to ID'"),
            (['resign', '--socket', a.socket, '--to', 'a b'], 2, 'candidate id is 1-200'),
            (['resign', '--socket', a.socket, '--to', 'x1', '--handover-timeout', '0s'], 2,
             'handover-timeout'),
            (['resign', '--socket', a.socket, '--to', 'x0'], 1, 'x0 is this agent'),
            (['resign', '--socket', b.socket, '--to', 'x0'], 1, 'not leader'),
        ]
        for args, rc, msg in cases:
            r = self.run_elect(args)
            self.assertEqual(r.returncode, rc, (args, r.stderr))
            self.assertIn(msg, r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        # Nothing changed: a still leads, b still waits.
        self.assertTrue(a.status()['is_leader'])
        self.assertEqual(len(self.holders(log)), 1)
        # The API says the same.
        code, _, body = a.request('POST', '/v1/resign?to=x1&timeout=soon')
        self.assertEqual(code, 400)
        self.assertIn(b'bad timeout', body)
        self.assertTrue(a.status()['is_leader'])
        a.stop()
        b.stop()
        self.check_intervals(log)


class HandoverEtcd(EtcdServerMixin, HandoverCases, ElectTestCase):

    def agent_timing(self):
        if scale() >= 2:
            return dict(ttl='6s', renew='1s', kill_grace='300ms')
        return dict(ttl='3s', renew='1s', kill_grace='300ms')

    def test_record_key_outside_the_election(self):
        """The record sits next to the election's range, not in it (etcdctl
        elect would take it for a candidate), with the old leader's lease;
        the old leader removes it after the timeout."""
        log = self.path('iv.log')
        agents = self.candidates(log)
        cur = self.one_holder(log).id
        code, _, body = agents[cur].request('POST', '/v1/resign?to=nobody&timeout=3s')
        self.assertEqual(code, 200, body)

        def record():
            r = self._etcd.ctl('get', 'web.handover', '--print-value-only')
            return r.stdout.strip() or None
        rec = json.loads(wait_for(record, 5, msg='the handover record in etcd'))
        self.assertEqual((rec['to'], rec['from'], rec['timeout_ms']), ('nobody', cur, 3000))
        keys = self._etcd.ctl('get', '--prefix', 'web/', '--keys-only').stdout.split()
        self.assertNotIn('web.handover', keys)
        lease = json.loads(self._etcd.ctl('get', 'web.handover', '-w', 'json').stdout)['kvs'][0]
        self.assertNotEqual(lease.get('lease', 0), 0, 'the record is not bound to a lease')
        wait_for(lambda: record() is None, 10, msg='the record removed after the timeout')
        self.one_holder(log)
        for a in agents.values():
            a.stop()
        self.check_intervals(log)


class HandoverZk(ZkServerMixin, HandoverCases, ElectTestCase):

    def agent_timing(self):
        return dict(ttl='3s', kill_grace='300ms')


class HandoverConsul(ConsulServerMixin, HandoverCases, ElectTestCase):

    def agent_timing(self):
        if scale() >= 5:
            return dict(ttl='15s', renew='3s', kill_grace='1s')
        return dict(ttl='10s', renew='2s', kill_grace='500ms')


class HandoverK8s(K8sServerMixin, HandoverCases, ElectTestCase):

    def agent_args(self):
        return ['--kubeconfig', self.kubeconfig_path]

    def agent_timing(self):
        if scale() >= 2:
            return dict(ttl='6s', renew='1s', kill_grace='300ms')
        return dict(ttl='3s', renew='1s', kill_grace='300ms')

    def test_record_in_an_annotation(self):
        """The released Lease carries the record in an annotation until
        the timeout; client-go's fields are as ReleaseOnCancel leaves them."""
        log = self.path('iv.log')
        agents = self.candidates(log)
        cur = self.one_holder(log).id
        code, _, body = agents[cur].request('POST', '/v1/resign?to=nobody&timeout=3s')
        self.assertEqual(code, 200, body)

        def record():
            le = self.srv.lease('apps', 'web')
            return (le['metadata'].get('annotations') or {}).get('elect.io/handover')
        rec = json.loads(wait_for(record, 5, msg='the handover annotation'))
        self.assertEqual((rec['to'], rec['from']), ('nobody', cur))
        wait_for(lambda: record() is None, 15, msg='the annotation removed after the timeout')
        self.one_holder(log)
        for a in agents.values():
            a.stop()
        self.check_intervals(log)


if __name__ == '__main__':
    unittest.main()
