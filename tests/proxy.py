#!/usr/bin/env python3
"""Loopback TCP fault proxy, one per agent<->backend link (stdlib, threads).

Library use:
    from proxy import FaultProxy
    p = FaultProxy(('127.0.0.1', etcd_port))   # listens on 127.0.0.1:<free>
    p.start();  url = 'etcd://127.0.0.1:%d/x' % p.port
    p.blackhole()      # keep connections open, forward nothing, answer
                       # nothing; new connections are accepted and held
                       # (their upstream connect waits for the next pass())
    p.reset()          # RST every connection; new ones are accepted and
                       # reset at once while in this mode
    p.delay(200)       # each chunk forwarded 200 ms after it arrived, both
                       # ways (order kept; 0 = no delay); combines with pass
    p.drop(0.3)        # 30% of new connections are reset at once (seeded:
                       # FaultProxy(..., seed=N))
    p.pass_()          # normal forwarding (data held by a blackhole is
                       # released then, as TCP would after a partition heals)
    p.set_response_hook(fn)  # fn(bytes) -> bytes on server->client chunks
    p.set_request_hook(fn)   # same for client->server; None removes
    p.stats()          # dict: mode, delay_ms, drop, connections, accepted,
                       # dropped, bytes_up, bytes_down
    p.stop()           # close everything (also done by the harness if you
                       # register it: self.addCleanup(p.stop))

Blackholed data is held, not discarded: the reader stops forwarding, the
socket buffers fill, and the sender sees no progress - what a partition
looks like to TCP.

Standalone:
    python3 tests/proxy.py --target HOST:PORT [--listen PORT] [--control PORT]
prints "proxy <listen-port> control <control-port>" and then serves a line
protocol on the control port (127.0.0.1): "pass", "blackhole", "reset",
"delay MS", "drop SHARE", "stats" (JSON), "quit"; each answered "ok ..." or
"error ...".
"""

import argparse
import json
import random
import socket
import struct
import sys
import threading
import time

MODES = ('pass', 'blackhole', 'reset')


def _rst_close(s):
    # Linger 0 makes the final close send RST. SHUT_RD wakes a pump thread
    # blocked in recv() on it (close() alone would not, and the kernel socket
    # would live on until that recv returned) without sending a FIN.
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        s.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


class _Conn:
    """One client connection and its upstream, with one pump per direction."""

    def __init__(self, proxy, client):
        self.proxy = proxy
        self.client = client
        self.upstream = None
        self.closed = False
        self.lock = threading.Lock()

    def run(self):
        p = self.proxy
        # Held connections (blackhole) connect upstream only when let through.
        if not p._wait_passable(self):
            return self.close()
        try:
            self.upstream = socket.create_connection(p.target, timeout=5)
            self.upstream.settimeout(None)
        except OSError:
            return self.close(rst=True)
        for src, dst, up in ((self.client, self.upstream, True),
                             (self.upstream, self.client, False)):
            threading.Thread(target=self._pump, args=(src, dst, up), daemon=True).start()

    def _pump(self, src, dst, up):
        p = self.proxy
        while not self.closed:
            try:
                data = src.recv(65536)
            except OSError:
                data = b''
            t_recv = time.monotonic()
            if not data:
                # Half-close towards the other side, then end when both done.
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            if not p._wait_passable(self):
                return
            d = p._delay_ms
            if d:
                left = t_recv + d / 1000.0 - time.monotonic()
                if left > 0:
                    time.sleep(left)
                if not p._wait_passable(self):
                    return
            hook = p._request_hook if up else p._response_hook
            if hook is not None:
                try:
                    data = hook(data)
                except Exception as e:  # noqa: BLE001 - test hook
                    sys.stderr.write('proxy: hook raised %r\n' % (e,))
            with p._lock:
                if up:
                    p._bytes_up += len(data)
                else:
                    p._bytes_down += len(data)
            if data:
                try:
                    dst.sendall(data)
                except OSError:
                    return self.close()

    def close(self, rst=False):
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.upstream):
            if s is not None:
                if rst:
                    _rst_close(s)
                else:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    try:
                        s.close()
                    except OSError:
                        pass
        self.proxy._forget(self)


