#!/usr/bin/env python3
"""The chaos suite (issue 6): faults against three elect agents, checked for
two leaders at once and for token order. `make chaos` runs it.

  python3 tests/chaos.py --backend file|etcd|zk|consul|k8s --duration SECONDS [--seed N]
                         [--short] [--scenario NAME]... [--no-tables]

Runs, for the backend, each single scenario (kill_agent, kill_cmd, sigstop;
for etcd, zk, consul and k8s also cut, slow and restart; for etcd, zk and
consul member_kill on a 3-member cluster) on half of the duration, then the
mixed scenario (all faults at random; on the cluster for etcd, zk and
consul) on the other half. k8s is a kube-apiserver on its own etcd; its
restart stops either or both. --scenario runs
only the named ones (mixed alone gets the whole duration). --short is the
`make check` version: two events per single scenario, 20 s of mixed.
See tests/chaos_lib.py for what each scenario does.

Prints per scenario the checker's table and a figures line, then a table of
figures, and ends with exactly one line
  terms N overlaps N token_violations N max_leaderless_ms N sigstop_overlaps N seed N
Exit status: 1 on any overlap outside the SIGSTOP windows or any token order
violation (the reproduction is printed above: seed, scenario, interval log,
chaos events and agent log lines around it); 3 when the run itself went
wrong (no leader with every fault healed, an agent exiting on its own, a
leader command outliving its agent, a server that would not start); else 0.
The seed is printed first; give it back with --seed to replay the same
choices and timings (process races may still differ). Temp dirs are kept
on failure (ELECT_KEEP_TMP=1 keeps them always).
"""

import argparse
import importlib
import os
import random
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import chaos_lib  # noqa: E402
import harness  # noqa: E402


class _Case(harness.ElectTestCase):
    """The harness's temp dir and process registry outside unittest."""

    def runTest(self):
        pass

    def _test_passed(self):
        return getattr(self, 'chaos_ok', True)

    def fail(self, msg=None):
        sys.stdout.write('chaos: cleanup: %s\n' % msg)
        self.cleanup_problems = True
        raise AssertionError(msg)


def snapshot_binaries(case):
    """Runs copies of elect and the leader command from the temp dir, so
    that a rebuild in the tree during a long run does not disturb it."""
    d = case.path('bin')
    os.makedirs(d)
    shutil.copy2(harness.elect_bin(), os.path.join(d, 'elect'))
    shutil.copy2(harness.leadercmd_path(), os.path.join(d, 'leadercmd'))
    os.environ['ELECT_BIN'] = d
    chaos_lib.LEADERCMD = os.path.join(d, 'leadercmd')


def main():
    ap = argparse.ArgumentParser(description='elect chaos suite (issue 6)')
    ap.add_argument('--backend', choices=('file', 'etcd', 'zk', 'consul', 'k8s'), required=True)
    ap.add_argument('--duration', type=float, default=60, help='seconds (default 60)')
    ap.add_argument('--seed', type=int)
    ap.add_argument('--short', action='store_true', help='the make check version')
    ap.add_argument('--scenario', action='append', choices=chaos_lib.SCENARIOS)
    ap.add_argument('--no-tables', action='store_true', help="omit the checker's tables")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1, 1 << 31)
    if not os.access(harness.elect_bin(), os.X_OK):
        print('chaos: %s not found (run make first)' % harness.elect_bin())
        return 2
    if a.backend in ('etcd', 'k8s'):       # kube-apiserver stores in Debian's etcd
        from etcd_server import have_etcd
        if not have_etcd():
            print('chaos: etcd-server/etcd-client are not installed')
            return 2
    if a.backend == 'zk':
        import zk_server
        if not zk_server.available():
            print('chaos: ZooKeeper (Debian package zookeeper) is not installed')
            return 2
    # Servers built from Go modules: once per machine, then cached.
    go_built = {'consul': ('consul_server', 'build_consul'), 'k8s': ('k8s_server', 'require_k8s')}
    if a.backend in go_built:
        module, build = go_built[a.backend]
        try:
            getattr(importlib.import_module(module), build)()
        except RuntimeError as e:
            print('chaos: %s' % e)
            return 2
    print('chaos: backend %s duration %gs%s seed %d (replay: make chaos BACKEND=%s DURATION=%g '
          'SEED=%d)' % (a.backend, a.duration, ' short' if a.short else '', seed, a.backend,
                        a.duration, seed), flush=True)
    t0 = time.monotonic()
    case = _Case()
    case.setUp()
    results = []
    try:
        snapshot_binaries(case)
        results = chaos_lib.run_backend(case, a.backend, seed, duration=a.duration,
                                        short=a.short, only=a.scenario, out=sys.stdout,
                                        tables=not a.no_tables)
    except KeyboardInterrupt:
        print('chaos: interrupted')
        case.chaos_ok = False
    finally:
        unsafe = any(r.unsafe() for r in results)
        bad = any(r.failed() for r in results)
        case.chaos_ok = case.chaos_ok if hasattr(case, 'chaos_ok') else not (unsafe or bad)
        case.doCleanups()
    bad = bad or getattr(case, 'cleanup_problems', False) or not results
    print('== figures (leaderless gaps in ms; %.0fs in all)' % (time.monotonic() - t0))
    print(chaos_lib.figures_table(results))
    if bad:
        print('chaos: the run itself went wrong (see STALL / UNEXPECTED EXIT / PROBLEM / '
              'ERROR above); temp dir %s' % case.tmp)
    print(chaos_lib.summary_line(results, seed), flush=True)
    if unsafe:
        return 1
    return 3 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
