"""`make bench` rows for lockd (tests/bench.py --backend lockd, or on its own:
python3 tests/bench_lockd.py [--lockd-backends file,etcd,zk,consul]).

Per lock backend (servers started through the election benchmark's backend
classes, bench.find_backend(name): start(ctx), url(ctx, prefix), stop(ctx)):
  uncontended round trip  acquire (try once) + release of one lock over one
                          connection to one lockd, from Python: per second
  lockctl run -- true     a whole `lockctl run NAME -- true` (process start,
                          acquire, fork/exec, exit, release): ms each;
                          etcd: `etcdctl lock NAME -- true` on the same etcd
                          side by side (needs the etcd Backend's etcdctl());
                          Consul: `consul lock NAME true` on the same Consul
  contended handover      client A (lockd 1) releases while client B (lockd
                          2) waits: A sends release -> B's grant arrives, ms
  RSS 1,000 locks         VmRSS of a lockd idle, then holding 1,000 locks

Backend rows are filled for whatever lock backend lockd accepts; a backend
whose lock ops are not registered yet is skipped with a note.
"""

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402
import harness  # noqa: E402
from harness import now_ns  # noqa: E402
from lockd_cases import HoldConn, Lockd, lockctl_bin, lockd_bin  # noqa: E402

LOCK_TTL = {'file': '10s', 'etcd': '3s', 'zk': '3s', 'consul': '10s'}


def row(be, label, xs=None, value=None, n=1):
    if xs is not None:
        if not xs:
            return ('lockd-' + be, label, 0, None, None, None)
        return ('lockd-' + be, label, len(xs), statistics.median(xs), bench.pct(xs, 99), max(xs))
    return ('lockd-' + be, label, n, value, None, None)


def round_trips(d, n):
    conn = HoldConn(d)
    try:
        t0 = time.monotonic()
        for i in range(n):
            st, body = conn.acquire('rt', wait='10s')
            assert st == 200, (st, body)
            st, _ = conn.release(body['hold'])
            assert st == 200
        return n / (time.monotonic() - t0)
    finally:
        conn.close()


def timed_runs(ctx, argv, n, env=None):
    xs = []
    for _ in range(n):
        t0 = time.monotonic()
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
        if r.returncode != 0:
            raise AssertionError('%r: %d %s' % (argv, r.returncode, r.stderr))
        xs.append((time.monotonic() - t0) * 1000.0)
    return xs


def handovers(d1, d2, n):
    """A on d1 holds; B on d2 waits; A releases: latency to B's grant."""
    xs = []
    a, b = HoldConn(d1), HoldConn(d2)
    try:
        for i in range(n):
            holder, waiter = (a, b) if i % 2 == 0 else (b, a)
            st, held = holder.acquire('ho', wait='30s')
            assert st == 200, (st, held)
            got = {}

            def wait_grant(waiter=waiter, got=got):
                got['r'] = waiter.acquire('ho', wait='30s')
                got['t'] = now_ns()
            th = threading.Thread(target=wait_grant)
            th.start()
            time.sleep(0.05)                    # B is queued by now
            t0 = now_ns()
            holder.release(held['hold'])
            th.join(60)
            st, body = got['r']
            assert st == 200, (st, body)
            xs.append((got['t'] - t0) / 1e6)
            waiter.release(body['hold'])
    finally:
        a.close()
        b.close()
    return xs


def rss_with_locks(d, n, during):
    """(idle RSS, RSS holding n locks, during()'s result while holding)."""
    idle = bench.proc_rss_kib(d.pid)
    conn = HoldConn(d)
    try:
        for i in range(n):
            st, body = conn.acquire('many-%d' % i, wait='10s')
            assert st == 200, (i, st, body)
        time.sleep(0.5)
        return idle, bench.proc_rss_kib(d.pid), during()
    finally:
        conn.close()


def listing_runs(ctx, other, n, runs, env):
    """`lockctl list` through the lockd that holds nothing: every entry
    comes from the backend. Checks it sees all n, then times it."""
    argv = [lockctl_bin(), '--socket', other.socket, 'list', '--json']
    r = subprocess.run(argv, capture_output=True, text=True, env=env)
    seen = sum(len(lk['holders']) for lk in json.loads(r.stdout)['locks']) if r.returncode == 0 else 0
    assert seen >= n, 'listing shows %d of %d holders: %s' % (seen, n, r.stderr)
    return timed_runs(ctx, argv, runs, env)


