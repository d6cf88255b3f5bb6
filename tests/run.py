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

Ends with one line "integration: N passed, M failed"; skipped tests count
as failed; the exit status is non-zero on any failure or error.
"""

import argparse
import glob
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
    res = runner.run(unittest.TestSuite(tests))
    failed = (len(res.failures) + len(res.errors) + len(res.skipped)
              + len(res.unexpectedSuccesses) + len(unmatched) + load_errors)
    for t, why in res.skipped:
        print('run.py: skipped tests count as failures: %s (%s)' % (t.id(), why))
    passed = res.testsRun - len(res.failures) - len(res.errors) - len(res.skipped) \
        - len(res.unexpectedSuccesses)
    print('integration: %d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
