"""A real Kubernetes API server for tests (Python 3 stdlib only), on loopback.

No Debian package ships kube-apiserver, so the tests build it from its Go
modules (tests/k8s/go.mod: k8s.io/kubernetes v1.34.3, Apache-2.0) once, with
the client-go leader-election candidate of the same module (tests/k8s/
candidate), into a cache outside the work tree that is keyed by go.sum:

    $ELECT_K8S_CACHE (default ~/.cache/elect)/k8s-<sha256(go.sum)[:16]>/
        kube-apiserver, candidate

    python3 tests/k8s_server.py --build     # build them if missing (about 5
                                            # min cold on 2 cores), print the dir
    from k8s_server import KubeApiServer, build_k8s
    srv = KubeApiServer(base_dir); srv.start()   # its own etcd; waits for /readyz
    self.addCleanup(srv.stop)
    url = 'k8s://%s/%s/web' % (srv.endpoint, ns)

The candidate is rebuilt (seconds, the module cache is warm) whenever the
sources under tests/k8s/candidate change; kube-apiserver only with go.sum.

Every server runs Debian's etcd (tests/etcd_server.py) and kube-apiserver on
free 127.0.0.1 ports, each in its own process group, stopped by pid (also
when start() fails). What it is given (all made in base_dir):
  - a CA and a serving certificate for IP 127.0.0.1 made with openssl
    (tests/certs.py); srv.ca is the CA file clients trust. The same CA is
    --client-ca-file: srv.client_cert/srv.client_key authenticate as user
    CERT_USER ('elect-client', no groups).
  - --token-auth-file: srv.tokens[user] for ADMIN ('admin', group
    system:masters: everything) and the users in USERS ('tester', 'norbac'),
    who have no groups and so no permissions until a Role grants them some.
  - --authorization-mode RBAC, a service-account key pair (EC P-256) for
    bound tokens (TokenRequest), --service-account-issuer/--api-audiences
    ISSUER.
  - admission: the defaults without ServiceAccount (no pods are ever run:
    there is no scheduler, kubelet or controller-manager).

Helpers (token=None means the admin's):
  srv.api(method, path, body=None, token=None, content_type=..., query=None)
        -> (status, parsed JSON or text); body: dict (JSON) or str/bytes
  srv.create_namespace(ns), srv.create_service_account(ns, name)
  srv.apply_yaml(text, namespace, dry_run=False, token=None) -> [object, ...]
        POSTs every YAML document as application/yaml (the server parses it;
        no YAML library here), strict field validation as `kubectl apply`
  srv.grant(ns, verbs, user=None, service_account=None, resources=('leases',),
            role=None) -> role name: a Role on coordination.k8s.io resources
        and a RoleBinding to the user or service account
  srv.kubeconfig(path, user='tester', namespace=None, token=None,
                 token_file=False, client_cert=False) -> path
  srv.in_cluster_dir(path, token, namespace) -> env dict
        (token, ca.crt, namespace files; KUBERNETES_SERVICE_HOST/_PORT)
  srv.service_account_token(ns, name, expiration_seconds=600) -> str
        (TokenRequest: a new bound token every call, for rotation tests)
  srv.lease(ns, name) -> Lease dict or None
  srv.watch_lease(ns, name, token=None, resource_version=None)
        -> LeaseWatch (a thread recording every event)
  srv.candidate(ctx, ns, name, id, log, user=ADMIN, kubeconfig=None,
                lease_duration='2s', renew_deadline='1500ms', retry_period='200ms',
                release_on_cancel=True) -> Candidate: the client-go candidate
        (tests/k8s/candidate) started with ctx.spawn (an ElectTestCase);
        .proc, .leaders() (its OnNewLeader lines), .lines(), .kill9()
        (also writes the "dead" line of its open interval)
  srv.kill(sig=SIGKILL): kube-apiserver only (etcd keeps the data; start()
        again brings it back on the same port); srv.stop(): both, by pid
  srv.ready_s (seconds from spawn to /readyz ok), srv.rss_kb()
"""

import fcntl
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse

from certs import _openssl, make_certs
from etcd_server import EtcdServer
from server_proc import ServerProc, free_port as _free_port, go_build

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE_DIR = os.path.join(HERE, 'k8s')
CANDIDATE_DIR = os.path.join(MODULE_DIR, 'candidate')
GO = shutil.which('go') or '/usr/local/go/bin/go'
VERSION = 'v1.34.3'

