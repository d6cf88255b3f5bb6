"""`make bench` rows for the Consul backend (picked up by tests/bench.py for
--backend consul): one `consul agent -dev` (tests/consul_server.py, Consul
1.13.9 built from Go modules once into ~/.cache/elect; built here when
missing) on free loopback ports, stopped by pid at the end.

elect: TTL 10 s (Consul's smallest), renew TTL/3, its session's LockDelay
as elect's default (the TTL). Consul invalidates a session between TTL and
2 x TTL after its last renewal and the lock-delay follows, so crash failover
is about 27 to 30 s; the
elect kill -9 runs are --consul-crashes (default 5), not --crashes.

Side by side on the same server, `consul lock [FLAGS] PREFIX CMD` (the same
consul binary) runs the same leader command. Its session is made by the
Go API's Lock with TTL 15 s (DefaultLockSessionTTL), the server's default
LockDelay (15 s) and the serfHealth check; `consul lock` has no flag for
either, so every setting runs with them (the rows print the values read from
the session). Two settings:
  default    `consul lock PREFIX CMD` (CMD through $SHELL -c, -monitor-retry 3)
  fairest    `consul lock -shell=false -monitor-retry=0 PREFIX CMD`: CMD is
             exec'd directly (signals reach it, no shell in between) and the
             first failed read of the lock counts as losing it.
Rows:
  graceful handover   SIGTERM to the holder's `consul lock` (what a user does,
                      `kill PID` or Ctrl-C): it forwards SIGTERM to CMD (only
                      to its pid: CMD runs in consul's own process group), also
                      sends its own SIGTERM, waits up to 5 s (then SIGKILL),
                      releases the key and destroys its session. Two figures,
                      as for elect: SIGTERM -> next CMD's start, and old CMD
                      gone (its last line) -> next CMD's start.
  crash failover      kill -9 of `consul lock`: CMD is left running (counted as
                      "old CMD still running", then killed by its pid); the
                      next waiter gets the key after Consul ends the session
                      (2 x TTL after its last renewal, which comes every
                      TTL/2: 22.5 to 30 s) plus the lock-delay (15 s,
                      retried every 5 s).
  cut off             the holder's link to Consul blackholed by a tests/proxy.py
                      FaultProxy, a second contender connected directly: how
                      long the cut-off holder's CMD runs on after the other's
                      CMD started (negative: it stopped before). `consul lock`
                      waits on the blocked connections without a timeout, so
                      CMD runs until the link heals; we watch it for
                      --consul-cutoff-watch seconds, then heal and time how
                      soon it stops. elect: stopped by its deadline.
  idle                VmRSS, CPU and requests/min of an idle `consul lock`
                      holder and waiter (each through a counting proxy; the
                      consul process only, not CMD).
The kill -9 and cut-off runs take tens of seconds each, mostly waiting for
Consul's timers, so they run in background threads (each on its own prefix)
while elect's crash failovers and idle window run; `consul lock`'s graceful
handovers run after them, on a quiet server.

Idle requests of elect: the counted leader and follower talk to Consul
through a counting proxy each, which counts HTTP/1.1 request lines (a
blocking query counts once).
"""

import os
import signal
import statistics
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
import consul_server  # noqa: E402
from bench_etcd import Http1Parser  # noqa: E402
from harness import now_ns, pid_alive, wait_for  # noqa: E402
from proxy import FaultProxy  # noqa: E402

SETTINGS = (('default', []), ('fairest', ['-shell=false', '-monitor-retry=0']))
# Session invalidation (up to 2 x 15 s) + lock-delay (15 s, retried every 5 s) + slack.
CONSUL_LOCK_FAILOVER_S = 2 * 15 + 20 + 30


def row(label, xs=None, value=None, n=1):
    if xs is None:
        return ('consul', label, n, value, None, None)
    if not xs:
        return ('consul', label, 0, None, None, None)
    return ('consul', label, len(xs), statistics.median(xs), bench.pct(xs, 99), max(xs))


