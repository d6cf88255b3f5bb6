#!/usr/bin/env python3
"""Runs the process-level and integration tests (tests/integration/test_*.py).

  python3 tests/run.py [--valgrind | --asan] [-q] [--exclude MODULE] [TEST...]

TEST selects what runs; each one may be a module (test_file, test_file.py,
tests/integration/test_file.py), a dotted name (test_file.TestFile,
test_file.TestFile.test_once) or a bare substring of test ids
(test_once). Without TEST everything runs.

--valgrind: every elect runs under valgrind (see harness.py), only tests
            marked @valgrind_ok run, time bounds x5.
--asan:     binaries from ELECT_BIN (default bin-asan), sanitizer reports
            fail the test, time bounds x2.
--build-servers: the servers built from Go modules (Consul, kube-apiserver:
            `make consul k8s`) that are missing are built in the background,
            at the lowest priority (nice 19), while the tests that do not
            need them run; those that do run last, after the build. On a
            cold machine this hides most of the builds' 10 minutes in the
            time the other tests spend waiting. A failed build fails those
            tests (with the build's output), never skips them.
            The same for the container tests' images (tests/containers.py:
            a debootstrap base when missing, then the image of this
            checkout; log build/containers.log): built meanwhile, the
            container tests run after the others (before those waiting for
            the Go builds, which take longer), and a failed build fails them
            with the log's tail.

Ends with one line "integration: N passed, M failed"; skipped tests count
as failed; the exit status is non-zero on any failure or error.
"""

import argparse
import glob
import subprocess
import importlib
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
INTEG = os.path.join(HERE, 'integration')


def iter_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from iter_tests(t)
        else:
            yield t


def module_names():
    return sorted(os.path.splitext(os.path.basename(p))[0]
                  for p in glob.glob(os.path.join(INTEG, 'test_*.py')))


def select(all_tests, mods, selectors):
    """Filter by the TEST arguments; returns (tests, unmatched selectors)."""
    if not selectors:
        return all_tests, []
    out, unmatched = [], []
    for sel in selectors:
        s = os.path.basename(sel)
        if s.endswith('.py'):
            s = s[:-3]
        hit = []
        for t in all_tests:
            tid = t.id()          # module.Class.method
            if s in mods:
                ok = tid.split('.')[0] == s
            elif '.' in s:
                ok = tid == s or tid.startswith(s + '.')
            else:
                ok = s in tid
            if ok:
                hit.append(t)
        if not hit:
            unmatched.append(sel)
        for t in hit:
            if t not in out:
                out.append(t)
    return out, unmatched


# Tests that need a server built from Go modules: their module or class names it.
GO_MODULES = ('test_consul', 'test_consul_security', 'test_lockd_consul', 'test_k8s',
              'test_k8s_server', 'test_lockd_k8s')


def needs_go_server(t):
    mod, cls = t.id().split('.')[:2]
    return (mod in GO_MODULES or 'Consul' in cls or 'K8s' in cls
            or t.id().endswith('.test_consul') or t.id().endswith('.test_k8s'))


CONTAINER_MODULES = ('test_containers',)


def needs_images(t):
    return t.id().split('.')[0] in CONTAINER_MODULES


def start_image_build():
    """tests/containers.py --prepare in the background at nice 19 (the
    compile inside the image build too); returns (Popen, log path)."""
    log = os.path.join(ROOT, 'build', 'containers.log')
    os.makedirs(os.path.dirname(log), exist_ok=True)
    print('run.py: building the container tests\' images in the background '
          '(nice 19, log %s)' % log, flush=True)
    with open(log, 'w') as f:
        p = subprocess.Popen(['nice', '-n', '19', sys.executable, os.path.join(HERE, 'containers.py'),
                              '--prepare'], cwd=ROOT, stdout=f,
                             stderr=subprocess.STDOUT, start_new_session=True)
    return p, log


def wait_image_build(p, log):
    """Tells the tests (ELECT_CONTAINERS_PREPARED) how it went: ok, or the log."""
    t0 = time.monotonic()
    rc = p.wait()
    print('run.py: container test images %s (waited %.0fs for them)'
          % ('done' if rc == 0 else 'FAILED (exit %d); see %s' % (rc, log), time.monotonic() - t0),
          flush=True)
    os.environ['ELECT_CONTAINERS_PREPARED'] = 'ok' if rc == 0 else log


def start_server_builds():
    """`make consul k8s` in the background at nice 19 (nothing when both
    are built); returns (Popen or None, log path)."""
    sys.path.insert(0, HERE)
    import consul_server
    import k8s_server
    if consul_server.have_consul() and k8s_server.have_k8s():
        return None, None
    log = os.path.join(ROOT, 'build', 'go-servers.log')
    os.makedirs(os.path.dirname(log), exist_ok=True)
    cmd = 'python3 tests/consul_server.py --build && python3 tests/k8s_server.py --build'
    print('run.py: building the Consul and Kubernetes test servers in the background '
          '(nice 19, log %s)' % log, flush=True)
    with open(log, 'w') as f:
        p = subprocess.Popen(['nice', '-n', '19', 'sh', '-c', cmd], cwd=ROOT, stdout=f,
                             stderr=subprocess.STDOUT, start_new_session=True)
    return p, log


