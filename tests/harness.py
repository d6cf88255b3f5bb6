"""Test harness for process-level tests of elect (Python 3 stdlib only).

Quick start (tests/integration/test_<x>.py):

    import os, sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
    from harness import ElectTestCase, valgrind_ok, wait_for, scale

    class TestX(ElectTestCase):
        @valgrind_ok                      # also run in the valgrind pass
        def test_one_leader(self):
            log = self.path('intervals.log')
            agents = [self.agent(id='a%d' % i, cmd=self.leader_cmd(log))
                      for i in range(3)]
            wait_for(lambda: sum(a.is_leader() for a in agents) == 1, 10)
            rep = self.check_intervals(log)      # fails on overlap / token order

Running: `python3 tests/run.py [--valgrind|--asan] [MODULE|TEST...]`.

ElectTestCase (unittest.TestCase), per test:
  self.tmp                      fresh temp dir (kept and printed on failure)
  self.path(*parts)             path inside self.tmp
  self.port()                   free 127.0.0.1 TCP port (see free_port())
  self.file_backend(name='e')   'file://<tmp>/<name>.lock'
  self.agent(...)               start an Agent (see below), registered
  self.spawn(argv, name, env=None, cwd=None)
                                start any helper process (a server...), stdout+
                                stderr to <tmp>/<name>.log; returns Proc; killed
                                (group SIGTERM, then SIGKILL) in tearDown
  self.run_elect(args, env=None, timeout=20, input=None)
                                run bin/elect to completion (client commands,
                                --check-config, bad flags): CompletedProcess
                                with .returncode, .stdout, .stderr (str);
                                runs under valgrind/ASan in those passes too
  self.leader_cmd(log, *extra)  argv of the test leader command (tests/
                                leadercmd.c, built on demand): appends
                                start/stop/dead lines to log (see checker.py)
  self.hook_script(name, out)   writes an executable sh hook that appends
                                "$1|$2|$3|ELECT_EVENT|..." lines to out
  self.script(name, body)       writes an executable sh script, returns path
  self.intervals(log)           checker.Interval list of one log ([] if none)
  self.holders(log)             its intervals without stop/dead line yet
  self.wait_new_term(log, after_ns=0, exclude_id=None, timeout=10)
                                waits for a start line after after_ns
  self.check_intervals(*logs, **kw)
                                checker.check() on logs, asserts no overlap and
                                no token violation, returns the Report
  self.elect_env(extra)         environment for elect: os.environ without any
                                ELECT_* and ASAN/valgrind settings applied
  self.add_cleanup_pid(pid)     kill this pid (SIGKILL) in tearDown if alive

Agent(test, mode='wrapper'|'sidecar', name='e', id='a', backend='',
      cmd=None, args=(), env=None, socket=True, ttl='10s', renew=None,
      kill_grace='1s', log_format=None, verbose=True):
  elect [--name ..] [--id ..] [--backend ..] [--ttl ..] [--socket P] ARGS -- CMD
  (sidecar: elect run ...). Any of name/id/backend/ttl/kill_grace set to
  None leaves that flag out (to test env/config). socket=True puts it at <tmp>/<id>.sock; a string
  is used as is; False/None leaves --socket out. backend '' (default): the
  test's file backend for `name`. Log at <tmp>/<id>.log.
  .pid .returncode (None while running) .socket .log_path
  .log() -> str                 everything elect wrote to stdout/stderr
  .alive() -> bool
  .status(timeout=2) -> dict    GET /v1/status (raises on failure)
  .try_status() -> dict|None    None when the socket does not answer
  .state() -> str|None, .is_leader() -> bool (False when unreachable)
  .request(method, path, body=None, headers=None, timeout=5)
                                -> (status, headers dict lower-case, body bytes)
  .raw(data: bytes, timeout=5) -> bytes   raw bytes over the socket, reply
  .wait_state(state, timeout)   waits until status state == state (or any of a
                                tuple); returns the status dict
  .wait_exit(timeout) -> returncode   (fails the test on timeout)
  .kill(sig=SIGKILL)            signal elect (records SIGSTOP/SIGCONT times in
                                .frozen for the checker)
  .stop(timeout=10)             SIGTERM, wait, SIGKILL after timeout; returns rc

Helpers (module level):
  wait_for(cond, timeout, interval=0.01, msg=None)  -> the truthy value, or
                                raises AssertionError after timeout*scale()
  scale() -> float              time multiplier (5 under valgrind, 2 under ASan,
                                ELECT_TIME_SCALE overrides)
  free_port() -> int
  valgrind_ok                   decorator: test also runs in the valgrind pass
  UnixHTTPConnection(path, timeout)  http.client over a Unix socket
  elect_bin() -> absolute path of the elect binary (ELECT_BIN dir, default bin)
  now_ns() = time.monotonic_ns()  (CLOCK_MONOTONIC, elect's clock)

Pass modes are set by run.py through the environment: ELECT_VALGRIND=1 runs
every elect under valgrind (log per pid in <tmp>/vg.<pid>; a non-empty log or
exit status 99 fails the test); ELECT_ASAN=1 sets ASAN_OPTIONS/UBSAN_OPTIONS
with log_path=<tmp>/asan (any <tmp>/asan.* or ubsan.* file fails the test).
ELECT_KEEP_TMP=1 keeps temp dirs of passing tests too; ELECT_TEST_TMP=DIR puts
them under DIR. elect gets XDG_RUNTIME_DIR=<tmp> and no inherited ELECT_*.
"""

