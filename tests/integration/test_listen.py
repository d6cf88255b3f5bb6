"""The API's listeners and service-manager integration (issue 10, items 8,
9 and 12): the TCP listener is read-only unless allowed and binds loopback
when no host is given; each listener has its own connection slots; bad
--socket/--http values exit 2 at option time; --socket-mode/--socket-group;
sd_notify READY=1/STOPPING=1 for elect and lockd."""

import json
import os
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from harness import ElectTestCase, UnixHTTPConnection, scale, valgrind_ok, wait_for  # noqa: E402
from lockd_cases import HoldConn, Lockd, lockd_bin  # noqa: E402
import http.client  # noqa: E402
import subprocess  # noqa: E402


def tcp_request(port, method, path, timeout=5):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout * scale())
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def listening_addrs(port):
    """Local addresses of the sockets listening on TCP port (from /proc)."""
    out = []
    for fam, name in (('4', '/proc/net/tcp'), ('6', '/proc/net/tcp6')):
        try:
            lines = open(name).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            addr, p = f[1].split(':')
            if f[3] == '0A' and int(p, 16) == port:
                out.append((fam, addr))
    return out


class TcpListener(ElectTestCase):

    @valgrind_ok
    def test_tcp_is_read_only_and_the_leader_keeps_leading(self):
        port = self.port()
        a = self.agent(id='a', mode='sidecar', args=['--http', '127.0.0.1:%d' % port])
        st = a.wait_state('leader', 10)
        # Reads work over TCP.
        for path in ('/healthz', '/readyz', '/metrics', '/v1/status', '/'):
            self.assertEqual(tcp_request(port, 'GET', path)[0], 200, path)
        # A write is refused, with how to allow it; nothing changes.
        code, body = tcp_request(port, 'POST', '/v1/resign')
        self.assertEqual(code, 403, body)
        self.assertIn('--http-allow-write', json.loads(body)['error'])
        self.assertEqual(tcp_request(port, 'DELETE', '/nope')[0], 403)
        time.sleep(0.5)
        st2 = a.status()
        self.assertEqual((st2['state'], st2['token']), ('leader', st['token']))
        self.assertIn('read-only', a.log())
        # The Unix socket still takes writes.
        self.assertEqual(a.request('POST', '/v1/resign')[0], 200)

    def test_tcp_writes_when_allowed(self):
        port = self.port()
        a = self.agent(id='a', mode='sidecar',
                       args=['--http', '127.0.0.1:%d' % port], env={'ELECT_HTTP_ALLOW_WRITE': '1'})
        a.wait_state('leader', 10)
        self.assertEqual(tcp_request(port, 'POST', '/v1/resign')[0], 200)

    def test_port_only_listens_on_loopback(self):
        port = self.port()
        a = self.agent(id='a', mode='sidecar', args=['--http', ':%d' % port])
        a.wait_state('leader', 10)
        self.assertEqual(tcp_request(port, 'GET', '/healthz')[0], 200)
        # 127.0.0.1 only: not the IPv4/IPv6 wildcard.
        self.assertEqual(listening_addrs(port), [('4', '0100007F')])
        self.assertIn('127.0.0.1:%d' % port, a.log())

    def test_idle_tcp_flood_does_not_lock_out_socket_or_probes(self):
        port = self.port()
        a = self.agent(id='a', mode='sidecar', args=['--http', '127.0.0.1:%d' % port])
        a.wait_state('leader', 10)
        conns = []
        try:
            for _ in range(200):
                s = socket.create_connection(('127.0.0.1', port), timeout=5 * scale())
                conns.append(s)
            # Let the agent accept them all.
            wait_for(lambda: 'connections open' in a.log(), 10)
            self.assertEqual(a.request('GET', '/v1/status')[0], 200)
            self.assertEqual(tcp_request(port, 'GET', '/healthz')[0], 200)
            self.assertEqual(a.request('GET', '/healthz')[0], 200)
        finally:
            for s in conns:
                s.close()
        self.assertTrue(a.alive())


class BadListenOptions(ElectTestCase):

    def test_bad_socket_and_http_exit_2(self):
        long_sock = '/tmp/' + 'x' * 120 + '.sock'
        cases = (
            (['--http', 'nonsense'], '--http'),
            (['--http', '1.2.3.4:99999'], '--http'),
            (['--http', '127.0.0.1:'], '--http'),
            (['--socket', long_sock], 'too long'),
            (['--socket-mode', '0x660'], '--socket-mode'),
            (['--socket-mode', '0066'], '--socket-mode'),
            (['--socket-group', 'no-such-group-here'], 'no such group'),
        )
        for extra in ([], ['--check-config']):
            for args, want in cases:
                argv = ['run', '--backend', self.file_backend(), '--socket',
                        self.path('a.sock')] + args + extra
                r = self.run_elect(argv)
                self.assertEqual(r.returncode, 2, (argv, r.stderr))
                self.assertIn(want, r.stderr)
                self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        # The client commands refuse a socket path that cannot exist.
        r = self.run_elect(['status', '--socket', long_sock])
        self.assertEqual(r.returncode, 2, r.stderr)
        # lockd too.
        for args, want in ((['--socket', long_sock], 'too long'),
                           (['--socket-mode', '9'], '--socket-mode'),
                           (['--socket-group', 'no-such-group-here'], 'no such group')):
            for extra in ([], ['--check-config']):
                r = subprocess.run([lockd_bin(), '--socket', self.path('x.sock'),
                                    '--backend', 'file://' + self.path('locks')] + args + extra,
                                   capture_output=True, text=True, timeout=10 * scale(),
                                   env=self.elect_env())
                self.assertEqual(r.returncode, 2, (args, r.stderr))
                self.assertIn(want, r.stderr)
                self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)


