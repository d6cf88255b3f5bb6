"""Chaos scenarios for elect (issue 6), shared by tests/chaos.py (`make chaos`)
and tests/integration/test_chaos.py (the short version in `make check`).

    results = run_backend(case, 'etcd', seed, duration=300, short=False,
                          only=None, out=sys.stdout)

case is a harness.ElectTestCase (temp dir, process registry). Each scenario
gets three fresh agents (wrapper mode, tests/leadercmd.c as the leader
command writing one interval log), its own election, and a Random seeded
from (seed, backend, scenario), through which every choice and timing
goes; the same seed replays the same sequence of choices (process races may
still differ). Scenarios (NET_ONLY ones for etcd, zk, consul and k8s only):

  kill_agent   kill -9 of the leader agent, restarted after a random pause
  kill_cmd     kill -9 of the leader command (the agent exits with 137 and
               is restarted)
  sigstop      SIGSTOP of the leader agent for 1.2..2.5 TTL, then SIGCONT;
               overlaps that involve the frozen agent are sigstop_overlaps
               (checker frozen windows), and how long the resumed agent kept
               its command running next to another leader is resume_ms
  cut          the leader's links blackholed for 0.3..3 TTL, then healed
  slow         0.6..1.2 x the renew interval of delay each way on the
               leader's links, for 1..3 TTL
  restart      the backend (all its servers) down for up to 1.5 TTL,
               SIGKILL or SIGTERM; k8s: kube-apiserver, its etcd, or both
  member_kill  (3-member cluster: etcd, zk, consul) the member the leader's
               renewals go to (the proxy that carried its traffic) killed
               for 1..3 TTL
  rm_lock      (file only) the lock file removed, or replaced by a copy of
               itself (as `sed -i` does), under the running leader
  mixed        (cluster for etcd/zk/consul) all of the above plus connection
               resets and flaky links (a share of new connections reset),
               at random times and targets, several at once

The single scenarios wait for one stable leader, hit it, wait for the heal
and the restarts, and go again; mixed does not wait for quiet. Each
scenario ends with every fault healed, one leader again, and all agents
stopped; then checker.check() gives the figures.
"""

import datetime
import os
import random
import signal
import statistics
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import checker  # noqa: E402
import harness  # noqa: E402
from chaos_env import make_env  # noqa: E402

SCENARIOS = ('kill_agent', 'kill_cmd', 'sigstop', 'cut', 'slow', 'restart', 'member_kill',
             'rm_lock', 'mixed')
NET_ONLY = {'cut', 'slow', 'restart', 'member_kill'}
FILE_ONLY = {'rm_lock'}
ON_CLUSTER = {'member_kill', 'mixed'}
CLUSTER_KINDS = ('etcd', 'zk', 'consul')     # the backends with a member cluster
MIXED_WEIGHTS = (('kill_agent', 2), ('kill_cmd', 2), ('sigstop', 1), ('cut', 2), ('slow', 1),
                 ('reset', 1), ('flaky', 1), ('restart', 0.5), ('member_kill', 1),
                 ('rm_lock', 1))
AGENTS = 3
LEADERCMD = None            # path of the leader command; None: the harness's build
SHORT_EVENTS = 2            # per single scenario in the short version
SHORT_MIXED_S = 20          # seconds of the mixed scenario in the short version
MAX_UNEXPECTED = 6          # agent exits nobody caused before a scenario gives up


