"""Command-line behaviour of elect: options, config, refusals, exit codes,
client commands (issue 2)."""

import json
import os
import re
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


class CliHardening(ElectTestCase):
    """Issue 10: typos, what --check-config must refuse, credentials in the
    environment of children, JSON and text logs that data cannot break."""

    def base(self, *extra):
        return ['--name', 'e', '--id', 'a', '--backend', self.file_backend(),
                '--socket', self.path('a.sock')] + list(extra)

    def assert_refused(self, r, code, *words):
        self.assertEqual(r.returncode, code, 'exit %d, want %d: %r' % (r.returncode, code, r.stderr))
        lines = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith('==')]
        self.assertEqual(len(lines), 1, 'expected one line, got:\n' + r.stderr)
        for w in words:
            self.assertIn(w, lines[0])
        return lines[0]

    def assert_nothing_campaigned(self):
        self.assertFalse(os.path.exists(self.path('e.lock')), 'campaigned: the lock file exists')
        self.assertFalse(os.path.exists(self.path('a.sock')), 'an agent was started')

    @valgrind_ok
    def test_mistyped_subcommand_is_an_error(self):
        for args in (['statu'], ['--name', 'e', 'statu'], self.base('statu'),
                     self.base('run-it', '--once')):
            r = self.run_elect(args, timeout=10)
            line = self.assert_refused(r, 2, 'unknown command')
            for sub in ('run', 'status', 'resign', 'wait-leader', '--'):
                self.assertIn(sub, line)
            self.assert_nothing_campaigned()
        # A subcommand after the options: say where it goes.
        r = self.run_elect(self.base('status'), timeout=10)
        self.assert_refused(r, 2, "'status' must come first")
        self.assert_nothing_campaigned()

    @valgrind_ok
    def test_command_after_dashdash_still_runs(self):
        out = self.path('ran')
        r = self.run_elect(self.base('--', 'sh', '-c', 'echo yes > %s' % out))
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            self.assertEqual(f.read(), 'yes\n')
        # A "--" that is an option's value is not the end of the options.
        r = self.run_elect(['--name', 'e', '--id', '--', '--backend', self.file_backend(),
                            '--socket', 'none', 'statu'])
        self.assert_refused(r, 2, 'unknown command')

    @valgrind_ok
    def test_missing_command_refused_before_campaigning(self):
        missing = self.path('no-such-command')
        for check in ([], ['--check-config']):
            r = self.run_elect(self.base(*check, '--', missing))
            self.assert_refused(r, 127, missing, 'no such file')
            r = self.run_elect(self.base(*check, '--', 'no-such-command-in-path'))
            self.assert_refused(r, 127, 'no-such-command-in-path', 'not found in PATH')
            r = self.run_elect(self.base(*check, '--', self.tmp))
            self.assert_refused(r, 126, 'not executable')
            self.assert_nothing_campaigned()
        # An agent that cannot run its command never leads.
        a = self.agent(id='a', cmd=['statu'])
        self.assertEqual(a.wait_exit(10), 127)
        self.assertNotIn('transition', a.log())
        self.assertFalse(os.path.exists(self.path('e.lock')), 'campaigned for a missing command')

    @valgrind_ok
    def test_check_config_refuses_what_would_fail_later(self):
        os.mkdir(self.path('dir.lock'))
        cases = [
            (['--backend', 'etcd://127.0.0.1:99999/x'], 'etcd'),
            (['--backend', 'etcd://127.0.0.1:abc/x'], 'etcd'),
            (['--backend', 'etcd://127.0.0.1:0/x'], 'etcd'),
            (['--backend', 'zk://127.0.0.1:abc/x'], 'zk'),
            (['--backend', 'zk://127.0.0.1:99999/x'], 'zk'),
            (['--backend', 'file://' + self.path('dir.lock')], 'is a directory'),
            (['--backend', 'file://localhost' + self.tmp + '/'], 'is a directory'),
            (['--backend', 'etcd://127.0.0.1:2379/x', '--tls-cert', '/etc/hostname'], '--tls-key'),
            (['--backend', 'etcd://127.0.0.1:2379/x', '--tls-key', '/etc/hostname'], '--tls-cert'),
            (['--auth', 'user:pw'], 'file backend'),
            (['--ttl', '0'], '--ttl'),
            (['--ttl', '0s'], '--ttl'),
            (['--renew', '0s'], '--renew'),
            (['--renew', '0ms'], '--renew'),
            (['--hook-timeout', '0s'], '--hook-timeout'),
            (['--request-timeout', '0s'], '--request-timeout'),
            (['--ttl', '-1s'], 'negative'),
        ]
        for extra, word in cases:
            for check in (['--check-config'], []):
                r = self.run_elect(self.base(*extra, *check, '--', 'true'), timeout=10)
                self.assert_refused(r, 2, word)
                self.assert_nothing_campaigned()
        r = self.run_elect(self.base('--check-config', '--', 'true'), env={'ELECT_AUTH': 'u:p'})
        self.assert_refused(r, 2, 'file backend')
        r = self.run_elect(self.base('--check-config', '--', 'true'), env={'ELECT_TTL': '0s'})
        self.assert_refused(r, 2, 'ELECT_TTL')
        p = self.path('c.json')
        with open(p, 'w') as f:
            json.dump({'renew': '0s'}, f)
        r = self.run_elect(self.base('--config', p, '--check-config', '--', 'true'))
        self.assert_refused(r, 2, 'renew', 'more than zero')
        # Zero where zero means something stays allowed.
        r = self.run_elect(self.base('--kill-grace', '0s', '--check-config', '--', 'true'))
        self.assertEqual(r.returncode, 0, r.stderr)

    @valgrind_ok
    def test_unreadable_config_message(self):
        r = self.run_elect(self.base('--config', self.path('missing.json'), '--', 'true'))
        line = self.assert_refused(r, 2, 'missing.json')
        self.assertNotIn('line -1', line)
        r = self.run_elect(self.base('--config', self.tmp, '--', 'true'))
        self.assert_refused(r, 2, 'is a directory')

    @valgrind_ok
    def test_credentials_not_inherited(self):
        secrets = {'CONSUL_HTTP_TOKEN': 'tok-consul', 'ETCDCTL_PASSWORD': 'pw-etcdctl',
                   'ETCDCTL_USER': 'root:pw-user', 'LOCKD_AUTH': 'lockd:pw-lockd'}
        cmd_env, hook_env = self.path('cmd.env'), self.path('hook.env')
        hook = self.script('dump-env', 'env > %s.$1\n' % hook_env)
        a = self.agent(id='a', args=['--on-elected', hook, '--on-demoted', hook, '--once'],
                       cmd=['sh', '-c', 'env > %s' % cmd_env],
                       env=dict(secrets, ELECT_KEEP='kept'))
        self.assertEqual(a.wait_exit(10), 0, a.log())
        wait_for(lambda: os.path.exists(hook_env + '.demoted'), 10)
        for path in (cmd_env, hook_env + '.elected', hook_env + '.demoted'):
            with open(path) as f:
                text = f.read()
            self.assertIn('ELECT_KEEP=kept', text, path)
            self.assertIn('ELECT_TOKEN=', text, path)
            for k, v in secrets.items():
                self.assertNotIn(k + '=', text, path)
                self.assertNotIn(v, text, path)

    def json_lines(self, text):
        out = []
        for ln in text.splitlines():
            if ln.startswith('=='):           # valgrind
                continue
            try:
                out.append(json.loads(ln))
            except ValueError as e:
                self.fail('not a JSON line (%s): %r\nin:\n%s' % (e, ln, text))
        return out

    @valgrind_ok
    def test_json_errors_before_and_after_options(self):
        for args, env in ((['--log-format', 'json', '--bogus', '--', 'true'], None),
                          (['--log-format=json', 'statu'], None),
                          (['--bogus', '--', 'true'], {'ELECT_LOG_FORMAT': 'json'}),
                          (self.base('--log-format', 'json', '--ttl', '0', '--', 'true'), None),
                          (self.base('--log-format', 'json', '--', 'no-such-command-x'), None),
                          (self.base('--log-format', 'json', '--config', self.path('none.json'),
                                     '--', 'true'), None)):
            r = self.run_elect(args, env=env)
            self.assertIn(r.returncode, (2, 127), r.stderr)
            lines = self.json_lines(r.stderr)
            self.assertEqual(len(lines), 1, r.stderr)
            self.assertEqual(lines[0]['level'], 'error')
            self.assertTrue(lines[0]['msg'])

    @valgrind_ok
    def test_json_log_every_line_with_binary_output(self):
        noise = r"""printf 'bad \377\376 utf8 \033[31m esc\n\001 ctl "q" \\ bs\n'"""
        hook = self.script('noisy-hook', noise + '\n')
        cmd = self.script('noisy-cmd', noise + '\nprintf "to stderr \\377\\n" >&2\nsleep 0.3\n')
        a = self.agent(id='a', log_format='json', cmd=[cmd],
                       args=['--on-elected', hook, '--on-leader', hook, '--once'])
        self.assertEqual(a.wait_exit(15), 0, a.log())
        lines = self.json_lines(a.log())
        tags = [ln.get('tag') for ln in lines]
        self.assertIn('hook:elected', tags)
        self.assertIn('command', tags)
        outputs = [ln['msg'] for ln in lines if ln.get('tag') in ('hook:elected', 'command')]
        self.assertIn('bad \\xff\\xfe utf8 \x1b[31m esc', outputs)
        self.assertIn('\x01 ctl "q" \\ bs', outputs)
        self.assertIn('to stderr \\xff', outputs)
        trans = [ln for ln in lines if ln.get('msg') == 'transition']
        self.assertTrue(trans, a.log())
        for t in trans:
            self.assertIn('from', t)
            self.assertIn('to', t)
            self.assertIn('reason', t)
        elected = [t for t in trans if t['to'] == 'leader']
        self.assertEqual(len(elected), 1, a.log())
        self.assertEqual(elected[0]['from'], 'candidate')
        self.assertEqual(elected[0]['reason'], 'elected')
        self.assertGreaterEqual(elected[0]['token'], 1)

    @valgrind_ok
    def test_text_log_escapes_child_output(self):
        hook = self.script('noisy-hook',
                           "printf 'x\\0332J\\r2026-01-01T00:00:00.000Z elect[1] info forged \\377\\n'\n")
        a = self.agent(id='a', mode='sidecar', args=['--on-elected', hook])
        a.wait_state('leader', 10)
        wait_for(lambda: 'forged' in a.log(), 10)
        a.stop()
        with open(a.log_path, 'rb') as f:
            raw = f.read()
        for line in raw.split(b'\n'):
            self.assertFalse(re.search(rb'[\x00-\x1f\x7f]', line), line)
            line.decode('utf-8')          # raises on a byte that is not UTF-8
        self.assertIn(b'x\\x1b2J\\r2026-01-01T00:00:00.000Z elect[1] info forged \\xff', raw)
