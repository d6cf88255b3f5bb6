"""The short chaos suite (issue 6) for `make check`: every scenario of
tests/chaos_lib.py with two events each, and 20 s of the mixed scenario,
per backend. Fails on any overlap outside the SIGSTOP windows, on any token
order violation, and on a run that went wrong (no leader with every fault
healed, an agent exiting on its own, a leader command outliving its agent,
a resumed agent that did not step down at once).

The seed is random and printed; ELECT_CHAOS_SEED=N replays it. The long
version is `make chaos BACKEND=... DURATION=... SEED=...` (tests/chaos.py).
"""

import io
import os
import random
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
import chaos_lib  # noqa: E402
import zk_server  # noqa: E402
from consul_server import build_consul  # noqa: E402
from etcd_server import have_etcd  # noqa: E402
from harness import ElectTestCase, scale  # noqa: E402
from k8s_server import require_k8s  # noqa: E402


class Chaos(ElectTestCase):

    def chaos(self, kind):
        env_seed = os.environ.get('ELECT_CHAOS_SEED')
        seed = int(env_seed) if env_seed else random.SystemRandom().randrange(1, 1 << 31)
        sys.stderr.write('[chaos %s seed %d] ' % (kind, seed))
        buf = io.StringIO()
        results = chaos_lib.run_backend(self, kind, seed, short=True, out=buf)
        text = buf.getvalue()
        replay = ('replay: ELECT_CHAOS_SEED=%d python3 tests/run.py %s\n'
                  % (seed, self.id().split('.', 1)[1]))
        for r in results:
            sys.stderr.write('\n  ' + r.line())
        sys.stderr.write('\n  ' + chaos_lib.summary_line(results, seed) + '\n')
        self.assertEqual(sum(r.overlaps for r in results), 0,
                         'two leaders at once outside the SIGSTOP windows; ' + replay + text)
        self.assertEqual(sum(r.token_violations for r in results), 0,
                         'fencing tokens out of order; ' + replay + text)
        for r in results:
            self.assertFalse(r.failed(), 'scenario %s went wrong; %s%s' % (r.name, replay, text))
            self.assertGreater(sum(r.events.values()), 0,
                               'scenario %s applied no fault; %s%s' % (r.name, replay, text))
            grace_ms = float(chaos_lib.Timing(kind).grace) * 1000
            for ms in r.resume_ms:
                self.assertLess(ms, grace_ms + 1000 * scale(),
                                'a resumed agent ran its command next to another leader for '
                                '%.0f ms; %s%s' % (ms, replay, text))
        return results

    def test_file(self):
        self.chaos('file')

    @unittest.skipUnless(have_etcd(), 'etcd-server and etcd-client are not installed')
    def test_etcd(self):
        self.chaos('etcd')

    @unittest.skipUnless(zk_server.available(), 'ZooKeeper is not installed')
    def test_zk(self):
        self.chaos('zk')

    def test_consul(self):
        build_consul()      # once per machine, then cached; fails, never skips
        self.chaos('consul')

    def test_k8s(self):
        require_k8s()       # once per machine, then cached; fails, never skips
        self.chaos('k8s')
