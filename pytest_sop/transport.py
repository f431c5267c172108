"""Appium's HTTP requests over connections this process keeps open.

Selenium sends each command through urllib3: a pool manager per session, the URL parsed and its
pool looked up again for every request, and a new TCP connection for every session. Against a
local Appium that Python work costs more than Appium's own handling of a command, and it lies on
the device's critical path (issue 14). For a plain ``http://`` endpoint without a proxy, Selenium's
requests go through a lean HTTP/1.1 client instead (:mod:`.http1`), on connections kept per
endpoint and shared by the sessions one after another; an ``https://`` endpoint, a proxy or urllib3
options of the user's own keep Selenium's way (:func:`kept_open_applies`).
"""

from __future__ import annotations

import http.client
import os
import select
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from urllib3.exceptions import ProtocolError

from .http1 import Connection, Headers

T = TypeVar("T")

# Idle connections kept per endpoint: more than a process uses at once (a case's session, the next
# case's being made, one being deleted) is only sockets held open on Appium.
_KEEP = 4
# A reused connection that fails this way was closed by the server while idle: sent again once, on a
# new connection (Appium never saw the request; a new session's request carries an idempotency key).
_CLOSED_WHILE_IDLE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


def kept_open_applies(client_config: Any, proxy_url: str | None) -> bool:
    """True for connections this module can make as urllib3 would: plain http, no proxy, no pool options."""
    return (
        str(client_config.remote_server_addr).lower().startswith("http://")
        and not proxy_url
        and bool(client_config.keep_alive)
        and not client_config.init_args_for_pool_manager
    )


class Response:
    """What Selenium reads of a urllib3 response."""

    __slots__ = ("data", "headers", "reason", "status")

    def __init__(self, status: int, reason: str, headers: Headers, data: bytes) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers  # looked up case-insensitively, as urllib3's
        self.data = data

    def close(self) -> None:
        """The body is read whole: nothing to close."""


class KeptConnections:
    """Stands in for the urllib3 pool manager of every Selenium connection of this process to a plain
    ``http://`` endpoint: :meth:`request` and :meth:`clear` as Selenium calls them."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._pid = os.getpid()
        self._idle: dict[tuple[str, int], list[Connection]] = {}

    def request(
        self, method: str, url: str, body: str | bytes | None = None, headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:  # fmt: skip
        return self.send(method, url, body, headers, timeout).response()

    def send(
        self, method: str, url: str, body: str | bytes | None = None, headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Sent:  # fmt: skip
        """Send the request now, on a kept connection; its response is read by :meth:`Sent.response`,
        on any thread (a session's deletion is sent at once and read off the case's way)."""
        parts = urlsplit(url)
        where = (parts.hostname or "localhost", parts.port or 80)
        target = parts.path + ("?" + parts.query if parts.query else "") or "/"
        data = body.encode("utf-8") if isinstance(body, str) else body  # UTF-8, as urllib3 sends a str body
        conn, reused = self._take(where, timeout)
        sent = Sent(self, where, timeout, conn, reused, (method, target, data, headers or {}))
        sent.send()
        return sent

    def _take(self, where: tuple[str, int], timeout: float | None) -> tuple[Connection, bool]:
        with self._mutex:
            if self._pid != os.getpid():  # a forked child does not share its parent's sockets
                self._pid, self._idle = os.getpid(), {}
            idle = self._idle.get(where, [])
            while idle:
                conn = idle.pop()
                if _still_open(conn):
                    conn.settimeout(timeout)
                    return conn, True
                conn.close()
        return Connection(*where, timeout=timeout), False

    def _give(self, where: tuple[str, int], conn: Connection) -> None:
        with self._mutex:
            idle = self._idle.setdefault(where, [])
            if len(idle) < _KEEP and self._pid == os.getpid():
                idle.append(conn)
                return
        conn.close()

    def clear(self) -> None:
        """Selenium's quit: the session ends, its connection stays for the next session."""

    def close_idle(self) -> None:
        """Every idle connection closed (the run's end): none is left open on Appium until this process
        exits, or on a server that is gone when ``pytest.main`` runs again in the same process."""
        with self._mutex:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()


def _still_open(conn: Connection) -> bool:
    """An idle connection the server has not closed: nothing to read on it (urllib3 checks the same)."""
    sock = conn.sock
    if sock is None:
        return False
    poll = select.poll()
    poll.register(sock, select.POLLIN)
    try:
        return not poll.poll(0)
    except OSError:
        return False


class Sent:
    """A request on its way on a kept connection; :meth:`response` reads its answer (the first
    thread to ask reads it, the others get the same answer).

    A reused connection that turns out to have been closed by the server while idle (on sending or
    on reading) carries the request again once, on a new connection.
    """

    def __init__(
        self, pool: KeptConnections, where: tuple[str, int], timeout: float | None,
        conn: Connection, reused: bool, request: tuple[str, str, bytes | None, dict[str, str]],
    ) -> None:  # fmt: skip
        self._pool = pool
        self._where = where
        self._timeout = timeout
        self._conn = conn
        self._reused = reused
        self._request = request
        self._reading = threading.Lock()
        self._answer: Response | BaseException | None = None

    def send(self) -> None:
        try:
            try:
                self._send()
            except _CLOSED_WHILE_IDLE:
                if not self._reused:
                    raise
                self._renew()
        except BaseException:
            self._conn.close()
            raise

    def response(self) -> Response:
        with self._reading:
            if self._answer is None:
                try:
                    self._answer = self._response()
                except BaseException as e:
                    self._answer = e
            if isinstance(self._answer, BaseException):
                raise self._answer
            return self._answer

    def _response(self) -> Response:
        try:
            try:
                response, will_close = self._read()
            except _CLOSED_WHILE_IDLE:
                if not self._reused:
                    raise
                self._renew()
                response, will_close = self._read()
        except BaseException:
            self._conn.close()
            raise
        if will_close:
            self._conn.close()
        else:
            self._pool._give(self._where, self._conn)
        return response

    def _renew(self) -> None:
        """The request sent again, once, on a new connection."""
        self._conn.close()
        self._conn, self._reused = Connection(*self._where, timeout=self._timeout), False
        self._send()

    def _send(self) -> None:
        _urllib3_errors(lambda: self._conn.send(*self._request))

    def _read(self) -> tuple[Response, bool]:
        """The response, read whole (so the connection can take the next request), and whether the
        server closes the connection after it."""
        status, reason, headers, body, will_close = _urllib3_errors(self._conn.read)
        return Response(status, reason, headers, body), will_close


def _urllib3_errors(call: Callable[[], T]) -> T:
    """``call()``, its malformed-HTTP errors raised as urllib3's ``ProtocolError``, where Selenium's
    callers catch urllib3's; an ``OSError`` as it is (``RemoteDisconnected`` is both, and the retry
    on a new connection needs it as it is)."""
    try:
        return call()
    except OSError:
        raise
    except http.client.HTTPException as e:
        raise ProtocolError(f"{type(e).__name__}: {e}") from e


kept_connections = KeptConnections()