import atexit
import errno
import functools
import glob
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import checker  # noqa: E402
from server_proc import read_log  # noqa: E402

VALGRIND = os.environ.get('ELECT_VALGRIND') == '1'
ASAN = os.environ.get('ELECT_ASAN') == '1'

VALGRIND_ARGS = ['valgrind', '-q', '--error-exitcode=99', '--leak-check=full',
                 '--errors-for-leak-kinds=definite,indirect']


def now_ns():
    return time.monotonic_ns()


def scale():
    if os.environ.get('ELECT_TIME_SCALE'):
        return float(os.environ['ELECT_TIME_SCALE'])
    if VALGRIND:
        return 5.0
    if ASAN:
        return 2.0
    return 1.0


def elect_bin():
    d = os.environ.get('ELECT_BIN', 'bin')
    if not os.path.isabs(d):
        d = os.path.join(ROOT, d)
    return os.path.join(d, 'elect')


def valgrind_ok(fn):
    """Mark a test as fit for the valgrind pass (others are not run there)."""
    fn.valgrind_ok = True
    return fn


def wait_for(cond, timeout, interval=0.01, msg=None):
    """Poll cond() until it returns something truthy; return that value.
    Exceptions from cond count as false. timeout is scaled by scale()."""
    end = time.monotonic() + timeout * scale()
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - polled condition
            last_exc = e
        if time.monotonic() >= end:
            m = msg or getattr(cond, '__name__', 'condition')
            if last_exc is not None:
                m += ' (last error: %r)' % (last_exc,)
            raise AssertionError('timed out after %.1fs waiting for %s' % (timeout * scale(), m))
        time.sleep(interval)


_port_lock = threading.Lock()
_ports_given = set()


