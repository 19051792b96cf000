"""A loopback TCP proxy for fault tests: sits between a client and Prosody and can cut, stall or
half-close the connections passing through it on command."""

from __future__ import annotations

import socket
import struct
import threading


class Pipe:
    """One proxied connection: two sockets and two pump threads."""

    def __init__(self, proxy: FaultProxy, downstream: socket.socket, upstream: socket.socket):
        self.proxy = proxy
        self.down = downstream
        self.up = upstream
        self.closed = threading.Event()
        self.bytes_up = 0
        self.bytes_down = 0
        for src, dst, name in ((downstream, upstream, "up"), (upstream, downstream, "down")):
            threading.Thread(target=self._pump, args=(src, dst, name), daemon=True,
                             name=f"proxy-{name}").start()

    def _pump(self, src: socket.socket, dst: socket.socket, name: str) -> None:
        try:
            while not self.closed.is_set():
                self.proxy._flowing.wait()
                try:
                    data = src.recv(65536)
                except OSError:
                    break
                if not data:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    break
                self.proxy._flowing.wait()  # a stall holds data already read, too
                if self.closed.is_set():
                    break
                try:
                    dst.sendall(data)
                except OSError:
                    break
                if name == "up":
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
        finally:
            self.cut()

    def cut(self) -> None:
        """Abort both sides with a TCP reset (SO_LINGER 0), as a crashed network would."""
        if self.closed.is_set():
            return
        self.closed.set()
        for sock in (self.down, self.up):
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # A close() does not end a connection while a pump thread is blocked in recv()
                # on it (the syscall holds the file); SHUT_RD wakes that thread without
                # sending anything, and the last close then sends the reset.
                sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass
        self.proxy._forget(self)

    def half_close(self) -> None:
        """Close the direction towards the client only (the client sees end of stream)."""
        try:
            self.down.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class FaultProxy:
    """``FaultProxy(upstream_port)``; connect clients to ``proxy.port``."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._pipes: list[Pipe] = []
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self._accepting = True
        self.connections = 0
        self._to_reject = 0
        self.rejected = threading.Event()  # set once reject_next()'s connections were refused
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    def _accept(self) -> None:
        while self._accepting:
            try:
                down, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                reject = self._to_reject > 0
                if reject:
                    self._to_reject -= 1
                    if self._to_reject == 0:
                        self.rejected.set()
            if reject:  # a failed attempt: reset before anything reaches the server
                down.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                down.close()
                continue
            try:
                up = socket.create_connection(self.upstream, timeout=5)
                up.settimeout(None)
            except OSError:
                down.close()
                continue
            with self._lock:
                self.connections += 1
                self._pipes.append(Pipe(self, down, up))

    def _forget(self, pipe: Pipe) -> None:
        with self._lock:
            if pipe in self._pipes:
                self._pipes.remove(pipe)

    @property
    def pipes(self) -> list[Pipe]:
        with self._lock:
            return list(self._pipes)

    def cut_all(self) -> int:
        """Reset every open connection; returns how many were cut."""
        pipes = self.pipes
        for pipe in pipes:
            pipe.cut()
        return len(pipes)

    def reject_next(self, count: int) -> None:
        """Reset the next ``count`` connections as soon as they are accepted (failed
        reconnect attempts); ``rejected`` is set when the last of them was refused."""
        with self._lock:
            self._to_reject = count
            self.rejected.clear()

    def stall(self) -> None:
        """Stop forwarding in both directions, leaving the TCP connections open (half-dead)."""
        self._flowing.clear()

    def unstall(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._accepting = False
        self._flowing.set()
        try:
            self._listener.close()
        except OSError:
            pass
        self.cut_all()
