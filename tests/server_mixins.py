"""Test-case mixins that give each test its own backend server, started in
setUp and stopped by pid at cleanup (also when the test fails), for test
modules that run the same cases on several backends (test_health,
test_handover, test_k8s). K8sSharedServerMixin starts one kube-apiserver per
class instead (it takes seconds to start) and gives each test a namespace of
its own. Put the mixin first:

    class HandoverEtcd(EtcdServerMixin, HandoverCases, ElectTestCase): ...

Each registers its cleanup before the harness's own, so it runs after it:
agents leave their elections while the server still answers. backend_url()
names an election "web" on the server.
"""

from consul_server import ConsulServer, build_consul
from etcd_server import EtcdServer
from k8s_server import KubeApiServer, require_k8s
import itertools
import zk_server


class _ServerMixin:
    def setUp(self):
        self._server = None
        self.addCleanup(self._stop_server)
        super().setUp()
        self._server = self.make_server()

    def _stop_server(self):
        if self._server:
            self._server.stop()


class EtcdServerMixin(_ServerMixin):
    def make_server(self):
        s = EtcdServer(self.tmp, 'etcd0')
        s.start()
        self._etcd = s
        return s

    def backend_url(self):
        return 'etcd://%s/web' % self._etcd.endpoint


class ZkServerMixin(_ServerMixin):
    def make_server(self):
        if not zk_server.available():
            self.fail('ZooKeeper is not installed (Debian package zookeeper)')
        s = zk_server.ZkServer(self.tmp)
        s.start().wait_ready()
        self._hosts = s.hostport
        return s

    def backend_url(self):
        return 'zk://%s/elect/web%s' % (self._hosts, zk_server.URL_OPTS)


class ConsulServerMixin(_ServerMixin):
    def make_server(self):
        build_consul()          # once per machine, then cached
        s = ConsulServer(self.tmp, 'consul0')
        s.start()
        self._consul = s
        return s

    def backend_url(self):
        return 'consul://%s/web' % self._consul.endpoint


class K8sServerMixin(_ServerMixin):
    """A kube-apiserver with namespace K8S_NS, where user 'tester' may do what
    the backend does; self.kubeconfig_path reaches it as that user."""

    K8S_NS = 'apps'

    def make_server(self):
        require_k8s()
        s = KubeApiServer(self.tmp)
        s.start()
        s.create_namespace(self.K8S_NS)
        s.grant(self.K8S_NS, ['get', 'create', 'update', 'watch'], user='tester')
        self.srv = s
        self.kubeconfig_path = s.kubeconfig(self.path('kubeconfig'))
        return s

    def backend_url(self):
        return 'k8s:///%s/web' % self.K8S_NS


class K8sSharedServerMixin:
    """One kube-apiserver for the test class (started by the first test,
    stopped by pid in tearDownClass, also when tests fail), and for each
    test a namespace of its own (self.K8S_NS) where user 'tester' has the
    verbs in K8S_VERBS on leases; self.kubeconfig_path reaches the server
    as that user, self.srv is the server."""

    K8S_VERBS = ('get', 'create', 'update', 'watch')
    _k8s_srv = None
    _k8s_seq = itertools.count()

    @classmethod
    def tearDownClass(cls):
        srv, cls._k8s_srv = cls._k8s_srv, None
        if srv is not None:
            srv.stop()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        cls = type(self)
        if cls._k8s_srv is None or not cls._k8s_srv.alive():
            require_k8s()
            srv = KubeApiServer()
            srv.start()
            cls._k8s_srv = srv
        self.srv = cls._k8s_srv
        self.K8S_NS = 't%d' % next(cls._k8s_seq)
        self.srv.create_namespace(self.K8S_NS)
        self.srv.grant(self.K8S_NS, list(self.K8S_VERBS), user='tester')
        self.kubeconfig_path = self.srv.kubeconfig(self.path('kubeconfig'))