def wait_server_builds(p, log):
    if p is None:
        return
    t0 = time.monotonic()
    rc = p.wait()
    print('run.py: test server builds %s (waited %.0fs for them)'
          % ('done' if rc == 0 else 'FAILED (exit %d); see %s' % (rc, log), time.monotonic() - t0),
          flush=True)
    if rc != 0:
        with open(log, errors='replace') as f:
            sys.stdout.write(f.read()[-4000:])


class Result(unittest.TextTestResult):
    def startTest(self, test):
        self._t0 = time.monotonic()
        super().startTest(test)

    def addSuccess(self, test):
        super().addSuccess(test)
        if self.showAll:
            self.stream.write('  (%.1fs)\n' % (time.monotonic() - self._t0))


def main():
    ap = argparse.ArgumentParser(description='elect integration tests')
    g = ap.add_mutually_exclusive_group()
    g.add_argument('--valgrind', action='store_true')
    g.add_argument('--asan', action='store_true')
    ap.add_argument('-q', '--quiet', action='store_true')
    ap.add_argument('--exclude', action='append', default=[], metavar='MODULE',
                    help='leave out a test module (e.g. test_chaos in the ASan pass)')
    ap.add_argument('--build-servers', action='store_true',
                    help='build missing Go-built test servers in the background meanwhile')
    ap.add_argument('tests', nargs='*', metavar='TEST')
    a = ap.parse_args()

    # harness.py reads these at import time.
    if a.valgrind:
        os.environ['ELECT_VALGRIND'] = '1'
    if a.asan:
        os.environ['ELECT_ASAN'] = '1'
        os.environ.setdefault('ELECT_BIN', 'bin-asan')
    sys.path.insert(0, HERE)
    sys.path.insert(0, INTEG)
    import harness

    if not os.access(harness.elect_bin(), os.X_OK):
        print('run.py: %s not found or not executable (run make first)' % harness.elect_bin())
        print('integration: 0 passed, 1 failed')
        return 1
    if a.valgrind and not os.access('/usr/bin/valgrind', os.X_OK):
        print('run.py: valgrind not installed')
        print('integration: 0 passed, 1 failed')
        return 1

    mods = [m for m in module_names() if m not in a.exclude]
    loader = unittest.TestLoader()
    all_tests, load_errors = [], 0
    for m in mods:
        try:
            all_tests += list(iter_tests(loader.loadTestsFromModule(importlib.import_module(m))))
        except Exception as e:  # noqa: BLE001 - a broken module is a failure
            print('run.py: cannot load %s: %r' % (m, e))
            load_errors += 1
    tests, unmatched = select(all_tests, mods, a.tests)
    for u in unmatched:
        print('run.py: no test matches %r' % u)
    if a.valgrind:
        def fit(t):
            return getattr(getattr(t, t._testMethodName, None), 'valgrind_ok', False)
        skipped_vg = [t for t in tests if not fit(t)]
        tests = [t for t in tests if fit(t)]
        if skipped_vg:
            print('run.py: valgrind pass runs %d tests marked @valgrind_ok (%d not marked)'
                  % (len(tests), len(skipped_vg)))

    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=1 if a.quiet else 2,
                                     resultclass=Result, buffer=False)
    # Background builds, each with the tests that wait for it: those run
    # after the tests that need none, in this order.
    builders = []
    if a.build_servers:
        if any(needs_images(t) for t in tests):
            p, log = start_image_build()
            builders.append((p, lambda p=p, log=log: wait_image_build(p, log), needs_images))
        p, log = start_server_builds()
        if p is not None:
            builders.append((p, lambda p=p, log=log: wait_server_builds(p, log),
                             lambda t: needs_go_server(t) and not needs_images(t)))
    waiting = [t for t in tests if any(needs(t) for _, _, needs in builders)]
    groups = [(None, [t for t in tests if t not in waiting])]
    for _, wait, needs in builders:
        groups.append((wait, [t for t in waiting if needs(t)]))
    results = []
    try:
        for wait, group in groups:
            if wait is not None:
                wait()
            if group:
                results.append(runner.run(unittest.TestSuite(group)))
    finally:
        for p, _, _ in builders:
            if p.poll() is None:
                os.killpg(p.pid, 15)        # interrupted: do not leave it running
                p.wait()
    failed = sum(len(r.failures) + len(r.errors) + len(r.skipped) + len(r.unexpectedSuccesses)
                 for r in results) + len(unmatched) + load_errors
    for r in results:
        for t, why in r.skipped:
            print('run.py: skipped tests count as failures: %s (%s)' % (t.id(), why))
    # An error in setUpClass is no test run (its tests did not run at all).
    passed = sum(r.testsRun - len(r.failures) - len(r.skipped) - len(r.unexpectedSuccesses)
                 - sum(1 for t, _ in r.errors if isinstance(t, unittest.TestCase))
                 for r in results)
    print('integration: %d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
