"""What the tests' real servers (etcd_server.py, consul_server.py) share
(Python 3 stdlib only): a server process on loopback in its own process
group, its log file, waiting until it is ready, and stopping it by its pid
(never by name), also when a test fails.

    class MyServer(ServerProc):
        kind = 'etcd'                      # for messages
        def argv(self): ...
    s = MyServer(base_dir, 'etcd0', 'etcd-test-')  # base_dir None: a temp dir
    s.spawn(); s.wait_until(s.healthy, 20, 'not healthy')
    s.log(); s.kill(); s.stop()            # stop() removes an own temp dir
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def go_build(go, module_dir, out, pkg, what, log):
    """`go build -o out pkg` in module_dir, into a temporary name renamed to
    out once complete (a build cut short leaves no half binary); prints how
    long it took to log. RuntimeError with the tail of go's output if it
    fails."""
    tmp = out + '.tmp%d' % os.getpid()
    t0 = time.monotonic()
    env = dict(os.environ, GOFLAGS='-buildvcs=false')
    r = subprocess.run([go, 'build', '-o', tmp, pkg], cwd=module_dir, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise RuntimeError('building %s failed (go build %s in %s):\n%s'
                           % (what, pkg, module_dir, r.stdout[-3000:]))
    os.rename(tmp, out)
    print('built %s in %.0fs' % (what, time.monotonic() - t0), file=log, flush=True)


def free_port():
    try:
        from harness import free_port as harness_free_port   # shares the set of ports handed out
        return harness_free_port()
    except ImportError:
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        p = s.getsockname()[1]
        s.close()
        return p


def read_log(path):
    """A log file's text ('' when there is none yet)."""
    try:
        with open(path, 'rb') as f:
            return f.read().decode('utf-8', 'replace')
    except OSError:
        return ''


class ServerProc:
    """One server process. Subclasses define argv()."""

    kind = 'server'

    def __init__(self, base_dir, name, temp_prefix):
        self._own_dir = base_dir is None
        self.base_dir = base_dir or tempfile.mkdtemp(prefix=temp_prefix)
        self.name = name
        self.log_path = os.path.join(self.base_dir, name + '.log')
        self.popen = None
        self._logf = None

    def argv(self):
        raise NotImplementedError

    def spawn(self):
        """Starts argv() in its own session, output to log_path."""
        self._logf = open(self.log_path, 'ab')
        self.popen = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=self._logf,
                                      stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def wait_until(self, ready, timeout, not_ready, interval=0.1):
        """Polls ready() until it is true; RuntimeError with the log's tail
        when the server exits or timeout passes ('<kind> <name> <not_ready>
        after Ns')."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self.alive():
                raise RuntimeError('%s %s exited (%s); log:\n%s'
                                   % (self.kind, self.name, self.popen.returncode, self.log()[-3000:]))
            if ready():
                return
            time.sleep(interval)
        raise RuntimeError('%s %s %s after %.0fs; log:\n%s'
                           % (self.kind, self.name, not_ready, timeout, self.log()[-3000:]))

    def log(self):
        return read_log(self.log_path)

    def kill(self, sig=signal.SIGKILL):
        if self.alive():
            try:
                os.kill(self.popen.pid, sig)
            except ProcessLookupError:
                pass
            if sig in (signal.SIGKILL, signal.SIGTERM):
                self.popen.wait()
        self._close_log()

    def stop(self, timeout=10):
        """SIGTERM, SIGKILL after timeout; removes an own temp dir."""
        if self.alive():
            os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._close_log()
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def _close_log(self):
        if self._logf is not None:
            self._logf.close()
            self._logf = None


class ServerGroup:
    """Several servers under one base dir (a temp dir when None, removed by
    stop()). Subclasses fill self.members."""

    def __init__(self, base_dir, temp_prefix):
        self._own_dir = base_dir is None
        self.base_dir = base_dir or tempfile.mkdtemp(prefix=temp_prefix)
        self.members = []

    @property
    def endpoints(self):
        return [m.endpoint for m in self.members]

    def stop(self):
        for m in self.members:
            m.stop()
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)
