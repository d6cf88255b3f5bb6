#!/usr/bin/env python3
"""Checker for leader interval logs (written by tests/leadercmd.c).

Log lines (fields separated by spaces, times in CLOCK_MONOTONIC ns):
  start  <id> <token> <ns> <pid>
  signal <id> <token> <ns> <pid> <signo>     (ignored here)
  stop   <id> <token> <ns> <pid>             command ended on a signal / exit
  dead   <id> <token> <ns> <pid>             process gone (from its watcher)

One interval per leader command process (keyed by pid + start time). It
starts at "start" and ends at "stop" when the command wrote one (just before
it exits), else at "dead" (its watcher sees the pipe close when the kernel
tears the process down, also after kill -9), else it is open (still running, or the
watcher could not write): open intervals end at `t_end` (default: the
latest time seen in the logs) and are listed in Report.open.

Terms: one per interval. Overlap: two intervals of different terms (a
different holder id or a different token) that overlap in time, by
[start, end). Token order: sorted by start time, every token must be
strictly greater than the previous one (a non-numeric token is a
violation). Leaderless time: the gaps in the union of all intervals between
t_begin (default: the first start) and t_end.

Frozen agents (issue 6: SIGSTOP scenario): pass frozen=[(id, t0_ns, t1_ns)]
(t1 None = never resumed); an overlap is counted as a sigstop overlap when
one of the two holders was frozen at some time between its interval's start
and the end of the overlap. Report.overlaps holds only the others.

Library use:  rep = check([log, ...], t_begin=None, t_end=None, frozen=())
              rep.terms, rep.overlaps, rep.sigstop_overlaps,
              rep.token_violations, rep.leaderless_ns, rep.max_leaderless_ns,
              rep.table(), rep.summary_line(seed=None)
Command line: python3 tests/checker.py LOG... [--seed N]
              prints the table and the summary line; exit 1 on any overlap
              or token violation.
"""

import argparse
import sys


class Interval:
    __slots__ = ('id', 'token', 'pid', 'start', 'stop', 'dead', 'log')

    def __init__(self, id, token, pid, start, log):
        self.id, self.token, self.pid, self.start, self.log = id, token, pid, start, log
        self.stop = None
        self.dead = None

    @property
    def end(self):
        # The command's own "stop" line is written just before it exits, so
        # it is the tighter end when present; "dead" (from a watcher that may
        # wake late under load) covers kill -9, which leaves no stop line.
        return self.stop if self.stop is not None else self.dead

    def token_int(self):
        try:
            return int(self.token)
        except ValueError:
            return None

    def __repr__(self):
        return 'Interval(%s tok=%s pid=%d %d..%s)' % (self.id, self.token, self.pid,
                                                       self.start, self.end)


def read_intervals(paths):
    """All intervals of the given logs, sorted by start time."""
    out = []
    for path in paths:
        cur = {}
        with open(path, errors='replace') as f:
            for line in f:
                p = line.split()
                if len(p) < 5 or p[0] not in ('start', 'stop', 'dead'):
                    continue
                try:
                    ns, pid = int(p[3]), int(p[4])
                except ValueError:
                    continue
                if p[0] == 'start':
                    iv = Interval(p[1], p[2], pid, ns, path)
                    cur[pid] = iv
                    out.append(iv)
                    continue
                iv = cur.get(pid)
                if iv is None:
                    continue
                if p[0] == 'stop':
                    iv.stop = ns
                else:
                    iv.dead = ns
    out.sort(key=lambda i: (i.start, i.pid))
    return out


