"""lockd and lockctl on the file lock backend (issue 5): the generic cases of
tests/lockd_cases.py, plus what only the file backend has (lock files in a
directory, the lock descriptor inherited by lockctl's command)."""

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from harness import ElectTestCase, Proc, wait_for  # noqa: E402
from lockd_cases import HoldConn, LockdCases, lockd_bin  # noqa: E402


class FileLocks(LockdCases, ElectTestCase):
    sees_remote_waiters = False     # waiters leave no trace in the lock directory

    def lock_url(self, proxy_port=None):
        return 'file://' + self.path('locks')

    # --- file backend only
    def test_command_keeps_file_lock_after_lockd_is_killed(self):
        """lockctl's command inherits lockd's lock descriptor (pidfd_getfd),
        so kill -9 of lockd cannot free the lock while the command runs."""
        a, b = self.lockd('a'), self.lockd('b')
        log = self.path('fd.iv')
        p1 = self.lockctl_run(a, 'fd', 'h1', log)
        first = self.one_holder(log)
        p1.kill(signal.SIGSTOP)           # lockctl cannot stop its command now
        a.kill(signal.SIGKILL)
        a.wait_exit(10)
        st, body = b.acquire('fd', wait='1s')
        self.assertEqual(st, 408, 'granted while the old command still runs: %r' % (body,))
        p1.kill(signal.SIGCONT)           # sees the dropped connection, kills
        self.assertEqual(p1.wait_exit(10), 75, p1.log())
        st, body = b.acquire('fd', wait='10s')
        self.assertEqual(st, 200, body)
        self.assertGreater(body['token'], int(first.token))
        self.check_intervals(log)

    def test_paused_lockd_revokes_on_resume(self):
        """SIGSTOP past the deadline: on SIGCONT lockd revokes at once."""
        a = self.lockd('a', ttl='2s', kill_grace='300ms')
        log = self.path('stop.iv')
        p1 = self.lockctl_run(a, 'ps', 'h1', log)
        self.one_holder(log)
        a.kill(signal.SIGSTOP)
        time.sleep(2.5)
        a.kill(signal.SIGCONT)
        self.assertEqual(p1.wait_exit(10), 75, p1.log())
        self.assertIn('session may be lost', p1.log())
        wait_for(lambda: a.metrics().get('lockd_revocations_total') == 1, 5,
                 msg='one revocation counted')

    def test_replaced_lock_file_revokes_the_hold(self):
        a = self.lockd('a', ttl='1500ms', kill_grace='200ms')
        log = self.path('rp.iv')
        p1 = self.lockctl_run(a, 'rp', 'h1', log)
        self.one_holder(log)
        os.rename(self.path('locks', 'rp.lock'), self.path('locks', 'rp.old'))
        self.assertEqual(p1.wait_exit(10), 75, p1.log())
        self.assertIn('removed or replaced', p1.log())

    def test_removed_lock_file_is_not_granted_while_the_holder_runs(self):
        """Issue 10.1: rm of a held lock file. Another lockd must not grant the
        name while the first command (slow to stop) still runs, and the token
        goes on from NAME.token."""
        a = self.lockd('a', ttl='3s', kill_grace='1s')
        b = self.lockd('b', ttl='3s', kill_grace='1s')
        log = self.path('rm.iv')
        p1 = self.lockctl_run(a, 'rm', 'h1', log, extra=['--ignore-term'])
        first = self.one_holder(log)
        p2 = self.lockctl_run(b, 'rm', 'h2', log, args=['--wait', '60s'])
        time.sleep(0.3)
        os.unlink(self.path('locks', 'rm.lock'))
        self.assertEqual(p1.wait_exit(15), 75, p1.log())
        nxt = self.wait_new_term(log, after_ns=first.start, exclude_id='h1', timeout=20)
        self.assertGreater(int(nxt.token), int(first.token))
        self.check_intervals(log)
        p2.kill(signal.SIGTERM)
        p2.wait_exit(15)

    def test_waiter_giving_up_on_a_replaced_file_leaves_the_wait_to_the_next(self):
        """A waiter that locks the new file but gives up (its --wait is shorter
        than the TTL) must not make the file look safe to the next one while
        the old holder still runs."""
        a = self.lockd('a', ttl='3s', kill_grace='1500ms')
        b = self.lockd('b', ttl='3s', kill_grace='1s')
        log = self.path('gu.iv')
        p1 = self.lockctl_run(a, 'gu', 'h1', log, extra=['--ignore-term'])
        first = self.one_holder(log)
        os.unlink(self.path('locks', 'gu.lock'))
        r = self.lockctl(b, 'run', 'gu', '--wait', '300ms', '--', 'true')
        self.assertEqual(r.returncode, 75, r.stderr)
        p3 = self.lockctl_run(b, 'gu', 'h3', log, args=['--wait', '60s'])
        self.assertEqual(p1.wait_exit(15), 75, p1.log())
        nxt = self.wait_new_term(log, after_ns=first.start, exclude_id='h1', timeout=20)
        self.assertGreater(int(nxt.token), int(first.token))
        self.check_intervals(log)
        p3.kill(signal.SIGTERM)
        p3.wait_exit(15)

    def test_lock_files_and_semaphore_slots(self):
        a = self.lockd('a')
        c1, c2 = HoldConn(a), HoldConn(a)
        self.assertEqual(c1.acquire('files', wait='0')[0], 200)
        self.assertEqual(c2.acquire('sem', limit=2, wait='0')[0], 200)
        names = sorted(os.listdir(self.path('locks')))
        self.assertEqual(names, ['files.lock', 'files.token', 'sem.slot0',
                                 'sem.token'])
        with open(self.path('locks', 'files.token')) as f:
            st = os.stat(self.path('locks', 'files.lock'))
            self.assertEqual(f.read(), 'token=1\nlock=%d:%d\n' % (st.st_dev, st.st_ino))
        c1.close()
        c2.close()

    def test_unsafe_timing_and_bad_options_are_refused(self):
        for args, want in ((['--ttl', '1s', '--kill-grace', '1s'], 'unsafe timing'),
                           (['--backend', 'nope://x'], 'unknown lock backend'),
                           (['--backend', 'file://host/x'], 'absolute path'),
                           (['--max-holds', 'many'], '--max-holds'),
                           (['--ttl', 'soon'], 'not a duration')):
            r = subprocess.run([lockd_bin(), '--socket', self.path('x.sock')] + args,
                               capture_output=True, text=True, timeout=10,
                               env=self.elect_env())
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(want, r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        r = subprocess.run([lockd_bin(), '--check-config', '--backend', self.lock_url()],
                           capture_output=True, text=True, timeout=10,
                           env=self.elect_env({'LOCKD_TTL': '20s'}))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('configuration ok', r.stdout)

    def test_zero_durations_tls_and_auth_refused_json_errors(self):
        """Issue 10: an explicit 0 TTL or renew interval is refused, not
        replaced by the default; a client certificate needs its key; the file
        backend takes no credentials; with JSON logs, option errors are JSON."""
        for args, want in ((['--ttl', '0'], '--ttl'),
                           (['--renew', '0s'], '--renew'),
                           (['--request-timeout', '0s'], '--request-timeout'),
                           (['--backend', 'etcd://127.0.0.1:2379/l', '--tls-cert', '/etc/hostname'],
                            '--tls-key'),
                           (['--backend', 'etcd://127.0.0.1:99999/l'], 'port'),
                           (['--auth', 'u:p'], 'file backend')):
            for check in (['--check-config'], []):
                r = subprocess.run([lockd_bin(), '--socket', self.path('x.sock'),
                                    '--backend', self.lock_url()] + args + check,
                                   capture_output=True, text=True, timeout=10, env=self.elect_env())
                self.assertEqual(r.returncode, 2, (args, r.stderr))
                self.assertIn(want, r.stderr)
                self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
                self.assertFalse(os.path.exists(self.path('x.sock')))
        for args, env in ((['--log-format', 'json', '--ttl', '0'], None),
                          (['--bogus'], {'LOCKD_LOG_FORMAT': 'json'})):
            r = subprocess.run([lockd_bin(), '--socket', self.path('x.sock')] + args,
                               capture_output=True, text=True, timeout=10, env=self.elect_env(env))
            self.assertEqual(r.returncode, 2, r.stderr)
            doc = json.loads(r.stderr)
            self.assertEqual(doc['level'], 'error')
            self.assertEqual(doc['prog'], 'lockd')

    def test_config_file_and_environment(self):
        cfg = self.path('lockd.json')
        with open(cfg, 'w') as f:
            json.dump({'backend': self.lock_url(), 'ttl': '9s', 'kill_grace': '1s'}, f)
        sock = self.path('cfg.sock')
        p = Proc(self, [lockd_bin(), '--config', cfg, '-v'], 'cfg',
                 env=self.elect_env({'LOCKD_SOCKET': sock}))
        wait_for(lambda: os.path.exists(sock), 10, msg='socket from LOCKD_SOCKET')
        # The start line may be written a moment after the socket appears.
        wait_for(lambda: 'ttl 9000ms' in p.log(), 10, msg='the ttl from the config file')
        p.stop()