def bench_lock_backend(name, a, rows):
    cls = bench.find_backend(name)
    if cls is None:
        print('bench: lockd-%s skipped: no backend class' % name, file=sys.stderr)
        return
    be = cls()
    why = be.available()
    if why:
        print('bench: lockd-%s skipped: %s' % (name, why), file=sys.stderr)
        return
    ctx = bench.Ctx()
    ctx.setUp()
    try:
        be.start(ctx)
        url = be.url(ctx, 'lockd')
        r = subprocess.run([lockd_bin(), '--check-config', '--backend', url,
                            '--ttl', LOCK_TTL.get(name, '10s'), '--kill-grace', '500ms'],
                           capture_output=True, text=True, env=ctx.elect_env())
        if r.returncode != 0:
            print('bench: lockd-%s skipped: %s' % (name, r.stderr.strip()), file=sys.stderr)
            return
        ds = [Lockd(ctx, 'l%d' % i, url, ttl=LOCK_TTL.get(name, '10s'), kill_grace='500ms',
                    args=['--max-holds', '5000']).wait_ready() for i in range(2)]
        rows.append(row(name, 'uncontended acquire+release per second',
                        value=round_trips(ds[0], a.lockd_round_trips), n=a.lockd_round_trips))
        env = ctx.elect_env()
        rows.append(row(name, 'lockctl run NAME -- true (ms)',
                        timed_runs(ctx, [lockctl_bin(), '--socket', ds[0].socket, 'run', 'lr',
                                         '--wait', '10s', '--', 'true'], a.lockd_runs, env)))
        if name == 'etcd' and hasattr(be, 'server'):
            import etcd_server
            eenv = dict(os.environ, ETCDCTL_API='3')
            rows.append(row(name, 'etcdctl lock NAME -- true (ms)',
                            timed_runs(ctx, [etcd_server.ETCDCTL, '--endpoints='
                                             + be.server.endpoint, 'lock', 'elr', '--', 'true'],
                                       a.lockd_runs, eenv)))
        if name == 'consul' and hasattr(be, 'server'):
            rows.append(row(name, 'consul lock NAME true (ms)',
                            timed_runs(ctx, be.server.consul('lock', 'lockd/clr', 'true'),
                                       a.lockd_runs, be.server.env())))
        rows.append(row(name, 'contended handover, 2 lockd (ms)',
                        handovers(ds[0], ds[1], a.lockd_handovers)))
        idle, full, lists = rss_with_locks(
            ds[1], a.lockd_many, lambda: listing_runs(ctx, ds[0], a.lockd_many, 10, env))
        rows.append(row(name, 'lockd RSS idle (KiB)', value=idle))
        rows.append(row(name, 'lockd RSS holding %d locks (KiB)' % a.lockd_many, value=full))
        rows.append(row(name, 'lockctl list, %d locks of another lockd (ms)' % a.lockd_many, lists))
    finally:
        try:
            for p in reversed(ctx._procs):
                p.stop(5)
            if getattr(be, 'stop', None):
                be.stop(ctx)
        finally:
            ctx.doCleanups()


def add_arguments(ap):
    g = ap.add_argument_group('lockd (tests/bench_lockd.py)')
    g.add_argument('--lockd-backends', default='file,etcd,zk,consul')
    g.add_argument('--lockd-round-trips', type=int, default=2000)
    g.add_argument('--lockd-runs', type=int, default=50)
    g.add_argument('--lockd-handovers', type=int, default=50)
    g.add_argument('--lockd-many', type=int, default=1000)


def run_rows(a, rows):
    if not os.access(lockd_bin(), os.X_OK):
        print('bench: %s not found (run make)' % lockd_bin(), file=sys.stderr)
        return False
    ok = True
    for name in [n for n in a.lockd_backends.split(',') if n]:
        try:
            bench_lock_backend(name, a, rows)
        except Exception:  # noqa: BLE001 - report and go on
            traceback.print_exc()
            print('bench: lockd-%s failed' % name, file=sys.stderr)
            ok = False
    return ok


class Backend(bench.Backend):
    """tests/bench.py --backend lockd: runs run_rows() instead of the
    election rows."""
    name = 'lockd'

    @classmethod
    def add_arguments(cls, ap):
        add_arguments(ap)

    def run_rows(self, a, rows):
        if not run_rows(a, rows):
            raise AssertionError('lockd rows failed')


def main():
    import argparse
    ap = argparse.ArgumentParser(description='lockd benchmark')
    ap.add_argument('-v', '--verbose', action='store_true')
    add_arguments(ap)
    a = ap.parse_args()
    rows = []
    ok = run_rows(a, rows)
    head = ('backend', 'metric', 'n', 'median/value', 'p99', 'max')
    w = [max(len(bench.fmt(r[i])) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print('  '.join(bench.fmt(v).ljust(w[i]) if i < 2 else bench.fmt(v).rjust(w[i])
                        for i, v in enumerate(r)))
    return 0 if ok else 1


if __name__ == '__main__':
    harness.VALGRIND = False
    sys.exit(main())
