#!/usr/bin/env python3
"""`make bench`: timing and footprint of elect, one row group per backend.

  python3 tests/bench.py [--backend file,etcd,zk] [--handovers 50]
                         [--crashes 50] [--idle-seconds 60]

Figures:
  graceful handover  leader's elect gets SIGTERM -> the next leader's command
                     has started (its "start" line, CLOCK_MONOTONIC)
  crash failover     kill -9 of the leader's elect -> next leader's command
  idle RSS           VmRSS of an idle leader and an idle follower agent
  idle CPU           utime+stime of those agents over --idle-seconds

Three candidates take part; every stopped agent is replaced by a new one so
there are always two waiting.

Adding a backend: subclass Backend (below) and add it to BACKENDS, or drop a
module tests/bench_<name>.py defining `Backend` (a subclass of bench.Backend)
- it is picked up for --backend <name>. start() launches servers with
ctx.spawn() (ctx is a harness.ElectTestCase: ctx.path(), ctx.port(), ...),
url(ctx, election) returns the --backend URL. Everything is stopped by pid
when the backend's run ends, also on error.
"""

import argparse
import importlib
import os
import signal
import statistics
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import checker  # noqa: E402
import harness  # noqa: E402
from harness import ElectTestCase, now_ns, wait_for  # noqa: E402


class Backend:
    name = 'file'

    def available(self):
        """None if usable, else why not (printed, the row is skipped)."""
        return None

    def start(self, ctx):
        """Start servers (ctx.spawn) and wait until they serve."""

    def url(self, ctx, election):
        return ctx.file_backend(election)

    # Agent options for this backend (e.g. a shorter TTL).
    agent_args = {'ttl': '10s', 'kill_grace': '1s'}


BACKENDS = {'file': Backend}


def find_backend(name):
    if name in BACKENDS:
        return BACKENDS[name]
    try:
        return importlib.import_module('bench_' + name).Backend
    except ImportError:
        return None


class Ctx(ElectTestCase):
    """An ElectTestCase used outside unittest for its temp dir and processes."""

    def runTest(self):  # pragma: no cover - never run
        pass


def pct(xs, p):
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


class Run:
    def __init__(self, ctx, be, log):
        self.ctx, self.be, self.log = ctx, be, log
        self.url = be.url(ctx, 'bench')
        self.agents = {}
        self.gen = 0

    def add_agent(self):
        id = 'c%d' % self.gen
        self.gen += 1
        self.agents[id] = self.ctx.agent(id=id, name='bench', backend=self.url,
                                         cmd=self.ctx.leader_cmd(self.log), verbose=False,
                                         **self.be.agent_args)
        return self.agents[id]

    def holder(self):
        return wait_for(lambda: (lambda h: len(h) == 1 and h[0])(self.ctx.holders(self.log)),
                        30, interval=0.002, msg='one leader')

    def settle(self):
        """All agents up and seeing the current leader."""
        h = self.holder()
        for a in self.agents.values():
            if a.id != h.id:
                wait_for(lambda a=a: (a.try_status() or {}).get('leader') == h.id, 30,
                         interval=0.005, msg='%s sees leader' % a.id)
        return h

    def handover(self, sig):
        h = self.settle()
        a = self.agents.pop(h.id)
        t0 = now_ns()
        a.kill(sig)
        nxt = self.ctx.wait_new_term(self.log, after_ns=t0, exclude_id=h.id, timeout=30)
        a.wait_exit(30)
        self.add_agent()
        return (nxt.start - t0) / 1e6


def proc_rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return None


def proc_cpu_ticks(pid):
    with open('/proc/%d/stat' % pid) as f:
        st = f.read()
    fields = st[st.rfind(')') + 2:].split()
    return int(fields[11]) + int(fields[12])      # utime, stime