ADMIN = 'admin'
USERS = ('tester', 'norbac')
CERT_USER = 'elect-client'          # CN of certs.py's client certificate
ISSUER = 'https://kubernetes.default.svc'
COORD = '/apis/coordination.k8s.io/v1'


# ---------------------------------------------------------------- building

def cache_dir():
    with open(os.path.join(MODULE_DIR, 'go.sum'), 'rb') as f:
        h = hashlib.sha256(f.read()).hexdigest()[:16]
    base = os.environ.get('ELECT_K8S_CACHE') or os.path.join(
        os.path.expanduser('~'), '.cache', 'elect')
    return os.path.join(base, 'k8s-' + h)


def apiserver_bin():
    return os.path.join(cache_dir(), 'kube-apiserver')


def candidate_bin():
    return os.path.join(cache_dir(), 'candidate')


def _candidate_src_hash():
    h = hashlib.sha256()
    for name in ('go.mod', 'go.sum'):
        with open(os.path.join(MODULE_DIR, name), 'rb') as f:
            h.update(f.read())
    for name in sorted(os.listdir(CANDIDATE_DIR)):
        if name.endswith('.go'):
            h.update(name.encode() + b'\0')
            with open(os.path.join(CANDIDATE_DIR, name), 'rb') as f:
                h.update(f.read())
    return h.hexdigest()


def _stamp_path():
    return candidate_bin() + '.src'


def _candidate_fresh():
    try:
        with open(_stamp_path()) as f:
            stamp = f.read().strip()
    except OSError:
        return False
    return os.access(candidate_bin(), os.X_OK) and stamp == _candidate_src_hash()


def have_k8s():
    return os.access(apiserver_bin(), os.X_OK) and _candidate_fresh()


def _go_build(out, pkg, what, log):
    go_build(GO, MODULE_DIR, out, pkg, what, log)


def build_k8s(log=sys.stderr):
    """Builds kube-apiserver and the candidate when missing or stale (one
    build at a time: a lock file). Returns the cache dir; raises
    RuntimeError when they cannot be built."""
    d = cache_dir()
    if have_k8s():
        return d
    if not os.access(GO, os.X_OK):
        raise RuntimeError('kube-apiserver is not built and there is no Go toolchain (looked '
                           'for %s): install Go 1.24 or later (tests/k8s/go.mod)' % GO)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, '.lock'), 'w') as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        if not os.access(apiserver_bin(), os.X_OK):
            print('building kube-apiserver %s from Go modules into %s (about 5 min cold on '
                  '2 cores)' % (VERSION, d), file=log, flush=True)
            _go_build(apiserver_bin(), 'k8s.io/kubernetes/cmd/kube-apiserver',
                      'kube-apiserver ' + VERSION, log)
        if not _candidate_fresh():
            src = _candidate_src_hash()
            print('building the client-go candidate into %s' % d, file=log, flush=True)
            _go_build(candidate_bin(), './candidate', 'the client-go candidate', log)
            with open(_stamp_path(), 'w') as f:
                f.write(src + '\n')
    return d


def require_k8s():
    """build_k8s() for tests: an AssertionError-free RuntimeError with one
    clear first line when the server cannot be had (tests fail, never skip)."""
    try:
        return build_k8s()
    except RuntimeError as e:
        raise RuntimeError('the Kubernetes test server could not be built '
                           '(make k8s; tests/k8s_server.py): %s' % e) from None


# ---------------------------------------------------------------- YAML text

def yaml_documents(text):
    """The documents of a YAML stream that hold more than comments."""
    docs = re.split(r'(?m)^---[ \t]*$', text)
    return [d for d in docs if re.search(r'(?m)^[ \t]*[^#\s]', d)]


def _top_level(doc, key):
    m = re.search(r'(?m)^%s:[ \t]*["\']?([^\s"\'#]+)' % re.escape(key), doc)
    return m.group(1) if m else None


def _metadata_name(doc):
    m = re.search(r'(?m)^metadata:\s*\n(?:[ \t]+.*\n)*?[ \t]+name:[ \t]*(\S+)', doc)
    return m.group(1) if m else '?'


def _yaml_str(s):
    return json.dumps(str(s))       # a JSON string is a YAML flow scalar


# ---------------------------------------------------------------- the server