class LockdSocketFlood(ElectTestCase):

    def test_flood_does_not_evict_a_connection_bound_hold(self):
        # A full socket closes idle connections to make room, but never the
        # one a lock is bound to (closing it would release the lock).
        d = Lockd(self, 'l1', 'file://' + self.path('locks')).wait_ready()
        hc = HoldConn(d)
        st, body = hc.acquire('job')
        self.assertEqual(st, 200, body)
        hold = body['hold']
        conns = []
        try:
            for _ in range(200):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(d.socket)
                conns.append(s)
            wait_for(lambda: 'connections open' in d.log(), 10)
            self.assertEqual(d.request('GET', '/healthz')[0], 200)
            held = [x for x in d.locks('job', local=True)[0]['holders'] if x['here']]
            self.assertEqual(len(held), 1, held)
            # The hold's connection still works.
            self.assertEqual(hc.release(hold)[0], 200)
        finally:
            for s in conns:
                s.close()
            hc.close()


def other_group():
    """A gid this process may give a file to, other than its own egid."""
    if os.geteuid() == 0:
        for gid in (65534, 1, 2):
            if gid != os.getegid():
                return gid
    for gid in os.getgroups():
        if gid != os.getegid():
            return gid
    return os.getegid()     # mode still checked; the group trivially


class SocketModeGroup(ElectTestCase):

    def check_socket(self, path, mode, gid):
        st = os.stat(path)
        self.assertEqual(st.st_mode & 0o7777, mode)
        self.assertEqual(st.st_gid, gid)

    def test_elect_and_lockd_socket_mode_and_group(self):
        gid = other_group()
        a = self.agent(id='a', mode='sidecar', args=['--socket-mode', '0600',
                                                     '--socket-group', str(gid)])
        wait_for(lambda: a.try_status() is not None, 10)
        self.check_socket(a.socket, 0o600, gid)
        # Environment form, and the default mode stays 0660.
        b = self.agent(id='b', mode='sidecar', env={'ELECT_SOCKET_GROUP': str(gid)})
        wait_for(lambda: b.try_status() is not None, 10)
        self.check_socket(b.socket, 0o660, gid)
        d = Lockd(self, 'l1', 'file://' + self.path('locks'),
                  args=['--socket-mode', '0640', '--socket-group', str(gid)])
        d.wait_ready()
        self.check_socket(d.socket, 0o640, gid)


class NotifyListener:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, test, abstract=False):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = 'elect-test-%d-%d' % (os.getpid(), time.monotonic_ns())
            self.s.bind('\0' + name)
            self.env = '@' + name
        else:
            self.env = test.path('notify')
            self.s.bind(self.env)
        test.addCleanup(self.s.close)

    def expect(self, msg, timeout=15):
        self.s.settimeout(timeout * scale())
        got = self.s.recv(4096).decode()
        assert msg in got.split('\n'), (msg, got)
        return got


class SdNotify(ElectTestCase):

    @valgrind_ok
    def test_elect_ready_after_socket_and_stopping_on_sigterm(self):
        n = NotifyListener(self)
        out = self.path('env.out')
        cmd = self.script('cmd.sh', 'echo "${NOTIFY_SOCKET:-unset}" > %s; exec sleep 60\n' % out)
        a = self.agent(id='a', cmd=[cmd], env={'NOTIFY_SOCKET': n.env})
        n.expect('READY=1')
        # The socket answers once READY=1 has come.
        c = UnixHTTPConnection(a.socket, timeout=5 * scale())
        c.request('GET', '/healthz')
        self.assertEqual(c.getresponse().status, 200)
        c.close()
        # Children do not inherit NOTIFY_SOCKET.
        wait_for(lambda: os.path.exists(out) and open(out).read().strip(), 10)
        self.assertEqual(open(out).read().strip(), 'unset')
        a.kill(signal.SIGTERM)
        n.expect('STOPPING=1')
        a.wait_exit(15)

    def test_lockd_ready_and_stopping_abstract_socket(self):
        n = NotifyListener(self, abstract=True)
        sock = self.path('l.sock')
        p = self.spawn([lockd_bin(), '--backend', 'file://' + self.path('locks'),
                        '--socket', sock, '--id', 'l'], 'lockd',
                       env=self.elect_env({'NOTIFY_SOCKET': n.env}))
        n.expect('READY=1')
        c = UnixHTTPConnection(sock, timeout=5 * scale())
        c.request('GET', '/healthz')
        self.assertEqual(c.getresponse().status, 200)
        c.close()
        p.kill(signal.SIGTERM)
        n.expect('STOPPING=1')
