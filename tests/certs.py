"""Throwaway certificates and log helpers for the TLS tests (etcd, Consul).

    from certs import OPENSSL, make_certs, warn_lines
    p = make_certs(dir)   # {'ca.crt': path, 'server.key': path, ...}

Made with the `openssl` command (Debian package openssl) in the test's temp
dir; nothing is committed. EC P-256 keys: quick to generate.
"""

import os
import re
import shutil
import subprocess

OPENSSL = shutil.which('openssl')


def _openssl(cwd, *args):
    r = subprocess.run([OPENSSL] + list(args), cwd=cwd, capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        raise RuntimeError('openssl %s failed:\n%s' % (' '.join(args), r.stderr))


def make_certs(d):
    """CA, server (SAN IP:127.0.0.1), client, and an unrelated CA, in d.
    Returns a dict of paths."""
    os.makedirs(d, exist_ok=True)
    ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
    p = {k: os.path.join(d, k) for k in (
        'ca.crt', 'ca.key', 'other-ca.crt', 'other-ca.key', 'server.crt', 'server.key',
        'client.crt', 'client.key')}
    for ca, cn in (('ca', 'elect test CA'), ('other-ca', 'elect unrelated CA')):
        _openssl(d, 'req', '-x509', *ec, '-keyout', p[ca + '.key'], '-out', p[ca + '.crt'],
                 '-days', '2', '-subj', '/CN=' + cn)
    # etcd's JSON gateway dials etcd's own gRPC port with the server
    # certificate: with --client-cert-auth it must be a client one too.
    exts = {'server': 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n',
            'client': 'extendedKeyUsage=clientAuth\n'}
    for i, who in enumerate(('server', 'client')):
        ext = os.path.join(d, who + '.ext')
        with open(ext, 'w') as f:
            f.write(exts[who])
        csr = os.path.join(d, who + '.csr')
        _openssl(d, 'req', *ec, '-keyout', p[who + '.key'], '-out', csr,
                 '-subj', '/CN=elect-' + who)
        _openssl(d, 'x509', '-req', '-in', csr, '-CA', p['ca.crt'], '-CAkey', p['ca.key'],
                 '-set_serial', str(1000 + i), '-days', '2', '-extfile', ext,
                 '-out', p[who + '.crt'])
    return p


def warn_lines(log, pattern):
    """Lines at level warn or error (not debug, not info) matching pattern."""
    return [ln for ln in log.splitlines()
            if re.search(r'\] (warn|error) ', ln) and re.search(pattern, ln)]
