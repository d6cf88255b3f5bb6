"""`make bench` rows for the etcd backend (picked up by tests/bench.py for
--backend etcd): one etcd from Debian's etcd-server on free loopback ports
(tests/etcd_server.py), stopped by pid at the end.

TTL 2 s, etcd's smallest lease TTL (its minimum is 1.5 x the election
timeout, rounded up to whole seconds). Crash failover waits for etcd to
expire the dead agent's lease: about the TTL plus up to one pass of etcd's
expiry loop (500 ms).

Idle requests: the counted leader and follower talk to etcd through a
tests/proxy.py proxy each, which counts HTTP/1.1 request lines (elect uses
etcd's JSON gateway; one line = one request, a watch stream counts once when
it is opened).

Side by side on the same etcd (rows "etcdctl ..."), with etcdctl 3.x
(ETCDCTL_API=3) running the same leader command:
  etcdctl lock --ttl 2 NAME -- CMD:
    - SIGTERM to etcdctl alone: etcdctl catches it but keeps waiting for
      CMD, so the lock is not released while CMD runs; we count handovers
      within --etcdctl-sigterm-wait seconds and whether etcdctl and CMD still
      run after it (then they are stopped by a group SIGTERM, not counted);
    - SIGTERM to etcdctl's process group (what a supervisor such as systemd
      does): CMD exits, etcdctl unlocks; latency to the next CMD;
    - kill -9 of etcdctl: CMD is left running, the lease expires after the
      TTL and the next waiter starts its CMD next to it (counted as "old
      command still running"); the orphan is then killed by its pid.
  etcdctl elect NAME PROPOSAL (leader and follower, session TTL 60 s, the
  default): VmRSS after the etcdctl runs above, and gRPC traffic through a
  counting proxy that reads HTTP/2 frames (messages = DATA frames, calls =
  HEADERS frames, PINGs = gRPC keepalive, --keepalive-time 2s by default).
"""

import base64
import json
import os
import re
import shlex
import signal
import statistics
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
import etcd_server  # noqa: E402
from harness import now_ns, pid_alive, wait_for  # noqa: E402

LOCK_TTL = 2


class Http1Parser:
    """Counts HTTP/1.x request lines in a client->server byte stream."""
    REQ = re.compile(rb'(GET|POST|PUT|DELETE) (/[^ \r\n]*) HTTP/1\.[01]\r\n')

    def __init__(self):
        self.buf = b''

    def feed(self, data):
        buf = self.buf + data
        kinds, end = [], 0
        for m in self.REQ.finditer(buf):
            kinds.append((m.group(1) + b' ' + m.group(2)).decode('ascii', 'replace'))
            end = m.end()
        self.buf = buf[end:][-512:]     # a request line cut by a chunk boundary
        return kinds


class H2Parser:
    """Counts HTTP/2 frames a gRPC client sends (etcdctl)."""
    PREFACE = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'

    def __init__(self):
        self.buf = b''
        self.started = False

    def feed(self, data):
        self.buf += data
        kinds = []
        if not self.started:
            if len(self.buf) < len(self.PREFACE):
                return kinds
            if self.buf.startswith(self.PREFACE):
                self.buf = self.buf[len(self.PREFACE):]
            self.started = True
        while len(self.buf) >= 9:
            n = int.from_bytes(self.buf[:3], 'big')
            typ, flags = self.buf[3], self.buf[4]
            if len(self.buf) < 9 + n:
                break
            self.buf = self.buf[9 + n:]
            if typ == 0 and n > 0:
                kinds.append('message')
            elif typ == 1:
                kinds.append('call')
            elif typ == 6 and not flags & 1:
                kinds.append('ping')
        return kinds



def stats_row(label, xs):
    if not xs:
        return ('etcd', label, 0, None, None, None)
    return ('etcd', label, len(xs), statistics.median(xs), bench.pct(xs, 99), max(xs))


def gap_after(ctx, log, old, nxt):
    """[old command gone -> nxt's start (ms)] once old is gone, else []."""
    iv = [x for x in ctx.intervals(log) if x.pid == old.pid]
    gone = bench.gone(iv[0]) if iv else None
    return [(nxt.start - gone) / 1e6] if gone is not None else []