class Report:
    def __init__(self):
        self.intervals = []
        self.open = []
        self.terms = 0
        self.overlaps = []           # (a, b, overlap_ns)
        self.sigstop_overlaps = []
        self.token_violations = []   # (prev, cur)
        self.leaderless_ns = 0
        self.max_leaderless_ns = 0
        self.gaps = []               # (from_ns, to_ns)
        self.t_begin = self.t_end = None

    def table(self):
        rows = ['%-12s %-8s %-8s %18s %12s %s' % ('holder', 'token', 'pid', 'start_ns',
                                                  'length_ms', 'end')]
        for iv in self.intervals:
            end = iv.end
            rows.append('%-12s %-8s %-8d %18d %12s %s' % (
                iv.id, iv.token, iv.pid, iv.start,
                '%.3f' % ((end - iv.start) / 1e6) if end is not None else '-',
                'dead' if iv.dead is not None else ('stop' if iv.stop is not None else 'OPEN')))
        for a, b, ns in self.overlaps:
            rows.append('OVERLAP %.3f ms: %r and %r' % (ns / 1e6, a, b))
        for a, b, ns in self.sigstop_overlaps:
            rows.append('SIGSTOP OVERLAP %.3f ms: %r and %r' % (ns / 1e6, a, b))
        for a, b in self.token_violations:
            rows.append('TOKEN ORDER: %r then %r' % (a, b))
        rows.append('terms %d, leaderless %.3f ms total, %.3f ms max'
                    % (self.terms, self.leaderless_ns / 1e6, self.max_leaderless_ns / 1e6))
        return '\n'.join(rows)

    def summary_line(self, seed=None):
        return ('terms %d overlaps %d token_violations %d max_leaderless_ms %d '
                'sigstop_overlaps %d seed %s' % (
                    self.terms, len(self.overlaps), len(self.token_violations),
                    self.max_leaderless_ns // 1000000, len(self.sigstop_overlaps),
                    seed if seed is not None else '-'))


def _was_frozen(id, t0, t1, frozen):
    for fid, f0, f1 in frozen:
        if fid == id and f0 < t1 and (f1 is None or f1 > t0):
            return True
    return False


def check(paths, t_begin=None, t_end=None, frozen=()):
    rep = Report()
    ivs = read_intervals(paths)
    rep.intervals = ivs
    rep.terms = len(ivs)
    if not ivs:
        return rep
    latest = max(max(i.start, i.end or 0) for i in ivs)
    t_end = latest if t_end is None else t_end
    t_begin = ivs[0].start if t_begin is None else t_begin
    rep.t_begin, rep.t_end = t_begin, t_end
    rep.open = [i for i in ivs if i.end is None]

    def end_of(i):
        return i.end if i.end is not None else max(t_end, i.start)

    # Overlaps: intervals are sorted by start; compare with every later one
    # that starts before this one ends.
    for n, a in enumerate(ivs):
        ea = end_of(a)
        for b in ivs[n + 1:]:
            if b.start >= ea:
                break
            if (a.id, a.token) == (b.id, b.token) and a.pid == b.pid:
                continue
            ov_end = min(ea, end_of(b))
            ov = ov_end - b.start
            if ov <= 0:
                continue
            entry = (a, b, ov)
            if frozen and (_was_frozen(a.id, a.start, ov_end, frozen)
                           or _was_frozen(b.id, b.start, ov_end, frozen)):
                rep.sigstop_overlaps.append(entry)
            else:
                rep.overlaps.append(entry)

    prev = None
    for i in ivs:
        t = i.token_int()
        if t is None or (prev is not None and prev.token_int() is not None
                         and t <= prev.token_int()):
            rep.token_violations.append((prev, i))
        prev = i

    # Leaderless time: gaps in the union of intervals within [t_begin, t_end].
    covered_to = t_begin
    for i in ivs:
        s, e = max(i.start, t_begin), min(end_of(i), t_end)
        if s > covered_to:
            rep.gaps.append((covered_to, s))
        covered_to = max(covered_to, e)
    if t_end > covered_to:
        rep.gaps.append((covered_to, t_end))
    for a, b in rep.gaps:
        rep.leaderless_ns += b - a
        rep.max_leaderless_ns = max(rep.max_leaderless_ns, b - a)
    return rep


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('logs', nargs='+')
    ap.add_argument('--seed')
    a = ap.parse_args()
    rep = check(a.logs)
    print(rep.table())
    print(rep.summary_line(a.seed))
    return 1 if rep.overlaps or rep.token_violations else 0


if __name__ == '__main__':
    sys.exit(main())
