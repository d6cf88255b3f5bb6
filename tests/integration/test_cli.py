"""Command-line behaviour of elect: options, config, refusals, exit codes,
client commands (issue 2)."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from harness import ElectTestCase, valgrind_ok, wait_for  # noqa: E402


class Cli(ElectTestCase):

    def assert_one_line_error(self, r, *words):
        self.assertNotEqual(r.returncode, 0, 'expected failure, got 0: %r' % r.stdout)
        err = r.stderr.strip()
        self.assertTrue(err, 'no message on stderr')
        lines = [ln for ln in err.splitlines() if not ln.startswith('==')]
        self.assertEqual(len(lines), 1, 'expected one line, got:\n' + err)
        for w in words:
            self.assertIn(w, lines[0])
        return lines[0]

    def base(self, *extra):
        return ['--name', 'e', '--id', 'a', '--backend', self.file_backend(),
                '--socket', self.path('a.sock')] + list(extra)

    @valgrind_ok
    def test_bad_flags_one_line(self):
        for args, word in ((['--bogus-flag', '--', 'true'], 'bogus-flag'),
                           (['--ttl', 'abc', '--', 'true'], 'ttl'),
                           (['--ttl', '-5s', '--', 'true'], 'ttl'),
                           (['--kill-grace', '3 parsecs', '--', 'true'], 'kill-grace'),
                           (['--log-format', 'xml', '--', 'true'], 'log-format'),
                           (['--name'], 'name')):
            r = self.run_elect(self.base(*args))
            self.assertEqual(r.returncode, 2, '%r: %r' % (args, r.stderr))
            self.assert_one_line_error(r, word)

    @valgrind_ok
    def test_bad_env_one_line(self):
        r = self.run_elect(self.base('--', 'true'), env={'ELECT_TTL': 'soon'})
        self.assertEqual(r.returncode, 2)
        self.assert_one_line_error(r, 'ELECT_TTL')

    @valgrind_ok
    def test_bad_config_one_line(self):
        cases = {
            'syntax': '{"ttl": "10s",',
            'unknown key': '{"no_such_option": 1}',
            'bad duration': '{"ttl": "ten seconds"}',
            'wrong type': '{"ttl": [1, 2]}',
            'not an object': '[1, 2, 3]',
        }
        for what, text in cases.items():
            p = self.path('bad.json')
            with open(p, 'w') as f:
                f.write(text)
            r = self.run_elect(self.base('--config', p, '--', 'true'))
            self.assertEqual(r.returncode, 2, what)
            self.assert_one_line_error(r)
        r = self.run_elect(self.base('--config', self.path('missing.json'), '--', 'true'))
        self.assertEqual(r.returncode, 2)
        self.assert_one_line_error(r, 'missing.json')

    @valgrind_ok
    def test_unsafe_timing_refused(self):
        for extra in (['--ttl', '1s', '--kill-grace', '3s'],
                      ['--ttl', '3s', '--renew', '5s'],
                      ['--ttl', '2s', '--kill-grace', '500ms', '--hook-timeout', '2s',
                       '--on-elected', '/bin/true', '--on-demoted', '/bin/true']):
            r = self.run_elect(self.base(*extra, '--', 'true'))
            self.assertEqual(r.returncode, 2, '%r accepted: %r' % (extra, r.stderr))
            self.assert_one_line_error(r)
            r = self.run_elect(self.base(*extra, '--check-config', '--', 'true'))
            self.assertEqual(r.returncode, 2, '--check-config accepted %r' % extra)

    @valgrind_ok
    def test_check_config_ok(self):
        p = self.path('ok.json')
        with open(p, 'w') as f:
            json.dump({'ttl': '10s', 'kill_grace': '2s', 'hook_timeout': '1s'}, f)
        r = self.run_elect(self.base('--config', p, '--check-config', '--', 'true'))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(os.path.exists(self.path('a.sock')), 'check-config started an agent')

    @valgrind_ok
    def test_precedence_flag_env_file(self):
        p = self.path('c.json')
        with open(p, 'w') as f:
            json.dump({'name': 'fromfile', 'id': 'fileid', 'ttl': '10s', 'kill_grace': '1s'}, f)
        env = {'ELECT_ID': 'envid', 'ELECT_CONFIG': p}
        a = self.agent(mode='sidecar', name=None, id=None, ttl=None, kill_grace=None,
                       backend=self.file_backend('x'), socket=self.path('s1.sock'), env=env)
        st = a.wait_state('leader', 10)
        self.assertEqual((st['name'], st['id']), ('fromfile', 'envid'))
        a.stop()
        b = self.agent(mode='sidecar', name='fromflag', id='flagid', ttl=None, kill_grace=None,
                       backend=self.file_backend('y'), socket=self.path('s2.sock'), env=env)
        st = b.wait_state('leader', 10)
        self.assertEqual((st['name'], st['id']), ('fromflag', 'flagid'))

    @valgrind_ok
    def test_missing_command_127(self):
        a = self.agent(id='a', cmd=[self.path('no-such-command')])
        self.assertEqual(a.wait_exit(10), 127)
        self.assertIn('no-such-command', a.log())

    @valgrind_ok
    def test_not_executable_126(self):
        p = self.path('not-exec')
        with open(p, 'w') as f:
            f.write('#!/bin/sh\nexit 0\n')
        os.chmod(p, 0o644)
        a = self.agent(id='a', cmd=[p])
        self.assertEqual(a.wait_exit(10), 126)

    @valgrind_ok
    def test_once_runs_command_once(self):
        log = self.path('iv.log')
        a = self.agent(id='a', cmd=self.leader_cmd(log), args=['--once'])
        a.wait_state('leader', 10)
        wait_for(lambda: len(self.holders(log)) == 1, 10)
        b = self.agent(id='b', cmd=self.leader_cmd(log))
        wait_for(lambda: (b.try_status() or {}).get('leader') == 'a', 10)
        # Lose leadership by resigning: without --once a would campaign again.
        st, _, _ = a.request('POST', '/v1/resign')
        self.assertEqual(st, 200)
        a.wait_exit(10)
        b.wait_state('leader', 10)
        self.assertEqual(len([i for i in self.intervals(log) if i.id == 'a']), 1)
        self.check_intervals(log)

    @valgrind_ok
    def test_client_without_agent(self):
        for cmd in ('status', 'resign', 'wait-leader'):
            r = self.run_elect([cmd, '--socket', self.path('nobody.sock'), '--timeout', '1s'])
            self.assertNotEqual(r.returncode, 0, cmd)
            self.assert_one_line_error(r)

    @valgrind_ok
    def test_resign_client(self):
        a = self.agent(id='a', mode='sidecar')
        a.wait_state('leader', 10)
        r = self.run_elect(['resign', '--socket', a.socket])
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_for(lambda: a.state() != 'leader', 5)
        self.assertTrue(a.alive())

    @valgrind_ok
    def test_json_log_format(self):
        a = self.agent(id='a', mode='sidecar', log_format='json')
        a.wait_state('leader', 10)
        a.stop()
        lines = [ln for ln in a.log().splitlines() if ln.strip()]
        self.assertTrue(lines)
        for ln in lines:
            json.loads(ln)