def _dur(s):
    ms = int(round(s * 1000))
    return '%ds' % (ms // 1000) if ms % 1000 == 0 else '%dms' % ms


class Timing:
    """Short TTLs for many terms per minute; etcd's smallest lease is 2 s, a
    ZooKeeper session must be >= 2 ticks (the test servers tick 100 ms)."""
    BASE = {'file': (1.0, 0.25, 0.2), 'etcd': (2.0, 0.5, 0.3), 'zk': (2.0, 0.5, 0.3),
            'consul': (3.0, 1.0, 0.3),      # whole seconds; servers' session_ttl_min 1s
            'k8s': (3.0, 1.0, 0.3)}         # whole seconds, renewals >= 1 s (renewTime)

    def __init__(self, kind):
        k = harness.scale()
        self.ttl, self.renew, self.grace = (x * k for x in self.BASE[kind])
        if kind in ('k8s', 'consul'):
            self.ttl = float(round(self.ttl))
        if kind == 'k8s':
            self.renew = float(max(1, round(self.renew)))
        # No stable leader this long after every fault healed: a stall.
        self.bound = 10 * k + 6 * self.ttl

    def agent_args(self):
        return dict(ttl=_dur(self.ttl), renew=_dur(self.renew), kill_grace=_dur(self.grace))

    def __str__(self):
        return 'ttl %s renew %s kill-grace %s' % (_dur(self.ttl), _dur(self.renew),
                                                  _dur(self.grace))


def plan(kind, duration, short, only=None):
    """[(scenario, seconds or None, max events or None)] for one backend."""
    names = [s for s in SCENARIOS
             if (kind != 'file' or s not in NET_ONLY) and (kind == 'file' or s not in FILE_ONLY)
             and (kind in CLUSTER_KINDS or s != 'member_kill') and (not only or s in only)]
    singles = [s for s in names if s != 'mixed']
    out = []
    if short:
        out = [(s, None, SHORT_EVENTS) for s in singles]
        if 'mixed' in names:
            out.append(('mixed', SHORT_MIXED_S * harness.scale(), None))
        return out
    share = 0.5 if 'mixed' in names and singles else 1.0
    for s in singles:
        out.append((s, duration * share / len(singles), None))
    if 'mixed' in names:
        out.append(('mixed', duration * (1 - share) if singles else duration, None))
    return out


class _Pending:
    """A heal that is due at a monotonic time."""

    def __init__(self, due, owner, label, fn, agent=None):
        self.due, self.owner, self.label, self.fn, self.agent = due, owner, label, fn, agent


class Result:
    def __init__(self, kind, name, seed):
        self.kind, self.name, self.seed = kind, name, seed
        self.env = ''
        self.timing = None
        self.rep = None
        self.events = {}
        self.skipped = 0
        self.stalls = []
        self.unexpected = []
        self.problems = []
        self.resume_ms = []
        self.gaps_ms = []
        self.error = None
        self.seconds = 0.0
        self.details = ''       # reproduction text for overlaps / violations

    @property
    def overlaps(self):
        return len(self.rep.overlaps) if self.rep else 0

    @property
    def token_violations(self):
        return len(self.rep.token_violations) if self.rep else 0

    @property
    def sigstop_overlaps(self):
        return len(self.rep.sigstop_overlaps) if self.rep else 0

    @property
    def terms(self):
        return self.rep.terms if self.rep else 0

    def median_gap_ms(self):
        return statistics.median(self.gaps_ms) if self.gaps_ms else 0.0

    def max_gap_ms(self):
        return max(self.gaps_ms) if self.gaps_ms else 0.0

    def unsafe(self):
        return self.overlaps > 0 or self.token_violations > 0

    def failed(self):
        """Anything wrong besides unsafety: stalls, crashes, leftovers."""
        return bool(self.stalls or self.unexpected or self.problems or self.error)

    def line(self):
        return ('scenario %s %s: events %d terms %d overlaps %d token_violations %d '
                'leaderless_median_ms %.0f max_leaderless_ms %.0f sigstop_overlaps %d '
                'resume_max_ms %s stalls %d unexpected_exits %d problems %d (%.0fs)'
                % (self.kind, self.name, sum(self.events.values()), self.terms, self.overlaps,
                   self.token_violations, self.median_gap_ms(), self.max_gap_ms(),
                   self.sigstop_overlaps,
                   '%.1f' % max(self.resume_ms) if self.resume_ms else '-',
                   len(self.stalls), len(self.unexpected),
                   len(self.problems) + (1 if self.error else 0), self.seconds))


class Scenario:
    def __init__(self, case, env, kind, name, seed, out):
        self.case, self.env, self.kind, self.name, self.out = case, env, kind, name, out
        self.rng = random.Random('%s/%s/%s' % (seed, kind, name))
        self.t = Timing(kind)
        self.ids = ['%s.%d' % (name, i) for i in range(AGENTS)]
        self.log = case.path('iv-%s.log' % name)
        open(self.log, 'a').close()
        self.events_path = case.path('events-%s.log' % name)
        self.agents = {}            # id -> harness.Agent or None (exited)
        self.expect = {}            # id -> (reason, restart delay s, give up at, statuses)
        self.restart_at = {}        # id -> monotonic s
        self.frozen_open = {}       # id -> SIGSTOP ns
        self.windows = []           # (id, t0 ns, t1 ns) for checker.check(frozen=)
        self.resumes = []           # (id, ns just before SIGCONT)
        self.pending = []
        self.busy = {}              # owner -> label
        self.notes = []             # (ns, text): the event log
        self.res = Result(kind, name, seed)
        self.res.env = env.describe()
        self.res.timing = str(self.t)
        self.wall_off = time.time_ns() - time.monotonic_ns()

    # --- bookkeeping
    def note(self, text):
        ns = harness.now_ns()
        self.notes.append((ns, text))
        with open(self.events_path, 'a') as f:
            f.write('%d %s\n' % (ns, text))

    def schedule(self, delay, owner, label, fn, agent=None):
        self.busy[owner] = label
        self.pending.append(_Pending(time.monotonic() + delay, owner, label, fn, agent))

    def _heal(self, p):
        self.busy.pop(p.owner, None)
        try:
            p.fn()
            self.note('heal %s' % p.label)
        except Exception as e:  # noqa: BLE001 - a server that will not start
            self.note('heal %s FAILED: %r' % (p.label, e))
            self.res.problems.append('heal %s failed: %s' % (p.label, e))

    def close_freeze(self, aid):
        t0 = self.frozen_open.pop(aid, None)
        if t0 is not None:
            self.windows.append((aid, t0, harness.now_ns()))

    def start_agent(self, aid):
        a = harness.Agent(self.case, name='chaos', id=aid,
                          backend=self.env.url(self.name, aid, self.ids.index(aid)),
                          cmd=[LEADERCMD or harness.leadercmd_path(), self.log],
                          args=self.env.agent_args(aid), **self.t.agent_args())
        self.agents[aid] = a
        self.note('start agent %s pid %d' % (aid, a.pid))

    def _forget(self, a):
        """An exited agent leaves the harness registry, so that its (free)
        pid is never signalled in the harness's tearDown."""
        try:
            a._logf.close()
        except OSError:
            pass
        try:
            self.case._procs.remove(a)
        except ValueError:
            pass

    def _on_exit(self, aid, a):
        now = time.monotonic()
        self.agents[aid] = None
        self.close_freeze(aid)
        for p in [p for p in self.pending if p.agent is a]:
            self.pending.remove(p)
            self.busy.pop(p.owner, None)
        exp = self.expect.pop(aid, None)
        if exp is not None and a.returncode not in exp[3]:
            exp = None              # e.g. 99 from a sanitizer instead of 137
        self.note('agent %s pid %d exited %s%s' % (aid, a.pid, a.returncode,
                                                   ' (%s)' % exp[0] if exp else ' UNEXPECTED'))
        if exp is None:
            self.res.unexpected.append('agent %s pid %d exited with %s; log tail:\n%s'
                                       % (aid, a.pid, a.returncode, a.log()[-2500:]))
        self._forget(a)
        if len(self.res.unexpected) >= MAX_UNEXPECTED:
            # e.g. a configuration elect refuses: restarting forever would
            # never let the scenario end (it is never quiet, so no stall).
            raise RuntimeError('agents exited on their own %d times; giving up'
                               % len(self.res.unexpected))
        self.restart_at[aid] = now + (exp[1] if exp else 0.5)

    def tick(self):
        now = time.monotonic()
        for p in sorted([p for p in self.pending if p.due <= now], key=lambda p: p.due):
            self.pending.remove(p)
            self._heal(p)
        for aid in self.ids:
            a = self.agents.get(aid)
            if a is None:
                continue
            if a.returncode is not None:
                self._on_exit(aid, a)
            elif aid in self.expect and aid not in self.frozen_open and self.expect[aid][2] < now:
                del self.expect[aid]    # it stepped down instead of exiting: fine
        for aid, t in list(self.restart_at.items()):
            if t <= now:
                del self.restart_at[aid]
                self.start_agent(aid)

    def sleep(self, s):
        end = time.monotonic() + s
        while True:
            self.tick()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.05, left))

    # --- who leads
    def open_intervals(self):
        return [i for i in checker.read_intervals([self.log]) if i.end is None]

    def leader_id(self):
        """The holder of the newest running leader command, if any."""
        hs = self.open_intervals()
        return hs[-1].id if hs else None

    def stable_leader(self):
        hs = self.open_intervals()
        if len(hs) != 1:
            return None
        aid = hs[0].id
        a = self.agents.get(aid)
        if a is None or aid in self.frozen_open or not a.alive():
            return None
        st = a.try_status()
        return aid if st and st.get('is_leader') else None

    def quiet(self):
        return not (self.pending or self.restart_at or self.frozen_open
                    or any(self.agents.get(i) is None for i in self.ids))

    def wait_leader(self, give_up=None):
        """Waits for one stable leader. A stall is recorded only when there
        was none for Timing.bound with every fault healed. give_up: return
        None after that many seconds anyway (mixed scenario)."""
        t0 = time.monotonic()
        quiet_since = None
        while True:
            self.tick()
            lid = self.stable_leader()
            if lid:
                return lid
            now = time.monotonic()
            if not self.quiet():
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            if quiet_since is not None and now - quiet_since > self.t.bound:
                self.note('STALL: no stable leader for %.0fs with all faults healed'
                          % self.t.bound)
                self.res.stalls.append(harness.now_ns())
                return None
            if give_up is not None and now - t0 > give_up:
                return None
            time.sleep(0.05)

    def settle(self):
        while not self.quiet():
            self.tick()
            time.sleep(0.05)

    # --- faults; each returns a description, or None when it does not apply
    def _is_our_cmd(self, pid):
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as f:
                argv = f.read().split(b'\0')
        except OSError:
            return False
        return len(argv) >= 2 and argv[1] == self.log.encode()

    def ev_kill_agent(self, aid, r):
        a = self.agents.get(aid)
        if a is None or not a.alive() or self.expect.get(aid, ('',))[0] == 'kill -9 agent':
            return None
        before = self.expect.get(aid, (None, None, None, ()))[3]     # racing a kill_cmd
        self.expect[aid] = ('kill -9 agent', r[2], float('inf'), (-signal.SIGKILL,) + before)
        a.kill(signal.SIGKILL)
        self.close_freeze(aid)
        return 'kill -9 agent %s pid %d (restart after %.2fs)' % (aid, a.pid, r[2])

    def ev_kill_cmd(self, aid, r):
        ivs = [i for i in self.open_intervals() if i.id == aid]
        if (not ivs or self.agents.get(aid) is None or aid in self.expect
                or not self._is_our_cmd(ivs[-1].pid)):
            return None
        self.expect[aid] = ('kill -9 of its command', r[2],
                            time.monotonic() + 3 * self.t.ttl + 5, (128 + signal.SIGKILL,))
        os.kill(ivs[-1].pid, signal.SIGKILL)
        return 'kill -9 leader command of %s pid %d' % (aid, ivs[-1].pid)

    def ev_sigstop(self, aid, r):
        a = self.agents.get(aid)
        if a is None or not a.alive() or 'freeze:' + aid in self.busy:
            return None
        d = self.t.ttl * (1.2 + 1.3 * r[2])
        self.frozen_open[aid] = harness.now_ns()
        a.kill(signal.SIGSTOP)

        def cont():
            t = harness.now_ns()
            a.kill(signal.SIGCONT)
            self.close_freeze(aid)
            self.resumes.append((aid, t))
        self.schedule(d, 'freeze:' + aid, 'SIGCONT %s' % aid, cont, agent=a)
        return 'SIGSTOP agent %s pid %d for %.2fs' % (aid, a.pid, d)

    def _link_fault(self, aid, label, d, apply, heal):
        owner = 'link:' + aid
        if not self.env.has_link or owner in self.busy:
            return None
        ps = self.env.link(aid)
        for p in ps:
            apply(p)

        def undo():
            for p in ps:
                heal(p)
        self.schedule(d, owner, 'link %s of %s' % (label, aid), undo)
        return '%s link of %s for %.2fs' % (label, aid, d)

    def ev_cut(self, aid, r):
        return self._link_fault(aid, 'blackhole', self.t.ttl * (0.3 + 2.7 * r[2]),
                                lambda p: p.blackhole(), lambda p: p.pass_())

    def ev_slow(self, aid, r):
        ms = int(self.t.renew * 1000 * (0.6 + 0.6 * r[3]))
        return self._link_fault(aid, 'delay %dms' % ms, self.t.ttl * (1 + 2 * r[2]),
                                lambda p: p.delay(ms), lambda p: p.delay(0))

    def ev_reset(self, aid, r):
        return self._link_fault(aid, 'reset', 0.05 + 0.95 * r[2],
                                lambda p: p.reset(), lambda p: p.pass_())

    def ev_flaky(self, aid, r):
        share = round(0.2 + 0.5 * r[3], 2)

        def apply(p):
            p.drop(share)
            p.reset()
            p.pass_()
        return self._link_fault(aid, 'flaky %.2f' % share, self.t.ttl * (1 + 2 * r[2]),
                                apply, lambda p: p.drop(0))

    def ev_restart(self, aid, r):
        if not self.env.has_link or 'backend' in self.busy:
            return None
        d = self.t.ttl * (0.05 + 1.45 * r[2])
        hard = r[3] < 0.5
        what = self.env.stop_all(hard, r[4])
        self.schedule(d, 'backend', 'backend restart', self.env.start_all)
        return 'backend (%s) down (%s) for %.2fs' % (what, 'SIGKILL' if hard else 'SIGTERM', d)

    def ev_member_kill(self, aid, r):
        if self.env.members < 3 or 'backend' in self.busy:
            return None
        self.busy['backend'] = 'choosing'
        b0 = self.env.traffic(aid)
        self.sleep(1.5 * self.t.renew)
        b1 = self.env.traffic(aid)
        self.busy.pop('backend', None)
        if 'backend' in self.busy or self.env.down:
            return None
        up = [m for m in range(self.env.members) if m not in self.env.down]
        cands = [m for m in up if b1[m] > b0[m]] or up
        m = cands[int(r[4] * len(cands))]
        d = self.t.ttl * (1 + 2 * r[2])
        hard = r[3] < 0.7
        self.env.stop_member(m, hard)
        self.schedule(d, 'backend', 'member %d restart' % m, lambda: self.env.start_member(m))
        return 'member %d (%s %s) down (%s) for %.2fs' % (
            m, 'talked to by' if b1[m] > b0[m] else 'no traffic seen from', aid,
            'SIGKILL' if hard else 'SIGTERM', d)

    def ev_rm_lock(self, aid, r):
        path = self.env.lock_path(self.name) if hasattr(self.env, 'lock_path') else None
        if path is None or not os.path.exists(path):
            return None
        if r[3] < 0.5:
            os.unlink(path)
            return 'lock file removed under %s' % aid
        with open(path, 'rb') as f:
            content = f.read()
        with open(path + '.copy', 'wb') as f:
            f.write(content)
        os.rename(path + '.copy', path)
        return 'lock file replaced by a copy under %s' % aid

    def apply(self, kind, aid, r):
        try:
            what = getattr(self, 'ev_' + kind)(aid, r)
        except OSError as e:        # the target died just now
            what = None
            self.note('%s on %s: %r' % (kind, aid, e))
        if what is None:
            self.res.skipped += 1
            return False
        self.res.events[kind] = self.res.events.get(kind, 0) + 1
        self.note(kind + ': ' + what)
        return True

    # --- the loops
    def run_single(self, kind, t_end, max_events):
        n = 0
        while time.monotonic() < t_end and (max_events is None or n < max_events):
            r = [self.rng.random() for _ in range(8)]
            self.settle()
            lid = self.wait_leader()
            self.sleep(r[0] * 2 * self.t.renew)
            lid = self.leader_id() or lid or self.ids[int(r[1] * AGENTS)]
            if self.apply(kind, lid, r):
                n += 1

    def run_mixed(self, t_end):
        kinds = [(k, w) for k, w in MIXED_WEIGHTS
                 if (self.env.has_link or k not in NET_ONLY | {'reset', 'flaky'})
                 and (not self.env.has_link or k not in FILE_ONLY)
                 and (self.env.members >= 3 or k != 'member_kill')]
        total = sum(w for _, w in kinds)
        while time.monotonic() < t_end:
            r = [self.rng.random() for _ in range(10)]
            if r[5] < 0.5:
                self.wait_leader(give_up=self.t.bound)
            self.sleep(r[6] * 3 * self.t.renew)
            x, kind = r[7] * total, kinds[-1][0]
            for k, w in kinds:
                if x < w:
                    kind = k
                    break
                x -= w
            lid = self.leader_id()
            aid = lid if lid and r[8] < 0.8 else self.ids[int(r[9] * AGENTS)]
            self.apply(kind, aid, r)

    def run(self, seconds, max_events):
        t0 = time.monotonic()
        t_end = t0 + seconds if seconds is not None else float('inf')
        t_stop = None
        try:
            self.note('scenario %s %s: %s, %s' % (self.kind, self.name, self.res.env, self.t))
            for aid in self.ids:
                self.start_agent(aid)
            if self.name == 'mixed':
                self.run_mixed(t_end)
            else:
                self.run_single(self.name, t_end, max_events)
            self.settle()           # the last faults heal when they are due
            self.heal_all()
            self.wait_leader()
            t_stop = harness.now_ns()
        except Exception:  # noqa: BLE001 - report and still check the log
            self.res.error = traceback.format_exc()
            self.note('ERROR: ' + self.res.error)
            try:
                self.heal_all()
            except Exception:  # noqa: BLE001
                self.res.problems.append('heal after error: ' + traceback.format_exc())
        finally:
            self.stop_agents()
        self.res.seconds = time.monotonic() - t0
        self.evaluate(t_stop)
        return self.res

    def heal_all(self):
        for p in sorted(self.pending, key=lambda p: p.due):
            self.pending.remove(p)
            self._heal(p)
        self.tick()
        for aid in list(self.restart_at):
            del self.restart_at[aid]
            self.start_agent(aid)

    def stop_agents(self):
        for aid in self.ids:
            a = self.agents.get(aid)
            if a is None:
                continue
            if a.alive():
                a.stop(timeout=10)
            self.close_freeze(aid)
            self.note('stopped agent %s pid %d: %s' % (aid, a.pid, a.returncode))
            self._forget(a)
            self.agents[aid] = None
        self.pending = []
        # The dead lines come from the commands' watchers, a moment later.
        end = time.monotonic() + 5 * harness.scale()
        while self.open_intervals() and time.monotonic() < end:
            time.sleep(0.05)
        for iv in self.open_intervals():
            if self._is_our_cmd(iv.pid):
                os.kill(iv.pid, signal.SIGKILL)
                self.res.problems.append('leader command pid %d of %s outlived its agent'
                                         % (iv.pid, iv.id))
            else:
                self.res.problems.append('leader command pid %d of %s has no dead line'
                                         % (iv.pid, iv.id))

    # --- figures
    def evaluate(self, t_stop):
        rep = checker.check([self.log], t_end=t_stop, frozen=self.windows)
        self.res.rep = rep
        self.res.gaps_ms = [(b - a) / 1e6 for a, b in rep.gaps]
        for aid, t1 in self.resumes:
            for iv in rep.intervals:
                if iv.id != aid or iv.start >= t1 or (iv.end is not None and iv.end <= t1):
                    continue
                end = iv.end if iv.end is not None else rep.t_end
                if any(j.id != aid and j.start < end and (j.end is None or j.end > t1)
                       for j in rep.intervals):
                    self.res.resume_ms.append((end - t1) / 1e6)
        parts = []
        for a, b, ns in rep.overlaps:
            parts.append(self.reproduction('OVERLAP of %.3f ms between %s and %s'
                                           % (ns / 1e6, a, b), [a, b], b.start, b.start + ns))
        for a, b in rep.token_violations:
            parts.append(self.reproduction('TOKEN ORDER: %s then %s' % (a, b),
                                           [x for x in (a, b) if x], b.start, b.start))
        self.res.details = '\n'.join(parts)

    def _agent_lines(self, aid, w0, w1):
        out = []
        try:
            with open(self.case.path(aid + '.log'), errors='replace') as f:
                for line in f:
                    ts = line.split(' ', 1)[0]
                    try:
                        dt = datetime.datetime.strptime(ts, '%Y-%m-%dT%H:%M:%S.%fZ')
                    except ValueError:
                        continue
                    ns = int(dt.replace(tzinfo=datetime.timezone.utc).timestamp() * 1e9)
                    if w0 - 1e6 <= ns - self.wall_off <= w1 + 1e6:
                        out.append('  ' + line.rstrip())
        except OSError:
            pass
        return out

    def reproduction(self, title, ivs, t0, t1):
        w0, w1 = t0 - int((2 * self.t.ttl + 1) * 1e9), t1 + int(1e9)
        r = ['%s\n  backend %s scenario %s seed %s; replay: python3 tests/chaos.py --backend %s '
             '--scenario %s --seed %s' % (title, self.kind, self.name, self.res.seed, self.kind,
                                          self.name, self.res.seed),
             ' interval log %s (monotonic ns):' % self.log]
        with open(self.log) as f:
            for line in f:
                p = line.split()
                if len(p) >= 4 and p[3].isdigit() and w0 <= int(p[3]) <= w1:
                    r.append('  ' + line.rstrip())
        r.append(' chaos events (monotonic ns):')
        r += ['  %d %s' % (ns, t) for ns, t in self.notes if w0 <= ns <= w1]
        for aid in sorted({i.id for i in ivs}):
            r.append(' agent %s log (%s):' % (aid, self.case.path(aid + '.log')))
            r += self._agent_lines(aid, w0, w1)
        return '\n'.join(r)


