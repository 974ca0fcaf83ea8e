"""A loopback TCP proxy that a test can cut and restore: a database outage on demand.

``TcpProxy(upstream_port)`` listens on 127.0.0.1 on a free port and forwards every
connection to 127.0.0.1:``upstream_port``. ``cut()`` closes every open connection and
refuses new ones (they are accepted and closed at once, as a server that went away
mid-session looks to a client that reconnects); ``hang()`` closes them too but holds new
ones open without a byte of answer (a server that stopped answering: only a client's own
timeout ends the wait); ``restore()`` forwards again. Threads and plain sockets, nothing
else: the service under test sees a real network failure.
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress

CHUNK_BYTES = 64 * 1024
ACCEPT_POLL_S = 0.05
FORWARD, REFUSE, HANG = "forward", "refuse", "hang"


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``upstream_port`` until cut."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(ACCEPT_POLL_S)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._held: list[socket.socket] = []  # accepted while hanging, never answered
        self._mode = FORWARD
        self._stopping = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)

    def __enter__(self) -> TcpProxy:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._acceptor.join()
        self._listener.close()
        self._close_all()

    def cut(self) -> None:
        """Close every forwarded connection and refuse new ones until ``restore``."""
        self._switch(REFUSE)

    def hang(self) -> None:
        """Close every forwarded connection; hold new ones open, unanswered, until
        ``restore``."""
        self._switch(HANG)

    def restore(self) -> None:
        """Forward new connections again (those held while hanging are closed)."""
        self._switch(FORWARD)

    def _switch(self, mode: str) -> None:
        with self._lock:
            self._mode = mode
        self._close_all()

    def _close_all(self) -> None:
        with self._lock:
            sockets, self._open = [*self._open, *self._held], set()
            self._held = []
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            with self._lock:
                mode = self._mode
                if mode == HANG:
                    self._held.append(client)
            if mode == HANG:
                continue
            if mode == REFUSE:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                forwarding = self._mode == FORWARD  # not cut while connecting upstream
                if forwarding:
                    self._open.update((client, upstream))
            if not forwarding:
                client.close()
                upstream.close()
                continue
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        """Copy bytes one way until either side closes; then close both (which ends the other
        direction's pump too) and forget them."""
        try:
            while chunk := source.recv(CHUNK_BYTES):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            with self._lock:
                self._open.difference_update((source, target))
