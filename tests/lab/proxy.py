"""A TCP proxy on 127.0.0.1 that cuts connections on purpose: the lab's flaky network link.

``FlakyProxy(target_port, cut_after=200_000, cuts=2)`` forwards to a real server and resets the first
``cuts`` connections once ``cut_after`` bytes have flowed from the server, as a dropped WAN link or a
middlebox timeout would. Later connections pass untouched. ``delay`` holds back every piece the server sends
that long: a link to a far ministry, on which every round trip costs time (sessions last long enough for a
test to see how many are open at once). :meth:`FlakyProxy.blackhole` makes the link swallow everything until
:meth:`FlakyProxy.restore`: connections stay open and nothing arrives (a partition, not a refusal).
"""

from __future__ import annotations

import socket
import struct
import threading
import time

from tests.lab.base import LOOPBACK, free_port


class FlakyProxy:
    def __init__(self, target_port: int, *, cut_after: int | None = None, cuts: int = 1, delay: float = 0.0) -> None:
        self.target_port = target_port
        self.delay = delay
        self.cut_after = cut_after
        self.cuts_left = cuts
        self.cuts_done = 0
        self._blackhole = threading.Event()
        self.port = free_port()
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOOPBACK, self.port))
        self._listener.listen(64)
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> FlakyProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped = True
        try:
            self._listener.close()
        except OSError:
            pass

    cleanup = stop

    def blackhole(self) -> None:
        """From now on nothing passes, either way, on any connection (new ones are accepted and hang too)."""
        self._blackhole.set()

    def restore(self) -> None:
        self._blackhole.clear()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((LOOPBACK, self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                doomed = self.cut_after is not None and self.cuts_left > 0
                if doomed:
                    self.cuts_left -= 1
            state = {"bytes": 0, "closed": False}
            threading.Thread(target=self._pump, args=(upstream, client, state, doomed, self.delay),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(client, upstream, state, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, state: dict, doomed: bool, delay: float = 0.0) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if delay:
                    time.sleep(delay)
                while self._blackhole.is_set():
                    time.sleep(0.05)
                if doomed:
                    state["bytes"] += len(data)
                    if state["bytes"] >= (self.cut_after or 0):
                        with self._lock:
                            self.cuts_done += 1
                        self._reset(src, dst, state)
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            if not state["closed"]:
                state["closed"] = True
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    s.close()

    @staticmethod
    def _reset(a: socket.socket, b: socket.socket, state: dict) -> None:
        state["closed"] = True
        for s in (a, b):
            try:
                # SO_LINGER 0 turns the close into a reset; shutdown first wakes the other pump thread,
                # which is blocked reading this socket and would otherwise keep it open.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


class RecordingProxy:
    """A TCP relay on 127.0.0.1 that keeps every byte the client sends (``sent``). ``rewrite`` replaces bytes in
    what the server says, as a man in the middle would (e.g. ``{b" STARTTLS": b""}`` to downgrade a
    connection, ``{b" AUTH=PLAIN": b""}`` to hide a mechanism)."""

    def __init__(self, target_port: int, *, rewrite: dict[bytes, bytes] | None = None) -> None:
        self.target_port = target_port
        self.rewrite = dict(rewrite or {})
        self.sent = bytearray()
        self._lock = threading.Lock()
        self.listener = socket.create_server((LOOPBACK, 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection((LOOPBACK, self.target_port))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while data := src.recv(65536):
                if from_client:
                    with self._lock:
                        self.sent += data
                else:
                    for old, new in self.rewrite.items():
                        data = data.replace(old, new)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()

    stop = cleanup = close