def run_backend(case, kind, seed, duration=60, short=False, only=None, out=sys.stdout,
                tables=True):
    """Runs the plan for one backend; prints per scenario the checker's table
    (tables=True) and a figures line; returns the Result list."""
    results = []
    envs = {}
    try:
        for name, seconds, max_events in plan(kind, duration, short, only):
            cluster = kind in CLUSTER_KINDS and name in ON_CLUSTER
            if cluster not in envs:
                for e in envs.values():         # one set of servers at a time
                    e.close()
                envs.clear()
                env = make_env(case, kind, cluster, random.Random('%s/%s/env/%s'
                                                                  % (seed, kind, cluster)))
                case.addCleanup(env.close)
                envs[cluster] = env
                try:
                    env.start()
                except Exception:  # noqa: BLE001 - report as this scenario's error
                    res = Result(kind, name, seed)
                    res.env, res.error = env.describe(), traceback.format_exc()
                    results.append(res)
                    report(res, out, tables)
                    continue
            sc = Scenario(case, envs[cluster], kind, name, seed, out)
            res = sc.run(seconds, max_events)
            results.append(res)
            report(res, out, tables)
    finally:
        for e in envs.values():
            e.close()
    return results


def report(res, out, tables=True):
    out.write('== %s %s: %s, %d agents, %s, seed %s\n'
              % (res.kind, res.name, res.env, AGENTS, res.timing, res.seed))
    out.write('events: %s; skipped (target busy or gone) %d\n'
              % (', '.join('%s %d' % kv for kv in sorted(res.events.items())) or 'none',
                 res.skipped))
    if tables and res.rep is not None:
        out.write(res.rep.table() + '\n')
    if res.details:
        out.write(res.details + '\n')
    for what, items in (('STALL at ns', res.stalls), ('UNEXPECTED EXIT', res.unexpected),
                        ('PROBLEM', res.problems)):
        for x in items:
            out.write('%s: %s\n' % (what, x))
    if res.error:
        out.write('ERROR: %s\n' % res.error)
    out.write(res.line() + '\n')
    out.flush()


def figures_table(results):
    rows = ['%-5s %-12s %6s %6s %8s %8s %9s %9s %8s %9s %6s' % (
        'back', 'scenario', 'events', 'terms', 'overlaps', 'token_v', 'gap_med', 'gap_max',
        'sigstop', 'resume_ms', 'stalls')]
    for r in results:
        rows.append('%-5s %-12s %6d %6d %8d %8d %9.0f %9.0f %8d %9s %6d' % (
            r.kind, r.name, sum(r.events.values()), r.terms, r.overlaps, r.token_violations,
            r.median_gap_ms(), r.max_gap_ms(), r.sigstop_overlaps,
            '%.1f' % max(r.resume_ms) if r.resume_ms else '-', len(r.stalls)))
    return '\n'.join(rows)


def summary_line(results, seed):
    return ('terms %d overlaps %d token_violations %d max_leaderless_ms %d '
            'sigstop_overlaps %d seed %s' % (
                sum(r.terms for r in results), sum(r.overlaps for r in results),
                sum(r.token_violations for r in results),
                int(max([r.max_gap_ms() for r in results] or [0])),
                sum(r.sigstop_overlaps for r in results), seed))