class FaultProxy:
    def __init__(self, target, listen_port=0, listen_host='127.0.0.1', seed=None):
        self.target = tuple(target)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._mode = 'pass'
        self._delay_ms = 0
        self._drop = 0.0
        self._rng = random.Random(seed)
        self._request_hook = None
        self._response_hook = None
        self._conns = set()
        self._accepted = self._dropped = self._bytes_up = self._bytes_down = 0
        self._stopped = False
        self._lsock = socket.socket()
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind((listen_host, listen_port))
        self._lsock.listen(128)
        self.host = listen_host
        self.port = self._lsock.getsockname()[1]
        self._thread = None

    # --- control
    def start(self):
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()
        return self

    def _set_mode(self, mode):
        with self._cond:
            self._mode = mode
            conns = list(self._conns) if mode == 'reset' else []
            self._cond.notify_all()
        for c in conns:
            c.close(rst=True)

    def pass_(self):
        self._set_mode('pass')

    def blackhole(self):
        self._set_mode('blackhole')

    def reset(self):
        self._set_mode('reset')

    def delay(self, ms):
        with self._lock:
            self._delay_ms = max(0, int(ms))

    def drop(self, share):
        with self._lock:
            self._drop = min(1.0, max(0.0, float(share)))

    def set_response_hook(self, fn):
        self._response_hook = fn

    def set_request_hook(self, fn):
        self._request_hook = fn

    @property
    def mode(self):
        return self._mode

    def stats(self):
        with self._lock:
            return {'mode': self._mode, 'delay_ms': self._delay_ms, 'drop': self._drop,
                    'connections': len(self._conns), 'accepted': self._accepted,
                    'dropped': self._dropped, 'bytes_up': self._bytes_up,
                    'bytes_down': self._bytes_down}

    def stop(self):
        with self._cond:
            if self._stopped:
                return
            self._stopped = True
            conns = list(self._conns)
            self._cond.notify_all()
        try:
            self._lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._lsock.close()
        for c in conns:
            c.close(rst=True)
        if self._thread:
            self._thread.join(2)

    # --- internals
    def _wait_passable(self, conn):
        """Block while blackholed; False when the connection must end."""
        with self._cond:
            while self._mode == 'blackhole' and not self._stopped and not conn.closed:
                self._cond.wait(0.5)
            return self._mode == 'pass' and not self._stopped and not conn.closed

    def _forget(self, conn):
        with self._lock:
            self._conns.discard(conn)

    def _accept_loop(self):
        while not self._stopped:
            try:
                s, _ = self._lsock.accept()
            except OSError:
                if self._stopped:
                    return
                time.sleep(0.01)
                continue
            with self._lock:
                self._accepted += 1
                refuse = self._mode == 'reset' or (self._drop and self._rng.random() < self._drop)
                if refuse:
                    self._dropped += 1
            if refuse:
                _rst_close(s)
                continue
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = _Conn(self, s)
            with self._lock:
                self._conns.add(c)
            threading.Thread(target=c.run, daemon=True).start()


def _control_server(proxy, port):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(('127.0.0.1', port))
    ls.listen(8)
    return ls


def _serve_control(proxy, ls):
    while True:
        s, _ = ls.accept()
        f = s.makefile('rw')
        for line in f:
            w = line.split()
            if not w:
                continue
            try:
                cmd = w[0]
                if cmd == 'pass':
                    proxy.pass_()
                elif cmd in ('blackhole', 'reset'):
                    getattr(proxy, cmd)()
                elif cmd == 'delay':
                    proxy.delay(int(w[1]))
                elif cmd == 'drop':
                    proxy.drop(float(w[1]))
                elif cmd == 'stats':
                    f.write('ok %s\n' % json.dumps(proxy.stats()))
                    f.flush()
                    continue
                elif cmd == 'quit':
                    f.write('ok\n')
                    f.flush()
                    proxy.stop()
                    return
                else:
                    raise ValueError('unknown command %r' % cmd)
                f.write('ok %s\n' % cmd)
            except (ValueError, IndexError) as e:
                f.write('error %s\n' % e)
            f.flush()
        s.close()


def main():
    ap = argparse.ArgumentParser(description='loopback TCP fault proxy')
    ap.add_argument('--target', required=True, help='HOST:PORT')
    ap.add_argument('--listen', type=int, default=0)
    ap.add_argument('--control', type=int, default=0)
    ap.add_argument('--seed', type=int)
    a = ap.parse_args()
    host, _, port = a.target.rpartition(':')
    p = FaultProxy((host, int(port)), listen_port=a.listen, seed=a.seed).start()
    ls = _control_server(p, a.control)
    print('proxy %d control %d' % (p.port, ls.getsockname()[1]), flush=True)
    try:
        _serve_control(p, ls)
    except KeyboardInterrupt:
        p.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
