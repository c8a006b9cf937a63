"""A TCP proxy in front of the API server that can make the connections it
carries go silent without closing them: what a half-open connection, a
stateful firewall that forgot a flow or a wedged load balancer does to a
long watch. Connections opened after `stall()` work normally."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from types import TracebackType


class _Flow:
    def __init__(self, downstream: socket.socket, upstream: socket.socket) -> None:
        self.sockets = (downstream, upstream)
        self.stalled = threading.Event()
        self.closed = threading.Event()

    def pump(self) -> None:
        downstream, upstream = self.sockets
        peers = {downstream: upstream, upstream: downstream}
        try:
            while not self.closed.is_set():
                if self.stalled.is_set():
                    # Read nothing and send nothing; both ends keep waiting.
                    self.closed.wait(0.5)
                    continue
                readable, _, _ = select.select(list(peers), [], [], 0.2)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    peers[source].sendall(data)
        except OSError:
            return
        finally:
            self.close()

    def close(self) -> None:
        self.closed.set()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


class StallingProxy:
    """Listens on 127.0.0.1:`port` and forwards to `target`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._flows: list[_Flow] = []
        self._lock = threading.Lock()
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def stall(self) -> int:
        """Silence every connection open now; returns how many there were."""
        with self._lock:
            live = [f for f in self._flows if not f.closed.is_set()]
            for flow in live:
                flow.stalled.set()
            return len(live)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for flow in self._flows:
                flow.close()

    def __enter__(self) -> StallingProxy:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self._target, timeout=10)
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            flow = _Flow(downstream, upstream)
            with self._lock:
                self._flows = [f for f in self._flows if not f.closed.is_set()]
                self._flows.append(flow)
            threading.Thread(target=flow.pump, daemon=True).start()
