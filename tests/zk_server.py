"""Real ZooKeeper servers for tests (Debian's `zookeeper` package), stdlib only.

    from zk_server import ZkServer, ZkEnsemble
    zk = ZkServer(tmpdir)            # standalone, free loopback port
    zk.start(); zk.wait_ready()
    url = 'zk://%s/elect/x%s' % (zk.hostport, URL_OPTS)   # ?tick=: the servers' tickTime
    zk.four('wchc')                  # a four-letter-word command's answer
    zk.stop()                        # by pid (SIGKILL by default), data kept
    zk.start(); zk.wait_ready()      # restart on the same port and data

    ens = ZkEnsemble(tmpdir, n=3); ens.start(); ens.wait_ready()
    ens.connect_string               # "127.0.0.1:p1,127.0.0.1:p2,..."
    ens.servers[i]                   # ZkServer objects
    ens.stop()

Every server gets its own data dir under the given dir, free loopback ports,
admin server off, all four-letter words allowed, tickTime 100 ms (sessions
of 200 ms .. 60 s) and a small JVM. Processes are stopped by their pid; call
stop() from a cleanup (ElectTestCase.addCleanup) so it also runs on failure.
"""

import os
import signal
import socket
import subprocess
import time

CLASSPATH = ':'.join(['/etc/zookeeper/conf', '/usr/share/java/zookeeper.jar',
                      '/usr/share/java/zookeeper-jute.jar',
                      '/usr/share/java/slf4j-api.jar', '/usr/share/java/slf4j-simple.jar',
                      '/usr/share/java/netty-handler.jar', '/usr/share/java/netty-common.jar',
                      '/usr/share/java/netty-buffer.jar', '/usr/share/java/netty-transport.jar',
                      '/usr/share/java/netty-codec.jar', '/usr/share/java/netty-resolver.jar',
                      '/usr/share/java/netty-transport-native-epoll.jar',
                      '/usr/share/java/netty-transport-native-unix-common.jar',
                      '/usr/share/java/commons-cli.jar', '/usr/share/java/commons-io.jar',
                      '/usr/share/java/metrics-core.jar', '/usr/share/java/snappy-java.jar'])
MAIN = 'org.apache.zookeeper.server.quorum.QuorumPeerMain'
JVM = ['-Xms32m', '-Xmx192m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', '-Xss512k',
       '-Djava.net.preferIPv4Stack=true', '-Dzookeeper.jmx.log4j.disable=true',
       '-Dorg.slf4j.simpleLogger.defaultLogLevel=warn', '-Dzookeeper.admin.enableServer=false']
TICK_MS = 100
# The servers' tickTime for elect's alive proof (zk URL option; its default is 2s).
URL_OPTS = '?tick=%dms' % TICK_MS


def available():
    return os.path.exists('/usr/share/java/zookeeper.jar') and bool(_which('java'))


def _which(prog):
    for d in os.environ.get('PATH', '').split(':'):
        if d and os.access(os.path.join(d, prog), os.X_OK):
            return os.path.join(d, prog)
    return None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def four_letter(port, cmd, timeout=2.0):
    """Sends a four-letter word, returns the answer ('' if none)."""
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(cmd.encode())
            chunks = []
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
            return b''.join(chunks).decode(errors='replace')
    except OSError:
        return ''


class ZkServer:
    def __init__(self, basedir, name='zk', port=None, myid=None, peers=None,
                 min_session_ms=2 * TICK_MS, max_session_ms=60000):
        self.dir = os.path.join(basedir, name)
        self.name = name
        self.port = port or free_port()
        self.myid = myid
        self.peers = peers          # list of (myid, peer_port, election_port)
        self.min_session_ms = min_session_ms
        self.max_session_ms = max_session_ms
        self.proc = None
        self.logf = None
        os.makedirs(os.path.join(self.dir, 'data'), exist_ok=True)

    @property
    def hostport(self):
        return '127.0.0.1:%d' % self.port

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def _write_config(self):
        lines = ['tickTime=%d' % TICK_MS,
                 'initLimit=50', 'syncLimit=20',
                 'dataDir=%s' % os.path.join(self.dir, 'data'),
                 'clientPort=%d' % self.port,
                 'clientPortAddress=127.0.0.1',
                 'maxClientCnxns=0',
                 'minSessionTimeout=%d' % self.min_session_ms,
                 'maxSessionTimeout=%d' % self.max_session_ms,
                 'admin.enableServer=false',
                 '4lw.commands.whitelist=*',
                 'autopurge.purgeInterval=0']
        if self.peers:
            for (sid, pp, ep) in self.peers:
                lines.append('server.%d=127.0.0.1:%d:%d' % (sid, pp, ep))
            with open(os.path.join(self.dir, 'data', 'myid'), 'w') as f:
                f.write('%d\n' % self.myid)
        cfg = os.path.join(self.dir, 'zoo.cfg')
        with open(cfg, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        return cfg

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, 'already running'
        cfg = self._write_config()
        self.logf = open(os.path.join(self.dir, 'server.log'), 'ab')
        self.proc = subprocess.Popen(['java'] + JVM + ['-cp', CLASSPATH, MAIN, cfg],
                                     stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT, cwd=self.dir,
                                     start_new_session=True)
        return self

    def four(self, cmd, timeout=2.0):
        return four_letter(self.port, cmd, timeout)

    def serving(self):
        out = self.four('srvr', timeout=1.0)
        return 'Mode:' in out

    def mode(self):
        for line in self.four('srvr', timeout=1.0).splitlines():
            if line.startswith('Mode:'):
                return line.split(':', 1)[1].strip()
        return None

    def wait_ready(self, timeout=60):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError('ZooKeeper %s exited (%s); see %s/server.log'
                                   % (self.name, self.proc.returncode, self.dir))
            if self.four('ruok', timeout=1.0) == 'imok' and self.serving():
                return self
            time.sleep(0.1)
        raise RuntimeError('ZooKeeper %s not ready after %ss; see %s/server.log'
                           % (self.name, timeout, self.dir))

    def stop(self, sig=signal.SIGKILL, timeout=10):
        """Stops the server by its pid (whole process group); data is kept."""
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)
        if self.logf:
            self.logf.close()
            self.logf = None

    def log(self):
        try:
            with open(os.path.join(self.dir, 'server.log'), errors='replace') as f:
                return f.read()
        except OSError:
            return ''


class ZkEnsemble:
    def __init__(self, basedir, n=3, **kw):
        peers = [(i + 1, free_port(), free_port()) for i in range(n)]
        self.servers = [ZkServer(basedir, name='zk%d' % (i + 1), myid=i + 1, peers=peers, **kw)
                        for i in range(n)]

    @property
    def connect_string(self):
        return ','.join(s.hostport for s in self.servers)

    def start(self):
        for s in self.servers:
            s.start()
        return self

    def wait_ready(self, timeout=90):
        for s in self.servers:
            s.wait_ready(timeout)
        return self

    def leader(self):
        for s in self.servers:
            if s.mode() == 'leader':
                return s
        return None

    def stop(self):
        for s in self.servers:
            s.stop()
