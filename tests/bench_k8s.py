"""`make bench` rows for the Kubernetes backend (picked up by tests/bench.py
for --backend k8s): one kube-apiserver on its own etcd (tests/k8s_server.py,
built from Go modules once into ~/.cache/elect; built here when missing) on
free loopback ports, stopped by pid at the end.

elect: TTL 5 s, renew TTL/3. Side by side on the same server, the client-go
candidate (tests/k8s/candidate: tools/leaderelection with a LeaseLock,
ReleaseOnCancel) with LeaseDuration 5 s (as elect's TTL), RenewDeadline 4 s
and client-go's default RetryPeriod 2 s, running the same kind of work (its
interval lines):
  graceful handover   SIGTERM to the leader -> the next leader's work starts
  crash failover      kill -9 of the leader -> the next leader's work starts
  idle RSS            of an idle leader and follower process
  idle requests/min   of an idle leader and follower, from the API server's
                      audit log (a watch counts once, when it ends)
elect's own request counts come from the same audit log: each agent sends
the User-Agent "elect (ID)" (bench.counted_pair binds the counter to it).
"""

import collections
import json
import os
import signal
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
import checker  # noqa: E402
import k8s_server  # noqa: E402
from harness import now_ns, wait_for  # noqa: E402

NS = 'bench'
POLICY = '''apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
- level: Metadata
  resources:
  - group: "coordination.k8s.io"
    resources: ["leases"]
- level: None
'''


def row(label, xs=None, value=None, n=1):
    if xs is None:
        return ('k8s', label, n, value, None, None)
    if not xs:
        return ('k8s', label, 0, None, None, None)
    return ('k8s', label, len(xs), statistics.median(xs), bench.pct(xs, 99), max(xs))


class AuditCounter:
    """Requests on Leases of one client in the API server's audit log:
    bind(agent) selects elect's "elect (ID)"; user= selects a token user."""

    def __init__(self, path, user=None):
        self.path, self.user, self.ua = path, user, None
        # Audit timestamps are wall clock; the bench's are monotonic.
        self.offset_ns = time.time_ns() - time.monotonic_ns()

    def bind(self, agent):
        self.ua = 'elect (%s)' % agent.id

    def _events(self):
        out = []
        try:
            with open(self.path) as f:
                for line in f:
                    try:
                        e = json.loads(line)
                    except ValueError:
                        continue
                    if self.ua is not None and e.get('userAgent') != self.ua:
                        continue
                    if self.user is not None and e.get('user', {}).get('username') != self.user:
                        continue
                    out.append(e)
        except FileNotFoundError:
            pass
        return out

    def snapshot(self):
        return collections.Counter(e.get('verb', '?') for e in self._events())

    def sent_between(self, t0, t1):
        out = []
        for e in self._events():
            ts = e.get('requestReceivedTimestamp', '')
            try:
                wall = time.mktime(time.strptime(ts[:19], '%Y-%m-%dT%H:%M:%S')) - time.timezone
                ns = int(wall * 1e9) + int(float('0' + ts[19:-1]) * 1e9) - self.offset_ns
            except ValueError:
                continue
            if t0 <= ns <= t1:
                out.append(e.get('verb', '?'))
        return out