class Backend(bench.Backend):
    name = 'etcd'
    agent_args = {'ttl': '2s', 'kill_grace': '500ms', 'args': ['--hook-timeout', '500ms']}

    @classmethod
    def add_arguments(cls, ap):
        g = ap.add_argument_group('etcd (tests/bench_etcd.py)')
        g.add_argument('--etcdctl-handovers', type=int, default=50,
                       help='etcdctl lock handovers by a group SIGTERM (default 50)')
        g.add_argument('--etcdctl-crashes', type=int, default=10,
                       help='kill -9 of the etcdctl lock holder (default 10)')
        g.add_argument('--etcdctl-sigterm-wait', type=float, default=5.0,
                       help='seconds to watch for a handover after SIGTERM to etcdctl alone')

    def available(self):
        return None if etcd_server.have_etcd() else 'etcd-server and etcd-client not installed'

    def start(self, ctx):
        self.server = etcd_server.EtcdServer(ctx.tmp, 'etcd')
        self.server.start()

    def url(self, ctx, election):
        return 'etcd://%s/bench/%s' % (self.server.endpoint, election)

    def counting_url(self, ctx, election):
        cp = bench.CountingProxy(ctx, ('127.0.0.1', self.server.client_port), Http1Parser)
        return 'etcd://%s/bench/%s' % (cp.hostport, election), cp

    def stop(self, ctx):
        # Agents first, while etcd still answers their lease revoke.
        for p in reversed(ctx._procs):
            p.stop(5)
        self.server.stop()

    # --- etcdctl, side by side

    def keys(self, prefix):
        """Number of keys under prefix (etcd's JSON gateway)."""
        b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        body = json.dumps({'key': b64(prefix), 'range_end': b64(end), 'count_only': True})
        req = urllib.request.Request(self.server.client_url + '/v3/kv/range', body.encode(),
                                     {'Content-Type': 'application/json'})
        with urllib.request.urlopen(req, timeout=5) as r:
            return int(json.loads(r.read().decode()).get('count', 0))

    def etcdctl(self, ctx, id, args, endpoint=None):
        env = dict(os.environ, ETCDCTL_API='3', ELECT_ID=id)
        env.pop('ELECT_TOKEN', None)
        argv = [etcd_server.ETCDCTL, '--endpoints=' + (endpoint or self.server.endpoint)]
        return ctx.spawn(argv + list(args), id, env=env)

    def extra_rows(self, ctx, a, rows):
        el = self.start_etcdctl_elect(ctx)
        t0 = time.monotonic()
        r0 = {who: cp.snapshot() for who, (_, cp) in el.items()}
        self.etcdctl_lock(ctx, a, rows)
        self.etcdctl_elect_handovers(ctx, a, rows)
        dt = time.monotonic() - t0
        if dt < a.idle_seconds:                 # at least as long as elect's idle window
            time.sleep(a.idle_seconds - dt)
            dt = time.monotonic() - t0
        for who, (p, cp) in el.items():
            if not p.alive():
                raise AssertionError('etcdctl elect (%s) exited:\n%s' % (who, p.log()))
            rows.append(('etcd', 'etcdctl elect idle RSS %s (KiB)' % who, 1,
                         bench.proc_rss_kib(p.pid), None, None))
        for who, (p, cp) in el.items():
            d = cp.snapshot() - r0[who]
            rows.append(('etcd', 'etcdctl elect idle gRPC msgs/min %s' % who, d['message'],
                         d['message'] * 60.0 / dt, None, None))
            rows.append(('etcd', 'etcdctl elect idle HTTP/2 PINGs/min %s' % who, d['ping'],
                         d['ping'] * 60.0 / dt, None, None))
            print('bench: etcd etcdctl elect %s sent over %.0fs: %d gRPC messages, %d new '
                  'calls, %d HTTP/2 PINGs' % (who, dt, d['message'], d['call'], d['ping']),
                  file=sys.stderr)

    def start_etcdctl_elect(self, ctx):
        """Leader and follower `etcdctl elect`, each through a counting proxy."""
        out = {}
        for who in ('leader', 'follower'):
            cp = bench.CountingProxy(ctx, ('127.0.0.1', self.server.client_port), H2Parser)
            p = self.etcdctl(ctx, 'etcdctl-elect-' + who, ['elect', 'ebench', who],
                             endpoint=cp.hostport)
            out[who] = (p, cp)
            if who == 'leader':
                wait_for(lambda: 'ebench/' in p.log(), 30, msg='etcdctl elect leads')
        wait_for(lambda: self.keys('ebench/') == 2, 30, msg='etcdctl elect follower campaigns')
        return out

    def etcdctl_elect_handovers(self, ctx, a, rows):
        """`etcdctl elect NAME ID` as a leader-command runner: the shell
        starts the command once etcdctl printed that it leads; a group
        SIGTERM stops both (etcdctl resigns, deleting its key)."""
        log = ctx.path('etcdctl-elect.log')
        cmd = ' '.join(shlex.quote(x) for x in ctx.leader_cmd(log))
        els, gen, xs, gs = {}, [0], [], []

        def add_sh():
            id = 'e%d' % gen[0]
            gen[0] += 1
            env = dict(os.environ, ETCDCTL_API='3', ELECT_ID=id)
            env.pop('ELECT_TOKEN', None)
            sh = ('%s --endpoints=%s elect ehand %s | { read -r _ && exec %s; }'
                  % (shlex.quote(etcd_server.ETCDCTL), self.server.endpoint, id, cmd))
            els[id] = ctx.spawn(['sh', '-c', sh], id, env=env)

        for _ in range(3):
            add_sh()
        for i in range(a.etcdctl_handovers):
            h = wait_for(lambda: (lambda x: len(x) == 1 and x[0])(ctx.holders(log)), 30,
                         interval=0.002, msg='one etcdctl elect holder')
            wait_for(lambda: self.keys('ehand/') == 3, 30, interval=0.005,
                     msg='three etcdctl elect candidates')
            p = els.pop(h.id)
            t0 = now_ns()
            os.killpg(p.pid, signal.SIGTERM)
            p.wait_exit(30)
            nxt = ctx.wait_new_term(log, after_ns=t0, exclude_id=h.id, timeout=30)
            xs.append((nxt.start - t0) / 1e6)
            gs.extend(gap_after(ctx, log, h, nxt))
            add_sh()
            if a.verbose:
                print('  etcdctl elect group SIGTERM %d: %.3f ms' % (i, xs[-1]), file=sys.stderr)
        for p in els.values():
            p.stop(5)
        rows.append(stats_row('etcdctl elect handover, group SIGTERM -> next CMD (ms)', xs))
        rows.append(stats_row('etcdctl elect handover, old CMD gone -> next CMD (ms)', gs))

    def etcdctl_lock(self, ctx, a, rows):
        log = ctx.path('etcdctl-lock.log')
        cmd = ctx.leader_cmd(log)
        lockers = {}
        gen = [0]

        def add():
            id = 'k%d' % gen[0]
            gen[0] += 1
            lockers[id] = self.etcdctl(ctx, id, ['lock', '--ttl', str(LOCK_TTL), 'lbench', '--']
                                       + cmd)

        def settle():
            h = wait_for(lambda: (lambda x: len(x) == 1 and x[0])(ctx.holders(log)), 30,
                         interval=0.002, msg='one etcdctl lock holder')
            wait_for(lambda: self.keys('lbench/') == 3, 30, interval=0.005,
                     msg='three etcdctl lock candidates')
            return h

        def group_term(h):
            p = lockers.pop(h.id)
            os.killpg(p.pid, signal.SIGTERM)
            p.wait_exit(30)
            add()

        for _ in range(3):
            add()

        # SIGTERM to etcdctl alone.
        h = settle()
        t0 = now_ns()
        lockers[h.id].kill(signal.SIGTERM)
        time.sleep(a.etcdctl_sigterm_wait)
        moved = [i for i in ctx.intervals(log) if i.start > t0]
        rows.append(('etcd', 'etcdctl lock: handovers %gs after SIGTERM to etcdctl'
                     % a.etcdctl_sigterm_wait, 1, len(moved), None, None))
        rows.append(('etcd', 'etcdctl lock: etcdctl, CMD running after it', 1,
                     '%s, %s' % ('yes' if lockers[h.id].alive() else 'no',
                                 'yes' if pid_alive(h.pid) else 'no'), None, None))
        if not moved:
            group_term(h)

        # SIGTERM to the holder's process group.
        xs, gs = [], []
        for i in range(a.etcdctl_handovers):
            h = settle()
            t0 = now_ns()
            group_term(h)
            nxt = ctx.wait_new_term(log, after_ns=t0, exclude_id=h.id, timeout=30)
            xs.append((nxt.start - t0) / 1e6)
            gs.extend(gap_after(ctx, log, h, nxt))
            if a.verbose:
                print('  etcdctl group SIGTERM %d: %.3f ms' % (i, xs[-1]), file=sys.stderr)
        rows.append(stats_row('etcdctl lock handover, group SIGTERM -> next CMD (ms)', xs))
        rows.append(stats_row('etcdctl lock handover, old CMD gone -> next CMD (ms)', gs))

        # kill -9 of etcdctl.
        xs, orphans = [], 0
        for i in range(a.etcdctl_crashes):
            h = settle()
            p = lockers.pop(h.id)
            t0 = now_ns()
            p.kill(signal.SIGKILL)
            nxt = ctx.wait_new_term(log, after_ns=t0, exclude_id=h.id, timeout=30)
            xs.append((nxt.start - t0) / 1e6)
            if pid_alive(h.pid):
                orphans += 1
                os.kill(h.pid, signal.SIGKILL)      # our grandchild, by its pid
            wait_for(lambda h=h: all(x.pid != h.pid for x in ctx.holders(log)), 10,
                     msg='orphaned command gone')
            p.wait_exit(10)
            add()
            if a.verbose:
                print('  etcdctl kill -9 %d: %.3f ms' % (i, xs[-1]), file=sys.stderr)
        rows.append(stats_row('etcdctl lock failover, kill -9 (ms)', xs))
        rows.append(('etcd', 'etcdctl lock kill -9: old CMD still running', len(xs), orphans,
                     None, None))