def free_port():
    """A free TCP port on 127.0.0.1, not handed out before by this process."""
    with _port_lock:
        for _ in range(100):
            s = socket.socket()
            s.bind(('127.0.0.1', 0))
            p = s.getsockname()[1]
            s.close()
            if p not in _ports_given:
                _ports_given.add(p)
                return p
    raise RuntimeError('no free port')


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a Unix stream socket."""

    def __init__(self, path, timeout=5):
        super().__init__('localhost', timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.unix_path)
        except OSError:
            s.close()
            raise
        self.sock = s


def _build_leadercmd():
    """Compile tests/leadercmd.c into build/tools/ unless up to date."""
    src = os.path.join(HERE, 'leadercmd.c')
    out_dir = os.path.join(ROOT, 'build', 'tools')
    out = os.path.join(out_dir, 'leadercmd')
    if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(src):
        return out
    os.makedirs(out_dir, exist_ok=True)
    tmp = out + '.%d' % os.getpid()
    subprocess.run([os.environ.get('CC', 'cc'), '-std=gnu11', '-O2', '-g', '-Wall',
                    '-Wextra', '-Werror', '-o', tmp, src], check=True)
    os.replace(tmp, out)
    return out


_leadercmd_path = None


def leadercmd_path():
    global _leadercmd_path
    if _leadercmd_path is None:
        _leadercmd_path = _build_leadercmd()
        _start_watch_server(_leadercmd_path)
    return _leadercmd_path


def _start_watch_server(path):
    """One `leadercmd --serve-watch` per test run, outside every elect: the
    leader commands register with it (LEADERCMD_WATCH, inherited through
    elect and lockctl) and it writes their "dead" lines, which a watcher
    inside the command's tree could not (elect's guard kills the whole tree).
    Stopped by pid at exit; it also dies with this process (PDEATHSIG)."""
    d = tempfile.mkdtemp(prefix='elect-watch-')
    sock = os.path.join(d, 'watch.sock')
    p = subprocess.Popen([path, '--serve-watch', sock], stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not os.path.exists(sock):
        if p.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError('leadercmd watch server did not start')
        time.sleep(0.005)
    os.environ['LEADERCMD_WATCH'] = sock

    def stop():
        p.kill()
        p.wait()
        shutil.rmtree(d, ignore_errors=True)
    atexit.register(stop)


def pid_alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            st = f.read()
        return st[st.rfind(')') + 2] != 'Z'
    except OSError:
        return False


class Proc:
    """A process started by a test (own process group, output to a log)."""

    def __init__(self, test, argv, name, env=None, cwd=None, log_path=None):
        self.test = test
        self.argv = list(argv)
        self.name = name
        self.log_path = log_path or test.path(name + '.log')
        self._logf = open(self.log_path, 'ab')
        self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._logf,
                                      stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                      start_new_session=True)
        self.pid = self.popen.pid
        self.started_ns = now_ns()
        self.exited_ns = None
        test._procs.append(self)

    @property
    def returncode(self):
        rc = self.popen.poll()
        if rc is not None and self.exited_ns is None:
            self.exited_ns = now_ns()
        return rc

    def alive(self):
        return self.returncode is None

    def log(self):
        return read_log(self.log_path)

    def kill(self, sig=signal.SIGKILL):
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def wait_exit(self, timeout):
        try:
            rc = self.popen.wait(timeout * scale())
        except subprocess.TimeoutExpired:
            raise AssertionError('%s (pid %d) did not exit within %.1fs'
                                 % (self.name, self.pid, timeout * scale()))
        self.returncode  # noqa: B018 - records exited_ns
        return rc

    def stop(self, timeout=10):
        """SIGTERM, then SIGKILL after timeout (scaled). Returns the exit code."""
        if self.popen.poll() is None:
            self.kill(signal.SIGCONT)
            self.kill(signal.SIGTERM)
            try:
                self.popen.wait(timeout * scale())
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.popen.wait()
        return self.returncode

    def _cleanup(self):
        """tearDown: make sure the process and its group are gone."""
        if self.popen.poll() is None:
            self.kill(signal.SIGCONT)
            self.kill(signal.SIGTERM)
            try:
                self.popen.wait(5 * scale())
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.popen.wait()
        # Anything left in its process group (it was a session leader).
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except OSError:
            pass
        self._logf.close()


class Agent(Proc):
    """A running elect (wrapper or sidecar). See the module docstring."""

    def __init__(self, test, mode='wrapper', name='e', id='a', backend='', cmd=None,
                 args=(), env=None, socket=True, ttl='10s', renew=None, kill_grace='1s',
                 log_format=None, verbose=True):
        self.id = id
        self.name_ = name
        self.backend = test.file_backend(name or 'e') if backend == '' else backend
        if socket is True:
            socket = test.path(id + '.sock')
        self.socket = socket or None
        self.frozen = []        # (sig, monotonic ns) for SIGSTOP/SIGCONT
        argv = [elect_bin()]
        if mode == 'sidecar':
            argv.append('run')
        if name is not None:
            argv += ['--name', name]
        if id is not None:
            argv += ['--id', id]
        if self.backend is not None:
            argv += ['--backend', self.backend]
        if ttl is not None:
            argv += ['--ttl', ttl]
        if renew is not None:
            argv += ['--renew', renew]
        if kill_grace is not None:
            argv += ['--kill-grace', kill_grace]
        if self.socket:
            argv += ['--socket', self.socket]
        if log_format is not None:
            argv += ['--log-format', log_format]
        if verbose:
            argv.append('-v')
        argv += list(args)
        if mode == 'wrapper':
            if not cmd:
                raise ValueError('wrapper mode needs cmd')
            argv += ['--'] + list(cmd)
        argv = test._wrap_tool(argv)
        super().__init__(test, argv, id or 'agent%d' % len(test._procs),
                         env=test.elect_env(env))

    def kill(self, sig=signal.SIGKILL):
        if sig in (signal.SIGSTOP, signal.SIGCONT):
            self.frozen.append((sig, now_ns()))
        super().kill(sig)

    def request(self, method, path, body=None, headers=None, timeout=5):
        c = UnixHTTPConnection(self.socket, timeout=timeout * scale())
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def raw(self, data, timeout=5):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout * scale())
        try:
            s.connect(self.socket)
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass    # the server may answer and close before reading it all
            out = b''
            while True:
                try:
                    b = s.recv(65536)
                except ConnectionResetError:
                    break
                if not b:
                    break
                out += b
                if b'\r\n\r\n' in out and _complete_response(out):
                    break
            return out
        finally:
            s.close()

    def status(self, timeout=2):
        st, _, body = self.request('GET', '/v1/status', timeout=timeout)
        if st != 200:
            raise AssertionError('status: HTTP %d %r' % (st, body[:200]))
        return json.loads(body)

    def try_status(self):
        try:
            return self.status(timeout=1)
        except (OSError, ValueError, AssertionError, http.client.HTTPException):
            return None

    def state(self):
        s = self.try_status()
        return s and s.get('state')

    def is_leader(self):
        s = self.try_status()
        return bool(s and s.get('is_leader'))

    def wait_state(self, state, timeout):
        states = state if isinstance(state, (tuple, list, set)) else (state,)
        seen = []

        def ok():
            if not self.alive():
                raise AssertionError('agent %s exited (%s) while waiting for state %s; log:\n%s'
                                     % (self.id, self.returncode, state, self.log()[-3000:]))
            s = self.try_status()
            if s is not None:
                seen[:] = [s.get('state')]
            return s if s is not None and s.get('state') in states else None
        try:
            return wait_for(ok, timeout, interval=0.02,
                            msg='agent %s state %s' % (self.id, '/'.join(states)))
        except AssertionError as e:
            if 'exited' in str(e):
                raise
            raise AssertionError('%s (last state %s); log tail:\n%s'
                                 % (e, seen[0] if seen else None, self.log()[-3000:]))


def _complete_response(buf):
    head, _, body = buf.partition(b'\r\n\r\n')
    for line in head.split(b'\r\n')[1:]:
        k, _, v = line.partition(b':')
        if k.strip().lower() == b'content-length':
            try:
                return len(body) >= int(v.strip())
            except ValueError:
                return True
    return False


class ElectTestCase(unittest.TestCase):
    """Base class: temp dir, process registry, sanitizer/valgrind checks."""

    maxDiff = None

    def setUp(self):
        self._procs = []
        self._extra_pids = []
        self._interval_logs = []
        base = os.environ.get('ELECT_TEST_TMP') or None
        self.tmp = tempfile.mkdtemp(prefix='elect-%s-' % self._testMethodName[:40], dir=base)
        self._outcome_ok = True
        self.addCleanup(self._cleanup_all)

    # --- paths, ports, backends
    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def port(self):
        return free_port()

    def file_backend(self, name='e'):
        return 'file://' + self.path(name + '.lock')

    # --- environment for elect
    def elect_env(self, extra=None):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith('ELECT_') and k not in ('ASAN_OPTIONS', 'UBSAN_OPTIONS')}
        env['XDG_RUNTIME_DIR'] = self.tmp
        if ASAN:
            env['ASAN_OPTIONS'] = ('halt_on_error=1:detect_leaks=1:abort_on_error=0:exitcode=99:'
                                   'log_path=' + self.path('asan'))
            env['UBSAN_OPTIONS'] = ('halt_on_error=1:print_stacktrace=1:exitcode=99:'
                                    'log_path=' + self.path('ubsan'))
        if extra:
            env.update(extra)
        return env

    def _wrap_tool(self, argv):
        if VALGRIND:
            return VALGRIND_ARGS + ['--log-file=' + self.path('vg.%p')] + argv
        return argv

    # --- processes
    def agent(self, **kw):
        return Agent(self, **kw)

    def spawn(self, argv, name, env=None, cwd=None):
        return Proc(self, argv, name, env=env, cwd=cwd)

    def add_cleanup_pid(self, pid):
        self._extra_pids.append(pid)

    def run_elect(self, args, env=None, timeout=20, input=None):
        argv = self._wrap_tool([elect_bin()] + list(args))
        r = subprocess.run(argv, env=self.elect_env(env), input=input, capture_output=True,
                           text=True, timeout=timeout * scale(), start_new_session=True)
        if VALGRIND or ASAN:
            self.assertNotEqual(r.returncode, 99, 'sanitizer/valgrind error in %r:\n%s'
                                % (args, r.stderr))
        return r

    def leader_cmd(self, log, *extra):
        self._interval_logs.append(log)
        return [leadercmd_path(), log] + [str(x) for x in extra]

    def tree_cmd(self, log, workers_log):
        """argv of a leader command (leadercmd on log) that first starts three
        workers (leadercmd on workers_log, ids w1..w3) that leave its reach in
        three ways: setsid, a double fork (reparented away from it), and a
        plain background job. Their pids are killed at teardown if alive."""
        lc = self.leader_cmd(log)
        self._interval_logs.append(workers_log)
        return ['sh', '-c', (
            'if [ -n "$LOCK_TOKEN" ]; then ELECT_TOKEN=$LOCK_TOKEN; export ELECT_TOKEN; fi\n'
            'ELECT_ID=w1 setsid "$0" "$1" &\n'
            '(ELECT_ID=w2 "$0" "$1" &)\n'
            'ELECT_ID=w3 "$0" "$1" &\n'
            'exec "$0" "$2"\n'), lc[0], workers_log, log]

    def tree_died_before_next_term(self, log, workers_log, t0, exclude_id, timeout=20):
        """After a kill at t0 (monotonic ns): every worker in workers_log
        (see tree_cmd) dies within a second (x scale()), and the next term in
        log starts only after the last of them died. Returns that term."""
        def all_dead():
            ivs = self.intervals(workers_log)
            return ivs and all(i.dead is not None for i in ivs) and max(i.dead for i in ivs)
        t_dead = wait_for(all_dead, 5, msg='every worker in %s died' % workers_log)
        sys.stderr.write('[whole tree dead %.1f ms after the kill] ' % ((t_dead - t0) / 1e6))
        self.assertLess(t_dead - t0, 1e9 * scale(), 'a worker outlived the kill by %.0f ms'
                        % ((t_dead - t0) / 1e6))
        nxt = self.wait_new_term(log, after_ns=t0, exclude_id=exclude_id, timeout=timeout)
        self.assertGreaterEqual(nxt.start, t_dead, '%s started %.3f ms before the old tree died'
                                % (nxt.id, (t_dead - nxt.start) / 1e6))
        return nxt

    def script(self, name, body):
        p = self.path(name)
        with open(p, 'w') as f:
            f.write('#!/bin/sh\n' + body)
        os.chmod(p, 0o755)
        return p

    def hook_script(self, name, out, extra=''):
        """A hook appending one '|'-separated line per run to out:
        $1|$2|$3|ELECT_EVENT|ELECT_NAME|ELECT_ID|ELECT_LEADER|ELECT_TOKEN|
        ELECT_BACKEND|ELECT_REASON|monotonic-ish ns. extra: sh run after."""
        return self.script(name, (
            'echo "$1|$2|$3|$ELECT_EVENT|$ELECT_NAME|$ELECT_ID|$ELECT_LEADER|$ELECT_TOKEN|'
            '$ELECT_BACKEND|$ELECT_REASON" >> %s\n%s\n' % (_shq(out), extra)))

    def intervals(self, log):
        """checker.Interval list of one log (missing log: [])."""
        try:
            return checker.read_intervals([log])
        except FileNotFoundError:
            return []

    def holders(self, log):
        """Intervals of log still running (no stop/dead line yet)."""
        return [i for i in self.intervals(log) if i.end is None]

    def wait_new_term(self, log, after_ns=0, exclude_id=None, timeout=10):
        """Wait for a start line later than after_ns (from another id than
        exclude_id); returns its Interval."""
        def f():
            for i in self.intervals(log):
                if i.start > after_ns and i.id != exclude_id:
                    return i
            return None
        return wait_for(f, timeout, interval=0.005, msg='a new leader term in ' + log)

    def assert_never_leads(self, a, seconds):
        """Agent a stays alive and never leads for seconds (scaled)."""
        end = time.monotonic() + seconds * scale()
        while time.monotonic() < end:
            self.assertTrue(a.alive(), 'agent %s exited:\n%s' % (a.id, a.log()[-3000:]))
            self.assertFalse(a.is_leader(), 'agent %s leads:\n%s' % (a.id, a.log()[-3000:]))
            time.sleep(0.1)

    def check_intervals(self, *logs, **kw):
        rep = checker.check(list(logs), **kw)
        self.assertEqual(rep.overlaps, [], 'overlapping leaders:\n' + rep.table())
        self.assertEqual(rep.token_violations, [], 'token order:\n' + rep.table())
        return rep

    # --- teardown
    def _leader_cmd_pids(self):
        pids = set()
        for log in self._interval_logs:
            try:
                for iv in checker.read_intervals([log]):
                    pids.add(iv.pid)
            except OSError:
                pass
        return pids

    def _cleanup_all(self):
        problems = []
        for p in reversed(self._procs):
            try:
                p._cleanup()
            except Exception as e:  # noqa: BLE001 - keep cleaning
                problems.append('cleanup of %s: %r' % (p.name, e))
        # Leader commands (and their watchers) that outlived their agent.
        for pid in self._extra_pids:
            if pid > 1 and pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        pids = [p for p in self._leader_cmd_pids() if p > 1]
        end = time.monotonic() + 2 * scale()     # PDEATHSIG kills are not instant
        while any(pid_alive(x) for x in pids) and time.monotonic() < end:
            time.sleep(0.02)
        for pid in pids:
            if pid > 1 and pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
                problems.append('leader command %d was still alive after its agent stopped'
                                % pid)
        for p in self._procs:
            if isinstance(p, Agent) and p.popen.returncode == 99 and (VALGRIND or ASAN):
                problems.append('%s exited with 99 (valgrind/sanitizer error)' % p.name)
        for f in sorted(glob.glob(self.path('vg.*')) + glob.glob(self.path('asan*'))
                        + glob.glob(self.path('ubsan*'))):
            if os.path.getsize(f) > 0:
                with open(f, errors='replace') as fh:
                    problems.append('%s:\n%s' % (os.path.basename(f), fh.read()[:6000]))
        failed = bool(problems) or not self._test_passed()
        if failed or os.environ.get('ELECT_KEEP_TMP') == '1':
            sys.stderr.write('\n[kept temp dir %s]\n' % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if problems:
            self.fail('after test:\n' + '\n'.join(problems))

    def _test_passed(self):
        res = getattr(self, '_outcome', None)
        if res is None:
            return True
        # Python 3.11+: _outcome.success; errors are recorded on the result.
        ok = getattr(res, 'success', True)
        return bool(ok)


def _shq(s):
    return "'" + s.replace("'", "'\\''") + "'"