def bench_backend(name, cls, a, rows):
    be = cls()
    why = be.available()
    if why:
        print('bench: %s skipped: %s' % (name, why), file=sys.stderr)
        return
    ctx = Ctx()
    ctx.setUp()
    try:
        be.start(ctx)
        run = Run(ctx, be, ctx.path('iv.log'))
        for _ in range(3):
            run.add_agent()
        for label, sig, n in (('graceful handover (ms)', signal.SIGTERM, a.handovers),
                              ('crash failover (ms)', signal.SIGKILL, a.crashes)):
            xs = []
            for i in range(n):
                xs.append(run.handover(sig))
                if a.verbose:
                    print('  %s %d: %.3f ms' % (label, i, xs[-1]), file=sys.stderr)
            rows.append((name, label, len(xs), statistics.median(xs), pct(xs, 99), max(xs)))
        rep = checker.check([run.log])
        if rep.overlaps or rep.token_violations:
            print('bench: %s: SAFETY VIOLATIONS during the handovers:\n%s'
                  % (name, rep.table()), file=sys.stderr)
        rows.append((name, 'terms (overlaps, token errors)', rep.terms,
                     '%d, %d' % (len(rep.overlaps), len(rep.token_violations)), None, None))

        # Idle footprint: the current leader and one follower.
        h = run.settle()
        leader = run.agents[h.id]
        follower = [x for x in run.agents.values() if x.id != h.id][0]
        time.sleep(1.0)
        for who, ag in (('leader', leader), ('follower', follower)):
            rows.append((name, 'idle RSS %s (KiB)' % who, 1, proc_rss_kib(ag.pid), None, None))
        hz = os.sysconf('SC_CLK_TCK')
        c0 = {ag.pid: proc_cpu_ticks(ag.pid) for ag in (leader, follower)}
        time.sleep(a.idle_seconds)
        for who, ag in (('leader', leader), ('follower', follower)):
            ms = (proc_cpu_ticks(ag.pid) - c0[ag.pid]) * 1000.0 / hz
            rows.append((name, 'idle CPU %s over %gs (ms)' % (who, a.idle_seconds), 1, ms,
                         None, None))
        if len(ctx.holders(run.log)) != 1:
            raise AssertionError('leadership changed while idle')
    finally:
        stop = getattr(be, 'stop', None)
        try:
            if stop:
                stop(ctx)
        finally:
            ctx.doCleanups()


def fmt(v):
    if v is None:
        return '-'
    if isinstance(v, float):
        return '%.3f' % v
    return str(v)


def main():
    ap = argparse.ArgumentParser(description='elect benchmark')
    ap.add_argument('--backend', default=None,
                    help='comma-separated: file,etcd,zk (default: all implemented)')
    ap.add_argument('--handovers', type=int, default=50)
    ap.add_argument('--crashes', type=int, default=50)
    ap.add_argument('--idle-seconds', type=float, default=60)
    ap.add_argument('-v', '--verbose', action='store_true')
    a = ap.parse_args()
    if a.backend:
        names = [n for n in a.backend.split(',') if n]
    else:
        names = ['file', 'etcd', 'zk']
    if not os.access(harness.elect_bin(), os.X_OK):
        print('bench: %s not found (run make)' % harness.elect_bin(), file=sys.stderr)
        return 1
    rows, failed = [], False
    for n in names:
        cls = find_backend(n)
        if cls is None:
            if a.backend:
                print('bench: no backend %r' % n, file=sys.stderr)
                failed = True
            continue
        try:
            bench_backend(n, cls, a, rows)
        except Exception:  # noqa: BLE001 - report and go on with the next backend
            traceback.print_exc()
            print('bench: %s failed' % n, file=sys.stderr)
            failed = True
    head = ('backend', 'metric', 'n', 'median/value', 'p99', 'max')
    w = [max(len(fmt(r[i])) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print('  '.join(fmt(v).ljust(w[i]) if i < 2 else fmt(v).rjust(w[i])
                        for i, v in enumerate(r)))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
