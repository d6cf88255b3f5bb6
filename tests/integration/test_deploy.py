"""The deploy files (issue 10, item 12), checked as text (no YAML library
needed): no Kubernetes manifest can stall a rolling update or a drain, the
TCP listener is reachable by the kubelet's probes, the image ships lockd and
lockctl with a .dockerignore, and the systemd units are Type=notify, give
the socket to a group, use only options the programs have, pass
`systemd-analyze verify` and keep their hardening (`systemd-analyze
security --offline`). The image itself is built and run by
test_containers.py."""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from harness import ROOT, elect_bin  # noqa: E402
from lockd_cases import lockd_bin  # noqa: E402

DEPLOY = os.path.join(ROOT, 'deploy')


def blocks(text, key):
    """The lines indented under every line that holds 'key:'."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if re.match(r'^\s*(- )?%s:' % re.escape(key), line):
            ind = len(line) - len(line.lstrip(' -'))
            body = [line]
            for nxt in lines[i + 1:]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip(' ')) <= ind:
                    break
                body.append(nxt)
            out.append('\n'.join(body))
    return out


def documents(text):
    """The YAML documents of text, without comment lines."""
    text = re.sub(r'(?m)^\s*#.*\n', '', text)
    return [d for d in re.split(r'^---\s*$', text, flags=re.M) if d.strip()]


class KubernetesManifests(unittest.TestCase):

    def manifests(self):
        files = sorted(glob.glob(os.path.join(DEPLOY, 'kubernetes', '*.yaml')))
        self.assertTrue(files)
        return [(os.path.basename(f), open(f).read()) for f in files]

    def test_every_pod_is_ready_when_its_agent_is_healthy(self):
        # Readiness that only the leader passes (/readyz, wait-leader) stalls
        # every rolling update: the surge pod never becomes Ready.
        for name, text in self.manifests():
            for doc in documents(text):
                if not re.search(r'^kind:\s*(Deployment|StatefulSet|DaemonSet)\s*$', doc, re.M):
                    continue
                probes = blocks(doc, 'readinessProbe')
                self.assertTrue(probes, '%s: no readinessProbe' % name)
                for p in probes:
                    self.assertRegex(p, r'path:\s*/healthz\b', name)
                    self.assertNotIn('readyz', p, name)
                    self.assertNotIn('wait-leader', p, name)

    def test_probes_can_reach_the_tcp_listener(self):
        # --http :PORT binds 127.0.0.1 only: the kubelet probes the pod IP.
        for name, text in self.manifests():
            for m in re.finditer(r'--http[= ]"?([^\s",\]]*)', '\n'.join(documents(text))):
                addr = m.group(1)
                self.assertFalse(addr.startswith(':'),
                                 '%s: --http %s listens on 127.0.0.1 only' % (name, addr))
            self.assertNotIn('http-allow-write', text, name)

    def test_disruption_budgets_cannot_stall(self):
        seen = 0
        for name, text in self.manifests():
            for doc in documents(text):
                if not re.search(r'^kind:\s*PodDisruptionBudget\s*$', doc, re.M):
                    continue
                seen += 1
                self.assertNotIn('minAvailable', doc, name)
                m = re.search(r'maxUnavailable:\s*(\S+)', doc)
                self.assertIsNotNone(m, name)
                self.assertNotIn(m.group(1), ('0', '"0"', '0%', '"0%"'), name)
        self.assertGreater(seen, 0, 'a PodDisruptionBudget example')


class ImageAndUnits(unittest.TestCase):

    def test_image_ships_lockd_and_lockctl_with_dockerignore(self):
        text = open(os.path.join(DEPLOY, 'Dockerfile')).read()
        for prog in ('elect', 'lockd', 'lockctl'):
            self.assertRegex(text, r'COPY --from=build [^\n]*/usr/bin/%s\b' % prog)
        ign = open(os.path.join(ROOT, '.dockerignore')).read().split()
        for entry in ('.git', 'build/', 'bin/'):
            self.assertIn(entry, ign)

    def check_unit(self, unit, prog, env_prefix):
        text = open(os.path.join(DEPLOY, 'systemd', unit)).read()
        self.assertRegex(text, r'(?m)^Type=notify$')
        self.assertRegex(text, r'(?m)^Environment=.*\b%sSOCKET_GROUP=' % env_prefix)
        group = re.search(r'%sSOCKET_GROUP=(\S+)' % env_prefix, text).group(1)
        self.assertRegex(text, r'(?m)^SupplementaryGroups=%s$' % re.escape(group))
        helptext = subprocess.run([prog, '--help'], capture_output=True, text=True,
                                  timeout=10).stdout
        exec_line = re.search(r'(?m)^ExecStart=(.*)$', text).group(1)
        for flag in re.findall(r'\s(--[a-z-]+)', exec_line):
            self.assertIn(flag + ' ', helptext, '%s: %s' % (unit, flag))
        for var in re.findall(r'\b(%s[A-Z_]+)=' % env_prefix, text):
            self.assertIn('[%s]' % var, helptext, '%s: %s' % (unit, var))

    def test_systemd_units(self):
        self.check_unit('elect@.service', elect_bin(), 'ELECT_')
        self.check_unit('lockd.service', lockd_bin(), 'LOCKD_')

    def installed_units(self):
        """The units as installed: the programs and man pages copied under a
        temporary root whose path replaces /usr/local in ExecStart (verify
        checks that the command exists), the template as elect@web.service.
        Returns (dir, {unit: path}, environment for systemd-analyze)."""
        tmp = tempfile.mkdtemp(prefix='elect-units-')
        self.addCleanup(shutil.rmtree, tmp, True)
        bindir = os.path.join(tmp, 'usr/local/bin')
        mandir = os.path.join(tmp, 'usr/local/share/man/man1')
        os.makedirs(bindir)
        os.makedirs(mandir)
        for prog in (elect_bin(), lockd_bin(), os.path.join(os.path.dirname(lockd_bin()), 'lockctl')):
            shutil.copy2(prog, bindir)
        for page in ('elector/elect.1', 'lockd/lockd.1', 'lockd/lockctl.1'):
            shutil.copy2(os.path.join(ROOT, page), mandir)
        units = {}
        for src, name in (('elect@.service', 'elect@web.service'), ('lockd.service', 'lockd.service')):
            text = open(os.path.join(DEPLOY, 'systemd', src)).read()
            self.assertIn('ExecStart=/usr/local/bin/', text, src)
            units[name] = os.path.join(tmp, name)
            with open(units[name], 'w') as f:
                f.write(text.replace('ExecStart=/usr/local/bin/', 'ExecStart=%s/' % bindir))
        env = dict(os.environ, MANPATH=os.path.join(tmp, 'usr/local/share/man'), SYSTEMD_PAGER='')
        return tmp, units, env

    def test_systemd_analyze_verify(self):
        # Unknown or misspelt directives, bad values, a missing program or
        # man page (Documentation=man:...): all errors of verify.
        analyze = shutil.which('systemd-analyze')
        self.assertIsNotNone(analyze, 'systemd-analyze (Debian package systemd) is not installed')
        _, units, env = self.installed_units()
        for name, path in units.items():
            r = subprocess.run([analyze, 'verify', path], capture_output=True, text=True,
                               env=env, timeout=60)
            self.assertEqual(r.returncode, 0, '%s: %s%s' % (name, r.stdout, r.stderr))
            self.assertEqual(r.stderr.strip(), '', name)

    def test_systemd_hardening(self):
        analyze = shutil.which('systemd-analyze')
        self.assertIsNotNone(analyze, 'systemd-analyze (Debian package systemd) is not installed')
        _, units, env = self.installed_units()
        for name, path in units.items():
            text = open(path).read()
            for line in ('NoNewPrivileges=yes', 'ProtectSystem=strict', 'ProtectHome=yes',
                         'PrivateTmp=yes', 'PrivateDevices=yes', 'RestrictSUIDSGID=yes',
                         'RuntimeDirectory=elect', 'StateDirectory=elect', 'DynamicUser=yes'):
                self.assertRegex(text, r'(?m)^%s$' % re.escape(line), name)
            # Under ProtectSystem=strict only these are writable: the socket
            # must be in the RuntimeDirectory.
            sock = re.search(r'--socket (\S+)', text).group(1)
            self.assertTrue(sock.startswith('/run/elect/'), '%s: socket %s' % (name, sock))
            # Exposure 0 (all locked) .. 10 (none); both are at 3.3-3.4 now.
            r = subprocess.run([analyze, 'security', '--offline=true', '--threshold=40',
                                '--no-pager', path], capture_output=True, text=True,
                               env=env, timeout=60)
            level = re.search(r'Overall exposure level for \S+: ([0-9.]+)', r.stdout)
            self.assertIsNotNone(level, '%s: %s%s' % (name, r.stdout[-2000:], r.stderr))
            print('\n  %s: exposure %s' % (name, level.group(1)), end=' ', flush=True)
            self.assertEqual(r.returncode, 0, '%s: exposure %s is above 4.0:\n%s'
                             % (name, level.group(1), r.stdout))