class KubeApiServer(ServerProc):
    """kube-apiserver on loopback with its own etcd."""

    kind = 'kube-apiserver'

    def __init__(self, base_dir=None, name='kube0', extra_args=()):
        super().__init__(base_dir, name, 'k8s-test-')
        self.port = _free_port()
        self.extra_args = list(extra_args)
        self.etcd = EtcdServer(self.base_dir, name + '-etcd')
        self.dir = os.path.join(self.base_dir, name + '.pki')
        self.tokens = {u: secrets.token_hex(16) for u in (ADMIN,) + USERS}
        self.certs = None
        self._discovery = {}
        self._ssl = None
        self.ready_s = None          # seconds from spawn to /readyz ok

    @property
    def endpoint(self):
        return '127.0.0.1:%d' % self.port

    @property
    def url(self):
        return 'https://' + self.endpoint

    @property
    def ca(self):
        return self.certs['ca.crt']

    @property
    def client_cert(self):
        return self.certs['client.crt']

    @property
    def client_key(self):
        return self.certs['client.key']

    def _prepare(self):
        if self.certs is not None:
            return
        self.certs = make_certs(self.dir)
        sa_key = os.path.join(self.dir, 'sa.key')
        _openssl(self.dir, 'ecparam', '-genkey', '-name', 'prime256v1', '-noout', '-out', sa_key)
        self.certs['sa.key'] = sa_key
        tok = os.path.join(self.dir, 'tokens.csv')
        with open(tok, 'w') as f:
            for user, t in self.tokens.items():
                groups = ',"system:masters"' if user == ADMIN else ''
                f.write('%s,%s,uid-%s%s\n' % (t, user, user, groups))
        os.chmod(tok, 0o600)
        self.certs['tokens.csv'] = tok

    def argv(self):
        c = self.certs
        return [apiserver_bin(),
                '--etcd-servers', self.etcd.client_url,
                '--bind-address', '127.0.0.1', '--advertise-address', '127.0.0.1',
                '--secure-port', str(self.port),
                '--cert-dir', self.dir,
                '--tls-cert-file', c['server.crt'], '--tls-private-key-file', c['server.key'],
                '--client-ca-file', c['ca.crt'],
                '--token-auth-file', c['tokens.csv'],
                '--authorization-mode', 'RBAC',
                '--anonymous-auth=false',
                '--service-account-key-file', c['sa.key'],
                '--service-account-signing-key-file', c['sa.key'],
                '--service-account-issuer', ISSUER, '--api-audiences', ISSUER,
                '--service-cluster-ip-range', '10.96.0.0/24',
                '--disable-admission-plugins', 'ServiceAccount',
                '--endpoint-reconciler-type', 'none',
                '--profiling=false',
                '--v', '1'] + self.extra_args

    def start(self, timeout=60):
        """Starts etcd and kube-apiserver; waits until /readyz says ok.
        Stops both when that fails."""
        if self.alive():
            return
        require_k8s()
        try:
            self._prepare()
            self.etcd.start()
            for attempt in range(3):
                t0 = time.monotonic()
                self.spawn()
                try:
                    self.wait_until(self.ready, timeout, 'not ready (/readyz)', interval=0.05)
                    break
                except RuntimeError:
                    # Its port taken between choosing it and binding it: another.
                    if self.alive() or 'address already in use' not in self.log() or attempt == 2:
                        raise
                    self._close_log()
                    self.port = _free_port()
            self.ready_s = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise

    def ready(self):
        try:
            status, body = self.api('GET', '/readyz', timeout=1)
            return status == 200 and str(body).strip() == 'ok'
        except (OSError, http.client.HTTPException):
            return False

    def stop(self, timeout=10):
        own, self._own_dir = self._own_dir, False
        try:
            super().stop(timeout)
            self.etcd.stop(timeout)
        finally:
            self._own_dir = own
            if own:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def rss_kb(self):
        """VmRSS of kube-apiserver and of its etcd (kB), None when not running."""
        def rss(p):
            if p.popen is None or p.popen.poll() is not None:
                return None
            with open('/proc/%d/status' % p.popen.pid) as f:
                m = re.search(r'VmRSS:\s+(\d+)', f.read())
            return int(m.group(1)) if m else None
        return rss(self), rss(self.etcd)

    # ---- HTTP

    def ssl_context(self, client_cert=False):
        if client_cert:
            ctx = ssl.create_default_context(cafile=self.ca)
            ctx.load_cert_chain(self.client_cert, self.client_key)
            return ctx
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=self.ca)
        return self._ssl

    def connection(self, timeout=10, client_cert=False):
        return http.client.HTTPSConnection('127.0.0.1', self.port, timeout=timeout,
                                           context=self.ssl_context(client_cert))

    def api(self, method, path, body=None, token=None, content_type='application/json',
            query=None, timeout=10, client_cert=False):
        """(status, parsed JSON or text). token None: the admin's; '' sends
        none (with client_cert: authenticated as CERT_USER by certificate)."""
        if query:
            path += ('&' if '?' in path else '?') + urllib.parse.urlencode(query)
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        headers = {'Accept': 'application/json'}
        tok = self.tokens[ADMIN] if token is None and not client_cert else token
        if tok:
            headers['Authorization'] = 'Bearer ' + tok
        if body is not None:
            headers['Content-Type'] = content_type
        conn = self.connection(timeout, client_cert)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read().decode('utf-8', 'replace')
            status = r.status
        finally:
            conn.close()
        try:
            return status, json.loads(data)
        except ValueError:
            return status, data

    def _ok(self, what, status, body, ok=(200, 201)):
        if status not in ok:
            raise RuntimeError('%s: %s %s' % (what, status, body.get('message', body)
                                              if isinstance(body, dict) else body))
        return body

    def create_namespace(self, ns):
        st, body = self.api('POST', '/api/v1/namespaces',
                            {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': ns}})
        return self._ok('create namespace %s' % ns, st, body)

    def _resource(self, api_version, kind):
        """(collection path prefix, namespaced) for a kind, from discovery."""
        if api_version not in self._discovery:
            path = '/api/v1' if api_version == 'v1' else '/apis/' + api_version
            st, body = self.api('GET', path)
            self._ok('discovery %s' % path, st, body, ok=(200,))
            self._discovery[api_version] = (path, body['resources'])
        path, resources = self._discovery[api_version]
        for r in resources:
            if r.get('kind') == kind and '/' not in r['name']:
                return path, r['name'], r['namespaced']
        raise RuntimeError('%s %s: no such kind on this server' % (api_version, kind))

    def apply_yaml(self, text, namespace, dry_run=False, token=None):
        """Creates every document of text (application/yaml, parsed by the
        server) in namespace, as `kubectl create` would: fieldValidation
        Strict (unknown or duplicate fields are errors), dryRun=All when
        dry_run. Returns the created objects; RuntimeError on the first
        refusal (with the server's message)."""
        out = []
        for doc in yaml_documents(text):
            api_version, kind = _top_level(doc, 'apiVersion'), _top_level(doc, 'kind')
            if not api_version or not kind:
                raise RuntimeError('a YAML document without apiVersion or kind:\n' + doc)
            prefix, resource, namespaced = self._resource(api_version, kind)
            path = '%s/namespaces/%s/%s' % (prefix, namespace, resource) if namespaced \
                else '%s/%s' % (prefix, resource)
            q = {'fieldValidation': 'Strict'}
            if dry_run:
                q['dryRun'] = 'All'
            st, body = self.api('POST', path, doc, token=token,
                                content_type='application/yaml', query=q)
            out.append(self._ok('%s %s' % (kind, _metadata_name(doc)), st, body))
        return out

    def grant(self, ns, verbs, user=None, service_account=None, resources=('leases',),
              role=None):
        """A Role with verbs on resources of coordination.k8s.io in ns, bound
        to user or to service account ns/service_account. Returns its name."""
        subject = ({'kind': 'User', 'apiGroup': 'rbac.authorization.k8s.io', 'name': user}
                   if user else {'kind': 'ServiceAccount', 'name': service_account,
                                 'namespace': ns})
        role = role or 'leases-%s-%s' % (user or service_account, secrets.token_hex(3))
        rbac = '/apis/rbac.authorization.k8s.io/v1/namespaces/%s/' % ns
        st, body = self.api('POST', rbac + 'roles', {
            'apiVersion': 'rbac.authorization.k8s.io/v1', 'kind': 'Role',
            'metadata': {'name': role},
            'rules': [{'apiGroups': ['coordination.k8s.io'], 'resources': list(resources),
                       'verbs': list(verbs)}]})
        self._ok('create role %s' % role, st, body)
        st, body = self.api('POST', rbac + 'rolebindings', {
            'apiVersion': 'rbac.authorization.k8s.io/v1', 'kind': 'RoleBinding',
            'metadata': {'name': role},
            'roleRef': {'apiGroup': 'rbac.authorization.k8s.io', 'kind': 'Role', 'name': role},
            'subjects': [subject]})
        self._ok('create rolebinding %s' % role, st, body)
        return role

    def create_service_account(self, ns, name):
        st, body = self.api('POST', '/api/v1/namespaces/%s/serviceaccounts' % ns,
                            {'apiVersion': 'v1', 'kind': 'ServiceAccount',
                             'metadata': {'name': name}})
        return self._ok('create service account %s/%s' % (ns, name), st, body)

    def service_account_token(self, ns, name, expiration_seconds=600):
        """A new bound token of service account ns/name (TokenRequest)."""
        st, body = self.api('POST', '/api/v1/namespaces/%s/serviceaccounts/%s/token' % (ns, name),
                            {'apiVersion': 'authentication.k8s.io/v1', 'kind': 'TokenRequest',
                             'spec': {'expirationSeconds': expiration_seconds}})
        return self._ok('token for %s/%s' % (ns, name), st, body)['status']['token']

    def lease(self, ns, name):
        st, body = self.api('GET', '%s/namespaces/%s/leases/%s' % (COORD, ns, name))
        if st == 404:
            return None
        return self._ok('get lease %s/%s' % (ns, name), st, body, ok=(200,))

    def watch_lease(self, ns, name, token=None, resource_version=None):
        return LeaseWatch(self, ns, name, token, resource_version)

    # ---- client configuration

    def kubeconfig(self, path, user='tester', namespace=None, token=None, token_file=False,
                   client_cert=False):
        """Writes a kubeconfig whose current context reaches this server as
        user (its static token, or token), with the token inline or in a
        tokenFile (path + '.token'), or with the client certificate
        (user CERT_USER). Returns path."""
        lines = ['apiVersion: v1', 'kind: Config', 'preferences: {}',
                 'clusters:', '- name: test', '  cluster:',
                 '    server: ' + _yaml_str(self.url),
                 '    certificate-authority: ' + _yaml_str(self.ca),
                 'users:']
        if client_cert:
            uname = CERT_USER
            lines += ['- name: ' + _yaml_str(uname), '  user:',
                      '    client-certificate: ' + _yaml_str(self.client_cert),
                      '    client-key: ' + _yaml_str(self.client_key)]
        else:
            uname = user
            tok = token if token is not None else self.tokens[user]
            lines += ['- name: ' + _yaml_str(uname), '  user:']
            if token_file:
                tf = path + '.token'
                with open(tf, 'w') as f:
                    f.write(tok + '\n')
                os.chmod(tf, 0o600)
                lines.append('    tokenFile: ' + _yaml_str(tf))
            else:
                lines.append('    token: ' + _yaml_str(tok))
        lines += ['contexts:', '- name: test', '  context:', '    cluster: test',
                  '    user: ' + _yaml_str(uname)]
        if namespace:
            lines.append('    namespace: ' + _yaml_str(namespace))
        lines.append('current-context: test')
        with open(path, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        os.chmod(path, 0o600)
        return path

    def in_cluster_dir(self, path, token, namespace):
        """Writes path/{token,ca.crt,namespace} as a pod's
        /var/run/secrets/kubernetes.io/serviceaccount has them; returns the
        environment variables a pod would have."""
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, 'token'), 'w') as f:
            f.write(token)
        shutil.copyfile(self.ca, os.path.join(path, 'ca.crt'))
        with open(os.path.join(path, 'namespace'), 'w') as f:
            f.write(namespace)
        return {'KUBERNETES_SERVICE_HOST': '127.0.0.1', 'KUBERNETES_SERVICE_PORT': str(self.port)}

    def candidate(self, ctx, ns, name, id, log, user=ADMIN, kubeconfig=None,
                  lease_duration='2s', renew_deadline='1500ms', retry_period='200ms',
                  release_on_cancel=True):
        """Starts the client-go candidate (ctx.spawn: stopped at teardown)."""
        require_k8s()
        kc = kubeconfig or self.kubeconfig(os.path.join(ctx.tmp, 'kubeconfig-%s' % id), user)
        argv = [candidate_bin(), '-kubeconfig', kc, '-namespace', ns, '-name', name,
                '-id', id, '-log', log, '-lease-duration', lease_duration,
                '-renew-deadline', renew_deadline, '-retry-period', retry_period,
                '-release-on-cancel=%s' % ('true' if release_on_cancel else 'false')]
        return Candidate(ctx.spawn(argv, 'candidate-' + id), id, log)


class Candidate:
    """A running client-go candidate: .proc (harness Proc), .id, .log_path
    (its interval log), .lines() (its stdout: 'leader ID', 'stopped')."""

    def __init__(self, proc, id, log_path):
        self.proc, self.id, self.log_path = proc, id, log_path

    def lines(self):
        return self.proc.log().splitlines()

    def leaders(self):
        """Every identity its OnNewLeader reported, in order."""
        return [ln.split(' ', 1)[1] for ln in self.lines() if ln.startswith('leader ')]

    def kill9(self):
        """SIGKILL; its work dies with it, which it cannot log: appends a
        "dead" line (time: once reaped) for its open interval, as the
        leadercmd watcher does for a killed leader command."""
        self.proc.kill(signal.SIGKILL)
        self.proc.popen.wait()
        t = time.monotonic_ns()
        starts, ended = {}, set()
        try:
            with open(self.log_path) as f:
                for ln in f:
                    p = ln.split()
                    if len(p) >= 5 and int(p[4]) == self.proc.pid:
                        if p[0] == 'start':
                            starts[p[4]] = p
                        else:
                            ended.add(p[4])
        except FileNotFoundError:
            return
        with open(self.log_path, 'a') as f:
            for pid, p in starts.items():
                if pid not in ended:
                    f.write('dead %s %s %d %s\n' % (p[1], p[2], t, pid))


class LeaseWatch:
    """A watch on one Lease (GET .../leases?watch=1&fieldSelector=
    metadata.name=NAME) in a thread: .events is a list of
    (time.monotonic_ns() when received, type, Lease dict); .holders() the
    holderIdentity of each. close() ends it. Without resource_version it
    starts from the current state (an ADDED event for an existing Lease),
    with one from the changes after that version, as the backend watches.
    RuntimeError when the server refuses it (e.g. 403)."""

    def __init__(self, srv, ns, name, token=None, resource_version=None):
        self.events = []
        self.error = None
        self._cond = threading.Condition()
        self._conn = srv.connection(timeout=None)
        q = {'watch': '1', 'fieldSelector': 'metadata.name=' + name}
        if resource_version is not None:
            q['resourceVersion'] = resource_version
        q = urllib.parse.urlencode(q)
        tok = srv.tokens[ADMIN] if token is None else token
        self._conn.request('GET', '%s/namespaces/%s/leases?%s' % (COORD, ns, q),
                           headers={'Authorization': 'Bearer ' + tok,
                                    'Accept': 'application/json'})
        self._resp = self._conn.getresponse()
        if self._resp.status != 200:
            body = self._resp.read().decode('utf-8', 'replace')
            self._conn.close()
            try:
                body = json.loads(body).get('message', body)
            except ValueError:
                pass
            raise RuntimeError('watch lease %s/%s: %s %s' % (ns, name, self._resp.status, body))
        self._closed = self._ended = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            while True:
                line = self._resp.readline()
                if not line:
                    break
                t = time.monotonic_ns()
                ev = json.loads(line)
                with self._cond:
                    self.events.append((t, ev['type'], ev['object']))
                    self._cond.notify_all()
        except Exception as e:  # noqa: BLE001 - also what close() provokes
            if not self._closed:
                self.error = e
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def holders(self):
        with self._cond:
            return [(t, o.get('spec', {}).get('holderIdentity', '')) for t, _, o in self.events]

    def wait(self, pred, timeout):
        """The first (t, type, lease) event with pred(lease) true, waiting up
        to timeout s; None on timeout."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self.events:
                    if pred(e[2]):
                        return e
                left = end - time.monotonic()
                if left <= 0 or self._ended:
                    return None
                self._cond.wait(left)

    def close(self):
        self._closed = True
        try:
            self._conn.sock.shutdown(socket.SHUT_RDWR)     # ends the reader's readline()
        except (OSError, AttributeError):
            pass
        self._thread.join(10)
        self._conn.close()

if __name__ == '__main__':
    if sys.argv[1:] == ['--build']:
        try:
            print(build_k8s())
        except RuntimeError as e:
            print('k8s_server: %s' % e, file=sys.stderr)
            sys.exit(1)
        sys.exit(0)
    # Smoke test: one server up and down, with its startup time and RSS.
    s = KubeApiServer()
    s.start()
    print('kube-apiserver at', s.endpoint, 'ready in %.1fs' % s.ready_s,
          'version', s.api('GET', '/version')[1].get('gitVersion'),
          'RSS kB (apiserver, etcd)', s.rss_kb())
    s.stop()
