#!/usr/bin/env python3
"""`make bench`: timing and footprint of elect, one row group per backend.

  python3 tests/bench.py [--backend file,etcd,zk,consul,lockd] [--handovers 50]
                         [--crashes 30] [--idle-seconds 30] [plugin flags]

Figures:
  graceful handover  leader's elect gets SIGTERM -> the next leader's command
                     has started (its "start" line, CLOCK_MONOTONIC)
  crash failover     kill -9 of the leader's elect -> next leader's command
  resign --to        POST /v1/resign?to=ID (what `elect resign --to ID` sends)
                     -> the named candidate's command has started
  unhealthy          a leader's --health-cmd starts failing (checks every
                     200 ms, 2 failures make it unhealthy) -> the next
                     leader's command has started
  idle RSS           VmRSS of an idle leader and an idle follower agent
  idle CPU           utime+stime of those agents over --idle-seconds
  idle requests      requests per minute that an idle leader / follower sends
                     to the backend over --idle-seconds (backends that define
                     counting_url(): the pair then talks through counting
                     proxies, see CountingProxy)
  leader change, N   --fanout N candidates (default 200) on one election of a
  candidates         backend with counting_url(): one graceful leader change,
                     the next command's start and the requests the whole
                     group sent in the 2 s after it, next to those of the
                     idle 2 s before it (fanout_rows)

Three candidates take part; every stopped agent is replaced by a new one so
there are always two waiting.

Adding a backend: subclass Backend (below) and add it to BACKENDS, or drop a
module tests/bench_<name>.py defining `Backend` (a subclass of bench.Backend)
- it is picked up for --backend <name>. start() launches servers with
ctx.spawn() (ctx is a harness.ElectTestCase: ctx.path(), ctx.port(), ...),
url(ctx, election) returns the --backend URL. Everything is stopped by pid
when the backend's run ends, also on error. Optional: counting_url(ctx,
election) -> (url, CountingProxy) for the idle request rows;
extra_rows(ctx, args, rows) appends backend-specific rows at the end;
add_arguments(argparser) (a classmethod) adds the plugin's own flags;
counts(args) -> (handovers, crashes) when the backend's failovers are too
slow for --crashes; before_crashes(ctx, args) runs once after the graceful
handovers (e.g. to start slow side-by-side runs in the background).
"""

import argparse
import collections
import importlib
import os
import re
import signal
import statistics
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import checker  # noqa: E402
import harness  # noqa: E402
from proxy import FaultProxy  # noqa: E402
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

# Seconds counted before and after the leader change of the fan-out run.
FANOUT_WINDOW = 2.0


class CountingProxy:
    """A tests/proxy.py FaultProxy in front of a backend server that counts
    the requests an agent sends through it. parser_factory() makes one parser
    per client connection (each proxy pump runs in its own thread, hence the
    thread-local); parser.feed(bytes) returns the kinds of the requests that
    the bytes completed (e.g. ['POST /v3/lease/keepalive'])."""

    def __init__(self, ctx, target, parser_factory):
        self.parser_factory = parser_factory
        self.counts = collections.Counter()
        self.sent = []              # (monotonic ns, kind) of every request
        self._lock = threading.Lock()
        self._local = threading.local()
        self.proxy = FaultProxy(target).start()
        ctx.addCleanup(self.proxy.stop)
        self.proxy.set_request_hook(self._hook)

    @property
    def hostport(self):
        return '%s:%d' % (self.proxy.host, self.proxy.port)

    def _hook(self, data):
        parser = getattr(self._local, 'parser', None)
        if parser is None:
            parser = self._local.parser = self.parser_factory()
        kinds = parser.feed(data)
        if kinds:
            t = now_ns()
            with self._lock:
                self.counts.update(kinds)
                self.sent.extend((t, k) for k in kinds)
        return data

    def sent_between(self, t0, t1):
        """Kinds of the requests sent in [t0, t1] (monotonic ns), in order."""
        with self._lock:
            return [k for t, k in self.sent if t0 <= t <= t1]

    def snapshot(self):
        with self._lock:
            return collections.Counter(self.counts)


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


def stats_row(backend, label, xs):
    if not xs:
        return (backend, label, 0, None, None, None)
    return (backend, label, len(xs), statistics.median(xs), pct(xs, 99), max(xs))


def gone(iv):
    """When the command was gone: its "dead" line (the process is gone),
    else its own last ("stop") line."""
    return iv.dead if iv.dead is not None else iv.stop


def gaps(ivs, n):
    """Old command gone -> next command's start, for the first n changes of
    holder in ivs (checker.Interval list sorted by start)."""
    return [(b.start - gone(x)) / 1e6 for x, b in zip(ivs[:n], ivs[1:n + 1])
            if gone(x) is not None]