class Backend(bench.Backend):
    name = 'k8s'
    agent_args = {'ttl': '5s', 'kill_grace': '500ms', 'args': ['--hook-timeout', '500ms']}

    @classmethod
    def add_arguments(cls, ap):
        g = ap.add_argument_group('k8s (tests/bench_k8s.py)')
        g.add_argument('--k8s-crashes', type=int, default=5,
                       help='kill -9 of the leader\'s elect (about 5 s each; default 5)')
        g.add_argument('--client-go-handovers', type=int, default=10,
                       help='client-go candidate graceful handovers (default 10)')
        g.add_argument('--client-go-crashes', type=int, default=3,
                       help='kill -9 of the client-go leader (default 3)')

    def available(self):
        try:
            k8s_server.require_k8s()
            return None
        except Exception as e:  # noqa: BLE001 - the reason is printed
            return str(e)

    def counts(self, a):
        return a.handovers, a.k8s_crashes

    def start(self, ctx):
        policy = ctx.path('audit-policy.yaml')
        with open(policy, 'w') as f:
            f.write(POLICY)
        self.audit = ctx.path('audit.log')
        self.srv = k8s_server.KubeApiServer(ctx.tmp, extra_args=[
            '--audit-policy-file', policy, '--audit-log-path', self.audit,
            '--audit-log-format', 'json', '--audit-log-mode', 'blocking'])
        self.srv.start()
        self.srv.create_namespace(NS)
        for user in k8s_server.USERS:
            self.srv.grant(NS, ['get', 'create', 'update', 'watch'], user=user)
        self.kc = self.srv.kubeconfig(ctx.path('kubeconfig'))
        self.agent_args = dict(Backend.agent_args)
        self.agent_args['args'] = ['--kubeconfig', self.kc] + Backend.agent_args['args']

    def url(self, ctx, election):
        return 'k8s:///%s/%s' % (NS, election)

    def counting_url(self, ctx, election):
        return self.url(ctx, election), AuditCounter(self.audit)

    def stop(self, ctx):
        for p in reversed(ctx._procs):
            p.stop(10)
        self.srv.stop()

    # --- the client-go candidate, side by side

    def candidate(self, ctx, id, log, user):
        kc = self.srv.kubeconfig(ctx.path('kc-' + id), user=user)
        return self.srv.candidate(ctx, NS, 'client-go', id, log, kubeconfig=kc,
                                  lease_duration='5s', renew_deadline='4s', retry_period='2s')

    def extra_rows(self, ctx, a, rows):
        log = ctx.path('go.log')
        gen = [0]
        users = ['admin', 'tester', 'norbac']
        live = {}

        user_of = {}

        def add():
            id = 'g%d' % gen[0]
            gen[0] += 1
            used = {user_of[i] for i in live}
            user_of[id] = [u for u in users if u not in used][0]
            live[id] = self.candidate(ctx, id, log, user_of[id])
            return live[id]

        def holder():
            return wait_for(lambda: (lambda h: len(h) == 1 and h[0])(ctx.holders(log)), 60,
                            interval=0.005, msg='one client-go leader')

        for _ in range(3):
            add()
        xs, crash = [], []
        for sig, n, out in ((signal.SIGTERM, a.client_go_handovers, xs),
                            (signal.SIGKILL, a.client_go_crashes, crash)):
            for _ in range(n):
                h = holder()
                c = live.pop(h.id)
                t0 = now_ns()
                if sig == signal.SIGKILL:
                    c.kill9()
                else:
                    c.proc.kill(sig)
                nxt = ctx.wait_new_term(log, after_ns=t0, exclude_id=h.id, timeout=60)
                out.append((nxt.start - t0) / 1e6)
                c.proc.popen.wait(30)
                add()
        rows.append(row('client-go graceful handover, SIGTERM (ms)', xs))
        rows.append(row('client-go crash failover, kill -9 (ms)', crash))
        rep = checker.check([log])
        rows.append(row('client-go terms (overlaps, token errors)', value='%d, %d' % (
            len(rep.overlaps), len(rep.token_violations)), n=rep.terms))
        # Idle: a leader and a follower (different users: told apart in the log).
        h = holder()
        lead = live[h.id]
        follow = [c for i, c in live.items() if i != h.id][0]
        for who, c in (('leader', lead), ('follower', follow)):
            rows.append(row('client-go idle RSS %s (KiB)' % who, value=bench.proc_rss_kib(c.proc.pid)))
        counters = {who: AuditCounter(self.audit, user=user_of[c.id])
                    for who, c in (('leader', lead), ('follower', follow))}
        s0 = {w: c.snapshot() for w, c in counters.items()}
        time.sleep(a.idle_seconds)
        for who, c in counters.items():
            d = c.snapshot() - s0[who]
            rows.append(row('client-go idle requests/min %s' % who,
                            value=sum(d.values()) * 60.0 / a.idle_seconds, n=sum(d.values())))
            print('bench: k8s client-go idle %s sent over %gs: %s' % (
                who, a.idle_seconds, ', '.join('%s %d' % kv for kv in sorted(d.items())) or 'nothing'),
                file=sys.stderr)