def new_term(ctx, log, after_ns, exclude_id, timeout):
    """ctx.wait_new_term with a slow poll: the figures come from the start
    lines' own timestamps, and the background threads should not load the
    machine while elect is measured."""
    def f():
        return next((i for i in ctx.intervals(log)
                     if i.start > after_ns and i.id != exclude_id), None)
    return wait_for(f, timeout, interval=0.1, msg='a new term in ' + log)


class Backend(bench.Backend):
    name = 'consul'
    agent_args = {'ttl': '10s', 'kill_grace': '500ms', 'args': ['--hook-timeout', '500ms']}
    # A crashed holder's session ends TTL to 2 x TTL after its last renewal,
    # then its lock-delay (the TTL) passes: up to 30 s, and the retry.
    failover_timeout = 45

    @classmethod
    def add_arguments(cls, ap):
        g = ap.add_argument_group('consul (tests/bench_consul.py)')
        g.add_argument('--consul-crashes', type=int, default=5,
                       help='kill -9 of the leader\'s elect (about 20 s each; default 5)')
        g.add_argument('--consul-lock-handovers', type=int, default=20,
                       help='consul lock graceful handovers per setting (default 20)')
        g.add_argument('--consul-lock-crashes', type=int, default=3,
                       help='kill -9 of consul lock per setting (about 45 s each; default 3)')
        g.add_argument('--consul-cutoffs', type=int, default=2,
                       help='cut-off runs for elect and per consul lock setting (default 2)')
        g.add_argument('--consul-cutoff-watch', type=float, default=10.0,
                       help='seconds to watch the cut-off holder after the other took over')

    def available(self):
        if consul_server.have_consul():
            return None
        try:
            consul_server.build_consul()    # once per machine, then cached
            return None
        except RuntimeError as e:
            return str(e)

    def counts(self, a):
        return a.handovers, a.consul_crashes

    def start(self, ctx):
        # The fan-out run's candidates all come from 127.0.0.1, two or more
        # connections each; Consul's default limit per client address is 200.
        self.server = consul_server.ConsulServer(
            ctx.tmp, 'consul', extra_args=['-hcl', 'limits { http_max_conns_per_client = 2000 }'])
        self.server.start()
        self.threads, self.side_rows, self.errors = [], {}, []

    def url(self, ctx, election, endpoint=None):
        return 'consul://%s/bench/%s' % (endpoint or self.server.endpoint, election)

    def counting_url(self, ctx, election):
        cp = bench.CountingProxy(ctx, ('127.0.0.1', self.server.http_port), Http1Parser)
        return self.url(ctx, election, cp.hostport), cp

    def stop(self, ctx):
        # Agents and consul locks first, while Consul still answers their release.
        for p in reversed(ctx._procs):
            p.stop(10)
        self.server.stop()

    # --- consul lock processes

    def consul_lock(self, ctx, id, flags, prefix, log, addr=None):
        env = self.server.env({'ELECT_ID': id})
        if addr:
            env['CONSUL_HTTP_ADDR'] = 'http://' + addr
        env.pop('ELECT_TOKEN', None)
        argv = self.server.consul('lock', '-name', 'bench ' + prefix, *flags)
        return ctx.spawn(argv + [prefix] + ctx.leader_cmd(log), '%s-%s' % (prefix, id), env=env)

    def lock_sessions(self, prefix):
        return [s for s in self.server.sessions() if s.get('Name') == 'bench ' + prefix]

    def one_holder(self, ctx, log, timeout=30, interval=0.002):
        return wait_for(lambda: (lambda h: len(h) == 1 and h[0])(ctx.holders(log)), timeout,
                        interval=interval, msg='one holder in ' + log)

    # --- background runs, started after elect's graceful handovers

    def before_crashes(self, ctx, a):
        self.idle_t0 = time.monotonic()
        self.idle = self.start_idle_pair(ctx)
        self.idle_r0 = {who: cp.snapshot() for who, (_, cp) in self.idle.items()}
        self.idle_c0 = {who: bench.proc_cpu_ticks(p.pid) for who, (p, _) in self.idle.items()}
        jobs = [('elect cut off', lambda: self.cutoff_runs(ctx, a, None, []))]
        for setting, flags in SETTINGS:
            jobs.append(('consul lock %s kill -9' % setting,
                         lambda s=setting, f=flags: self.lock_crashes(ctx, a, s, f)))
            jobs.append(('consul lock %s cut off' % setting,
                         lambda s=setting, f=flags: self.cutoff_runs(ctx, a, s, f)))
        for name, fn in jobs:
            th = threading.Thread(target=self._job, args=(name, fn), daemon=True)
            th.start()
            self.threads.append(th)

    def _job(self, name, fn):
        try:
            self.side_rows[name] = fn()
        except Exception:  # noqa: BLE001 - reported in extra_rows
            self.errors.append('%s:\n%s' % (name, traceback.format_exc()))

    def start_idle_pair(self, ctx):
        """A consul lock holder and a waiter on prefix 'lidle', each through
        a counting proxy."""
        log = ctx.path('lidle.log')
        out = {}
        for who in ('holder', 'waiter'):
            cp = bench.CountingProxy(ctx, ('127.0.0.1', self.server.http_port), Http1Parser)
            out[who] = (self.consul_lock(ctx, who, [], 'lidle', log, cp.hostport), cp)
            if who == 'holder':
                self.one_holder(ctx, log)
        wait_for(lambda: len(self.lock_sessions('lidle')) == 2, 30, msg='idle waiter session')
        time.sleep(1.0)                 # the waiter's first reads are not idle traffic
        return out

    def lock_crashes(self, ctx, a, setting, flags):
        prefix = 'lk-' + setting
        log = ctx.path(prefix + '.log')
        lockers, gen, xs, orphans = {}, [0], [], 0

        def add():
            id = 'k%d' % gen[0]
            gen[0] += 1
            lockers[id] = self.consul_lock(ctx, id, flags, prefix, log)

        for _ in range(3):
            add()
        for i in range(a.consul_lock_crashes):
            h = self.one_holder(ctx, log, 60, interval=0.1)
            wait_for(lambda: len(self.lock_sessions(prefix)) == 3, 60, interval=0.1,
                     msg='3 sessions')
            p = lockers.pop(h.id)
            t0 = now_ns()
            p.kill(signal.SIGKILL)
            nxt = new_term(ctx, log, t0, h.id, CONSUL_LOCK_FAILOVER_S)
            xs.append((nxt.start - t0) / 1e6)
            if pid_alive(h.pid):
                orphans += 1
                os.kill(h.pid, signal.SIGKILL)      # our grandchild, by its pid
            wait_for(lambda h=h: all(x.pid != h.pid for x in ctx.holders(log)), 10,
                     interval=0.1, msg='orphaned command gone')
            p.wait_exit(10)
            add()
            if a.verbose:
                print('  consul lock %s kill -9 %d: %.3f ms' % (setting, i, xs[-1]),
                      file=sys.stderr)
        return [row('consul lock (%s) failover, kill -9 (ms)' % setting, xs),
                row('consul lock (%s) kill -9: old CMD still running' % setting,
                    value=orphans, n=len(xs))]

    def cutoff_runs(self, ctx, a, setting, flags):
        """setting None: elect; else consul lock with flags."""
        who = 'elect' if setting is None else 'consul lock (%s)' % setting
        runs_on, taken, healed, still = [], [], [], 0
        for i in range(a.consul_cutoffs):
            prefix = 'cut-%s-%d' % (setting or 'elect', i)
            log = ctx.path(prefix + '.log')
            proxy = FaultProxy(('127.0.0.1', self.server.http_port)).start()
            ctx.addCleanup(proxy.stop)
            addr = '%s:%d' % (proxy.host, proxy.port)
            if setting is None:
                mk = lambda id, ep=None: ctx.agent(  # noqa: E731
                    id=id, name='bench', backend=self.url(ctx, prefix, ep), verbose=False,
                    cmd=ctx.leader_cmd(log), **self.agent_args)
                cut = mk('cut', addr)
                self.one_holder(ctx, log, interval=0.1)
                other = mk('other')
                wait_for(lambda: (other.try_status() or {}).get('leader') == 'cut', 30,
                         interval=0.1, msg='other sees the cut-off leader')
            else:
                cut = self.consul_lock(ctx, 'cut', flags, prefix, log, addr)
                self.one_holder(ctx, log, interval=0.1)
                other = self.consul_lock(ctx, 'other', flags, prefix, log)
                wait_for(lambda: len(self.lock_sessions(prefix)) == 2, 30, interval=0.1,
                         msg='2 sessions')
            t_cut = now_ns()
            proxy.blackhole()
            nxt = new_term(ctx, log, t_cut, 'cut', CONSUL_LOCK_FAILOVER_S)
            taken.append((nxt.start - t_cut) / 1e6)
            watch_end = nxt.start + int(a.consul_cutoff_watch * 1e9)
            cut_iv = lambda: [x for x in ctx.intervals(log) if x.id == 'cut'][0]  # noqa: E731
            while cut_iv().end is None and now_ns() < watch_end:
                time.sleep(0.05)
            end = cut_iv().end
            if end is not None:
                runs_on.append((end - nxt.start) / 1e6)
                what = 'ended %.0f ms after the other started' % runs_on[-1]
            else:
                still += 1
                t_heal = now_ns()
                proxy.pass_()
                end = wait_for(lambda: cut_iv().end, 60, interval=0.05,
                               msg='cut-off CMD stops after healing')
                healed.append((end - t_heal) / 1e6)
                what = 'ran on until the link healed, then stopped in %.0f ms' % healed[-1]
            proxy.pass_()
            for p in (other, cut):
                p.stop(10)
            if a.verbose:
                print('  %s cut off %d: other took over %.0f ms after the cut; old CMD %s'
                      % (who, i, taken[-1], what), file=sys.stderr)
        rows = [row('%s cut off: other\'s CMD starts after the cut (ms)' % who, taken)]
        if runs_on:
            rows.append(row('%s cut off: old CMD runs on after other\'s start (ms)' % who,
                            runs_on))
        if still:
            rows.append(row('%s cut off: old CMD still running %gs after other\'s start'
                            % (who, a.consul_cutoff_watch), value=still, n=a.consul_cutoffs))
            rows.append(row('%s cut off: old CMD stops after the link heals (ms)' % who,
                            healed))
        return rows

    # --- after elect's idle window: collect, then consul lock's handovers

    def extra_rows(self, ctx, a, rows):
        rows.append(row('elect session TTL, LockDelay (s)', value=self.session_settings(
            [s for s in self.server.sessions() if s.get('Name', '').startswith('elect')])))
        lock_sessions = self.lock_sessions('lidle')
        rows.append(row('consul lock session TTL, LockDelay (s)',
                        value=self.session_settings(lock_sessions)))
        if any(s.get('Checks') or s.get('NodeChecks') for s in lock_sessions):
            rows.append(row('consul lock session health checks', value=', '.join(
                sorted(set(c for s in lock_sessions for c in (s.get('NodeChecks') or [])
                           + (s.get('Checks') or [])))) or '-'))
        self.idle_rows(a, rows)
        for th in self.threads:
            th.join(15 * 60)
        for setting, flags in SETTINGS:
            rows.extend(self.lock_handovers(ctx, a, setting, flags))
        for setting, _ in SETTINGS:
            rows.extend(self.side_rows.get('consul lock %s kill -9' % setting, []))
        for name in ['elect cut off'] + ['consul lock %s cut off' % s for s, _ in SETTINGS]:
            rows.extend(self.side_rows.get(name, []))
        if self.errors:
            raise AssertionError('consul side-by-side runs failed:\n' + '\n'.join(self.errors))

    @staticmethod
    def session_settings(sessions):
        vals = sorted(set('%g, %g' % (_dur_s(s.get('TTL')), s.get('LockDelay', 0) / 1e9)
                          for s in sessions))
        return ' / '.join(vals) or '?'

    def idle_rows(self, a, rows):
        dt = time.monotonic() - self.idle_t0
        hz = os.sysconf('SC_CLK_TCK')
        for who, (p, cp) in self.idle.items():
            if not p.alive():
                raise AssertionError('idle consul lock (%s) exited:\n%s' % (who, p.log()))
            rows.append(row('consul lock idle RSS %s (KiB)' % who, value=bench.proc_rss_kib(p.pid)))
        for who, (p, cp) in self.idle.items():
            ms = (bench.proc_cpu_ticks(p.pid) - self.idle_c0[who]) * 1000.0 / hz
            rows.append(row('consul lock idle CPU %s over %.0fs (ms)' % (who, dt), value=ms))
        for who, (p, cp) in self.idle.items():
            d = cp.snapshot() - self.idle_r0[who]
            rows.append(row('consul lock idle requests/min %s' % who,
                            value=sum(d.values()) * 60.0 / dt, n=sum(d.values())))
            print('bench: consul lock idle %s sent over %.0fs: %s' % (
                who, dt, ', '.join('%s %d' % kv for kv in sorted(d.items())) or 'nothing'),
                file=sys.stderr)
        for p, _ in self.idle.values():
            p.stop(10)

    def lock_handovers(self, ctx, a, setting, flags):
        prefix = 'lh-' + setting
        log = ctx.path(prefix + '.log')
        lockers, gen, xs, late = {}, [0], [], 0

        def add():
            id = 'k%d' % gen[0]
            gen[0] += 1
            lockers[id] = self.consul_lock(ctx, id, flags, prefix, log)

        for _ in range(3):
            add()
        for i in range(a.consul_lock_handovers):
            h = self.one_holder(ctx, log)
            wait_for(lambda: len(self.lock_sessions(prefix)) == 3, 30, interval=0.005,
                     msg='3 sessions')
            p = lockers.pop(h.id)
            t0 = now_ns()
            p.kill(signal.SIGTERM)
            nxt = ctx.wait_new_term(log, after_ns=t0, exclude_id=h.id, timeout=30)
            xs.append((nxt.start - t0) / 1e6)
            p.wait_exit(30)
            old = [x for x in ctx.intervals(log) if x.pid == h.pid][0]
            if bench.gone(old) is None or bench.gone(old) > nxt.start:
                late += 1
            add()
            if a.verbose:
                print('  consul lock %s SIGTERM %d: %.3f ms' % (setting, i, xs[-1]),
                      file=sys.stderr)
        for p in lockers.values():
            p.stop(10)
        return [row('consul lock (%s) handover, SIGTERM -> next CMD (ms)' % setting, xs),
                row('consul lock (%s) handover, old CMD gone -> next CMD (ms)' % setting,
                    bench.gaps(ctx.intervals(log), len(xs))),
                row('consul lock (%s) handover: old CMD alive at next start' % setting,
                    value=late, n=len(xs))]


def _dur_s(v):
    """Consul's TTL text ('15s', '10s', '1m0s') in seconds."""
    if not v:
        return 0
    total, num = 0.0, ''
    units = {'h': 3600, 'm': 60, 's': 1}
    for c in v:
        if c.isdigit() or c == '.':
            num += c
        elif c in units and num:
            total += float(num) * units[c]
            num = ''
    return total