class Run:
    def __init__(self, ctx, be, log):
        self.ctx, self.be, self.log = ctx, be, log
        self.url = be.url(ctx, 'bench')
        self.agents = {}
        self.gen = 0

    def add_agent(self, url=None):
        id = 'c%d' % self.gen
        self.gen += 1
        self.agents[id] = self.ctx.agent(id=id, name='bench', backend=url or self.url,
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
        nxt = self.ctx.wait_new_term(self.log, after_ns=t0, exclude_id=h.id,
                                     timeout=getattr(self.be, 'failover_timeout', 30))
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


def counted_pair(ctx, be, run):
    """Replaces the agents by a leader and a follower whose backend traffic
    goes through counting proxies; returns (leader, follower, counters)."""
    for ag in sorted(run.agents.values(), key=lambda x: x.is_leader()):
        ag.stop()                               # followers first: no handover
    run.agents.clear()
    wait_for(lambda: not ctx.holders(run.log), 10, msg='no leader command running')
    url, lc = be.counting_url(ctx, 'bench')
    leader = run.add_agent(url)
    if hasattr(lc, 'bind'):         # a counter that tells agents apart by id
        lc.bind(leader)
    wait_for(leader.is_leader, 30, msg='counted agent leads')
    url, fc = be.counting_url(ctx, 'bench')
    follower = run.add_agent(url)
    if hasattr(fc, 'bind'):
        fc.bind(follower)
    run.settle()
    return leader, follower, {leader.pid: lc, follower.pid: fc}


def handover_rows(ctx, be, name, n, rows):
    """Issue 14's figures: `resign --to` (POST /v1/resign?to=ID, the API
    call the command makes) to the named candidate's command started, and a
    leader's health check turning bad (checks every 200 ms, 2 failures) to
    the next leader's command started. Three health-gated candidates on an
    election of their own."""
    log = ctx.path('iv-ho.log')
    ids = ['h0', 'h1', 'h2']
    ok = {i: ctx.path('ok.' + i) for i in ids}
    for f in ok.values():
        open(f, 'w').close()
    agents = {}
    for i in ids:
        kw = dict(be.agent_args)
        kw['args'] = list(kw.get('args', [])) + [
            '--health-cmd', 'test -f ' + ok[i], '--health-interval', '200ms',
            '--health-fails', '2', '--health-passes', '1']
        agents[i] = ctx.agent(id=i, name='bench-ho', backend=be.url(ctx, 'bench-ho'),
                              cmd=ctx.leader_cmd(log), verbose=False, **kw)

    def holder():
        return wait_for(lambda: (lambda h: len(h) == 1 and h[0])(ctx.holders(log)), 30,
                        interval=0.002, msg='one leader')

    def candidates_ready(lead):
        for i in ids:
            if i != lead:
                wait_for(lambda i=i: (agents[i].try_status() or {}).get('state') == 'candidate',
                         30, interval=0.005, msg='%s campaigning' % i)

    to_xs, sick_xs = [], []
    for k in range(n):
        h = holder()
        candidates_ready(h.id)
        to = [i for i in ids if i != h.id][k % 2]
        t0 = now_ns()
        code, _, body = agents[h.id].request('POST', '/v1/resign?to=%s&timeout=10s' % to)
        if code != 200:
            raise AssertionError('resign --to %s: %d %s' % (to, code, body))
        nxt = ctx.wait_new_term(log, after_ns=t0, exclude_id=h.id, timeout=30)
        if nxt.id != to:
            raise AssertionError('resign --to %s: %s led instead' % (to, nxt.id))
        to_xs.append((nxt.start - t0) / 1e6)
    for k in range(n):
        h = holder()
        candidates_ready(h.id)
        t0 = now_ns()
        os.unlink(ok[h.id])
        nxt = ctx.wait_new_term(log, after_ns=t0, exclude_id=h.id, timeout=30)
        sick_xs.append((nxt.start - t0) / 1e6)
        open(ok[h.id], 'w').close()
    for label, xs in (('resign --to: named leader started (ms)', to_xs),
                      ('unhealthy (200ms x2) -> next leader (ms)', sick_xs)):
        rows.append((name, label, len(xs), statistics.median(xs), pct(xs, 99), max(xs)))
    for ag in agents.values():
        ag.stop()
    rep = checker.check([log])
    if rep.overlaps or rep.token_violations:
        print('bench: %s: SAFETY VIOLATIONS during resign --to / health handovers:\n%s'
              % (name, rep.table()), file=sys.stderr)


def critical_path_rows(name, ctx, run, leader, follower, counters, rows):
    """One graceful handover of the counted pair: the requests each agent
    sent between the SIGTERM and the next command's start line, i.e. the
    requests on the handover's path (counted, so free of timing noise; a
    renewal that happens to fall in the window would show up by its kind)."""
    h = run.settle()
    if h.id != leader.id:
        raise AssertionError('the counted leader does not lead')
    run.agents.pop(leader.id)
    t0 = now_ns()
    leader.kill(signal.SIGTERM)
    nxt = ctx.wait_new_term(run.log, after_ns=t0, exclude_id=h.id, timeout=30)
    leader.wait_exit(30)
    if nxt.id != follower.id:
        raise AssertionError('%s took over, not the counted follower' % nxt.id)
    for who, ag in (('old leader', leader), ('new leader', follower)):
        kinds = counters[ag.pid].sent_between(t0, nxt.start)
        rows.append((name, 'handover requests, %s (SIGTERM -> next CMD)' % who, 1, len(kinds),
                     None, None))
        print('bench: %s handover, %s sent: %s' % (name, who, ', '.join(kinds) or 'nothing'),
              file=sys.stderr)


def fanout_rows(ctx, be, name, n, rows):
    """Issue 15: N candidates on one election, all talking to the server
    through one counting proxy (or the API server's audit log). One graceful
    leader change (SIGTERM to the leader's agent), then the requests the
    whole group sent in the FANOUT_WINDOW seconds after it, by kind, less
    those of an idle window of the same length just before it: what a leader
    change costs the server. Renewals are made rare (TTL 30 s, renew 10 s) so
    that the idle window is nearly empty. Watch events that a server pushes
    on open streams are not requests and are not counted."""
    url, counter = be.counting_url(ctx, 'fanout')
    log = ctx.path('fanout.log')
    kw = dict(be.agent_args)
    kw['ttl'], kw['renew'] = '30s', '10s'
    agents = {}
    t_start = time.monotonic()
    for i in range(n):
        aid = 'f%03d' % i
        agents[aid] = ctx.agent(id=aid, name='fanout', backend=url, cmd=ctx.leader_cmd(log),
                                verbose=False, **kw)
        if i % 20 == 19:
            time.sleep(0.2)
    lead = wait_for(lambda: (lambda h: len(h) == 1 and h[0])(ctx.holders(log)), 120,
                    interval=0.05, msg='one of %d candidates leads' % n)
    for ag in agents.values():
        if ag.id != lead.id:
            wait_for(lambda ag=ag: (ag.try_status() or {}).get('leader') == lead.id, 120,
                     interval=0.05, msg='%s sees the leader' % ag.id)
    print('bench: %s fan-out: %d candidates up in %.1fs' % (name, n, time.monotonic() - t_start),
          file=sys.stderr)
    time.sleep(1.0)
    win = int(FANOUT_WINDOW * 1e9)
    t0 = now_ns()
    time.sleep(FANOUT_WINDOW)
    t1 = now_ns()
    old = agents.pop(lead.id)
    old.kill(signal.SIGTERM)
    nxt = ctx.wait_new_term(log, after_ns=t1, exclude_id=lead.id, timeout=60)
    old.wait_exit(30)
    time.sleep(max(0.0, (t1 + win - now_ns()) / 1e9) + 0.2)
    idle = collections.Counter(counter.sent_between(t0, t1))
    change = collections.Counter(counter.sent_between(t1, t1 + win))
    rows.append((name, 'leader change, %d candidates: next CMD (ms)' % n, 1,
                 (nxt.start - t1) / 1e6, None, None))
    rows.append((name, 'leader change, %d candidates: requests (idle %gs before)'
                 % (n, FANOUT_WINDOW), 1, '%d (%d)' % (sum(change.values()), sum(idle.values())),
                 None, None))
    def kinds(c):
        # Query values (session ids, indexes) apart, one entry per kind.
        c = collections.Counter(re.sub(r'=[^&]*', '', k) for k in c.elements())
        return ', '.join('%s %d' % kv for kv in sorted(c.items())) or 'nothing'
    print('bench: %s fan-out: %gs after the leader change: %s; idle %gs before: %s' % (
        name, FANOUT_WINDOW, kinds(change), FANOUT_WINDOW, kinds(idle)), file=sys.stderr)
    if len(ctx.holders(log)) != 1:
        raise AssertionError('%s fan-out: not one leader after the change' % name)
    rep = checker.check([log])
    if rep.overlaps or rep.token_violations:
        print('bench: %s: SAFETY VIOLATIONS in the fan-out run:\n%s' % (name, rep.table()),
              file=sys.stderr)
    for ag in agents.values():
        ag.stop()


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
        counts = be.counts(a) if hasattr(be, 'counts') else (a.handovers, a.crashes)
        for label, sig, n in (('graceful handover (ms)', signal.SIGTERM, counts[0]),
                              ('crash failover (ms)', signal.SIGKILL, counts[1])):
            if sig == signal.SIGKILL and hasattr(be, 'before_crashes'):
                be.before_crashes(ctx, a)
            xs = []
            for i in range(n):
                xs.append(run.handover(sig))
                if a.verbose:
                    print('  %s %d: %.3f ms' % (label, i, xs[-1]), file=sys.stderr)
            rows.append((name, label, len(xs), statistics.median(xs), pct(xs, 99), max(xs)))
            if sig == signal.SIGTERM:
                gs = gaps(ctx.intervals(run.log), n)
                rows.append(stats_row(name, 'graceful handover, old CMD gone -> next CMD (ms)',
                                      gs))
        rep = checker.check([run.log])
        if rep.overlaps or rep.token_violations:
            print('bench: %s: SAFETY VIOLATIONS during the handovers:\n%s'
                  % (name, rep.table()), file=sys.stderr)
        rows.append((name, 'terms (overlaps, token errors)', rep.terms,
                     '%d, %d' % (len(rep.overlaps), len(rep.token_violations)), None, None))
        if a.handover_rounds > 0:
            handover_rows(ctx, be, name, a.handover_rounds, rows)

        # Idle footprint: the current leader and one follower.
        counters = {}
        if getattr(be, 'counting_url', None):
            leader, follower, counters = counted_pair(ctx, be, run)
        else:
            h = run.settle()
            leader = run.agents[h.id]
            follower = [x for x in run.agents.values() if x.id != h.id][0]
        time.sleep(1.0)
        for who, ag in (('leader', leader), ('follower', follower)):
            rows.append((name, 'idle RSS %s (KiB)' % who, 1, proc_rss_kib(ag.pid), None, None))
        hz = os.sysconf('SC_CLK_TCK')
        c0 = {ag.pid: proc_cpu_ticks(ag.pid) for ag in (leader, follower)}
        r0 = {pid: c.snapshot() for pid, c in counters.items()}
        time.sleep(a.idle_seconds)
        r1 = {pid: c.snapshot() for pid, c in counters.items()}
        for who, ag in (('leader', leader), ('follower', follower)):
            ms = (proc_cpu_ticks(ag.pid) - c0[ag.pid]) * 1000.0 / hz
            rows.append((name, 'idle CPU %s over %gs (ms)' % (who, a.idle_seconds), 1, ms,
                         None, None))
        for who, ag in (('leader', leader), ('follower', follower)):
            if ag.pid in counters:
                d = r1[ag.pid] - r0[ag.pid]
                rows.append((name, 'idle requests/min %s' % who, sum(d.values()),
                             sum(d.values()) * 60.0 / a.idle_seconds, None, None))
                print('bench: %s idle %s sent over %gs: %s' % (
                    name, who, a.idle_seconds,
                    ', '.join('%s %d' % kv for kv in sorted(d.items())) or 'nothing'),
                    file=sys.stderr)
        if len(ctx.holders(run.log)) != 1:
            raise AssertionError('leadership changed while idle')
        if counters:
            critical_path_rows(name, ctx, run, leader, follower, counters, rows)
        extra = getattr(be, 'extra_rows', None)
        if extra:
            extra(ctx, a, rows)
        if a.fanout > 0 and getattr(be, 'counting_url', None):
            fanout_rows(ctx, be, name, a.fanout, rows)
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
    # -h only after the plugins added their flags, so that it lists them.
    ap = argparse.ArgumentParser(description='elect benchmark', add_help=False)
    ap.add_argument('--backend', default=None,
                    help='comma-separated: file,etcd,zk,consul,k8s,lockd (default: all)')
    ap.add_argument('--handovers', type=int, default=50)
    ap.add_argument('--crashes', type=int, default=30)
    ap.add_argument('--idle-seconds', type=float, default=30)
    ap.add_argument('--handover-rounds', type=int, default=10,
                    help='rounds of resign --to and of a leader turning unhealthy (default 10)')
    ap.add_argument('--fanout', type=int, default=200,
                    help='candidates in the leader-change fan-out run of the backends '
                         'with a request counter (default 200; 0: none)')
    ap.add_argument('-v', '--verbose', action='store_true')
    a, _ = ap.parse_known_args()
    if a.backend:
        names = [n for n in a.backend.split(',') if n]
    else:
        names = ['file', 'etcd', 'zk', 'consul', 'k8s', 'lockd']
    for n in names:                     # plugins' own flags
        cls = find_backend(n)
        if cls is not None and hasattr(cls, 'add_arguments'):
            cls.add_arguments(ap)
    ap.add_argument('-h', '--help', action='help', help='show this help message and exit')
    a = ap.parse_args()
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
            if hasattr(cls, 'run_rows'):    # rows of their own (tests/bench_lockd.py)
                cls().run_rows(a, rows)
            else:
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
